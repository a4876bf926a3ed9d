"""What only the PostgreSQL store has: schemas, ``open_store`` URIs, session settings.

The behaviour it shares with every backend is pinned by ``tests/contract/test_store_contract.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg import sql

from medledger.errors import Code
from medledger.ledger.stateproof import build_state_proof
from medledger.ledger.store.base import BlockCommit, StoredBlock, StoreError
from medledger.ledger.store.open import open_store
from medledger.ledger.store.postgres import PostgresStore
from tests.support.services import PG_DSN, require_port
from tests.support.statechain import build, light

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

URI = "postgresql://root@127.0.0.1:5432/test"


def _drop(*schemas: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for s in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)))


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    """Fresh schema names (two, the second with characters that need quoting); dropped after."""
    require_port("127.0.0.1", 5432, "PostgreSQL")
    tag = uuid.uuid4().hex[:12]
    names = [f"pgtest_{tag}", f'Peer "{tag}"; DROP TABLE x']
    yield names
    _drop(*names)


def _block0(label: bytes) -> BlockCommit:
    return BlockCommit(StoredBlock(0, b"h" * 32, b"{%s}" % label, 0, 0), [], {"config": label},
                       [], (0, []))


def test_schemas_isolate_stores_in_one_database(schemas: list[str]) -> None:
    one, two = PostgresStore(PG_DSN, schemas[0]), PostgresStore(PG_DSN, schemas[1])
    try:
        one.init(b"genesis one", _block0(b"one"))
        assert two.genesis() is None and two.get_state("config") is None
        two.init(b"genesis two", _block0(b"two"))
        assert (one.get_state("config"), two.get_state("config")) == (b"one", b"two")
    finally:
        one.close()
        two.close()
    with psycopg.connect(PG_DSN) as conn:
        tables = conn.execute("SELECT table_schema, count(*) FROM information_schema.tables "
                              "WHERE table_schema = ANY(%s) GROUP BY 1", (schemas,)).fetchall()
    assert sorted(tables) == sorted((s, 8) for s in schemas)


def test_open_store_uri_selects_the_schema(schemas: list[str]) -> None:
    quoted = schemas[1].replace('"', "%22").replace(" ", "%20").replace(";", "%3B")
    store = open_store(f"{URI}?schema={schemas[0]}")
    try:
        assert isinstance(store, PostgresStore) and store.schema == schemas[0]
        store.init(b"genesis", _block0(b"zero"))
    finally:
        store.close()
    for again in (f"{URI}#{schemas[0]}", f"postgres://root@127.0.0.1:5432/test?schema={schemas[0]}"):
        s = open_store(again)
        try:
            assert s.genesis() == b"genesis"
        finally:
            s.close()
    other = open_store(f"{URI}?connect_timeout=5&schema={quoted}")
    try:
        assert isinstance(other, PostgresStore) and other.schema == schemas[1]
        assert other.genesis() is None
    finally:
        other.close()


def test_concurrent_first_opens_of_one_schema(schemas: list[str]) -> None:
    def open_and_read(_: int) -> bytes | None:
        store = PostgresStore(PG_DSN, schemas[0])
        try:
            return store.genesis()
        finally:
            store.close()

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(open_and_read, range(6))) == [None] * 6


def test_commits_are_not_left_to_asynchronous_commit(schemas: list[str]) -> None:
    dsn = f"{PG_DSN} options='-c synchronous_commit=off'"
    with psycopg.connect(dsn) as conn:  # the DSN alone would turn durability off
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
    store = PostgresStore(dsn, schemas[0])
    try:
        for conn in (store._writer, store._db):
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        store.close()
    local = PostgresStore(f"{PG_DSN} options='-c synchronous_commit=local'", schemas[0])
    try:  # any setting other than off is left as the operator chose
        assert local._db.execute("SHOW synchronous_commit").fetchone() == ("local",)
    finally:
        local.close()


def test_state_proofs_are_the_same_from_both_backends(schemas: list[str]) -> None:
    """One chain sealed into PostgreSQL and into SQLite: every state proof is byte-identical
    (writes come back in the same order) and verifies."""
    blocks: list[dict[str, bytes | None]] = [
        {"k": b"1", "K": b"1", "\u00e9": b"1"}, {}, {"a": b"2", "z": None},
        {"k": None, "k/\U0001f600": b"3"}, {"m": b"4"}]
    pg = build(blocks, store=PostgresStore(PG_DSN, schemas[0]))
    lite = build(blocks)
    try:
        for key in ("k", "K", "\u00e9", "a", "z", "k/\U0001f600", "m", "never"):
            for h in range(len(blocks) + 1):
                doc = build_state_proof(pg, key, h)
                assert doc == build_state_proof(lite, key, h), (key, h)
                fact = light().verify_state(doc, key=key, height=h)
                assert (fact.written, fact.value) == (pg.state_at(key, h) or (None, None))
    finally:
        pg.close()
        lite.close()


def _schema_exists(name: str) -> bool:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
    return row is not None


def test_opening_an_existing_store_only_never_creates_one(schemas: list[str]) -> None:
    # a mistyped schema is an error naming it, not a new empty store
    with pytest.raises(StoreError) as exc:
        open_store(f"{URI}?schema={schemas[0]}", create=False)
    assert exc.value.code == Code.NOT_FOUND and schemas[0] in exc.value.message
    assert not _schema_exists(schemas[0])
    # a schema that exists but holds no ledger store (some other application's) is refused too
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schemas[1])))
    with pytest.raises(StoreError) as exc:
        PostgresStore(PG_DSN, schemas[1], create=False)
    assert exc.value.code == Code.NOT_FOUND
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                              "WHERE table_schema = %s", (schemas[1],)).fetchone()
    assert tables == (0,)
    # once a store is there, opening it without creating reads the same chain
    made = PostgresStore(PG_DSN, schemas[0])
    try:
        made.init(b"{}", _block0(b'"one"'))
    finally:
        made.close()
    again = open_store(f"{URI}#{schemas[0]}", create=False)
    try:
        head = again.head()
        assert isinstance(again, PostgresStore) and head is not None and head.height == 0
        assert again.genesis() == b"{}"
    finally:
        again.close()


def test_a_reader_without_create_rights_opens_an_existing_store(schemas: list[str]) -> None:
    made = PostgresStore(PG_DSN, schemas[0])
    try:
        made.init(b"{}", _block0(b'"one"'))
    finally:
        made.close()
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schemas[0]), sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
            sql.Identifier(schemas[0]), sql.Identifier(role)))
    try:
        uri = f"postgresql://{role}@127.0.0.1:5432/test?schema={schemas[0]}"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # creating needs rights it lacks
            open_store(uri)
        store = open_store(uri, create=False)
        try:
            head = store.head()
            assert head is not None and head.height == 0 and store.genesis() == b"{}"
        finally:
            store.close()
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
