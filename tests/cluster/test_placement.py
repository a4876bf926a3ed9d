"""One NATS server never leads both the TXS and the BLOCKS stream for long (ADR 0061): the
sequencing peer steps the BLOCKS leader down when they meet, so losing one server costs at most
one of the two elections a block needs."""

from __future__ import annotations

import asyncio
import time

import pytest

from medledger.cluster.natsd import NatsCluster
from medledger.ordering.jetstream import Link, ensure_streams
from medledger.ordering.placement import LeaderSpreader, leader_of
from medledger.ordering.wire import Names
from tests.cluster.natsutil import drop_chain, unique_chain

pytestmark = [pytest.mark.integration, pytest.mark.nats]


def test_the_blocks_leader_moves_off_the_server_leading_txs(nats3: NatsCluster) -> None:
    names = Names(unique_chain("pl"))
    link = Link(nats3.urls, "test-placement")

    async def leaders() -> tuple[str | None, str | None]:
        try:  # (unanswered while a stream elects)
            txs = await link.js.stream_info(names.txs_stream)
            blocks = await link.js.stream_info(names.blocks_stream)
        except Exception:
            return None, None
        return leader_of(txs), leader_of(blocks)

    async def settled(old: str | None = None) -> tuple[str, str]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            t, b = await leaders()
            if t and b and b != old:
                return t, b
            await asyncio.sleep(0.1)
        raise AssertionError("no leaders")

    async def go() -> tuple[int, tuple[str, str], int, tuple[str, str], bool]:
        await ensure_streams(link.js, names, replicas=3)
        t, b = await settled()
        for _ in range(30):  # step BLOCKS down until chance puts it with TXS
            if t == b:
                break
            await link.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{names.blocks_stream}",
                                  b"", timeout=5)
            t, b = await settled(old=b)
        assert t == b, "could not bring both leaders onto one server"
        leading = False
        spreader = LeaderSpreader(link.nc, link.js, names, link.elections, lambda: leading)
        spreader.POLL = 0.2
        stop = asyncio.Event()
        task = asyncio.ensure_future(spreader.run(stop))
        await asyncio.sleep(1.5)  # not sequencing: leaves placement alone
        idle, together = spreader.stepdowns, await settled()
        leading = True
        deadline = time.monotonic() + 20
        now: tuple[str | None, str | None] = (None, None)
        while time.monotonic() < deadline:
            now = await leaders()
            if now[0] and now[1] and now[0] != now[1]:
                break
            await asyncio.sleep(0.1)
        moved = spreader.stepdowns
        again = await spreader.check()  # apart now: nothing more to do
        stop.set()
        await asyncio.wait_for(task, 10)
        return idle, together, moved, (now[0] or "", now[1] or ""), again

    try:
        idle, together, moved, apart, again = link.call(go(), timeout=120)
    finally:
        link.close()
        drop_chain(nats3.urls, names.chain)
    assert idle == 0 and together[0] == together[1]
    assert moved == 1
    assert apart[0] != apart[1] and apart[0] == together[0]  # BLOCKS moved, TXS stayed
    assert again is False
