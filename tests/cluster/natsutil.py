"""NATS helpers for cluster tests: the shared server, private clusters, stream clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import nats

from medledger.ordering.wire import Names
from tests.support.services import NATS_URL, require_port


def shared_server() -> str:
    host, port = NATS_URL.removeprefix("nats://").split(":")
    require_port(host, int(port), "NATS JetStream")
    return NATS_URL


def unique_chain(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def drop_chain(servers: list[str], chain: str) -> None:
    """Delete a test chain's streams and lease bucket."""

    async def run() -> None:
        nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=2)
        js = nc.jetstream(timeout=5)
        n = Names(chain)
        for stream in (n.txs_stream, n.blocks_stream, n.cosig_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        with contextlib.suppress(Exception):
            await js.delete_key_value(n.lease_bucket)
        await nc.close()

    with contextlib.suppress(Exception):
        asyncio.run(run())
