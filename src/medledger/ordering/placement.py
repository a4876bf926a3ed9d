"""Keep the TXS and BLOCKS stream leaders on different NATS servers.

A block needs both streams: transactions are stored through the TXS leader and cuts appended
through the BLOCKS leader. JetStream places each stream's leader on its own (at random among the
replicas), so one server leads both about a third of the time, and losing that server then
stops writes until *both* elections are over: the later of two randomised Raft timeouts
(4-9 s each here) instead of one. The peer holding the sequencer lease watches the two leaders
and, when one server leads both, asks the BLOCKS leader to step down
(``$JS.API.STREAM.LEADER.STEPDOWN``); its successor is one of the other replicas, so the two
leaders end up apart. A step-down is a planned handover (the waits of ``Elections`` end as soon
as it is announced); it is never asked for within ``SETTLE`` seconds of an election (mid-way
through a failover's recovery it would only add a handover to it), and at most once every
``EVERY`` seconds, so a cluster whose leaders keep landing together is never churned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from medledger.ordering.elections import Elections
from medledger.ordering.wire import Names

log = logging.getLogger("medledger.ordering")


def leader_of(info: Any) -> str | None:
    """The server leading a replicated stream, from its ``StreamInfo``; None for a stream
    without replicas or without a leader."""
    cluster = getattr(info, "cluster", None)
    if cluster is None or not cluster.replicas:  # an R1 stream has nothing to move to
        return None
    return str(cluster.leader) if cluster.leader else None


class LeaderSpreader:
    """Steps the BLOCKS leader down while the server leading TXS leads it too, as long as
    ``leading()`` (this peer holds the sequencer lease: one peer does it at a time)."""

    EVERY = 30.0  # seconds between step-downs at most
    POLL = 1.0  # seconds between looks at ``leading()`` while not leading
    SETTLE = 10.0  # seconds after an election before looking again

    def __init__(self, nc: Any, js: Any, names: Names, elections: Elections,
                 leading: Callable[[], bool]) -> None:
        self.nc, self.js, self.names, self.elections = nc, js, names, elections
        self.leading = leading
        self.stepdowns = 0  # step-downs the engine accepted
        self._last = float("-inf")

    async def check(self) -> bool:
        """Look at both leaders once; step BLOCKS's down if they are one server (and the last
        step-down is ``EVERY`` seconds ago). True if a step-down was accepted."""
        txs, blocks = await asyncio.wait_for(asyncio.gather(
            self.js.stream_info(self.names.txs_stream),
            self.js.stream_info(self.names.blocks_stream)), 2.0)
        shared = leader_of(txs)
        if shared is None or shared != leader_of(blocks):
            return False
        if time.monotonic() - self._last < self.EVERY:
            return False
        self._last = time.monotonic()
        reply = await self.nc.request(
            f"$JS.API.STREAM.LEADER.STEPDOWN.{self.names.blocks_stream}", b"", timeout=2.0)
        accepted = bool(json.loads(reply.data or b"{}").get("success"))
        log.info("%s leads both TXS and BLOCKS: BLOCKS leader step-down %s", shared,
                 "accepted" if accepted else f"refused ({reply.data!r})")
        self.stepdowns += accepted
        return accepted

    async def run(self, stop: asyncio.Event) -> None:
        streams = (self.names.txs_stream, self.names.blocks_stream)
        while not stop.is_set():
            wait = self.POLL
            if self.leading():
                wait = self.EVERY
                try:
                    await self.check()
                except Exception as exc:  # no leader to ask (an election): look again soon
                    log.debug("leader placement: %r", exc)
                    wait = self.POLL
            # wake for an election of either stream (a leader moved), or a stop; then let the
            # cluster settle first: a step-down in the middle of a failover's recovery would
            # only add a handover to it (placement is for the next failure, not this one)
            if await self.elections.any_of(streams, wait, stop):
                await self.elections.any_of((), self.SETTLE, stop)
