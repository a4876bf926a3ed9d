"""Solo ordering: one in-process queue that fixes a total order and cuts blocks.

A block is cut when it holds ``max_txs`` transactions or when ``max_wait`` seconds have passed
since its first transaction arrived, whichever comes first. The orderer stamps the block time
(Unix ms, never earlier than the previous block's). The cluster's JetStream orderer offers the same
interface.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Items for one block at ``time``; ``height`` is set when the orderer fixes it (cluster)."""

    items: list[T]
    time: int
    height: int | None = None


class Orderer(Protocol[T]):
    """What the node needs from an ordering service (solo here, JetStream in a cluster)."""

    def free(self) -> int: ...

    def put(self, items: Sequence[T]) -> None: ...

    def next_batch(self, timeout: float | None = None) -> Batch[T] | None: ...

    def committed(self, n: int) -> None:
        """The node made ``n`` of the items it put durable."""

    def close(self) -> None: ...


class SoloOrderer(Generic[T]):
    def __init__(
        self,
        *,
        max_txs: int = 2000,
        max_wait: float = 0.02,
        capacity: int = 200_000,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        if max_txs < 1 or max_wait < 0:
            raise ValueError("max_txs must be >= 1 and max_wait >= 0")
        self.max_txs, self.max_wait, self.capacity = max_txs, max_wait, capacity
        self._clock = clock
        self._queue: deque[T] = deque()
        self._cond = threading.Condition()
        self._first_at: float | None = None
        self._last_time = 0
        self._closed = False

    def free(self) -> int:
        with self._cond:
            return self.capacity - len(self._queue)

    def put(self, items: Sequence[T]) -> None:
        """Append in order; the caller checks ``free()`` first for back-pressure."""
        with self._cond:
            if self._closed:
                raise RuntimeError("orderer closed")
            if not self._queue and items:
                self._first_at = time.monotonic()
            self._queue.extend(items)
            self._cond.notify_all()

    def next_batch(self, timeout: float | None = None) -> Batch[T] | None:
        """Block until a batch is due, then return it; None on close or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                wait: float | None
                if self._queue:
                    assert self._first_at is not None
                    due = self._first_at + self.max_wait
                    now = time.monotonic()
                    if len(self._queue) >= self.max_txs or now >= due or self._closed:
                        return self._cut()
                    wait = due - now
                elif self._closed:
                    return None
                else:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        return None
                self._cond.wait(wait)

    def _cut(self) -> Batch[T]:
        n = min(self.max_txs, len(self._queue))
        items = [self._queue.popleft() for _ in range(n)]
        self._first_at = time.monotonic() if self._queue else None
        self._last_time = max(self._last_time, self._clock())
        return Batch(items, self._last_time)

    def committed(self, n: int) -> None:
        pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
