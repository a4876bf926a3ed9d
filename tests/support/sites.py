"""Research site processes in tests: start them on free ports, wait until each answers over
HTTP, and stop them afterwards."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from medledger.research.http import HttpSite
from tests.support.services import free_port

Started = list[tuple[subprocess.Popen[bytes], HttpSite]]
CLI = [sys.executable, "-m", "medledger.cli.main", "research", "site"]
MODULE = [sys.executable, "-m", "medledger.research.http"]


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


@contextmanager
def site_processes(commands: Sequence[tuple[str, list[str]]]) -> Iterator[Started]:
    """One process per (site name, command line without ``--port``), each on a free loopback
    port; yields (process, client) pairs once all answer; closes and stops them afterwards."""
    out: Started = []
    try:
        for name, cmd in commands:
            port = free_port()
            out.append((subprocess.Popen([*cmd, "--port", str(port)]),
                        HttpSite(name, f"http://127.0.0.1:{port}")))
        wait_for_sites(out)
        yield out
    finally:
        for proc, client in out:
            client.close()
            proc.terminate()
        for proc, _ in out:
            proc.wait(timeout=10)
