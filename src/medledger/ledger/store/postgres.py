"""PostgreSQL store: one transaction per block, bulk rows by binary COPY (ADR 0011).

Several stores can share one database, each in its own schema (``schema=``; created on first
open). Readers use one autocommit connection per thread and see the last committed block; the
single writer uses its own connection and keeps a block's transaction open between ``stage`` and
its finisher, so readers never see a block before the finisher's COMMIT returns. As in the SQLite
store, a bounded LRU cache fronts current-state reads and is updated after each commit.

Differences from SQLite: values are BYTEA and integers BIGINT; state keys are TEXT in the "C"
collation, so they sort by the bytes of their UTF-8 encoding as SQLite's BINARY collation does,
but cannot contain NUL characters. Durability relies on the server (``fsync`` on): a session
whose ``synchronous_commit`` is ``off`` is raised to ``on``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import psycopg
from psycopg import errors, sql

from medledger.errors import Code
from medledger.ledger.store.base import BlockCommit, Store, StoredBlock, StoreError, TxRecord

Conn = psycopg.Connection[tuple[Any, ...]]

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BYTEA NOT NULL)",
    """CREATE TABLE IF NOT EXISTS blocks (
        height BIGINT PRIMARY KEY, hash BYTEA NOT NULL, header BYTEA NOT NULL,
        first_index BIGINT NOT NULL, tx_count BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS txs (
        idx BIGINT PRIMARY KEY, tx_id BYTEA NOT NULL CONSTRAINT txs_tx_id_key UNIQUE,
        height BIGINT NOT NULL, raw BYTEA NOT NULL, result BYTEA NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS log_nodes (id BIGINT PRIMARY KEY, hash BYTEA NOT NULL)",
    """CREATE TABLE IF NOT EXISTS state (
        key TEXT COLLATE "C" NOT NULL, height BIGINT NOT NULL, value BYTEA,
        PRIMARY KEY (key, height))""",
    "CREATE INDEX IF NOT EXISTS state_by_height ON state (height, key)",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        size BIGINT PRIMARY KEY, height BIGINT NOT NULL, note BYTEA NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS local (k TEXT PRIMARY KEY, v BYTEA NOT NULL)",
    """CREATE TABLE IF NOT EXISTS cosignatures (
        size BIGINT NOT NULL, signer TEXT NOT NULL, line BYTEA NOT NULL,
        PRIMARY KEY (size, signer))""",
]
CACHE_ENTRIES = 65_536
SCHEMA_LOCK = 0x6D65646C65646772  # pg_advisory_xact_lock key: concurrent first opens wait
STREAM_ROWS = 2_000  # rows per round trip of the streaming iterators


class PostgresStore(Store):
    """A ledger store in a PostgreSQL database, in ``schema`` (default: the search path's first).

    ``dsn`` is any libpq connection string or ``postgresql://`` URI. With ``create=False`` the
    store must exist already: nothing is created (a reader needs no CREATE right), and a
    location without one is refused with ``not_found`` instead of becoming a new empty store.
    """

    def __init__(self, dsn: str, schema: str | None = None, *, create: bool = True) -> None:
        self.dsn, self.schema = dsn, schema
        self._local = threading.local()
        self._readers: list[Conn] = []  # per-thread connections, for close()
        self._readers_lock = threading.Lock()
        self._cache: OrderedDict[str, bytes | None] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache
        self._write_lock = threading.Lock()  # one writer transaction at a time
        self._writer = self._connect(autocommit=False)
        try:
            if create:
                self._create_schema()
            else:
                self._require_store()
        except BaseException:
            self._writer.close()
            raise

    def _connect(self, autocommit: bool) -> Conn:
        conn = psycopg.connect(self.dsn, autocommit=autocommit)
        path = None if self.schema is None else sql.Identifier(self.schema).as_string(conn)
        conn.execute(
            "SELECT set_config('search_path', coalesce(%s, current_setting('search_path')),"
            " false), CASE WHEN current_setting('synchronous_commit') = 'off'"
            " THEN set_config('synchronous_commit', 'on', false) END",
            (path,),
        )
        if not autocommit:
            conn.commit()
        return conn

    def _create_schema(self) -> None:
        db = self._writer
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            if self.schema is not None:
                db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)))
            for ddl in SCHEMA:
                db.execute(ddl)

    def _require_store(self) -> None:
        """Refuse a location that holds no ledger store (its tables, as ``SCHEMA`` makes them,
        looked up through the search path ``_connect`` set), creating nothing."""
        db = self._writer
        row = db.execute("SELECT to_regclass('meta') IS NOT NULL AND "
                         "to_regclass('blocks') IS NOT NULL").fetchone()
        db.rollback()
        if row is None or not row[0]:
            where = ("the search path" if self.schema is None
                     else f"schema {self.schema!r}")
            raise StoreError(Code.NOT_FOUND, f"no ledger store in {where} of this database")

    @property
    def _db(self) -> Conn:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self._connect(autocommit=True)
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _one(self, query: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
        return self._db.execute(query, params).fetchone()

    def _all(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(query, params).fetchall()

    # -- writes ------------------------------------------------------------------------

    def init(self, genesis: bytes, block0: BlockCommit) -> None:
        if self.genesis() is not None:
            raise StoreError(Code.CONFLICT, "store already holds a chain")
        self._write(block0, genesis)()

    def commit(self, bc: BlockCommit) -> None:
        self.stage(bc)()

    def stage(self, bc: BlockCommit) -> Callable[[], None]:
        head = self.head()
        want = 0 if head is None else head.height + 1
        if bc.block.height != want:
            raise StoreError(Code.CONFLICT, f"got block {bc.block.height}, want {want}")
        return self._write(bc, None)

    def _write(self, bc: BlockCommit, genesis: bytes | None) -> Callable[[], None]:
        """Insert the block inside a transaction; the returned call commits it."""
        b, h = bc.block, bc.block.height
        self._write_lock.acquire()  # released by the finisher, possibly on another thread
        try:
            if self._writer.closed:  # lost with the server: start afresh
                self._writer = self._connect(autocommit=False)
            db = self._writer
            with db.cursor() as cur:
                if genesis is not None:
                    cur.execute("INSERT INTO meta VALUES ('genesis', %s)", (genesis,))
                cur.execute("INSERT INTO blocks VALUES (%s,%s,%s,%s,%s)",
                            (h, b.hash, b.header, b.first_index, b.tx_count))
                self._insert_rows(cur, "txs", ("bigint", "bytea", "bigint", "bytea", "bytea"),
                                  [(t.index, t.tx_id, t.height, t.raw, t.result) for t in bc.txs])
                self._insert_rows(cur, "log_nodes", ("bigint", "bytea"), bc.nodes)
                self._insert_rows(cur, "state", ("text", "bigint", "bytea"),
                                  [(k, h, v) for k, v in bc.writes.items()])
                size, hashes = bc.compact
                cur.execute("INSERT INTO meta VALUES ('compact', %s) ON CONFLICT (k) DO UPDATE "
                            "SET v = excluded.v", (size.to_bytes(8, "big") + b"".join(hashes),))
                if bc.checkpoint is not None:
                    cur.execute(_UPSERT_CHECKPOINT, bc.checkpoint)
        except BaseException as exc:
            self._abort()
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

        def finish() -> None:
            try:
                db.commit()
            except BaseException:
                self._abort()
                raise
            with self._lock:  # a reader that missed the cache holds this lock until it stores
                for k, v in bc.writes.items():  # what it read, so this update lands after it
                    if k in self._cache:
                        self._cache[k] = v
            self._write_lock.release()

        return finish

    def _insert_rows(self, cur: psycopg.Cursor[tuple[Any, ...]], table: str,
                     types: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        """Append ``rows`` to ``table`` in one binary COPY (one round trip, no per-row SQL)."""
        rows = list(rows)
        if not rows:
            return
        with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(table))) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def _abort(self) -> None:
        with contextlib.suppress(psycopg.Error):  # a lost connection cannot roll back
            self._writer.rollback()
        with self._lock:
            self._cache.clear()
        self._write_lock.release()

    def add_checkpoint(self, size: int, height: int, note: bytes) -> None:
        with self._write_lock:
            try:
                self._writer.execute(_UPSERT_CHECKPOINT, (size, height, note))
                self._writer.commit()
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    self._writer.rollback()
                raise

    # -- peer-local data (on the calling thread's autocommit connection: not the block's
    #    transaction, and no wait for a staged block) -----------------------------------

    def set_local(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT INTO local VALUES (%s, %s) "
                         "ON CONFLICT (k) DO UPDATE SET v = excluded.v", (key, value))

    def get_local(self, key: str) -> bytes | None:
        row = self._one("SELECT v FROM local WHERE k = %s", (key,))
        return None if row is None else row[0]

    def add_cosignatures(self, size: int, lines: Mapping[str, bytes]) -> None:
        if not lines:
            return
        db = self._db
        with db.transaction(), db.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = off")  # not waited for (see base)
            cur.executemany("INSERT INTO cosignatures VALUES (%s, %s, %s) ON CONFLICT "
                            "(size, signer) DO UPDATE SET line = excluded.line",
                            [(size, signer, line) for signer, line in lines.items()])

    def cosignatures(self, size: int) -> dict[str, bytes]:
        rows = self._all("SELECT signer, line FROM cosignatures WHERE size = %s "
                         "ORDER BY signer COLLATE \"C\"", (size,))
        return dict(rows)

    # -- reads -------------------------------------------------------------------------

    def genesis(self) -> bytes | None:
        row = self._one("SELECT v FROM meta WHERE k = 'genesis'")
        return None if row is None else bytes(row[0])

    def head(self) -> StoredBlock | None:
        row = self._one("SELECT * FROM blocks ORDER BY height DESC LIMIT 1")
        return None if row is None else StoredBlock(*row)

    def block(self, height: int) -> StoredBlock | None:
        row = self._one("SELECT * FROM blocks WHERE height = %s", (height,))
        return None if row is None else StoredBlock(*row)

    def blocks(self, start: int, stop: int) -> list[StoredBlock]:
        rows = self._all("SELECT * FROM blocks WHERE height >= %s AND height < %s "
                         "ORDER BY height", (start, stop))
        return [StoredBlock(*r) for r in rows]

    def txs_range(self, start: int, stop: int) -> list[TxRecord]:
        rows = self._all("SELECT * FROM txs WHERE idx >= %s AND idx < %s ORDER BY idx",
                         (start, stop))
        return [TxRecord(*r) for r in rows]

    def tx(self, tx_id: bytes) -> TxRecord | None:
        row = self._one("SELECT * FROM txs WHERE tx_id = %s", (tx_id,))
        return None if row is None else TxRecord(*row)

    def known_txs(self, tx_ids: Sequence[bytes]) -> set[bytes]:
        if not tx_ids:
            return set()
        rows = self._all("SELECT tx_id FROM txs WHERE tx_id = ANY(%s::bytea[])", (list(tx_ids),))
        return {bytes(r[0]) for r in rows}

    def get_state(self, key: str) -> bytes | None:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            row = self._one("SELECT value FROM state WHERE key = %s "
                            "ORDER BY height DESC LIMIT 1", (key,))
            value = None if row is None else row[0]
            self._cache[key] = value
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return value

    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        return self.get_states_at(keys, 2**62)

    def get_states_at(self, keys: Sequence[str], height: int) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = dict.fromkeys(keys)
        if out:
            rows = self._all(
                "SELECT DISTINCT ON (key) key, value FROM state "
                "WHERE key = ANY(%s::text[]) AND height <= %s ORDER BY key, height DESC",
                (list(out), height))
            out.update(rows)
        return out

    def state_at(self, key: str, height: int) -> tuple[int, bytes | None] | None:
        row = self._one("SELECT height, value FROM state WHERE key = %s AND height <= %s "
                        "ORDER BY height DESC LIMIT 1", (key, height))
        return None if row is None else (row[0], row[1])

    def scan_state(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        # U+10FFFF is the largest code point, so in byte order every key with the prefix
        # sorts below prefix + U+10FFFF (as in the SQLite store)
        rows = self._all(
            "SELECT key, value FROM state s WHERE key >= %s AND key < %s AND height = "
            "(SELECT max(height) FROM state t WHERE t.key = s.key) AND value IS NOT NULL "
            "ORDER BY key LIMIT %s", (prefix, prefix + "\U0010ffff", limit))
        return [(k, v) for k, v in rows]

    def state_rows(self) -> Iterator[tuple[str, int, bytes | None]]:
        yield from self._stream("SELECT key, height, value FROM state ORDER BY height, key")

    def block_writes(self, height: int, keys: Sequence[str]) -> dict[str, bytes | None]:
        if not keys:
            return {}
        rows = self._all("SELECT key, value FROM state WHERE height = %s "
                         "AND key = ANY(%s::text[])", (height, list(dict.fromkeys(keys))))
        return dict(rows)

    def writes_range(self, start: int, stop: int) -> list[tuple[int, str, bytes | None]]:
        rows = self._all("SELECT height, key, value FROM state WHERE height >= %s AND height < %s "
                         "ORDER BY height, key", (start, stop))
        return [(h, k, v) for h, k, v in rows]

    def row_counts(self) -> dict[str, int]:
        counts = {}
        for t in ("blocks", "txs", "state", "log_nodes", "checkpoints"):
            row = self._one(f"SELECT count(*) FROM {t}")
            counts[t] = int(row[0]) if row else 0
        return counts

    def get_nodes(self, ids: Sequence[int]) -> list[bytes]:
        if not ids:
            return []
        rows = dict(self._all("SELECT id, hash FROM log_nodes WHERE id = ANY(%s::bigint[])",
                              (list(dict.fromkeys(ids)),)))
        return [rows[i] for i in ids]

    def node_rows(self, level: int) -> Iterator[tuple[int, bytes]]:
        lo, hi = level << 56, (level + 1) << 56
        for i, h in self._stream("SELECT id, hash FROM log_nodes WHERE id >= %s AND id < %s "
                                 "ORDER BY id", (lo, hi)):
            yield i - lo, h

    def _stream(self, query: str, params: Sequence[object] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of ``query`` fetched in batches through a server-side cursor on a connection
        of their own, so the caller may read through the store while iterating."""
        conn = self._connect(autocommit=False)
        try:
            with conn.cursor(name="medledger_rows") as cur:
                cur.itersize = STREAM_ROWS
                cur.execute(query, params)
                yield from cur
        finally:
            conn.close()

    def compact(self) -> tuple[int, list[bytes]]:
        row = self._one("SELECT v FROM meta WHERE k = 'compact'")
        if row is None:
            return 0, []
        raw: bytes = row[0]
        return int.from_bytes(raw[:8], "big"), [raw[i : i + 32] for i in range(8, len(raw), 32)]

    def checkpoint(self, size: int | None = None) -> tuple[int, int, bytes] | None:
        if size is None:
            row = self._one("SELECT size, height, note FROM checkpoints "
                            "ORDER BY size DESC LIMIT 1")
        else:
            row = self._one("SELECT size, height, note FROM checkpoints WHERE size = %s",
                            (size,))
        return None if row is None else (row[0], row[1], row[2])

    def checkpoints(self) -> list[tuple[int, int, bytes]]:
        rows = self._all("SELECT size, height, note FROM checkpoints ORDER BY size")
        return [(s, h, n) for s, h, n in rows]

    def opener(self) -> Callable[[], Store] | None:
        return partial(PostgresStore, self.dsn, self.schema, create=False)

    def close(self) -> None:
        """Close every connection this store opened, in any thread (call once, at the end)."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._local.conn = None
        self._writer.close()


_UPSERT_CHECKPOINT = ("INSERT INTO checkpoints VALUES (%s, %s, %s) ON CONFLICT (size) DO UPDATE "
                      "SET height = excluded.height, note = excluded.note")


def _translate(exc: BaseException) -> BaseException:
    """A failed block write as the store's own error where it has one."""
    if isinstance(exc, errors.UniqueViolation) and exc.diag.constraint_name == "txs_tx_id_key":
        return StoreError(Code.DUPLICATE_TX, "block repeats a committed tx")
    if isinstance(exc, errors.IntegrityError):
        return StoreError(Code.CONFLICT, f"block conflicts with stored rows: "
                                         f"{exc.diag.message_primary}")
    return exc
