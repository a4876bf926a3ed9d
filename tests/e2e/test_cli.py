"""The CLI end to end on a real workspace: init, submit, proofs, verify (clean and tampered)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.crypto.keys import SigningKey, b64
from medledger.ledger import merkle
from medledger.ledger.checkpoint import parse_body

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    code, out = _run("init", "--dir", str(root), "--orgs", "3", "--chain-id", "cli-test")
    assert code == 0, out
    assert "hosp-a" in out and "genesis hash" in out
    return root


def _submit(root: Path, *args: str) -> dict[str, object]:
    code, out = _run("tx", "submit", "--dir", str(root), *args)
    assert code in (0, 1), out
    doc: dict[str, object] = json.loads(out)
    return doc


def test_init_refuses_existing_workspace(ws: Path) -> None:
    code, out = _run("init", "--dir", str(ws))
    assert code == 2 and "already_exists" in out


def test_submit_proofs_and_verify(ws: Path) -> None:
    key = SigningKey.generate()
    receipt = _submit(ws, "--as", "hosp-a/root", "consortium", "enroll", json.dumps(
        {"member": "hosp-a/gw", "role": "gateway", "public_key": b64(key.public)}))
    assert receipt["code"] == "ok"
    bad = _submit(ws, "--as", "hosp-b/root", "consortium", "enroll", json.dumps(
        {"member": "hosp-a/x", "role": "gateway", "public_key": b64(key.public)}))
    assert bad["code"] == "forbidden"
    code, out = _run("proof", "inclusion", str(receipt["tx_id"]), "--dir", str(ws))
    assert code == 0, out
    proof = json.loads(out)
    cp = parse_body(proof["checkpoint"].split("\n\n")[0].encode() + b"\n")
    merkle.verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["index"], proof["size"],
                            [bytes.fromhex(h) for h in proof["hashes"]], cp.root)
    assert proof["root"] == cp.root.hex()
    # the printed bundle is exactly what the light client checks offline
    from medledger.client.light import LightClient, LightClientError
    from medledger.workspace import Workspace

    genesis = Workspace(ws).genesis()
    light = LightClient(genesis.chain_id, genesis.org_keys())
    assert light.verify_bundle(proof).size == proof["size"]
    with pytest.raises(LightClientError):
        light.verify_bundle({**proof, "leaf_hash": "00" * 32})
    code, out = _run("proof", "consistency", "1", "2", "--dir", str(ws))
    assert code == 0, out
    cons = json.loads(out)
    assert cons["new_checkpoint"] is not None
    merkle.verify_consistency(1, 2, bytes.fromhex(cons["old_root"]),
                              bytes.fromhex(cons["new_root"]),
                              [bytes.fromhex(h) for h in cons["hashes"]])
    code, out = _run("proof", "consistency", "2", "1", "--dir", str(ws))
    assert code == 2 and "bad_proof_request" in out
    code, out = _run("proof", "inclusion", "00" * 32, "--dir", str(ws))
    assert code == 2 and "unknown_tx" in out
    code, out = _run("verify", "--dir", str(ws), "--json")
    assert code == 0, out
    assert json.loads(out)["ok"] is True


def test_verify_reports_tampering(ws: Path) -> None:
    key = SigningKey.generate()
    _submit(ws, "--as", "hosp-a/root", "consortium", "enroll", json.dumps(
        {"member": "hosp-a/gw", "role": "gateway", "public_key": b64(key.public)}))
    conn = sqlite3.connect(ws / "ledger.db")
    conn.execute("UPDATE state SET value = replace(value, 'gateway', 'org-admin') "
                 "WHERE key = 'consortium/member/hosp-a/gw'")
    conn.commit()
    conn.close()
    code, out = _run("verify", "--dir", str(ws))
    assert code == 1
    assert "first inconsistent height: 1" in out and "[state]" in out


def test_submit_errors_have_codes(ws: Path) -> None:
    code, out = _run("tx", "submit", "--dir", str(ws), "--as", "nobody/x", "registry", "register")
    assert code == 2 and "unknown_signer" in out
    code, out = _run("tx", "submit", "--dir", str(ws), "--as", "hosp-a/root", "registry",
                     "register", "{not json")
    assert code == 2 and "malformed_json" in out
    code, out = _run("verify", "--dir", str(ws.parent / "nowhere"))
    assert code == 2 and "neither a workspace" in out


def test_keys_expiring(ws: Path) -> None:
    key = SigningKey.generate()
    import time

    soon = time.time_ns() // 1_000_000 + 3 * 86_400_000
    _submit(ws, "--as", "hosp-a/root", "consortium", "enroll", json.dumps(
        {"member": "hosp-a/temp", "role": "nurse", "public_key": b64(key.public),
         "not_after": soon}))
    code, out = _run("keys", "expiring", "--days", "7", "--dir", str(ws))
    assert code == 1 and "hosp-a/temp" in out
    code, out = _run("keys", "expiring", "--days", "1", "--dir", str(ws))
    assert code == 0 and "nothing expires" in out


def test_submit_over_http_needs_only_the_genesis_and_a_key(ws: Path, tmp_path: Path) -> None:
    """A cluster organisation's peer directory (or the cluster's root) holds the genesis and
    keys but is not a workspace: submitting with --url works from it."""
    import shutil

    from medledger.api.app import create_app
    from medledger.workspace import Workspace
    from tests.support.serve import served_app

    peer = tmp_path / "peer-a"
    peer.mkdir()
    for name in ("genesis.json", "keyring.json"):
        shutil.copy(ws / name, peer / name)
    key = SigningKey.generate()
    args = ["consortium", "enroll", json.dumps(
        {"member": "hosp-a/gw", "role": "gateway", "public_key": b64(key.public)})]
    with Workspace(ws).node() as node, served_app(create_app(node)) as url:
        code, out = _run("tx", "submit", "--dir", str(peer), "--url", f"{url}/v1",
                         "--as", "hosp-a/root", *args)
        assert code == 0, out
        receipt = json.loads(out)
        assert receipt["code"] == "ok"
        assert node.store.tx(bytes.fromhex(str(receipt["tx_id"]))) is not None
        # an embedded node has no witnesses: no checkpoint of it is final, so a remote proof
        # is refused once the wait runs out
        code, out = _run("proof", "inclusion", str(receipt["tx_id"]), "--url", url,
                         "--as", "hosp-a/root", "--dir", str(peer), "--timeout", "0.3")
        assert code == 1 and "timeout" in out, out
        code, out = _run("proof", "inclusion", str(receipt["tx_id"]), "--url", url,
                         "--dir", str(peer))
        assert code == 2 and "--as" in out, out
        code, out = _run("verify", "--dir", str(peer))
        assert code == 2 and "neither a workspace" in out, out
        # without --url it still needs a workspace: the directory holds no store to run on
        code, out = _run("tx", "submit", "--dir", str(peer), "--as", "hosp-a/root", *args)
        assert code == 2 and "not a medledger workspace" in out
        empty = tmp_path / "empty"
        empty.mkdir()
        code, out = _run("tx", "submit", "--dir", str(empty), "--url", url,
                         "--as", "hosp-a/root", *args)
        assert code == 2 and "not_found" in out and "genesis.json" in out, out
        shutil.copy(ws / "genesis.json", empty / "genesis.json")
        (empty / "keyring.json").write_text('{"signing": {"hosp-a/root": "short"}}')
        code, out = _run("tx", "submit", "--dir", str(empty), "--url", url,
                         "--as", "hosp-a/root", *args)
        assert code == 2 and "malformed_json" in out and "keyring.json" in out, out
