"""A peer whose store was tampered with: its own verify and the other peers both catch it."""

from __future__ import annotations

import sqlite3
import time

import orjson
import pytest

from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from tests.cluster.conftest import WallClock, wait_height
from tests.conftest import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.nats]


def test_tampered_peer_is_detected_by_itself_and_the_others(start_peers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers(witnesses=["hosp-a", "hosp-b", "cdc"])
    a, b, c = peers
    led = Ledger(a.node, cons.ring, WallClock())  # type: ignore[arg-type]
    reg = led.ok("hosp-a/gw", "registry", "register", {
        "record_id": "R1", "record_type": "Observation", "source_system": "his",
        "content_hash": "11" * 32, "schema_version": "1"})
    wait_height(peers, reg.height)
    c.stop()
    c.node.store.close()
    # an insider marks the record retracted in cdc's database, behind the ledger's back
    db = sqlite3.connect(tmp_path / "cdc.db")
    (key, value), = db.execute(
        "SELECT key, value FROM state WHERE key LIKE '%record/hosp-a/R1' ORDER BY height DESC"
    ).fetchall()[:1]
    doc = orjson.loads(value)
    doc["status"] = "retracted"
    db.execute("UPDATE state SET value=? WHERE key=? AND height=?",
               (orjson.dumps(doc), key, reg.height))
    db.commit()
    db.close()
    _, again = start_peers(("cdc",))
    c2 = again[-1]
    # the next change to that record executes differently on the tampered peer
    amend = led.ok("hosp-a/gw", "registry", "amend", {
        "record_id": "R1", "content_hash": "22" * 32, "schema_version": "1", "reason": "fix"})
    wait_height([a, b, c2], amend.height)
    assert c2.node.receipt(amend.tx_id).code != "ok"  # type: ignore[union-attr]
    assert c2.node.head.log_root != a.node.head.log_root
    deadline = time.monotonic() + 20
    while not (a.exchange.state.alarms and b.exchange.state.alarms and
               c2.exchange.state.alarms):
        assert time.monotonic() < deadline, [p.status() for p in (a, b, c2)]
        time.sleep(0.05)
    for honest in (a, b):
        alarm = honest.exchange.state.alarms[0]
        assert (alarm.org, alarm.height) == ("cdc", amend.height)
        assert honest.node.store.get_local("equivocation/cdc") == alarm.evidence.to_json()
    assert {x.org for x in c2.exchange.state.alarms} <= {"hosp-a", "hosp-b"}
    # the honest peers still reach finality without cdc; the tampered one's own verify fails
    report = verify_store(c2.node.store, default_registry())
    assert report.first_bad_height == reg.height
    assert verify_store(a.node.store, default_registry()).first_bad_height is None
    # the same from the command line an operator runs on the peer's store
    from typer.testing import CliRunner

    from medledger.cli.main import app

    out = CliRunner().invoke(app, ["verify", "--store", str(tmp_path / "cdc.db"), "--json"])
    assert out.exit_code == 1, out.output
    assert orjson.loads(out.output)["first_bad_height"] == reg.height
    out = CliRunner().invoke(app, ["verify", "--store", str(tmp_path / "hosp-a.db")])
    assert out.exit_code == 0 and "OK" in out.output, out.output
    # the honest peer's evidence leaves it as a file that anyone holding the genesis can check
    evidence, genesis = tmp_path / "evidence.jsonl", tmp_path / "genesis.json"
    genesis.write_bytes(cons.genesis.encoded)
    out = CliRunner().invoke(app, ["ledger", "evidence", "export", str(tmp_path / "hosp-a.db"),
                                   "--out", str(evidence)])
    assert out.exit_code == 0 and "against cdc" in out.output, out.output
    assert len(evidence.read_bytes().splitlines()) == 1
    # the same evidence, fetched by another organisation from the peer's API
    from medledger.api.app import create_app
    from tests.support.serve import served_app

    client = tmp_path / "client"
    client.mkdir()
    genesis.write_bytes(cons.genesis.encoded)
    cons.ring.save(client / "keyring.json")
    (client / "genesis.json").write_bytes(cons.genesis.encoded)
    with served_app(create_app(a.node)) as url:
        status = CliRunner().invoke(app, ["peer", "status", url])
        assert status.exit_code == 1 and f"cdc@{amend.height}" in status.output, status.output
        out = CliRunner().invoke(app, ["ledger", "evidence", "export", "--url", url, "--as",
                                       "hosp-b/root", "--dir", str(client), "--out",
                                       str(tmp_path / "fetched.jsonl")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "fetched.jsonl").read_bytes() == evidence.read_bytes()
    out = CliRunner().invoke(app, ["ledger", "evidence", "verify", str(evidence),
                                   "--genesis", str(genesis)])
    assert out.exit_code == 0, out.output
    (doc,) = orjson.loads(out.output)
    assert doc["proven"] and doc["height"] == amend.height
    signers = {tuple(doc[side]["log_signers"]) for side in ("a", "b")}
    assert ("cdc",) in signers and ("hosp-a",) in signers, doc
    # under another consortium's genesis none of the signatures counts: it proves nothing
    from medledger.consortium.bootstrap import new_consortium
    from tests.cluster.conftest import MEMBERS, ORGS, T0

    other, _ = new_consortium("another-chain", ORGS, T0, MEMBERS)
    genesis.write_bytes(other.encoded)
    out = CliRunner().invoke(app, ["ledger", "evidence", "verify", str(evidence),
                                   "--genesis", str(genesis)])
    assert out.exit_code == 1, out.output
    assert orjson.loads(out.output)[0]["code"] == "unsigned_side"
