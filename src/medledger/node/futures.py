"""Receipt futures of one ``submit_many`` call, sharing one condition.

A ``concurrent.futures.Future`` builds its own ``threading.Condition`` (a Python object, its
lock and a waiter deque) when it is created; at 10,000 transactions a second that was a
measurable share of the submitting thread's interpreter time and of the garbage collector's work
(BENCHMARKS.md). The futures of one batch are created together and resolved by the same commit
thread, so :func:`batch_futures` gives them one condition: creating one is a few attribute writes.

Sharing has one consequence: a sibling's completion also wakes a thread waiting on this future,
so :meth:`BatchFuture.result` and :meth:`BatchFuture.exception` wait in a loop until *their*
future is done or the timeout has passed. Everything else is the standard ``Future`` (state
changes, done-callbacks, ``concurrent.futures.wait``, ``asyncio.wrap_future``), which only ever
uses the condition under its own lock and re-checks state after waking.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import TypeVar

T = TypeVar("T")
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class BatchFuture(Future[T]):
    """A Future whose condition is shared with the other futures of its batch."""

    def __init__(self, condition: threading.Condition) -> None:
        # deliberately not Future.__init__: it would build a Condition of its own
        self._condition = condition
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks: list[Callable[[Future[T]], object]] = []

    def _wait_done(self, timeout: float | None) -> None:
        with self._condition:
            if timeout is None:
                while self._state not in _DONE:
                    self._condition.wait()
                return
            end = time.monotonic() + timeout
            while self._state not in _DONE:
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._condition.wait(left)

    def result(self, timeout: float | None = None) -> T:
        """As ``Future.result``: the value, or raises the exception, ``CancelledError`` or
        ``TimeoutError`` (after ``timeout`` seconds; ``None`` waits forever)."""
        self._wait_done(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """As ``Future.exception``."""
        self._wait_done(timeout)
        return super().exception(0)


def batch_futures(n: int) -> list[Future[T]]:
    """``n`` pending futures sharing one new condition."""
    condition = threading.Condition()
    return [BatchFuture(condition) for _ in range(n)]
