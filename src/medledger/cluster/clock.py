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
* the **estimate** is the largest of the last ``window`` samples. The time between the cut and
  the commit here (delivery, execution, fsync) only makes a sample smaller, never larger, so the
  largest is the best one, and a single late block (a reconnection after a pause) does not
  count while a fresher sample is in the window;
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

    def __init__(self, threshold_ms: int = DEFAULT_THRESHOLD_MS, *, window: int = 5,
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

    @property
    def skew_ms(self) -> int | None:
        """The estimate (ms), or None before the first sample."""
        with self._lock:
            return max(self._samples) if self._samples else None

    def status(self) -> dict[str, Any]:
        """``clock_skew_ms`` (None until measured) and ``clock_skew_height`` (newest sampled
        block), for ``/v1/health``."""
        with self._lock:
            skew = max(self._samples) if self._samples else None
            return {"clock_skew_ms": skew, "clock_skew_height": self._height}

    def alarm(self) -> dict[str, Any] | None:
        """The health alarm entry while the estimate exceeds the threshold, else None."""
        skew = self.skew_ms
        if skew is None or self.threshold_ms == 0 or abs(skew) <= self.threshold_ms:
            return None
        return {"kind": "clock_skew", "skew_ms": skew, "threshold_ms": self.threshold_ms}
