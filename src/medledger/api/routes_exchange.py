"""Consent, exchange and access-log endpoints.

=======  ===========================================  =========================================
GET      /v1/consent/patients/{patient}               the patient's consents (``?height=``;
                                                      ``&prove=true`` adds the state proof)
GET      /v1/consent/check                            the consent decision (``?patient=&org=&
                                                      role=&purpose=&categories=&height=``)
GET      /v1/consent/patients/{patient}/log           access log with inclusion proofs
POST     /v1/exchange/request                         a signed exchange request to this node's
                                                      holder gateway (no member headers: the
                                                      request carries its own signature)
=======  ===========================================  =========================================

The log is served to the patient's linked agent and to auditors, data stewards and org admins;
anyone else gets 403 ``forbidden``. A refused exchange is a 4xx problem whose ``reason`` member
is the consent reason code and ``entry`` its access-log key.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from medledger.api.auth import Member
from medledger.api.deps import get_node, json_response
from medledger.api.problems import PROBLEM_MEDIA_TYPE, problem_doc, problem_responses
from medledger.consent import model as m
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Holder
from medledger.consent.log import patient_log
from medledger.consent.status import status_doc
from medledger.consortium.model import member_key
from medledger.errors import Code, MedLedgerError
from medledger.ledger.stateproof import DEFAULT_MAX_BLOCKS, MAX_BLOCKS_LIMIT
from medledger.node.node import Node

router = APIRouter(prefix="/v1")
NodeDep = Annotated[Node, Depends(get_node)]
Patient = Annotated[str, Path(description="Consortium pseudonym", pattern=m.PATIENT[1:-1])]
LOG_READERS = frozenset({"auditor", "data-steward", "org-admin"})


def install_holder(app: FastAPI, holder: Holder) -> None:
    """Serve exchange requests for ``holder`` (the organisation whose gateway this node is);
    ``medledger node start --holder-vault`` installs one built by
    ``consent.serving.open_vault_holder``."""
    app.state.exchange_holder = holder


def _state(node: Node, key: str, height: int | None) -> Any:
    if height is None:
        raw = node.store.get_state(key)
    else:
        found = node.store.state_at(key, height)
        raw = None if found is None else found[1]
    return None if raw is None else orjson.loads(raw)


@router.get("/consent/patients/{patient}", tags=["consent"],
            summary="A patient's consents, now or at a height (with ?prove=true, proven)",
            responses=problem_responses(400, 401, 404, 422))
def get_consents(
    node: NodeDep, member: Member, patient: Patient,
    height: Annotated[int | None, Query(ge=0)] = None,
    prove: Annotated[bool, Query(description="Add the key-history proof of the patient's "
                                 "consent index at that height")] = False,
    size: Annotated[int | None, Query(ge=0, description="With prove: the log size of the "
                                      "checkpoint to prove against (e.g. a final one)")] = None,
    max_blocks: Annotated[int, Query(ge=1, le=MAX_BLOCKS_LIMIT)] = DEFAULT_MAX_BLOCKS,
) -> Response:
    """``{"patient", "height", "consents": {id: summary}}``; each full consent (evidence, grant
    and revoke transactions) is ``GET /v1/state/consent/c/{id}``. With ``prove=true`` also
    ``"proof"``: the state proof of ``consent/p/{patient}`` after block ``height`` (default:
    the newest checkpointed block; a height above the head is 404 ``unknown_block``), checked
    offline by ``consent.status.verify_status`` / ``LightClient.verify_state``."""
    if prove:
        return json_response(status_doc(node.store, patient, height, prove=True, size=size,
                                        max_blocks=max_blocks))
    h = node.height if height is None else min(height, node.height)
    index = _state(node, f"consent/{m.patient_key(patient)}", h) or {}
    return json_response({"patient": patient, "height": h, "consents": index})


@router.get("/consent/check", tags=["consent"], summary="The consent decision",
            responses=problem_responses(401, 422))
def check(node: NodeDep, member: Member,
          patient: Annotated[str, Query(pattern=m.PATIENT[1:-1])],
          org: Annotated[str, Query(pattern=m.ORG[1:-1])],
          role: Annotated[str, Query(max_length=32)],
          purpose: Annotated[str, Query(max_length=32)],
          categories: Annotated[str, Query(description="comma-separated")],
          height: Annotated[int | None, Query(ge=0)] = None,
          time: Annotated[int | None, Query(ge=0, description="Unix ms")] = None) -> Response:
    """``{"granted", "reason", "consent_id", "height", "time"}`` as the holder would decide."""
    h = node.height if height is None else min(height, node.height)
    t = node.head.time if time is None else time
    cats = [c for c in categories.split(",") if c]
    if not cats or not all(re.match(m.CATEGORY, c) for c in cats):
        raise MedLedgerError(Code.BAD_ARGS, f"categories {categories!r}; want a comma-separated "
                             f"list of {m.CATEGORY}")
    d = m.decide(_state(node, f"consent/{m.patient_key(patient)}", h), org, role, purpose,
                 cats, t)
    return json_response({"granted": d.granted, "reason": d.reason.value,
                          "consent_id": d.consent_id, "height": h, "time": t})


@router.get("/consent/patients/{patient}/log", tags=["consent"],
            summary="Every access to a patient's records, with inclusion proofs",
            responses=problem_responses(401, 403))
def get_log(node: NodeDep, member: Member, patient: Patient) -> Response:
    """``{"patient", "entries": [{"key", "entry", "tx", "height", "result", "proof"}]}``; a
    flagged break-glass entry also carries ``review``, the holder's auditor's review record."""
    who = _state(node, f"consortium/{member_key(member)}", None) or {}
    agent = _state(node, f"consent/{m.agent_key(patient)}", None) or {}
    if agent.get("member") != member and who.get("role") not in LOG_READERS:
        raise MedLedgerError(Code.FORBIDDEN, f"{member} is neither the patient's agent nor an "
                             "auditor, data steward or org admin")
    return json_response({"patient": patient, "entries": patient_log(node.store, patient)})


@router.post("/exchange/request", tags=["consent"], summary="Ask this holder for records",
             responses=problem_responses(400, 401, 403, 409, 422, 503))
async def post_request(request: Request) -> Response:
    """Body: ``{"body", "kid", "signature"}`` (``medledger.consent.exchange.sign_request``).
    Answer: the delivery ``{"request_id", "entry", "holder", "recipient_org", "kex_kid",
    "sealed"}`` (HPKE, base64)."""
    holder: Holder | None = getattr(request.app.state, "exchange_holder", None)
    if holder is None:
        raise MedLedgerError(Code.NODE_UNAVAILABLE, "this node serves no holder gateway")
    try:
        signed = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise MedLedgerError(Code.MALFORMED_JSON, f"body: {exc}") from None
    if type(signed) is not dict:
        raise MedLedgerError(Code.BAD_ARGS, "body must be a JSON object")
    try:  # the holder waits for its access entry's block: off the event loop
        delivery = await run_in_threadpool(holder.handle, signed)
    except ExchangeError as exc:
        doc = problem_doc(exc.code, exc.message, request.url.path, reason=exc.reason.value,
                          entry=exc.entry)
        return Response(orjson.dumps(doc), status_code=doc["status"],
                        media_type=PROBLEM_MEDIA_TYPE)
    return json_response(delivery.to_doc())
