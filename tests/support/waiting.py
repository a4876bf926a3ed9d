"""Waiting for a condition in tests: poll until it holds, fail with what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(check: Callable[[], Any], *, what: str = "the condition holds", timeout: float = 20.0,
          every: float = 0.1, show: Callable[[], object] = lambda: None) -> Any:
    """``check()`` once it returns something truthy; after ``timeout`` seconds fail naming
    ``what``, the last value and what ``show`` returns then."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, \
            f"timed out after {timeout:g} s waiting until {what}: last {got!r}; {show()}"
        time.sleep(every)
