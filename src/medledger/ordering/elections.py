"""Stream-leader elections as JetStream announces them, so a wait can end when one is over.

While a replicated stream has no leader (its old leader's server died and the survivors' Raft
timers have not run out yet; 4-9 s on nats-server 2.9 and 2.15), a JetStream API request or a
publish to it is answered by nobody: the client waits out its whole timeout. Left alone, every
such wait in flight at the moment the new leader is elected adds up to its timeout to the
failover pause, and a block's path (submit, sequencer read, cut, peers' reads) crosses several.

The new leader publishes ``$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.<stream>`` in the stream's
own account. ``Elections`` listens to it (one subscription per connection, restored by the
client on reconnect) and wakes the waits on that stream: an attempt made before the election is
given up at once (raising ``Elected``) and the caller tries again; a pause between attempts ends
early. A missed advisory (say, while the client was reconnecting) costs only the old timeout.
Every wrapped request must be safe to repeat: publishes carry a message id, reads are reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("medledger.ordering")
ADVISORY = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*"


class Elected(TimeoutError):
    """An attempt given up because its stream elected a new leader while it waited: it was
    (most likely) sent while the stream had none, so its answer will never come."""


class Elections:
    """Per stream, an event set when its next leader is announced (then replaced)."""

    def __init__(self) -> None:
        self._next: dict[str, asyncio.Event] = {}
        self.seen: dict[str, int] = {}  # stream -> leader elections announced while connected

    async def on_advisory(self, msg: Any) -> None:
        """The NATS subscription callback for ``ADVISORY``."""
        self.elected(str(msg.subject).rsplit(".", 1)[-1])

    def elected(self, stream: str) -> None:
        log.debug("%s elected a leader", stream)
        self.seen[stream] = self.seen.get(stream, 0) + 1
        event = self._next.pop(stream, None)
        if event is not None:
            event.set()

    def _event(self, stream: str) -> asyncio.Event:
        return self._next.setdefault(stream, asyncio.Event())

    async def within(self, stream: str, attempt: Awaitable[T], timeout: float | None) -> T:
        """``attempt``'s result within ``timeout`` seconds (``asyncio.TimeoutError`` after it);
        cancelled with ``Elected`` as soon as ``stream`` announces a new leader."""
        event = self._event(stream)  # taken before the attempt starts: no election is missed
        task = asyncio.ensure_future(attempt)
        waiter = asyncio.ensure_future(event.wait())
        try:
            done, _ = await asyncio.wait({task, waiter}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if waiter in done:
            raise Elected(f"{stream} elected a new leader")
        raise TimeoutError()

    async def any_of(self, streams: Sequence[str], seconds: float,
                     stop: asyncio.Event | None = None) -> bool:
        """Wait up to ``seconds`` for any of ``streams`` to announce a leader (or ``stop``);
        True if one did."""
        elected = [asyncio.ensure_future(self._event(s).wait()) for s in streams]
        waits = [*elected, *([asyncio.ensure_future(stop.wait())] if stop is not None else [])]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return any(w.done() and not w.cancelled() for w in elected)

    async def pause(self, stream: str, seconds: float) -> None:
        """Sleep ``seconds``, waking early if ``stream`` announces a new leader."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event(stream).wait(), seconds)


async def watch(nc: Any, elections: Elections) -> None:
    """Subscribe ``elections`` to the leader-elected advisories on connection ``nc``. A server
    that refuses the subscription (a user without permission for ``$JS.EVENT.>``) only leaves
    the waits at their timeouts."""
    await nc.subscribe(ADVISORY, cb=elections.on_advisory)
