"""``verify`` catches any single flipped byte, deleted row, reordered transaction or edited value.

A chain is built once; each example copies its database, damages it in one place chosen by
hypothesis, and asserts that verification fails and names a height.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.verify import verify_store
from tests.integration.chainbuilder import build_chain

pytestmark = pytest.mark.integration
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
FLIPS = int(os.environ.get("TAMPER_EXAMPLES", "60"))  # raise it for a longer hunt

# table -> (key columns identifying a row, columns whose bytes matter)
TABLES = {
    "meta": ("k", ["v"]),
    "blocks": ("height", ["hash", "header", "first_index", "tx_count"]),
    "txs": ("idx", ["tx_id", "height", "raw", "result"]),
    "log_nodes": ("id", ["hash"]),
    "state": ("key, height", ["value", "key", "height"]),
    "checkpoints": ("size", ["height", "note"]),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = build_chain(tmp_path_factory.mktemp("chain") / "ws")
    db = ws.root / "ledger.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    report = verify_store(SQLiteStore(db), default_registry())
    assert report.ok, report.findings
    assert report.txs > 40 and report.blocks > 10
    return db


def _copy(pristine: Path, tmp: Path) -> Path:
    target = tmp / "damaged.db"
    if target.exists():
        target.unlink()
    shutil.copy(pristine, target)
    return target


def _verify(db: Path) -> tuple[bool, int | None, list[str]]:
    store = SQLiteStore(db)
    try:
        report = verify_store(store, default_registry())
    finally:
        store.close()
    return report.ok, report.first_bad_height, [f.check for f in report.findings]


def _rows(conn: sqlite3.Connection, table: str, keys: str) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT {keys} FROM {table} ORDER BY {keys}").fetchall()


def _where(keys: str) -> str:
    return " AND ".join(f"{k.strip()} = ?" for k in keys.split(","))


@settings(max_examples=FLIPS, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_any_flipped_byte_is_caught(pristine: Path, tmp_path: Path, data: st.DataObject) -> None:
    db = _copy(pristine, tmp_path)
    table = data.draw(st.sampled_from(sorted(TABLES)))
    keys, columns = TABLES[table]
    conn = sqlite3.connect(db)
    rows = _rows(conn, table, keys)
    row = data.draw(st.sampled_from(rows))
    column = data.draw(st.sampled_from(columns))
    (value,) = conn.execute(f"SELECT {column} FROM {table} WHERE {_where(keys)}", row).fetchone()
    if value is None:
        new: object = b"null"
    elif isinstance(value, int):
        new = value ^ (1 << data.draw(st.integers(0, 6)))
    else:
        raw = bytearray(value.encode() if isinstance(value, str) else value)
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        new = raw.decode("utf-8", "replace") if isinstance(value, str) else bytes(raw)
    try:
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE {_where(keys)}", (new, *row))
        conn.commit()
    except sqlite3.IntegrityError:
        return  # the damage collides with another row's key: SQLite itself refused it
    conn.close()
    ok, height, checks = _verify(db)
    assert not ok, f"flipping {table}.{column} of {row} went unnoticed"
    assert height is not None or "genesis" in checks


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_any_deleted_row_is_caught(pristine: Path, tmp_path: Path, data: st.DataObject) -> None:
    db = _copy(pristine, tmp_path)
    table = data.draw(st.sampled_from(sorted(TABLES)))
    keys, _ = TABLES[table]
    conn = sqlite3.connect(db)
    row = data.draw(st.sampled_from(_rows(conn, table, keys)))
    conn.execute(f"DELETE FROM {table} WHERE {_where(keys)}", row)
    conn.commit()
    conn.close()
    ok, _, _ = _verify(db)
    assert not ok, f"deleting {table} row {row} went unnoticed"


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_reordered_transactions_are_caught(
    pristine: Path, tmp_path: Path, data: st.DataObject
) -> None:
    db = _copy(pristine, tmp_path)
    conn = sqlite3.connect(db)
    count = conn.execute("SELECT COUNT(*) FROM txs").fetchone()[0]
    a = data.draw(st.integers(0, count - 2))
    b = data.draw(st.integers(a + 1, count - 1))
    conn.execute("UPDATE txs SET idx = -1 WHERE idx = ?", (a,))
    conn.execute("UPDATE txs SET idx = ? WHERE idx = ?", (a, b))
    conn.execute("UPDATE txs SET idx = ? WHERE idx = -1", (b,))
    conn.commit()
    conn.close()
    ok, height, _ = _verify(db)
    assert not ok, f"swapping transactions {a} and {b} went unnoticed"
    assert height is not None


def test_edited_state_value_names_its_height(pristine: Path, tmp_path: Path) -> None:
    db = _copy(pristine, tmp_path)
    conn = sqlite3.connect(db)
    key, height = conn.execute(
        "SELECT key, height FROM state WHERE key LIKE 'registry/record/hosp-a/r1' "
        "ORDER BY height DESC LIMIT 1").fetchone()
    conn.execute("UPDATE state SET value = ? WHERE key = ? AND height = ?",
                 (b'{"forged":true}', key, height))
    conn.commit()
    conn.close()
    ok, bad_height, checks = _verify(db)
    assert not ok and bad_height == height and "state" in checks


def test_pristine_copy_verifies(pristine: Path, tmp_path: Path) -> None:
    assert _verify(_copy(pristine, tmp_path))[0]


def test_parallel_segments_verify_and_catch_damage(pristine: Path, tmp_path: Path) -> None:
    store = SQLiteStore(_copy(pristine, tmp_path))
    report = verify_store(store, default_registry(), workers=2)
    assert report.ok and report.workers == 2, report.findings
    serial = verify_store(store, default_registry(), workers=1)
    assert (serial.blocks, serial.txs, serial.checkpoints) == (
        report.blocks, report.txs, report.checkpoints)
    store.close()
    db = tmp_path / "damaged.db"
    conn = sqlite3.connect(db)
    (head,) = conn.execute("SELECT MAX(height) FROM blocks").fetchone()
    idx, raw = conn.execute("SELECT idx, result FROM txs WHERE height = ? LIMIT 1",
                            (head - 1,)).fetchone()
    conn.execute("UPDATE txs SET result = ? WHERE idx = ?",
                 (raw.replace(b'"code":"ok"', b'"code":"forbidden"'), idx))
    conn.commit()
    conn.close()
    damaged = verify_store(SQLiteStore(db), default_registry(), workers=2)
    assert not damaged.ok and damaged.first_bad_height == head - 1
