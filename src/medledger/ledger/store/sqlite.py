"""SQLite store: WAL journal, ``synchronous=FULL``, one transaction per block (group commit).

Readers use one connection per thread and see the last committed block; the single writer uses
its own. A bounded LRU cache fronts current-state reads and is updated on commit, so a node's
memory does not grow with the chain.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from medledger.errors import Code
from medledger.ledger.merkle import node_id
from medledger.ledger.store.base import (
    BlockCommit,
    Store,
    StoredBlock,
    StoreError,
    TxRecord,
    TxRow,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, header BLOB NOT NULL,
    first_index INTEGER NOT NULL, tx_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    idx INTEGER PRIMARY KEY, tx_id BLOB NOT NULL UNIQUE, height INTEGER NOT NULL,
    raw BLOB NOT NULL, result BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log_nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (
    key TEXT NOT NULL, height INTEGER NOT NULL, value BLOB,
    PRIMARY KEY (key, height)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_by_height ON state (height, key);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, height INTEGER NOT NULL, note BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS local (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL, signer TEXT NOT NULL, line BLOB NOT NULL,
    PRIMARY KEY (size, signer)) WITHOUT ROWID;
"""
CACHE_ENTRIES = 65_536
_memory_ids = itertools.count()
ROWS_PER_INSERT = 500  # a block's rows go in as multi-row INSERTs of at most this many


def _insert(db: sqlite3.Connection, table: str, ncols: int,
            rows: Sequence[tuple[Any, ...]]) -> None:
    """``INSERT INTO table VALUES (…),(…),…``: up to ``ROWS_PER_INSERT`` rows per statement.

    Not ``executemany``: the sqlite3 module releases the interpreter lock around each step,
    one per row, and while another thread runs Python every release costs a wait to win the
    lock back. A block's thousands of rows then took several times their own CPU time on the
    commit thread; one step per statement pays that once per few hundred rows (ADR 0064)."""
    one = "(" + ",".join("?" * ncols) + ")"
    for i in range(0, len(rows), ROWS_PER_INSERT):
        part = rows[i : i + ROWS_PER_INSERT]
        db.execute(f"INSERT INTO {table} VALUES " + ",".join([one] * len(part)),
                   [v for row in part for v in row])


def _open_error(path: Path | None, exc: sqlite3.Error) -> StoreError:
    """Why the file at ``path`` cannot serve as a store, naming it (no bare sqlite3 error)."""
    where = f"SQLite store {path}"
    if path is not None and not path.parent.is_dir():
        return StoreError(Code.NOT_FOUND, f"cannot open {where}: directory {path.parent} does "
                          "not exist")
    if path is not None and not os.access(path.parent, os.W_OK):
        return StoreError(Code.FORBIDDEN, f"cannot open {where}: directory {path.parent} is not "
                          "writable (SQLite creates -wal and -shm files beside the database)")
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return StoreError(Code.STORE_CORRUPT, f"cannot open {where}: not an SQLite database")
    return StoreError(Code.NODE_UNAVAILABLE, f"cannot open {where}: {exc}")


class SQLiteStore(Store):
    """A ledger store in one SQLite file (``":memory:"`` for a private in-memory database).

    With ``create=False`` the file must hold a store already: nothing is created or changed
    before that is checked, and a missing file, or one without a ledger store, is refused with
    ``not_found``."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path: Path | None = None if str(path) == ":memory:" else Path(path).resolve()
        if str(path) == ":memory:":
            # the memdb VFS shares one database between this store's connections with ordinary
            # locking (busy_timeout applies); shared-cache mode would fail a commit with
            # "database table is locked" whenever another thread is reading
            self._uri = f"file:/medledger-mem-{next(_memory_ids)}?vfs=memdb"
        else:
            self._uri = Path(path).resolve().as_uri()
        self._local = threading.local()
        try:
            if not create:
                self._require_store()
            self._writer = self._connect()  # also keeps a shared in-memory database alive
            if create:
                self._writer.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise _open_error(self.path, exc) from None
        self._cache: OrderedDict[str, bytes | None] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache
        self._write_lock = threading.Lock()  # one writer transaction at a time
        self._readers: list[sqlite3.Connection] = []  # per-thread read connections, for close()
        self._readers_lock = threading.Lock()

    def _require_store(self) -> None:
        """Refuse a location that holds no ledger store, looking through a read-only
        connection (a new in-memory database never holds one)."""
        if self.path is None or not self.path.is_file():
            raise StoreError(Code.NOT_FOUND, f"no SQLite store file at {self.path or ':memory:'}")
        conn = sqlite3.connect(f"{self._uri}?mode=ro", uri=True)
        try:
            names = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name IN ('meta','blocks')")}
        finally:
            conn.close()
        if names != {"meta", "blocks"}:
            raise StoreError(Code.NOT_FOUND, f"{self.path} holds no ledger store")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")  # first: the next pragma may wait for a lock
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @property
    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._readers_lock:  # not self._lock: get_state holds that while calling here
                self._readers.append(conn)
        return conn

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
        """Insert the block inside a transaction; the returned call commits it (the fsync)."""
        db, b = self._writer, bc.block
        h = b.height
        self._write_lock.acquire()  # released by the finisher, possibly on another thread
        try:
            db.execute("BEGIN IMMEDIATE")
            if genesis is not None:
                db.execute("INSERT INTO meta VALUES ('genesis', ?)", (genesis,))
            db.execute(
                "INSERT INTO blocks VALUES (?,?,?,?,?)",
                (h, b.hash, b.header, b.first_index, b.tx_count),
            )
            _insert(db, "txs", 5,
                    [(t.index, t.tx_id, t.height, t.raw, t.result) for t in bc.txs])
            _insert(db, "log_nodes", 2, bc.nodes)
            _insert(db, "state", 3, [(k, h, v) for k, v in bc.writes.items()])
            size, hashes = bc.compact
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('compact', ?)",
                (size.to_bytes(8, "big") + b"".join(hashes),),
            )
            if bc.checkpoint is not None:
                db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)", bc.checkpoint)
        except BaseException as exc:
            self._abort()
            if isinstance(exc, sqlite3.IntegrityError) and "txs.tx_id" in str(exc):
                raise StoreError(Code.DUPLICATE_TX, "block repeats a committed tx") from exc
            raise

        def finish() -> None:
            try:
                db.execute("COMMIT")
            except BaseException:
                self._abort()
                raise
            with self._lock:  # a reader that missed the cache holds this lock until it stores
                for k, v in bc.writes.items():  # what it read, so this update lands after it
                    if k in self._cache:
                        self._cache[k] = v
            self._write_lock.release()

        return finish

    def _abort(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction left after a failed COMMIT
            self._writer.execute("ROLLBACK")
        with self._lock:
            self._cache.clear()
        self._write_lock.release()

    def add_checkpoint(self, size: int, height: int, note: bytes) -> None:
        with self._write_lock:
            self._writer.execute("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)",
                                 (size, height, note))

    # -- peer-local data (on the calling thread's connection: not the block's transaction) --

    def set_local(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO local VALUES (?, ?)", (key, value))

    def get_local(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT v FROM local WHERE k = ?", (key,)).fetchone()
        return _blob(row[0]) if row else None

    def add_cosignatures(self, size: int, lines: Mapping[str, bytes]) -> None:
        if not lines:
            return
        db = self._db
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: atomic, not waited for on disk
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO cosignatures VALUES (?, ?, ?)",
                               [(size, signer, line) for signer, line in lines.items()])
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def cosignatures(self, size: int) -> dict[str, bytes]:
        rows = self._db.execute(
            "SELECT signer, line FROM cosignatures WHERE size = ? ORDER BY signer", (size,))
        return {signer: _blob(line) or b"" for signer, line in rows}

    # -- reads -------------------------------------------------------------------------

    def genesis(self) -> bytes | None:
        row = self._db.execute("SELECT v FROM meta WHERE k='genesis'").fetchone()
        return None if row is None else bytes(row[0])

    def head(self) -> StoredBlock | None:
        row = self._db.execute("SELECT * FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        return None if row is None else StoredBlock(*row)

    def block(self, height: int) -> StoredBlock | None:
        row = self._db.execute("SELECT * FROM blocks WHERE height=?", (height,)).fetchone()
        return None if row is None else StoredBlock(*row)

    def blocks(self, start: int, stop: int) -> list[StoredBlock]:
        rows = self._db.execute(
            "SELECT * FROM blocks WHERE height>=? AND height<? ORDER BY height", (start, stop)
        )
        return [StoredBlock(*r) for r in rows]

    def txs_range(self, start: int, stop: int) -> list[TxRecord]:
        rows = self._db.execute(
            "SELECT * FROM txs WHERE idx>=? AND idx<? ORDER BY idx", (start, stop)
        )
        return [TxRecord(*r) for r in rows]

    def tx_rows(self, start: int, stop: int) -> list[TxRow]:
        rows: list[TxRow] = self._db.execute(
            "SELECT idx, tx_id, height, raw, result FROM txs WHERE idx>=? AND idx<? ORDER BY idx",
            (start, stop),
        ).fetchall()
        return rows

    def tx(self, tx_id: bytes) -> TxRecord | None:
        row = self._db.execute("SELECT * FROM txs WHERE tx_id=?", (tx_id,)).fetchone()
        return None if row is None else TxRecord(*row)

    def known_txs(self, tx_ids: Sequence[bytes]) -> set[bytes]:
        sql = "SELECT tx_id FROM txs WHERE tx_id IN ({})"
        return {bytes(r[0]) for r in self._select_in(sql, tx_ids)}

    def get_state(self, key: str) -> bytes | None:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            row = self._db.execute(
                "SELECT value FROM state WHERE key=? ORDER BY height DESC LIMIT 1", (key,)
            ).fetchone()
            value = None if row is None or row[0] is None else bytes(row[0])
            self._cache[key] = value
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return value

    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        return self.get_states_at(keys, 2**62)

    def get_states_at(self, keys: Sequence[str], height: int) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = dict.fromkeys(keys)
        sql = "SELECT key, value FROM state WHERE key IN ({}) AND height <= ? ORDER BY key, height"
        for k, v in self._select_in(sql, list(out), after=(height,)):
            out[k] = _blob(v)  # rows come oldest first: the last one per key wins
        return out

    def _select_in(
        self, sql: str, items: Sequence[object], before: tuple[object, ...] = (),
        after: tuple[object, ...] = (),
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` (with ``{}`` for the IN list) over ``items``, 500 at a time."""
        for i in range(0, len(items), 500):
            chunk = list(items[i : i + 500])
            yield from self._db.execute(sql.format(",".join("?" * len(chunk))),
                                        (*before, *chunk, *after))

    def block_writes(self, height: int, keys: Sequence[str]) -> dict[str, bytes | None]:
        # one range of the (height, key) index, filtered here: verify asks for all of a
        # block's writes, and binding them as IN lists cost twice as much (ADR 0057).
        # Values stay as stored: a hand-edited TEXT value then differs from the replayed bytes
        want = set(keys)
        rows = dict(self._db.execute("SELECT key, value FROM state INDEXED BY state_by_height "
                                     "WHERE height = ?", (height,)))
        return rows if rows.keys() == want else {k: v for k, v in rows.items() if k in want}

    def writes_range(self, start: int, stop: int) -> list[tuple[int, str, bytes | None]]:
        rows = self._db.execute(
            "SELECT height, key, value FROM state INDEXED BY state_by_height "
            "WHERE height >= ? AND height < ? ORDER BY height, key", (start, stop))
        return [(int(h), k, _blob(v)) for h, k, v in rows]

    def row_counts(self) -> dict[str, int]:
        return {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("blocks", "txs", "state", "log_nodes", "checkpoints")}

    def opener(self) -> Callable[[], Store] | None:
        return None if self.path is None else partial(SQLiteStore, self.path, create=False)

    def state_at(self, key: str, height: int) -> tuple[int, bytes | None] | None:
        row = self._db.execute(
            "SELECT height, value FROM state WHERE key=? AND height<=? "
            "ORDER BY height DESC LIMIT 1",
            (key, height),
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), None if row[1] is None else bytes(row[1])

    def scan_state(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        rows = self._db.execute(
            "SELECT key, value FROM state s WHERE key >= ? AND key < ? AND height = "
            "(SELECT MAX(height) FROM state t WHERE t.key = s.key) AND value IS NOT NULL "
            "ORDER BY key LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        )
        return [(k, bytes(v)) for k, v in rows]

    def state_rows(self) -> Iterator[tuple[str, int, bytes | None]]:
        # "+height": scan the table and sort, as before the (height, key) index existed
        rows = self._connect().execute(
            "SELECT key, height, value FROM state ORDER BY +height, key")
        for k, h, v in rows:
            yield k, h, _blob(v)

    def get_nodes(self, ids: Sequence[int]) -> list[bytes]:
        if not ids:
            return []
        unique = list(dict.fromkeys(ids))
        marks = ",".join("?" * len(unique))
        rows = dict(self._db.execute(f"SELECT id, hash FROM log_nodes WHERE id IN ({marks})",
                                     unique))
        return [bytes(rows[i]) for i in ids]

    def node_range(self, level: int, start: int, stop: int) -> list[bytes]:
        if start >= stop:
            return []
        rows = self._db.execute(
            "SELECT hash FROM log_nodes WHERE id >= ? AND id <= ? ORDER BY id",
            (node_id(level, start), node_id(level, stop - 1)),
        ).fetchall()
        if len(rows) != stop - start:  # ids are unique: the count tells whether one is missing
            raise KeyError(f"{stop - start - len(rows)} Merkle nodes of level {level} in "
                           f"[{start}, {stop}) missing")
        hashes = [h for (h,) in rows]
        if any(type(h) is not bytes for h in hashes):  # written as BLOBs only: edited by hand
            raise KeyError(f"a Merkle node of level {level} in [{start}, {stop}) is not a BLOB")
        return hashes

    def node_rows(self, level: int) -> Iterator[tuple[int, bytes]]:
        lo, hi = level << 56, (level + 1) << 56
        rows = self._connect().execute(
            "SELECT id, hash FROM log_nodes WHERE id >= ? AND id < ? ORDER BY id", (lo, hi)
        )
        for i, h in rows:
            yield i - lo, _blob(h) or b""

    def compact(self) -> tuple[int, list[bytes]]:
        row = self._db.execute("SELECT v FROM meta WHERE k='compact'").fetchone()
        if row is None:
            return 0, []
        raw = bytes(row[0])
        size = int.from_bytes(raw[:8], "big")
        return size, [raw[i : i + 32] for i in range(8, len(raw), 32)]

    def checkpoint(self, size: int | None = None) -> tuple[int, int, bytes] | None:
        if size is None:
            row = self._db.execute(
                "SELECT size, height, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT size, height, note FROM checkpoints WHERE size=?", (size,)
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), bytes(row[2]))

    def checkpoints(self) -> list[tuple[int, int, bytes]]:
        rows = self._db.execute("SELECT size, height, note FROM checkpoints ORDER BY size")
        return [(int(s), int(h), bytes(n)) for s, h, n in rows]

    def close(self) -> None:
        """Close every connection this store opened, in any thread (call once, at the end)."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._local.conn = None
        self._writer.close()


def _blob(value: object) -> bytes | None:
    """Column value as bytes; a value edited into TEXT by hand still compares by its bytes."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    assert isinstance(value, bytes | bytearray | memoryview)
    return bytes(value)
