"""Record provenance endpoints (the ``registry`` contract's read side)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from starlette.responses import Response

from medledger.api.auth import Member
from medledger.api.deps import get_node, json_response
from medledger.api.problems import problem_responses
from medledger.errors import Code, MedLedgerError
from medledger.node.node import Node
from medledger.records.registry import lineage

router = APIRouter(prefix="/v1")
NodeDep = Annotated[Node, Depends(get_node)]


@router.get(
    "/records/{owner}/{record_id}/lineage",
    tags=["records"],
    summary="A record's whole lineage: versions, custodians, transfers",
    responses=problem_responses(401, 404),
)
def get_lineage(
    node: NodeDep,
    member: Member,
    owner: Annotated[str, Path(description="Organisation that registered the record")],
    record_id: Annotated[str, Path(description="The owner's opaque record id")],
) -> Response:
    """``{"owner", "record_id", "lineage": [...]}``, oldest custodian first; 404 ``not_found``."""
    try:
        history = lineage(node.store, owner, record_id)
    except KeyError:
        raise MedLedgerError(Code.NOT_FOUND, f"{owner} never registered {record_id}") from None
    return json_response({"owner": owner, "record_id": record_id, "lineage": history})
