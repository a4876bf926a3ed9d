"""The local cluster as real processes: CLI up/status/down, and a peer killed with SIGKILL."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.client import Client
from medledger.client.http import HttpTransport
from medledger.client.light import LightClient, LightClientError
from medledger.cluster.local import LocalCluster
from medledger.consortium.genesis import Genesis
from medledger.errors import MedLedgerError
from tests.support.services import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.slow]


def test_cluster_cli_and_kill_9_peer_under_load(tmp_path: Path) -> None:
    require_binary("nats-server")
    runner = CliRunner()
    root = tmp_path / "c"
    try:
        up = runner.invoke(app, ["cluster", "up", "--dir", str(root), "--orgs", "3"])
        assert up.exit_code == 0, up.output
        c = LocalCluster.load(root)
        ring = c.keyring()
        acked: dict[str, int] = {}
        stop = threading.Event()

        def writer(org: str) -> None:
            with HttpTransport(c.url(org)) as http:
                client = Client(http, c.chain, f"{org}/gw", ring.signing[f"{org}/gw"])
                i = 0
                while not stop.is_set():
                    raws = [client.build("registry", "register", {
                        "record_id": f"{org}-{i}-{k}", "record_type": "Encounter",
                        "source_system": "HIS", "schema_version": "1",
                        "content_hash": hashlib.sha256(f"{org}{i}{k}".encode()).hexdigest()})
                        for k in range(20)]
                    i += 1
                    for _ in range(100):  # resubmit the same bytes until acknowledged
                        try:
                            docs = http.submit_batch(raws, timeout=20)
                            if all(d.get("code") == "ok" for d in docs):
                                for d in docs:
                                    acked[d["tx_id"]] = d["height"]
                                break
                        except MedLedgerError:
                            pass
                        time.sleep(0.2)

        threads = [threading.Thread(target=writer, args=(o,)) for o in ("hosp-a", "hosp-b")]
        for t in threads:
            t.start()
        time.sleep(2.0)
        c.kill_peer("hosp-c")  # SIGKILL under load
        time.sleep(2.0)
        c.start_peer("hosp-c")
        c.wait_healthy(orgs=["hosp-c"])
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        top = max(acked.values())
        deadline = time.monotonic() + 60
        while True:
            peers = c.status()["peers"]
            if all(p.get("height", 0) >= top for p in peers.values()):
                break
            assert time.monotonic() < deadline, peers
            time.sleep(0.2)
        status = runner.invoke(app, ["cluster", "status", "--dir", str(root), "--json"])
        assert status.exit_code == 0, status.output
        peers = json.loads(status.output)["peers"]
        # the killed and restarted peer is at the same height with identical roots
        assert len({(p["height"], p["log_root"], p["state_root"]) for p in peers.values()}) == 1
        genesis = Genesis.load((root / "genesis.json").read_bytes())
        keys = {o: k for o, k in genesis.org_keys().items() if o in c.peers}
        light = LightClient(c.chain, keys, witnesses=keys)  # final checkpoints only
        with HttpTransport(c.url("hosp-c"), "hosp-c/gw", ring.signing["hosp-c/gw"]) as h:
            for tx_id, height in list(acked.items())[::25]:  # the restarted peer has them all
                assert h.get(f"/v1/tx/{tx_id}")["receipt"]["height"] == height
            head = h.get("/v1/blocks/head")
            last = max(acked, key=lambda t: acked[t])
            bundle = h.final_proof(last, light, timeout=30)  # a client waits for finality
            assert bundle["tx_id"] == last
            note = h.get("/v1/checkpoints/latest").encode()
            text, _, sigs = note.partition(b"\n\n")
            bare = text + b"\n\n" + sigs.split(b"\n")[0] + b"\n"  # the peer's signature alone
            with pytest.raises(LightClientError, match="not_final"):
                light.checkpoint(bare)
        assert head["header"]["log_size"] == len(acked)  # exactly once
    finally:  # also when `up` failed half-way: nothing may outlive the test
        if (root / "cluster.json").exists():
            down = runner.invoke(app, ["cluster", "down", "--dir", str(root)])
            assert down.exit_code == 0, down.output
