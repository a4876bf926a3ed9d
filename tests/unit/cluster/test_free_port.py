"""Ports for local clusters: free, below the ephemeral range, never handed out twice."""

from __future__ import annotations

import socket

from medledger.cluster.natsd import free_port


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)  # a cluster draws 9+ before any server binds
    assert all(20_000 <= p <= 32_000 for p in ports)
    with socket.socket() as s:  # the last one can really be bound
        s.bind(("127.0.0.1", ports[-1]))
