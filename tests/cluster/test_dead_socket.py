"""A NATS server that vanishes without a reset must not leave a peer's client waiting forever:
every client connection carries ``TCP_USER_TIMEOUT`` so the kernel fails it once sent bytes go
unacknowledged (ADR 0056), on the first connection and again after each reconnect."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from medledger.cluster.natsd import NatsCluster
from medledger.ordering.jetstream import DEAD_SOCKET_MS, Link
from tests.support.services import require_nats_engine

pytestmark = [pytest.mark.integration, pytest.mark.nats]


def _user_timeout(link: Link) -> int:
    sock = link.nc._transport._bare_io_writer.get_extra_info("socket")  # type: ignore[union-attr]
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux only")
def test_client_connections_fail_when_their_bytes_go_unacknowledged(tmp_path: Path) -> None:
    nats1 = NatsCluster.create(tmp_path, 1, binary=require_nats_engine("debian"))
    nats1.start()
    link = None
    try:
        nats1.wait_ready()
        link = Link(nats1.urls, "test-dead-socket")
        assert _user_timeout(link) == DEAD_SOCKET_MS
        first = link.nc._transport._bare_io_writer  # type: ignore[union-attr]
        name = nats1.specs[0].name
        nats1.kill(name)
        nats1.start(name)
        nats1.wait_ready()
        deadline = time.monotonic() + 20
        while link.nc._transport._bare_io_writer is first or not link.nc.is_connected:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the client did not reconnect"
            time.sleep(0.05)
        time.sleep(0.2)  # the reconnected callback runs just after
        assert _user_timeout(link) == DEAD_SOCKET_MS
    finally:
        if link is not None:
            link.close()
        nats1.stop()
