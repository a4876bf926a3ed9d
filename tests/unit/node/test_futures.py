"""Receipt futures sharing one condition behave like standard futures (medledger.node.futures)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, Future, wait

import pytest

from medledger.node.futures import batch_futures


def test_result_waits_for_its_own_future_not_a_sibling() -> None:
    fs: list[Future[str]] = batch_futures(2)
    f0, f1 = fs
    got: list[object] = []

    def waiter() -> None:
        got.append(f1.result(timeout=5))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    f0.set_result("first")  # wakes the waiter through the shared condition
    time.sleep(0.05)
    assert got == []  # still waiting: its own future is pending
    f1.set_result("second")
    t.join(5)
    assert got == ["second"]


def test_timeout_holds_despite_sibling_wakeups() -> None:
    fs: list[Future[str]] = batch_futures(2)
    f0, f1 = fs
    timer = threading.Timer(0.02, f0.set_result, ("x",))
    timer.start()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        f1.result(timeout=0.2)
    assert time.monotonic() - start >= 0.19
    with pytest.raises(TimeoutError):
        f1.exception(timeout=0)
    timer.join()


def test_exception_callbacks_cancel_and_wait() -> None:
    fs3: list[Future[object]] = batch_futures(3)
    a, b, c = fs3
    seen: list[Future[object]] = []
    a.add_done_callback(seen.append)
    a.set_exception(ValueError("no"))
    assert seen == [a]
    assert isinstance(a.exception(), ValueError)
    with pytest.raises(ValueError):
        a.result()
    assert c.cancel()
    with pytest.raises(CancelledError):
        c.result(timeout=1)
    threading.Timer(0.02, b.set_result, (1,)).start()
    done, pending = wait([a, b], timeout=5)  # (wait() never counts an un-notified cancel)
    assert done == {a, b} and not pending
    assert b.result() == 1


def test_each_batch_has_its_own_condition() -> None:
    x: Future[int] = batch_futures(1)[0]
    y: Future[int] = batch_futures(1)[0]
    assert x._condition is not y._condition
