"""Ledger read endpoints: consistency and state proofs, blocks, checkpoints, state, health.

Every endpoint but ``/v1/health`` requires an authenticated member (``medledger.api.auth``).
Hashes are lower-case hex.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from medledger.api.auth import Member
from medledger.api.deps import get_node, json_response
from medledger.api.problems import problem_responses
from medledger.errors import Code, MedLedgerError
from medledger.ledger import stateproof
from medledger.ledger.store.base import StoredBlock
from medledger.node import views as view
from medledger.node.node import Node

router = APIRouter(prefix="/v1")

NodeDep = Annotated[Node, Depends(get_node)]
NOTE_MEDIA_TYPE = "text/plain; charset=utf-8"
_NOTE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The signed checkpoint note (C2SP signed-note), or JSON with format=json",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
Format = Annotated[
    Literal["note", "json"],
    Query(description="note: the signed note as text/plain; json: {size, height, note}"),
]


@router.get(
    "/proof/consistency",
    tags=["proofs"],
    summary="Consistency proof between two log sizes",
    responses=problem_responses(400, 401, 422),
)
def get_consistency(
    node: NodeDep,
    member: Member,
    old: Annotated[int, Query(description="Older log size (> 0)")],
    new: Annotated[
        int | None, Query(description="Newer log size (default: newest checkpoint)")
    ] = None,
) -> Response:
    """RFC 9162 consistency proof ``{"old", "new", "hashes", "old_root", "new_root"}``.
    Needs ``0 < old <= new <= log size``, else 400 ``bad_proof_request``."""
    return json_response(view.consistency(node.store, old, new))


@router.get(
    "/proof/state/{contract}/{key:path}",
    tags=["proofs"],
    summary="Proof of a state value (or its absence) at a height",
    responses=problem_responses(400, 401, 404, 422),
)
def get_state_proof(
    contract: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Contract")],
    key: Annotated[str, Path(description="Key within the contract's namespace")],
    node: NodeDep,
    member: Member,
    height: Annotated[
        int | None, Query(ge=0, description="Prove the value after this block (default: the "
                          "newest checkpoint's block)")
    ] = None,
    size: Annotated[
        int | None, Query(ge=0, description="Log size of the checkpoint to prove against "
                          "(default: the one signed for that block), e.g. a final one")
    ] = None,
    max_blocks: Annotated[
        int, Query(ge=1, le=stateproof.MAX_BLOCKS_LIMIT,
                   description="Refuse a proof of more block headers than this")
    ] = stateproof.DEFAULT_MAX_BLOCKS,
) -> Response:
    """Key-history proof of ``<contract>/<key>`` after block ``height`` (ADR 0035):
    ``{"type", "chain", "key", "height", "value" (base64 or null), "written", "headers",
    "write", "absent", "checkpoint"}`` — the headers from the key's last write (or block 0) to
    a checkpointed block, an inclusion proof of the write and a non-membership proof for every
    later block up to ``height``. Check it with ``LightClient.verify_state``. 400
    ``bad_proof_request`` when it would need more than ``max_blocks`` headers or no checkpoint
    covers the height; 404 ``unknown_block`` above the head, ``not_found`` for an unknown
    checkpoint size."""
    return json_response(stateproof.build_state_proof(
        node.store, f"{contract}/{key}", height, size=size, max_blocks=max_blocks))


@router.get(
    "/blocks/head",
    tags=["blocks"],
    summary="The newest committed block",
    responses=problem_responses(401),
)
def get_head(node: NodeDep, member: Member) -> Response:
    """``{"height", "hash", "header", "tx_ids"}`` of the head block."""
    return json_response(view.block_doc(node.store, view.head_block(node.store)))


@router.get(
    "/blocks/{height}",
    tags=["blocks"],
    summary="A block by height",
    responses=problem_responses(401, 404, 422),
)
def get_block(
    height: Annotated[int, Path(ge=0, description="Block height")], node: NodeDep, member: Member
) -> Response:
    """``{"height", "hash", "header", "tx_ids"}`` of the block; 404 ``unknown_block``."""
    block: StoredBlock | None = node.store.block(height)
    if block is None:
        raise MedLedgerError(Code.UNKNOWN_BLOCK, f"no block at height {height}")
    return json_response(view.block_doc(node.store, block))


def _checkpoint(cp: tuple[int, int, bytes], fmt: str, store: Any = None) -> Response:
    if store is not None:
        cp = (cp[0], cp[1], view.with_cosignatures(store, cp[0], cp[2]))
    if fmt == "json":
        return json_response(view.checkpoint_doc(cp))
    return Response(cp[2], media_type=NOTE_MEDIA_TYPE)


@router.get(
    "/checkpoints/latest",
    tags=["checkpoints"],
    summary="The newest signed checkpoint",
    responses={**_NOTE_RESPONSE, **problem_responses(401, 404, 422)},
)
def get_latest_checkpoint(node: NodeDep, member: Member, format: Format = "note") -> Response:
    """The newest signed checkpoint note (text/plain), or ``{"size", "height", "note"}`` with
    ``format=json``; 404 ``not_found`` when the node signs no checkpoints."""
    cp = node.store.checkpoint()
    if cp is None:
        raise MedLedgerError(Code.NOT_FOUND, "no checkpoint has been signed")
    return _checkpoint(cp, format, node.store)


@router.get(
    "/checkpoints/final",
    tags=["checkpoints"],
    summary="The newest final (quorum-cosigned) checkpoint",
    responses={**_NOTE_RESPONSE, **problem_responses(401, 404, 422)},
)
def get_final_checkpoint(node: NodeDep, member: Member, format: Format = "note") -> Response:
    """The newest checkpoint cosigned by a quorum of the consortium's witnesses, with their
    cosignature lines attached (C2SP tlog-cosignature). 404 ``not_found`` on an embedded node
    (no witnesses) or before the first checkpoint is final."""
    size = node.final_size() if node.final_size is not None else 0
    cp = node.store.checkpoint(size) if size else None
    if cp is None:
        raise MedLedgerError(Code.NOT_FOUND, "no final checkpoint (embedded node, or none yet)")
    return _checkpoint(cp, format, node.store)


@router.get(
    "/checkpoints/evidence",
    tags=["checkpoints"],
    summary="Equivocation evidence this node kept",
    responses=problem_responses(401),
)
def get_evidence(node: NodeDep, member: Member) -> Response:
    """``[{"against", "evidence"}]``: each piece of equivocation evidence this node kept, the
    two conflicting signed checkpoints as canonical JSON text (``medledger/equivocation/v1``).
    ``against`` is the organisation whose checkpoint disagreed with this peer's, or
    ``witness:<origin>`` for a log that presented its witness a conflicting checkpoint. Anyone
    can check a piece with the genesis keys alone (``medledger ledger evidence verify``).
    Empty when there is none."""
    from medledger.ledger.equivocation import kept_evidence
    from medledger.node.node import checkpoint_origin

    kept = kept_evidence(node.store, node.genesis.org_keys(), checkpoint_origin(node.chain_id))
    return json_response([{"against": k, "evidence": v.decode()} for k, v in kept.items()])


@router.get(
    "/checkpoints/{size}",
    tags=["checkpoints"],
    summary="The signed checkpoint for a log size",
    responses={**_NOTE_RESPONSE, **problem_responses(401, 404, 422)},
)
def get_checkpoint(
    size: Annotated[int, Path(ge=0, description="Log size")],
    node: NodeDep,
    member: Member,
    format: Format = "note",
) -> Response:
    """The checkpoint note signed for log ``size`` (as for ``latest``); 404 ``not_found``."""
    cp = node.store.checkpoint(size)
    if cp is None:
        raise MedLedgerError(Code.NOT_FOUND, f"no checkpoint for log size {size}")
    return _checkpoint(cp, format)


@router.get(
    "/state/{contract}/{key:path}",
    tags=["state"],
    summary="A contract state value",
    responses=problem_responses(401, 404, 422),
)
def get_state(
    contract: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Contract")],
    key: Annotated[str, Path(description="Key within the contract's namespace")],
    node: NodeDep,
    member: Member,
    height: Annotated[int | None, Query(ge=0, description="Read as of this height")] = None,
) -> Response:
    """``{"contract", "key", "value", "height", "at"}``: the value (parsed JSON) of
    ``<contract>/<key>`` as of height ``at`` (default: head) and the height it was written at.
    404 ``not_found`` when absent or deleted; 404 ``unknown_block`` for a future height."""
    head = view.head_block(node.store).height
    at = head if height is None else height
    if at > head:
        raise MedLedgerError(Code.UNKNOWN_BLOCK, f"height {at} is above the head {head}")
    found = node.store.state_at(f"{contract}/{key}", at)
    written, value = found if found is not None else (at, None)
    if value is None:
        raise MedLedgerError(Code.NOT_FOUND, f"no value for {contract}/{key} at height {at}")
    return json_response(
        {
            "contract": contract,
            "key": key,
            "value": orjson.loads(value),
            "height": written,
            "at": at,
        }
    )


@router.get(
    "/health",
    tags=["node"],
    summary="Liveness and chain position (no auth)",
    responses=problem_responses(503),
)
async def health(node: NodeDep) -> Response:
    """``{"status": "ok", "chain_id", "height", "log_size", "head_hash"}``; no authentication.

    Answered from the node's memory on the event loop (no store read, no thread hop): health
    is what load balancers and monitors poll, often."""
    head = node.head  # the newest durable block's header
    return json_response(
        {
            "status": "ok",
            "chain_id": node.chain_id,
            "height": head.height,
            "log_size": head.log_size,
            "head_hash": head.hash.hex(),
            **({"cluster": node.cluster_status()} if node.cluster_status else {}),
        }
    )
