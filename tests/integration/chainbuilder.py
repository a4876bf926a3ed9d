"""Builds a small but varied chain in a workspace, for verify and crash tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64
from medledger.workspace import DEFAULT_ORGS, Workspace


def build_chain(root: Path, records: int = 30) -> Workspace:
    """Enrolments, registrations, amendments, an invalid tx, a transfer and a governance change."""
    ws = Workspace.init(root, "verify-test", DEFAULT_ORGS[:4])
    ring = ws.keyring()
    with ws.node(max_block_txs=7, max_wait=0.005) as node:
        chain = node.chain_id

        def client(member: str) -> Client:
            return Client(node, chain, member, ring.signing[member])

        for org in ("hosp-a", "hosp-b"):
            for name, role in (("gw", "gateway"), ("steward", "data-steward")):
                key = SigningKey.generate()
                ring.signing[f"{org}/{name}"] = key
                r = client(f"{org}/root").call("consortium", "enroll", {
                    "member": f"{org}/{name}", "role": role, "public_key": b64(key.public)})
                assert r.ok, r
        gw = client("hosp-a/gw")
        futures = []
        for i in range(records):
            futures.append(node.submit(gw.build("registry", "register", {
                "record_id": f"r{i}", "record_type": "Encounter", "source_system": "HIS",
                "content_hash": hashlib.sha256(str(i).encode()).hexdigest(),
                "schema_version": "1"})))
        for f in futures:
            assert f.result(30).ok
        assert gw.call("registry", "amend", {"record_id": "r1", "content_hash": "ab" * 32,
                                             "schema_version": "2", "reason": "fix"}).ok
        dup = gw.call("registry", "register", {"record_id": "r2", "record_type": "Encounter",
                                               "source_system": "HIS", "content_hash": "cd" * 32,
                                               "schema_version": "1"})
        assert dup.code == "already_exists"
        moved = client("hosp-a/steward").call(
            "registry", "transfer", {"record_id": "r3", "to_org": "hosp-b"},
            cosigners={"hosp-b/steward": ring.signing["hosp-b/steward"]})
        assert moved.ok, moved
        r = client("hosp-a/root").call("consortium", "propose", {
            "proposal": "p1", "action": "set_policy",
            "payload": {"key_expiry_warning_ms": 86_400_000}, "effective_height": 1})
        assert r.code == "bad_args" or r.ok
        assert client("hosp-a/root").call("consortium", "propose", {
            "proposal": "p2", "action": "set_policy",
            "payload": {"key_expiry_warning_ms": 86_400_000},
            "effective_height": node.height + 2}).ok
        assert client("hosp-b/root").call("consortium", "approve", {"proposal": "p2"}).ok
        assert client("hosp-c/root").call("consortium", "approve", {"proposal": "p2"}).ok
        for i in range(4):
            assert gw.call("registry", "amend", {"record_id": "r4", "content_hash": f"{i:064x}",
                                                 "schema_version": "3", "reason": "tick"}).ok
    ring.save(ws.keyring_path)
    return ws
