"""A cosignature the COSIG stream refuses for a while is published once it accepts again, even
when the chain has gone quiet (no later block whose cosignature would make it final)."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.js.api import DiscardPolicy

from medledger.cluster.natsd import NatsCluster
from medledger.ordering.wire import Names
from tests.cluster.conftest import WallClock
from tests.conftest import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.slow]

WITNESSES = ["hosp-a", "hosp-b", "cdc"]
# longer than the 50 tries x 0.2 s after which a cosignature used to be dropped for good
OUTAGE = 13.0


def refuse_cosignatures(servers: list[str], stream: str, refuse: bool) -> None:
    """Make ``stream`` refuse every new message (full, discard new), or accept them again."""

    async def run() -> None:
        nc = await nats.connect(servers=servers, connect_timeout=2)
        try:
            js = nc.jetstream(timeout=5)
            info = await js.stream_info(stream)
            cfg = info.config
            cfg.max_msgs = info.state.messages if refuse else -1
            cfg.discard = DiscardPolicy.NEW if refuse else DiscardPolicy.OLD
            await js.update_stream(cfg)
        finally:
            await nc.close()

    asyncio.run(run())


def test_a_refused_cosignature_is_published_later(nats3: NatsCluster, start_peers) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers(tuple(WITNESSES), witnesses=WITNESSES)
    led = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]

    def final_at(height: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while any(p.exchange.state.final_height < height for p in peers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    assert final_at(led.filler().height, 15)
    cosig = Names(cons.genesis.chain_id).cosig_stream
    refuse_cosignatures(nats3.urls, cosig, True)
    try:
        last = led.filler()  # committed everywhere; its cosignatures cannot be stored
        assert not final_at(last.height, OUTAGE), [p.status() for p in peers]
    finally:
        refuse_cosignatures(nats3.urls, cosig, False)
    # nothing else is submitted: only the retried cosignatures can make it final
    assert final_at(last.height, 15), [p.status() for p in peers]
