"""``medledger ledger compare`` end to end: SQLite workspaces, and a node running on PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.crypto.keys import SigningKey, b64
from medledger.installed import default_registry
from medledger.ledger.store.postgres import PostgresStore
from medledger.ledger.verify import verify_store
from medledger.node.node import Node
from tests.conftest import T0, Clock, Ledger, make_consortium
from tests.support.services import PG_DSN, require_port

runner = CliRunner()
PG_URI = "postgresql://root@127.0.0.1:5432/test"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    code, out = _run("init", "--dir", str(root), "--orgs", "3", "--chain-id", "cmp-test")
    assert code == 0, out
    for name in ("gw", "dr"):
        key = SigningKey.generate()
        code, out = _run("tx", "submit", "--dir", str(root), "--as", "hosp-a/root", "consortium",
                         "enroll", json.dumps({"member": f"hosp-a/{name}", "role": "gateway",
                                               "public_key": b64(key.public)}))
        assert code == 0 and json.loads(out)["code"] == "ok", out
    return root


def _copy(src: Path, dst: Path) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def test_compare_sqlite_stores(ws: Path, tmp_path: Path) -> None:
    db = ws / "ledger.db"
    copy = _copy(db, tmp_path / "copy.db")
    code, out = _run("ledger", "compare", str(db), str(copy))
    assert code == 0, out
    assert "no divergence in blocks, transactions and state up to height 2" in out
    code, out = _run("ledger", "compare", str(db), str(copy), "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["diverged"] is False and doc["divergence"] is None
    assert (doc["a"]["height"], doc["b"]["height"], doc["compared_up_to"]) == (2, 2, 2)
    # a workspace or peer directory stands for its store
    code, out = _run("ledger", "compare", str(ws), str(copy))
    assert code == 0 and "up to height 2" in out, out

    with sqlite3.connect(copy) as conn:  # forge the role recorded at height 1
        conn.execute("UPDATE state SET value = replace(value, 'gateway', 'org-admin') "
                     "WHERE key = 'consortium/member/hosp-a/gw'")
    code, out = _run("ledger", "compare", str(db), str(copy))
    assert code == 1, out
    assert "DIVERGED at height 1: [state] (value)" in out and "hosp-a/gw" in out
    code, out = _run("ledger", "compare", str(db), str(copy), "--json")
    assert code == 1
    d = json.loads(out)["divergence"]
    assert (d["height"], d["part"], d["fields"]) == (1, "state", ["value"])
    code, out = _run("ledger", "compare", str(db), str(copy), "--headers-only")
    assert code == 0 and "no divergence in blocks up to height 2" in out


def test_shorter_store_and_bad_locations(ws: Path, tmp_path: Path) -> None:
    db = ws / "ledger.db"
    early = _copy(db, tmp_path / "early.db")
    code, out = _run("tx", "submit", "--dir", str(ws), "--as", "hosp-a/root", "consortium",
                     "enroll", json.dumps({"member": "hosp-a/x", "role": "nurse",
                                           "public_key": b64(SigningKey.generate().public)}))
    assert code == 0, out
    code, out = _run("ledger", "compare", str(early), str(db))
    assert code == 0, out
    assert "up to height 2; A is 1 behind" in out and "height 3" in out
    missing = tmp_path / "nowhere.db"
    code, out = _run("ledger", "compare", str(db), str(missing))
    assert code == 2 and "not_found" in out
    assert not missing.exists()  # no empty store was created


@pytest.fixture
def pg_node(tmp_path: Path) -> Iterator[tuple[Ledger, str]]:
    """A node on a fresh PostgreSQL schema (dropped afterwards) and the schema's name."""
    require_port("127.0.0.1", 5432, "PostgreSQL")
    schema = f"cmp_{uuid.uuid4().hex[:12]}"
    cons, clock = make_consortium(), Clock(T0 + 1_000)
    node = Node.create(PostgresStore(PG_DSN, schema), cons.genesis, default_registry(),
                       signer=("hosp-a", cons.ring.signing["hosp-a/root"]), max_wait=0.001,
                       clock=clock).start()
    try:
        yield Ledger(node, cons.ring, clock), schema
    finally:
        node.stop()
        node.store.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for s in (schema, f"{schema}_copy", f"{schema}_typo"):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(s)))


@pytest.mark.postgres
@pytest.mark.integration
def test_compare_postgres_stores(pg_node: tuple[Ledger, str], ws: Path) -> None:
    ledger, schema = pg_node
    ledger.advance_to(6)
    # the node's PostgreSQL chain verifies, replayed by 2 worker processes that reopen the
    # store through its opener
    report = verify_store(ledger.store, default_registry(), workers=2)
    assert report.ok and report.workers == 2, report.findings
    copy = f"{schema}_copy"
    PostgresStore(PG_DSN, copy).close()  # creates the tables
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for table in ("meta", "blocks", "txs", "log_nodes", "state", "checkpoints"):
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                sql.Identifier(copy, table), sql.Identifier(schema, table)))
    a, b = f"{PG_URI}?schema={schema}", f"{PG_URI}#{copy}"
    code, out = _run("ledger", "compare", a, b)
    assert code == 0 and "up to height 6" in out, out
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT txs.idx FROM {} AS txs WHERE height = 4").format(
            sql.Identifier(copy, "txs"))).fetchone()
        assert row is not None
        conn.execute(sql.SQL("UPDATE {} SET raw = raw || '\\x20'::bytea WHERE idx = %s").format(
            sql.Identifier(copy, "txs")), (row[0],))
    code, out = _run("ledger", "compare", a, b, "--json")
    assert code == 1, out
    d = json.loads(out)["divergence"]
    assert (d["height"], d["part"], d["fields"]) == (4, "txs", ["raw"])
    # a different chain (the SQLite workspace) diverges at genesis
    code, out = _run("ledger", "compare", a, str(ws / "ledger.db"))
    assert code == 1 and "DIVERGED at height 0: [genesis]" in out
    code, out = _run("ledger", "compare", "postgresql://root:secret@127.0.0.1:1/test", a)
    assert code == 2 and "store_error" in out and "secret" not in out
    # a mistyped schema is named as missing, not compared as an empty store, and not created
    code, out = _run("ledger", "compare", a, f"{PG_URI}?schema={schema}_typo")
    assert code == 2 and "not_found" in out and f"{schema}_typo" in out, out
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                            (f"{schema}_typo",)).fetchone() is None


def test_evidence_export_and_verify_without_an_equivocation(ws: Path, tmp_path: Path) -> None:
    """The real case (a peer that raised an alarm) is in tests/cluster/test_tamper.py."""
    out_file = tmp_path / "ev.jsonl"
    code, out = _run("ledger", "evidence", "export", str(ws), "--out", str(out_file))
    assert code == 0 and "0 piece(s) of evidence" in out, out
    assert out_file.read_bytes() == b""
    code, out = _run("ledger", "evidence", "verify", str(out_file), "--genesis",
                     str(ws / "genesis.json"))
    assert code == 2 and "bad_evidence" in out, out
    out_file.write_text('{"a":"x","b":"y"}\n')
    code, out = _run("ledger", "evidence", "verify", str(out_file), "--genesis",
                     str(ws / "genesis.json"))
    assert code == 1, out
    assert json.loads(out) == [{"line": 1, "proven": False, "code": "bad_evidence",
                                "reason": json.loads(out)[0]["reason"]}]
    code, out = _run("ledger", "evidence", "export", str(tmp_path / "nowhere.db"))
    assert code == 2 and "not_found" in out, out


def test_a_witness_keeps_evidence_of_a_log_that_signed_two_histories(ws: Path,
                                                                     tmp_path: Path) -> None:
    import base64

    import nacl.signing

    from medledger.ledger.equivocation import Equivocation
    from medledger.ledger.store.sqlite import SQLiteStore
    from medledger.ledger.witness import evidence_key
    from tests.support.tlog import SimLog

    seed = json.loads((ws / "keyring.json").read_text())["signing"]["hosp-a/root"]
    honest = SimLog(signer="hosp-a", key=nacl.signing.SigningKey(base64.b64decode(seed)),
                    origin="medledger/cmp-test")
    honest.grow(3)
    fork = honest.fork()
    honest.seal(b"honest")
    fork.seal(b"fork")
    store = SQLiteStore(ws / "ledger.db")
    store.set_local(evidence_key("medledger/cmp-test"),
                    Equivocation.from_notes(honest.note(), fork.note()).to_json())
    store.close()
    out_file = tmp_path / "ev.jsonl"
    code, out = _run("ledger", "evidence", "export", str(ws), "--out", str(out_file))
    assert code == 0 and "against witness:medledger/cmp-test" in out, out
    code, out = _run("ledger", "evidence", "verify", str(out_file), "--genesis",
                     str(ws / "genesis.json"))
    assert code == 0, out
    (doc,) = json.loads(out)
    assert doc["proven"] and doc["kind"] == "same_size" and doc["height"] == 4
    assert doc["signed_both"] == ["hosp-a"]  # the log signed both histories
