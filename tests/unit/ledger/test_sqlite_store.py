"""SQLite-specific behaviour beyond the store contract suite."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

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
