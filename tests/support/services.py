"""Real services the tests use, and what to do when one is missing.

A test that needs a service calls ``require(...)``: locally a missing service skips the test
with the reason; with ``CI=true`` it fails the run instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
