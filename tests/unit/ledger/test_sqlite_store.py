"""SQLite-specific behaviour beyond the store contract suite."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from medledger.errors import Code
from medledger.ledger.store.base import BlockCommit, StoredBlock, StoreError
from medledger.ledger.store.sqlite import SQLiteStore


def test_close_closes_connections_opened_by_other_threads(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    seen: list[sqlite3.Connection] = []

    def read() -> None:
        assert store.genesis() is None
        seen.append(store._local.conn)

    t = threading.Thread(target=read)
    t.start()
    t.join()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        seen[0].execute("SELECT 1")


def test_a_store_from_before_the_height_index_gets_it_on_open(tmp_path: Path) -> None:
    """Stores written before ``writes_range`` existed have no ``(height, key)`` index; opening
    one builds it."""
    from tests.support.statechain import build

    path = tmp_path / "old.db"
    build([{"k": b"1", "j": b"1"}, {"k": None}], store=SQLiteStore(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX state_by_height")
    store = SQLiteStore(path)
    assert store.writes_range(1, 3) == [(1, "j", b"1"), (1, "k", b"1"), (2, "k", None)]
    assert "state_by_height" in [r[1] for r in store._db.execute("PRAGMA index_list(state)")]
    store.close()



def test_node_range_refuses_a_node_edited_into_text(tmp_path: Path) -> None:
    """verify reads a block's nodes with node_range: a hash rewritten as TEXT is reported as
    missing (KeyError, like a deleted one) instead of being read back as bytes."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    block = StoredBlock(0, bytes(32), b"{}", 0, 0)
    store.init(b"genesis", BlockCommit(block, [], {}, [(0, b"a" * 32), (1, b"b" * 32)], (0, [])))
    assert store.node_range(0, 0, 2) == [b"a" * 32, b"b" * 32]
    db = sqlite3.connect(path)
    db.execute("UPDATE log_nodes SET hash = ? WHERE id = 1", ("b" * 32,))
    db.commit()
    db.close()
    with pytest.raises(KeyError):
        store.node_range(0, 0, 2)
    assert store.node_range(0, 0, 1) == [b"a" * 32]
    store.close()


@pytest.mark.parametrize(("make", "code", "words"), [
    (lambda d: d / "missing" / "ledger.db", "not_found", "does not exist"),
    (lambda d: (d / "junk.db").write_bytes(b"this is no database" * 300) and d / "junk.db",
     "store_corrupt", "not an SQLite database"),
])
def test_a_store_that_cannot_be_opened_names_its_file(
    tmp_path: Path, make: Any, code: str, words: str,
) -> None:
    """A bad store location is a clear error naming the file, not a bare sqlite3 error."""
    from medledger.ledger.store.base import StoreError

    path = make(tmp_path)
    with pytest.raises(StoreError) as err:
        SQLiteStore(path)
    assert err.value.code == code and str(path.resolve()) in err.value.message
    assert words in err.value.message
    assert not (tmp_path / "missing").exists()  # nothing created on the way


def test_opening_without_create_leaves_a_foreign_database_alone(tmp_path: Path) -> None:
    other = tmp_path / "vault.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(StoreError) as exc:
        SQLiteStore(other, create=False)
    assert exc.value.code == Code.NOT_FOUND and "holds no ledger store" in exc.value.message
    assert other.read_bytes() == before  # no tables, and not switched to WAL
    assert not (tmp_path / "vault.db-wal").exists()
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database " * 100)
    with pytest.raises(StoreError) as exc:
        SQLiteStore(junk, create=False)
    assert exc.value.code == Code.STORE_CORRUPT


def test_a_workers_opener_does_not_create_a_store_that_went_away(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    opener = store.opener()
    store.close()
    assert opener is not None
    opener().close()  # the store is there: it opens
    for f in tmp_path.glob("ledger.db*"):
        f.unlink()
    with pytest.raises(StoreError) as exc:
        opener()
    assert exc.value.code == Code.NOT_FOUND
    assert not path.exists()
