"""Research site processes in tests: wait until each answers over HTTP."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

from medledger.research.http import HttpSite


def wait_for_sites(started: Sequence[tuple[subprocess.Popen[bytes], HttpSite]],
                   timeout: float = 60) -> None:
    """Until every site serves its public key; fails if a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    for proc, client in started:
        while True:
            try:
                client.public_key()
                break
            except Exception:
                assert proc.poll() is None, "site process exited"
                assert time.monotonic() < deadline, "site did not start"
                time.sleep(0.2)
