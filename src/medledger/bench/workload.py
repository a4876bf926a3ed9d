"""The benchmark's transactions: gateways enrolled per hospital, signed ``registry.register`` txs.

Signing is the clients' cost, so the workloads sign transactions before the clock starts and
report the signing time separately.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from medledger.bench.common import BenchError
from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64
from medledger.node.node import Node
from medledger.workspace import DEFAULT_ORGS, Workspace

HOSPITALS = [org for org, _, kind in DEFAULT_ORGS if kind == "hospital"]


def enrol_gateways(node: Node, ws: Workspace) -> list[Client]:
    """Enrol ``<hospital>/gateway`` for every hospital (signed by ``<hospital>/root``)."""
    ring = ws.keyring()
    gateways = []
    for org in HOSPITALS:
        key = SigningKey.generate()
        root = Client(node, node.chain_id, f"{org}/root", ring.signing[f"{org}/root"])
        r = root.call(
            "consortium",
            "enroll",
            {"member": f"{org}/gateway", "role": "gateway", "public_key": b64(key.public)},
        )
        if not r.ok:
            raise BenchError(f"enrolling {org}/gateway failed: {r.code} {r.message}")
        gateways.append(Client(node, node.chain_id, f"{org}/gateway", key))
    return gateways


def build_registrations(
    gateways: Sequence[Client], start: int, count: int, tag: str
) -> list[bytes]:
    """Sign ``count`` ``registry.register`` txs, round-robin over ``gateways``."""
    out = []
    for i in range(start, start + count):
        gw = gateways[i % len(gateways)]
        rid = f"{tag}-{i:09d}"
        args = {
            "record_id": rid,
            "record_type": "Encounter",
            "source_system": "bench-his",
            "content_hash": hashlib.sha256(rid.encode()).hexdigest(),
            "schema_version": "fhir-r4/1",
        }
        out.append(gw.build("registry", "register", args))
    return out
