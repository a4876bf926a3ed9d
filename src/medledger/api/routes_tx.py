"""Transaction endpoints: submit one, submit a batch, read one, prove one.

Submission needs no request authentication: a transaction's own signatures authenticate it and
the node's ingress checks refuse anything unsigned, unknown or replayed. Reads require a member
(``medledger.api.auth``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from medledger.api.auth import Member
from medledger.api.deps import get_node, json_response
from medledger.api.problems import error_doc, problem_doc, problem_responses
from medledger.errors import Code, MedLedgerError, RejectedError
from medledger.ledger.tx import MAX_TX_BYTES
from medledger.node import views as view
from medledger.node.node import Node, Receipt

router = APIRouter(prefix="/v1", tags=["transactions"])

MAX_BATCH_TXS = 10_000
MAX_BATCH_BYTES = 64 * 1024 * 1024
MAX_TIMEOUT_S = 60.0
TX_ID_PATTERN = r"^[0-9a-f]{64}$"

NodeDep = Annotated[Node, Depends(get_node)]
Wait = Annotated[bool, Query(description="Wait for the receipt (true) or return 202 at once")]
Timeout = Annotated[
    float, Query(gt=0, le=MAX_TIMEOUT_S, description="Seconds to wait for receipts (<= 60)")
]
TxId = Annotated[str, Path(pattern=TX_ID_PATTERN, description="Transaction id (64 hex)")]

_TX_BODY = {
    "requestBody": {
        "required": True,
        "description": "One signed transaction in canonical JSON, sent byte for byte.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "description": "Signed transactions in canonical JSON, one per line (NDJSON).",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


async def read_body(request: Request, cap: int) -> bytes:
    """The raw request body, refused with ``too_large`` (413) once it exceeds ``cap`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise RejectedError(Code.TOO_LARGE, f"body of {length} bytes exceeds the cap of {cap}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise RejectedError(Code.TOO_LARGE, f"body exceeds the cap of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def wait_all(futures: Sequence[Future[Receipt]], timeout: float) -> None:
    """Wait until every future is done or ``timeout`` seconds pass, without blocking the loop.

    One loop wake-up per call, however many futures; the futures are never cancelled (the node
    shares them between duplicate submissions).
    """
    pending = [f for f in futures if not f.done()]
    if not pending:
        return
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    remaining = len(pending)
    lock = threading.Lock()

    def settle() -> None:
        if not finished.done():
            finished.set_result(None)

    def on_done(_: Future[Receipt]) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            last = remaining == 0
        if last:
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(settle)

    for f in pending:
        f.add_done_callback(on_done)
    await asyncio.wait({finished}, timeout=timeout)


def _outcome(fut: Future[Receipt]) -> Receipt | BaseException | None:
    """The receipt, the exception, or None while still pending."""
    if not fut.done():
        return None
    if fut.cancelled():
        return MedLedgerError(Code.INTERNAL, "receipt future was cancelled")
    exc = fut.exception()
    return exc if exc is not None else fut.result()


def _failure_doc(exc: BaseException, instance: str, tx_id: str) -> dict[str, Any]:
    if isinstance(exc, MedLedgerError):
        return error_doc(exc, instance, tx_id=tx_id)
    return problem_doc(
        Code.INTERNAL, "the node failed to process this transaction", instance, tx_id=tx_id
    )


@router.post(
    "/tx",
    summary="Submit one transaction",
    openapi_extra=_TX_BODY,
    responses={
        200: {"description": "Committed: receipt with an inclusion proof and checkpoint"},
        202: {"description": 'Accepted, not waited for: {"tx_id"}'},
        **problem_responses(400, 401, 403, 409, 413, 503, 504),
    },
)
async def submit_tx(
    request: Request, node: NodeDep, wait: Wait = True, timeout: Timeout = 30.0
) -> Response:
    """Submit one signed transaction (raw canonical bytes; they are never re-serialised).

    With ``wait`` the response is the receipt once the transaction's block is committed, plus
    ``proof`` (inclusion proof against the newest signed checkpoint: ``index``, ``size``,
    ``hashes``) and ``checkpoint`` (that checkpoint's signed note). A transaction that commits
    but fails execution still gets a 200 receipt whose ``code`` is the reason. An ingress
    refusal is a problem with its reason code; no receipt within ``timeout`` is 504 ``timeout``
    (the transaction may still commit).
    """
    raw = await read_body(request, MAX_TX_BYTES)
    tx_id = hashlib.sha256(raw).hexdigest()
    fut = (await run_in_threadpool(node.submit_many, [raw]))[0]
    if wait:
        await wait_all([fut], timeout)
    outcome = _outcome(fut)
    if isinstance(outcome, BaseException):
        raise outcome
    if outcome is None:
        if wait:
            raise MedLedgerError(
                Code.TIMEOUT, f"no receipt for {tx_id} within {timeout} s; it may still commit"
            )
        return json_response({"tx_id": tx_id}, 202)
    if not wait:
        return json_response({"tx_id": tx_id}, 202)
    doc = await run_in_threadpool(view.receipt_with_proof, node.store, outcome)
    return json_response(doc)


@router.post(
    "/txs",
    summary="Submit a batch of transactions",
    openapi_extra=_BATCH_BODY,
    responses={
        200: {"description": '{"receipts": [...]}: a receipt or a problem per line, in order'},
        202: {"description": 'Not waited for: {"tx_id"} or a problem per line, in order'},
        **problem_responses(413, 503),
    },
)
async def submit_batch(
    request: Request, node: NodeDep, wait: Wait = True, timeout: Timeout = 30.0
) -> Response:
    """Submit many transactions as NDJSON: one canonical transaction per line.

    The answer is ``{"receipts": [...]}`` with one entry per non-empty line, in order: a
    receipt document (``tx_id``, ``height``, ``index``, ``code``, ``message``, ``value``,
    ``events``; no proof — ask ``/v1/tx/{tx_id}/proof``) or, for a transaction refused at
    ingress or not committed within ``timeout``, a problem document with its ``code`` and the
    ``tx_id``. One bad transaction never sinks the batch. Without ``wait`` the status is 202
    and accepted lines are ``{"tx_id"}``. At most 10,000 lines and 64 MiB.
    """
    body = await read_body(request, MAX_BATCH_BYTES)
    raws = [line.removesuffix(b"\r") for line in body.split(b"\n")]
    raws = [r for r in raws if r and not r.isspace()]
    if len(raws) > MAX_BATCH_TXS:
        raise RejectedError(Code.TOO_LARGE, f"got {len(raws)} lines, cap is {MAX_BATCH_TXS}")
    futures = await run_in_threadpool(node.submit_many, raws) if raws else []
    if wait:
        await wait_all(futures, timeout)
    instance = request.url.path
    out: list[dict[str, Any]] = []
    for raw, fut in zip(raws, futures, strict=True):
        outcome = _outcome(fut)
        if isinstance(outcome, Receipt):
            out.append(outcome.to_doc() if wait else {"tx_id": outcome.tx_id.hex()})
        elif outcome is None:
            tx_id = hashlib.sha256(raw).hexdigest()
            if wait:
                out.append(
                    problem_doc(
                        Code.TIMEOUT,
                        f"no receipt within {timeout} s; it may still commit",
                        instance,
                        tx_id=tx_id,
                    )
                )
            else:
                out.append({"tx_id": tx_id})
        else:
            out.append(_failure_doc(outcome, instance, hashlib.sha256(raw).hexdigest()))
    return json_response({"receipts": out}, 200 if wait else 202)


@router.get(
    "/tx/{tx_id}",
    summary="Read a committed transaction",
    responses=problem_responses(401, 404, 422),
)
def get_tx(tx_id: TxId, node: NodeDep, member: Member) -> Response:
    """The receipt, the transaction as parsed JSON (its canonical encoding is the signed wire
    bytes) and its result document. Unknown id: 404 ``unknown_tx``."""
    rec = node.store.tx(bytes.fromhex(tx_id))
    if rec is None:
        raise MedLedgerError(Code.UNKNOWN_TX, f"no committed transaction {tx_id}")
    return json_response(view.tx_doc(rec))


@router.get(
    "/tx/{tx_id}/proof",
    summary="Inclusion proof of a transaction",
    responses=problem_responses(400, 401, 404, 422),
)
def get_tx_proof(
    tx_id: TxId,
    node: NodeDep,
    member: Member,
    size: Annotated[
        int | None, Query(ge=1, description="Log size (default: newest checkpoint)")
    ] = None,
) -> Response:
    """RFC 9162 inclusion proof of the transaction's log leaf in the log of ``size`` leaves:
    ``{"tx_id", "index", "size", "leaf_hash", "hashes", "root", "checkpoint"}`` (hex; the
    checkpoint is the signed note stored for that size, or null). The leaf is
    ``canonical({"height", "result", "tx"})``. Size out of range: 400 ``bad_proof_request``."""
    rec = node.store.tx(bytes.fromhex(tx_id))
    if rec is None:
        raise MedLedgerError(Code.UNKNOWN_TX, f"no committed transaction {tx_id}")
    return json_response(view.tx_proof(node.store, rec, size))
