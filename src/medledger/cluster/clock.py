"""How far block times are from this peer's own clock: ``clock_skew_ms`` and its alarm.

A block's time is the clock of the sequencer that cut it, kept non-decreasing
(``ordering.jetstream.Sequencer`` starts from the last cut's time; ``Node._commit_batch`` takes
``max(block time, previous block time)``). Contracts, key validity and the transaction-time window
see only block time, so a skewed host cannot fork the chain; but a sequencer whose clock is off
shifts every block time, and the rule keeps block time at an earlier sequencer's larger value
until the new sequencer's clock passes it (docs/adr/0059-clock-skew.md).

Each peer estimates the difference when a block becomes durable:

* a **sample** is ``block time − this peer's wall clock`` (Unix ms), taken only while the peer is
  at the head: no newer cut known (lag 0) for this block *and* for the one before it. A peer
  replaying a backlog sees old block times; the block that ends a backlog was read together
  with the ones before it, so it is not sampled either;
* the **estimate** is the median of the last ``window`` (3) samples: one block delivered late
  (after a pause or a reconnection: it looks older than it is) does not move it, while a trend
  — block time held at a former sequencer's value while this clock advances — shows one block
  later;
* positive: block times are ahead of this clock (the sequencer's clock is ahead, or block time is
  still held at a former sequencer's larger value); negative: behind. The sequencer itself reads
  ≈ 0 unless block time is held;
* an **alarm** is raised while ``|estimate| > threshold_ms`` (0 disables it).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from medledger.ordering.solo import wall_ms

DEFAULT_THRESHOLD_MS = 30_000


class ClockSkew:
    """Block time minus this peer's clock, estimated from recent blocks seen at the head."""

    def __init__(self, threshold_ms: int = DEFAULT_THRESHOLD_MS, *, window: int = 3,
                 clock: Callable[[], int] = wall_ms) -> None:
        if threshold_ms < 0 or window < 1:
            raise ValueError("need threshold_ms >= 0 and window >= 1")
        self.threshold_ms, self._clock = threshold_ms, clock
        self._samples: deque[int] = deque(maxlen=window)
        self._height = 0  # newest block sampled
        self._prev_at_head = False
        self._lock = threading.Lock()

    def observe(self, block_time: int, height: int, lag: int) -> None:
        """Block ``height`` (time ``block_time``, Unix ms) became durable ``lag`` blocks behind
        the newest cut this peer knows of."""
        now = self._clock()
        at_head = lag <= 0
        with self._lock:
            if at_head and self._prev_at_head:
                self._samples.append(block_time - now)
                self._height = height
            self._prev_at_head = at_head

    def _estimate(self) -> int | None:
        return sorted(self._samples)[len(self._samples) // 2] if self._samples else None

    @property
    def skew_ms(self) -> int | None:
        """The estimate (ms), or None before the first sample."""
        with self._lock:
            return self._estimate()

    def status(self) -> dict[str, Any]:
        """``clock_skew_ms`` (None until measured) and ``clock_skew_height`` (newest sampled
        block), for ``/v1/health``."""
        with self._lock:
            return {"clock_skew_ms": self._estimate(), "clock_skew_height": self._height}

    def alarm(self) -> dict[str, Any] | None:
        """The health alarm entry while the estimate exceeds the threshold, else None."""
        skew = self.skew_ms
        if skew is None or self.threshold_ms == 0 or abs(skew) <= self.threshold_ms:
            return None
        return {"kind": "clock_skew", "skew_ms": skew, "threshold_ms": self.threshold_ms}
