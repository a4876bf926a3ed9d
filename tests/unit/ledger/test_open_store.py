"""``open_store``: which backend a location string selects, and how a schema is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from medledger.ledger.store.base import StoreError
from medledger.ledger.store.open import open_store, postgres_location
from medledger.ledger.store.sqlite import SQLiteStore


@pytest.mark.parametrize(("location", "want"), [
    ("postgresql://root@127.0.0.1:5432/test", ("postgresql://root@127.0.0.1:5432/test", None)),
    ("postgres://h/db?schema=peer1", ("postgres://h/db", "peer1")),
    ("postgresql://h/db#peer2", ("postgresql://h/db", "peer2")),
    ("postgresql://h/db?sslmode=disable&schema=p%20q&connect_timeout=3",
     ("postgresql://h/db?sslmode=disable&connect_timeout=3", "p q")),
    ("postgresql://h/db?sslmode=disable#Peer-%C3%A9",
     ("postgresql://h/db?sslmode=disable", "Peer-\u00e9")),
    ("postgresql:///test?host=/run/postgresql&schema=x", ("postgresql:///test?host=/run/postgresql",
                                                          "x")),
])
def test_postgres_uris(location: str, want: tuple[str, str | None]) -> None:
    assert postgres_location(location) == want


@pytest.mark.parametrize("location", [
    "ledger.db", "/var/lib/medledger/ledger.db", ":memory:", "host=127.0.0.1 dbname=test",
    "sqlite:///x.db", "postgresqlx://h/db", "./postgresql://odd-dir/ledger.db",
])
def test_anything_else_is_not_postgres(location: str) -> None:
    assert postgres_location(location) is None


@pytest.mark.parametrize("location", [
    "postgresql://h/db?schema=a#b", "postgresql://h/db?schema=a&schema=b", "postgresql://h/db?schema=",
])
def test_bad_schema_is_refused(location: str) -> None:
    with pytest.raises(StoreError) as err:
        postgres_location(location)
    assert err.value.code == "bad_args"


def test_a_path_opens_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    path.parent.mkdir()
    store = open_store(str(path))
    try:
        assert isinstance(store, SQLiteStore) and store.path == path.resolve()
        assert path.exists() and store.genesis() is None
    finally:
        store.close()
