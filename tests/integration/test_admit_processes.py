"""Ingress checks in worker processes give the same verdicts as the in-thread checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import RejectedError
from medledger.workspace import DEFAULT_ORGS, Workspace

pytestmark = pytest.mark.integration


def test_worker_processes_admit_and_refuse(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", "procs", DEFAULT_ORGS[:3])
    ring = ws.keyring()
    with ws.node(admit_processes=2) as node:
        assert node._procs is not None
        root = Client(node, node.chain_id, "hosp-a/root", ring.signing["hosp-a/root"])
        key = SigningKey.generate()
        assert root.call("consortium", "enroll", {
            "member": "hosp-a/gw", "role": "gateway", "public_key": b64(key.public)}).ok
        gw = Client(node, node.chain_id, "hosp-a/gw", key)
        good = [gw.build("registry", "register", {
            "record_id": f"p{i}", "record_type": "Encounter", "source_system": "HIS",
            "content_hash": f"{i:064x}", "schema_version": "1"}) for i in range(300)]
        forged = good[5].replace(b'"p5"', b'"p5x"')
        stranger = Client(node, node.chain_id, "hosp-a/nobody", SigningKey.generate()).build(
            "registry", "register", {"record_id": "x", "record_type": "E", "source_system": "H",
                                     "content_hash": "00" * 32, "schema_version": "1"})
        futures = node.submit_many([*good, forged, stranger, b"{not json"])
        receipts = [f.result(30) for f in futures[:300]]
        assert all(r.ok for r in receipts)
        codes = []
        for f in futures[300:]:
            with pytest.raises(RejectedError) as info:
                f.result(30)
            codes.append(str(info.value.code))
        assert codes == ["bad_signature", "unknown_signer", "malformed_json"]
        again = node.submit(good[0]).result(30)  # idempotent through the workers too
        assert again == receipts[0]
        later = [gw.build("registry", "register", {
            "record_id": f"q{i}", "record_type": "Encounter", "source_system": "HIS",
            "content_hash": f"{i:064x}", "schema_version": "1"}) for i in range(200)]
        chunks = [node.submit_many(later[i : i + 50], wait_admission=False)
                  for i in range(0, 200, 50)]
        indexes = [f.result(30).index for c in chunks for f in c]
        assert indexes == sorted(indexes) and len(set(indexes)) == 200


def test_admission_workers_exit_with_their_node(tmp_path: Path) -> None:
    """A node killed with SIGKILL leaves no admission worker running (they watch their
    parent), so a crashed peer does not leak CPU-consuming orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = Path(__file__).with_name("orphan_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "w")],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers
    assert all(Path(f"/proc/{w}").exists() for w in workers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers):
        assert time.monotonic() < deadline, "admission workers outlived their node"
        time.sleep(0.1)
