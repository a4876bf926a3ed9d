"""After ``kill -9`` at any moment the node restarts, has lost no acknowledged transaction, and
verifies clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.workspace import DEFAULT_ORGS, Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _workspace(root: Path) -> Workspace:
    ws = Workspace.init(root, "crash-test", DEFAULT_ORGS[:3])
    ring = ws.keyring()
    key = SigningKey.generate()
    with ws.node() as node:
        r = Client(node, node.chain_id, "hosp-a/root", ring.signing["hosp-a/root"]).call(
            "consortium", "enroll",
            {"member": "hosp-a/gw", "role": "gateway", "public_key": b64(key.public)})
        assert r.ok
    ring.signing["hosp-a/gw"] = key
    ring.save(ws.keyring_path)
    return ws


def _run_and_kill(ws: Workspace, tag: str, acks_before_kill: int) -> list[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash_worker", str(ws.root), tag],
        stdout=subprocess.PIPE, cwd=REPO, env=env)
    assert proc.stdout is not None
    acked = []
    for line in proc.stdout:
        acked.append(bytes.fromhex(line.decode().strip()))
        if len(acked) >= acks_before_kill:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return acked


def test_kill_9_loses_no_acknowledged_transaction(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    rng = random.Random(7)
    all_acked: list[bytes] = []
    for round_ in range(4):
        acked = _run_and_kill(ws, f"round{round_}", rng.randint(30, 400))
        assert acked, "worker acknowledged nothing before the kill"
        all_acked.extend(acked)
        store = ws.store()
        missing = [t.hex() for t in all_acked if store.tx(t) is None]
        assert not missing, f"{len(missing)} acknowledged transactions lost after kill -9"
        report = verify_store(store, default_registry())
        assert report.ok, report.findings
        store.close()
    # the node restarts and keeps committing on top of the recovered chain
    with ws.node() as node:
        before = node.height
        r = Client(node, node.chain_id, "hosp-a/gw", ws.keyring().signing["hosp-a/gw"]).call(
            "registry", "register", {"record_id": "after-crash", "record_type": "Encounter",
                                     "source_system": "HIS", "content_hash": "ee" * 32,
                                     "schema_version": "1"})
        assert r.ok and r.height == before + 1
