"""``GET /v1/events``: contract events of committed, valid transactions as Server-Sent Events.

Each event is sent as::

    id: <height>:<tx log index>:<event number within the tx>
    event: <event name>
    data: {"height": h, "tx_id": hex, "index": i, "name": ..., "data": {...}}

in chain order, starting at block ``from_height`` (default: the block after the current head,
i.e. only new events) and following new blocks as they commit; the store's head is polled every
:data:`POLL_S` seconds. With ``until_height`` the stream ends once that block's events are sent
(it waits for the block to commit). A comment line is sent every :data:`KEEPALIVE_S` seconds of
silence so proxies keep the connection open. The stream stops when the client disconnects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from medledger.api.auth import Member
from medledger.api.deps import get_node
from medledger.api.problems import problem_responses
from medledger.ledger.store.base import Store
from medledger.node import views as view
from medledger.node.node import Node

router = APIRouter(prefix="/v1", tags=["events"])

POLL_S = 0.1
KEEPALIVE_S = 15.0
BLOCKS_PER_READ = 256


def format_event(ev: dict[str, Any], number: int) -> bytes:
    """One SSE message for an event document (see the module docstring)."""
    name = str(ev["name"]).replace("\r", " ").replace("\n", " ")
    return b"id: %d:%d:%d\nevent: %s\ndata: %s\n\n" % (
        ev["height"],
        ev["index"],
        number,
        name.encode("utf-8"),
        orjson.dumps(ev),
    )


async def event_stream(
    store: Store, start: int, until: int | None, poll_s: float = POLL_S
) -> AsyncIterator[bytes]:
    """SSE bytes for every event from block ``start`` on (through ``until`` if given)."""
    height = start
    last_sent = time.monotonic()
    while until is None or height <= until:
        head = (await run_in_threadpool(view.head_block, store)).height
        if head >= height:
            stop = min(head + 1, height + BLOCKS_PER_READ)
            if until is not None:
                stop = min(stop, until + 1)
            height, events = await run_in_threadpool(view.events_between, store, height, stop)
            chunk = bytearray()
            numbers: dict[tuple[int, int], int] = {}
            for ev in events:
                slot = (ev["height"], ev["index"])
                numbers[slot] = numbers.get(slot, -1) + 1
                chunk += format_event(ev, numbers[slot])
            if chunk:
                yield bytes(chunk)
                last_sent = time.monotonic()
            continue
        if time.monotonic() - last_sent >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)


@router.get(
    "/events",
    summary="Stream contract events (Server-Sent Events)",
    responses={
        200: {
            "description": "text/event-stream of events",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 422),
    },
)
def events(
    node: Annotated[Node, Depends(get_node)],
    member: Member,
    from_height: Annotated[
        int | None, Query(ge=0, description="First block (default: the next block to commit)")
    ] = None,
    until_height: Annotated[
        int | None, Query(ge=0, description="Last block; the stream ends after it")
    ] = None,
) -> StreamingResponse:
    """Events of every committed valid transaction from ``from_height`` on, following new
    blocks as they commit (see the module docstring for the message format)."""
    start = view.head_block(node.store).height + 1 if from_height is None else from_height
    return StreamingResponse(
        event_stream(node.store, start, until_height),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
