"""A process whose wall clock is really skewed: libfaketime (Debian ``libfaketime``) preloaded.

``skewed_env(lib, seconds, shim_dir)`` is the environment that runs a Python process with
``time.time()``, ``time.time_ns()`` and ``datetime.now()`` shifted by ``seconds`` (the
``CLOCK_REALTIME`` family) while ``CLOCK_MONOTONIC`` stays the machine's
(``FAKETIME_DONT_FAKE_MONOTONIC=1``). Monotonic must stay true: libfaketime 0.9.10 (Debian 12)
fakes it by default as an offset wall-clock-like value, and glibc's ``sem_clockwait`` (behind
every Python ``Lock.acquire(timeout=…)``, ``Event.wait``, ``queue.get(timeout=…)``) then waits
on the kernel's real monotonic clock for a deadline decades away: threads hang (measured here;
libfaketime issue #390). With monotonic excluded those waits are right, but 0.9.10 still
rewrites the absolute deadline that Python ≥ 3.11's ``time.sleep`` passes to
``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` and the call fails with EINVAL (libfaketime
issue #426). The only change made inside the process is therefore a ``sitecustomize`` that
routes ``time.sleep`` through ``threading.Event().wait`` (same duration, on the true monotonic
clock); every clock the code reads is libfaketime's.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.services import missing

SHIM = '''"""time.sleep for processes under libfaketime with a true monotonic clock
(tests/support/faketime.py: libfaketime 0.9.10 fails Python's absolute monotonic sleep)."""
import threading
import time


def _sleep(seconds, _wait=threading.Event().wait):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _wait(seconds)


time.sleep = _sleep
'''

PROBE = """
import datetime, json, threading, time
m0 = time.monotonic()
time.sleep(0.2)
threading.Event().wait(0.2)
print(json.dumps({
    "time_ns_ms": time.time_ns() // 1_000_000,
    "time_ms": int(time.time() * 1000),
    "datetime_ms": int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000),
    "monotonic": time.monotonic(),
    "waited": time.monotonic() - m0,
}))
"""


def require_faketime() -> str:
    """The path of ``libfaketime.so.1``; ``missing`` (skip, or fail under CI) without it."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        missing("libfaketime.so.1 not installed (Debian package libfaketime)")
        raise AssertionError  # unreachable: missing() raises
    return found[0]


def write_shim(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SHIM)
    return directory


def skewed_env(lib: str, seconds: int, shim_dir: Path) -> dict[str, str]:
    """``os.environ`` plus libfaketime shifting the wall clock by ``seconds`` (may be < 0)."""
    path = os.pathsep.join(p for p in (str(shim_dir), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "LD_PRELOAD": lib, "FAKETIME": f"{seconds:+d}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def probe(env: dict[str, str]) -> dict[str, Any]:
    """What a Python process started with ``env`` reads from its clocks (and that its sleeps
    and timed waits return)."""
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=20, check=True)
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc
