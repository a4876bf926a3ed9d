"""The ``Store`` contract: one suite that every storage backend must pass.

Backends are entries in ``BACKENDS``. Each entry builds a ``Backend`` for a test: how to open the
store (again, for persistent backends) and what to clean up afterwards. The PostgreSQL entry gives
each test a fresh schema on the server of ``tests.support.services.PG_DSN`` and drops it after;
without the server it skips (fails under ``CI=true``).

Commits here are built by hand with arbitrary bytes: the store must not interpret them.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from tests.support.services import PG_DSN, require_port

from medledger.errors import Code
from medledger.ledger.merkle import node_id
from medledger.ledger.store.base import BlockCommit, Store, StoredBlock, StoreError, TxRecord
from medledger.ledger.store.postgres import PostgresStore
from medledger.ledger.store.sqlite import SQLiteStore


@dataclass
class Backend:
    name: str
    open: Callable[[], Store]  # for a persistent backend, opens the same data every time
    persistent: bool
    cleanup: Callable[[], None] = lambda: None  # after the test and its stores are closed
    open_existing: Callable[[], Store] | None = None  # the same location with create=False


def _sqlite_file(tmp_path: Path) -> Backend:
    path = tmp_path / "store.db"
    return Backend("sqlite-file", lambda: SQLiteStore(path), persistent=True,
                   open_existing=lambda: SQLiteStore(path, create=False))


def _sqlite_memory(tmp_path: Path) -> Backend:
    return Backend("sqlite-memory", lambda: SQLiteStore(":memory:"), persistent=False,
                   open_existing=lambda: SQLiteStore(":memory:", create=False))


def _postgres(tmp_path: Path) -> Backend:
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    require_port(str(info.get("host", "127.0.0.1")), int(info.get("port", 5432)), "PostgreSQL")
    schema = f"contract_{uuid.uuid4().hex[:16]}"

    def drop() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    return Backend("postgres", lambda: PostgresStore(PG_DSN, schema), persistent=True,
                   cleanup=drop, open_existing=lambda: PostgresStore(PG_DSN, schema, create=False))


BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "sqlite-file": _sqlite_file,
    "sqlite-memory": _sqlite_memory,
    "postgres": _postgres,
}
MARKS = {"postgres": pytest.mark.postgres}


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, ())) for name in BACKENDS])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](tmp_path)
    yield b
    b.cleanup()


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    s = backend.open()
    yield s
    s.close()


# -- building commits -----------------------------------------------------------------------------

GENESIS = b'{"chain_id":"contract-test"}'


def tid(height: int, i: int) -> bytes:
    return hashlib.sha256(f"tx {height} {i}".encode()).digest()


def h32(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def make_commit(
    height: int,
    first_index: int,
    n_txs: int = 0,
    writes: dict[str, bytes | None] | None = None,
    *,
    nodes: Sequence[tuple[int, bytes]] = (),
    compact: tuple[int, Sequence[bytes]] | None = None,
    checkpoint: tuple[int, int, bytes] | None = None,
    tx_ids: Sequence[bytes] | None = None,
) -> BlockCommit:
    ids = list(tx_ids) if tx_ids is not None else [tid(height, i) for i in range(n_txs)]
    txs = [
        TxRecord(
            first_index + i,
            t,
            height,
            b"raw %d" % (first_index + i),
            b'{"code":"ok","n":%d}' % (first_index + i),
        )
        for i, t in enumerate(ids)
    ]
    size = first_index + len(ids)
    block = StoredBlock(
        height, h32(f"block {height}"), b'{"height":%d}' % height, first_index, len(ids)
    )
    return BlockCommit(
        block,
        txs,
        dict(writes or {}),
        list(nodes),
        compact if compact is not None else (size, [h32(f"compact {size}")]),
        checkpoint,
    )


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a reader can observe."""
    return {
        "genesis": store.genesis(),
        "head": store.head(),
        "blocks": store.blocks(0, 1000),
        "txs": store.txs_range(0, 10_000),
        "state": list(store.state_rows()),
        "current": store.scan_state("", limit=10_000),
        "nodes": [list(store.node_rows(level)) for level in range(4)],
        "compact": store.compact(),
        "checkpoints": store.checkpoints(),
        "newest checkpoint": store.checkpoint(),
    }


def init(store: Store, writes: dict[str, bytes | None] | None = None) -> BlockCommit:
    b0 = make_commit(0, 0, 0, writes or {"config": b"genesis config"})
    store.init(GENESIS, b0)
    return b0


# -- empty store and init -------------------------------------------------------------------------


def test_empty_store(store: Store) -> None:
    assert store.genesis() is None
    assert store.head() is None
    assert store.block(0) is None
    assert store.blocks(0, 10) == []
    assert store.txs_range(0, 10) == []
    assert store.tx(tid(0, 0)) is None
    assert store.known_txs([tid(0, 0)]) == set()
    assert store.known_txs([]) == set()
    assert store.get_state("k") is None
    assert store.get_states(["k", "j"]) == {"k": None, "j": None}
    assert store.state_at("k", 0) is None
    assert store.get_states_at(["k"], 5) == {"k": None}
    assert store.scan_state("") == []
    assert list(store.state_rows()) == []
    assert store.get_nodes([]) == []
    assert list(store.node_rows(0)) == []
    assert store.compact() == (0, [])
    assert store.checkpoint() is None
    assert store.checkpoint(0) is None
    assert store.checkpoints() == []


def test_init_writes_genesis_and_block_0(store: Store) -> None:
    b0 = init(store, {"config": b"c", "org/a": b"a"})
    assert store.genesis() == GENESIS
    assert store.head() == b0.block == store.block(0)
    assert store.blocks(0, 5) == [b0.block]
    assert store.get_state("config") == b"c"
    assert store.state_at("org/a", 0) == (0, b"a")
    assert store.compact() == (0, [h32("compact 0")])


def test_init_twice_is_refused(store: Store) -> None:
    init(store)
    before = snapshot(store)
    with pytest.raises(StoreError):
        store.init(b'{"chain_id":"other"}', make_commit(0, 0, 0, {"config": b"other"}))
    store.commit(make_commit(1, 0, 1))
    with pytest.raises(StoreError):
        store.init(GENESIS, make_commit(0, 0, 0))
    assert snapshot(store)["genesis"] == before["genesis"]
    assert store.get_state("config") == b"genesis config"


def test_commit_heights_must_be_consecutive(store: Store) -> None:
    init(store)
    before = snapshot(store)
    for bad in (2, 0, 5):
        with pytest.raises(StoreError):
            store.commit(make_commit(bad, 0, 1, {"x": b"1"}))
    assert snapshot(store) == before
    store.commit(make_commit(1, 0, 1, {"x": b"1"}))
    with pytest.raises(StoreError):
        store.commit(make_commit(1, 1, 1, {"x": b"2"}))
    store.commit(make_commit(2, 1, 2))
    assert store.head() is not None and store.head().height == 2  # type: ignore[union-attr]
    assert store.get_state("x") == b"1"


# -- blocks, transactions --------------------------------------------------------------------------


def test_blocks_and_transactions(store: Store) -> None:
    init(store)
    c1 = make_commit(1, 0, 3)
    c2 = make_commit(2, 3, 0)  # an empty block
    c3 = make_commit(3, 3, 2)
    for c in (c1, c2, c3):
        store.commit(c)
    assert [b.height for b in store.blocks(0, 10)] == [0, 1, 2, 3]
    assert [b.height for b in store.blocks(1, 3)] == [1, 2]
    assert store.blocks(4, 10) == [] and store.blocks(2, 2) == []
    assert store.block(2) == c2.block and store.block(4) is None
    assert store.head() == c3.block
    assert store.txs_range(0, 10) == [*c1.txs, *c3.txs]
    assert store.txs_range(2, 4) == [c1.txs[2], c3.txs[0]]
    assert store.txs_range(5, 9) == []
    assert store.tx_rows(1, 5) == [(t.index, t.tx_id, t.height, t.raw, t.result)
                                   for t in (*c1.txs[1:], *c3.txs)]
    assert store.tx_rows(5, 9) == [] and store.tx_rows(2, 2) == []
    rec = c3.txs[1]
    assert store.tx(rec.tx_id) == rec
    assert (rec.index, rec.height) == (4, 3)
    assert store.tx(tid(9, 9)) is None


def test_known_txs(store: Store) -> None:
    init(store)
    ids = [tid(1, i) for i in range(1200)]  # more than any one query chunk
    store.commit(make_commit(1, 0, tx_ids=ids))
    unknown = [tid(2, i) for i in range(700)]
    mixed = [*unknown[:300], *ids[::3], *unknown[300:], ids[5], ids[5]]
    assert store.known_txs(mixed) == set(ids[::3]) | {ids[5]}
    assert store.known_txs(unknown) == set()
    assert store.known_txs(ids) == set(ids)


# -- state history ---------------------------------------------------------------------------------


@pytest.fixture
def history(store: Store) -> Store:
    """Block 0: a=0. Block 1: a=1, b=1. Block 2: a=2, b deleted. Block 3: c=3. Block 4: b=4."""
    init(store, {"a": b"0"})
    store.commit(make_commit(1, 0, 1, {"a": b"1", "b": b"1"}))
    store.commit(make_commit(2, 1, 1, {"a": b"2", "b": None}))
    store.commit(make_commit(3, 2, 1, {"c": b"3"}))
    store.commit(make_commit(4, 3, 1, {"b": b"4"}))
    return store


def test_state_at_each_height(history: Store) -> None:
    s = history
    assert [s.state_at("a", h) for h in range(6)] == [
        (0, b"0"),
        (1, b"1"),
        (2, b"2"),
        (2, b"2"),
        (2, b"2"),
        (2, b"2"),
    ]
    assert [s.state_at("b", h) for h in range(5)] == [
        None,
        (1, b"1"),
        (2, None),
        (2, None),
        (4, b"4"),
    ]
    assert s.state_at("c", 2) is None and s.state_at("c", 3) == (3, b"3")
    assert s.state_at("zzz", 4) is None


def test_get_states_at(history: Store) -> None:
    keys = ["a", "b", "c", "zzz", "a"]
    assert history.get_states_at(keys, 0) == {"a": b"0", "b": None, "c": None, "zzz": None}
    assert history.get_states_at(keys, 1) == {"a": b"1", "b": b"1", "c": None, "zzz": None}
    assert history.get_states_at(keys, 2) == {"a": b"2", "b": None, "c": None, "zzz": None}
    assert history.get_states_at(keys, 4) == {"a": b"2", "b": b"4", "c": b"3", "zzz": None}


def test_current_state(history: Store) -> None:
    assert history.get_state("a") == b"2"
    assert history.get_state("b") == b"4"
    assert history.get_state("missing") is None
    assert history.get_states(["c", "a", "missing", "c"]) == {"c": b"3", "a": b"2", "missing": None}
    many = [f"nope/{i}" for i in range(1100)] + ["a"]
    got = history.get_states(many)
    assert got["a"] == b"2" and sum(v is not None for v in got.values()) == 1


def test_deletion_hides_a_key(store: Store) -> None:
    init(store, {"k": b"v", "p/k": b"v"})
    assert store.get_state("k") == b"v"  # now cached
    store.commit(make_commit(1, 0, 1, {"k": None, "p/k": None}))
    assert store.get_state("k") is None
    assert store.get_states(["k"]) == {"k": None}
    assert store.scan_state("p/") == []
    assert store.scan_state("") == []
    store.commit(make_commit(2, 1, 1, {"k": b"back"}))
    assert store.get_state("k") == b"back"
    assert store.scan_state("k") == [("k", b"back")]


def test_state_rows_list_every_write_by_height_then_key(history: Store) -> None:
    assert list(history.state_rows()) == [
        ("a", 0, b"0"),
        ("a", 1, b"1"),
        ("b", 1, b"1"),
        ("a", 2, b"2"),
        ("b", 2, None),
        ("c", 3, b"3"),
        ("b", 4, b"4"),
    ]


def test_writes_range_lists_each_blocks_writes_in_key_order(history: Store) -> None:
    assert history.writes_range(0, 100) == [
        (0, "a", b"0"),
        (1, "a", b"1"),
        (1, "b", b"1"),
        (2, "a", b"2"),
        (2, "b", None),
        (3, "c", b"3"),
        (4, "b", b"4"),
    ]
    assert history.writes_range(1, 3) == [(1, "a", b"1"), (1, "b", b"1"), (2, "a", b"2"),
                                          (2, "b", None)]
    assert history.writes_range(3, 4) == [(3, "c", b"3")]
    assert history.writes_range(5, 9) == [] and history.writes_range(3, 3) == []


def test_block_writes_returns_only_the_asked_keys_of_that_block(history: Store) -> None:
    assert history.block_writes(2, ["a", "b"]) == {"a": b"2", "b": None}
    assert history.block_writes(1, ["b", "b", "c"]) == {"b": b"1"}  # c has no row at 1
    assert history.block_writes(4, ["a", "b", "c"]) == {"b": b"4"}
    assert history.block_writes(4, []) == {} and history.block_writes(9, ["a"]) == {}


def test_writes_range_sorts_keys_as_writes_root_does(store: Store) -> None:
    """Code-point order = UTF-8 byte order (not a locale's): the order of ``sorted(keys)``."""
    keys = ["b", "B", "a/b", "a-b", "a_b", "a", "\u00e9", "e\u0301", "\U0001f600", "\uffff",
            "Z", "z", "0", "a\u0080", "a\x7f", "ab", "a b"]
    init(store, {"first": b"x"})
    store.commit(make_commit(1, 0, 1, {k: k.encode() for k in keys}))
    store.commit(make_commit(2, 1, 1, {}))
    store.commit(make_commit(3, 2, 1, {"z": None, "a": b"again"}))
    assert store.writes_range(1, 4) == [
        *((1, k, k.encode()) for k in sorted(keys)), (3, "a", b"again"), (3, "z", None)]


def test_scan_state_prefix_semantics(store: Store) -> None:
    keys = {
        "p/a": b"1",
        "p/b": b"2",
        "p/b/c": b"3",
        "p/\u00e9": b"4",
        "p/\U0001f600": b"5",
        "p": b"6",
        "pa": b"7",
        "p0": b"8",
        "q/a": b"9",
        "o/a": b"10",
        "a_b/1": b"11",
        "axb/1": b"12",
        "a%b/1": b"13",
    }
    init(store, keys)
    assert store.scan_state("p/") == [
        ("p/a", b"1"),
        ("p/b", b"2"),
        ("p/b/c", b"3"),
        ("p/\u00e9", b"4"),
        ("p/\U0001f600", b"5"),
    ]
    assert store.scan_state("p/b") == [("p/b", b"2"), ("p/b/c", b"3")]
    assert store.scan_state("p/", limit=2) == [("p/a", b"1"), ("p/b", b"2")]
    assert [k for k, _ in store.scan_state("p")] == [
        "p",
        "p/a",
        "p/b",
        "p/b/c",
        "p/\u00e9",
        "p/\U0001f600",
        "p0",
        "pa",
    ]
    # LIKE wildcards in a prefix are literal characters
    assert store.scan_state("a_b/") == [("a_b/1", b"11")]
    assert store.scan_state("a%") == [("a%b/1", b"13")]
    assert store.scan_state("nothing") == []
    assert [k for k, _ in store.scan_state("")] == sorted(keys)
    # the newest write wins and deleted keys are skipped
    store.commit(make_commit(1, 0, 1, {"p/a": b"new", "p/b": None}))
    assert store.scan_state("p/") == [
        ("p/a", b"new"),
        ("p/b/c", b"3"),
        ("p/\u00e9", b"4"),
        ("p/\U0001f600", b"5"),
    ]
    assert store.scan_state("p/", limit=1) == [("p/a", b"new")]


def test_cache_follows_commits(store: Store) -> None:
    init(store, {"k": b"0"})
    for h in range(1, 6):
        assert store.get_state("k") == b"%d" % (h - 1)
        store.commit(make_commit(h, h - 1, 1, {"k": b"%d" % h}))
    assert store.get_state("k") == b"5"


# -- atomicity -------------------------------------------------------------------------------------


def _failing_commits() -> dict[str, BlockCommit]:
    writes: dict[str, bytes | None] = {"a": b"2", "new": b"x", "gone": None}
    nodes = [(node_id(0, 1), h32("leaf 1")), (node_id(1, 0), h32("node 1.0"))]
    extra = dict(nodes=nodes, compact=(3, [h32("c3")]), checkpoint=(3, 2, b"note 2"))
    return {
        "duplicate tx id in the commit": make_commit(
            2, 1, writes=writes, tx_ids=[tid(2, 0), tid(2, 1), tid(2, 0)], **extra
        ),  # type: ignore[arg-type]
        "tx id of an earlier block": make_commit(
            2, 1, writes=writes, tx_ids=[tid(2, 0), tid(1, 0)], **extra
        ),  # type: ignore[arg-type]
        "tx index already used": make_commit(2, 0, writes=writes, tx_ids=[tid(2, 0)], **extra),  # type: ignore[arg-type]
        "duplicate node id in the commit": make_commit(
            2,
            1,
            2,
            writes,
            nodes=[*nodes, nodes[0]],
            compact=(3, [h32("c3")]),
            checkpoint=(3, 2, b"note 2"),
        ),
        "node id already stored": make_commit(
            2,
            1,
            2,
            writes,
            nodes=[(node_id(0, 0), h32("again")), *nodes],
            compact=(3, [h32("c3")]),
            checkpoint=(3, 2, b"note 2"),
        ),
    }


@pytest.mark.parametrize("case", list(_failing_commits()))
def test_failed_commit_leaves_no_trace(store: Store, case: str) -> None:
    init(store, {"a": b"0", "gone": b"here"})
    store.commit(
        make_commit(
            1,
            0,
            1,
            {"a": b"1"},
            nodes=[(node_id(0, 0), h32("leaf 0"))],
            compact=(1, [h32("leaf 0")]),
            checkpoint=(1, 1, b"note 1"),
        )
    )
    # warm the read cache with every key the failing commit touches
    assert store.get_states(["a", "new", "gone"]) == {"a": b"1", "new": None, "gone": b"here"}
    assert (store.get_state("a"), store.get_state("new"), store.get_state("gone")) == (
        b"1",
        None,
        b"here",
    )
    before = snapshot(store)
    bad = _failing_commits()[case]
    # the error type is the backend's own (e.g. sqlite3.IntegrityError); what matters is that
    # the commit raises and that nothing of it is visible afterwards
    with pytest.raises(Exception):  # noqa: B017
        store.commit(bad)
    assert snapshot(store) == before
    assert store.get_state("a") == b"1"
    assert store.get_state("new") is None
    assert store.get_state("gone") == b"here"
    assert store.get_states(["a", "new", "gone"]) == {"a": b"1", "new": None, "gone": b"here"}
    assert store.state_at("a", 2) == (1, b"1")
    assert store.block(2) is None
    assert store.known_txs([tid(2, 0), tid(2, 1)]) == set()
    with pytest.raises(KeyError):
        store.get_nodes([node_id(0, 1)])
    assert store.get_nodes([node_id(0, 0)]) == [h32("leaf 0")]
    assert store.compact() == (1, [h32("leaf 0")])
    assert store.checkpoint() == (1, 1, b"note 1")
    # the store is still usable: the corrected block commits
    store.commit(make_commit(2, 1, 2, {"a": b"2", "new": b"x", "gone": None}))
    assert (store.get_state("a"), store.get_state("new"), store.get_state("gone")) == (
        b"2",
        b"x",
        None,
    )


def _big_commit(height: int, first: int, n: int, *, dup_last: bool = False) -> BlockCommit:
    """A block larger than one multi-row INSERT (SQLite writes 500 rows per statement)."""
    ids = [tid(height, i) for i in range(n)]
    if dup_last:
        ids[-1] = ids[3]  # the duplicate sits in the last statement's rows
    writes: dict[str, bytes | None] = {f"k/{height}/{i:05d}": b"v%d" % i for i in range(n + 77)}
    nodes = [(node_id(0, first + i), h32(f"leaf {first + i}")) for i in range(n)]
    return make_commit(height, first, writes=writes, nodes=nodes, tx_ids=ids,
                       compact=(first + n, [h32(f"c{first + n}")]))


def test_a_block_of_many_rows_is_stored_whole(store: Store) -> None:
    init(store)
    store.commit(_big_commit(1, 0, 1234))
    assert [t.tx_id for t in store.txs_range(0, 2000)] == [tid(1, i) for i in range(1234)]
    assert store.get_states(["k/1/00000", "k/1/01310"]) == {"k/1/00000": b"v0",
                                                            "k/1/01310": b"v1310"}
    assert len(store.scan_state("k/1/", limit=5000)) == 1234 + 77
    assert store.get_nodes([node_id(0, 0), node_id(0, 1233)]) == [h32("leaf 0"),
                                                                  h32("leaf 1233")]


def test_a_failing_row_late_in_a_big_block_leaves_no_trace(store: Store) -> None:
    init(store)
    store.commit(make_commit(1, 0, 1, {"a": b"1"}))
    before = snapshot(store)
    with pytest.raises(Exception):  # noqa: B017 - the backend's own integrity error
        store.commit(_big_commit(2, 1, 1234, dup_last=True))
    assert snapshot(store) == before
    assert store.known_txs([tid(2, 0), tid(2, 600)]) == set()
    store.commit(_big_commit(2, 1, 1234))  # the store is still usable
    assert store.head() is not None and store.head().height == 2  # type: ignore[union-attr]


# -- Merkle nodes, compact range, checkpoints ------------------------------------------------------


def test_nodes(store: Store) -> None:
    leaves = [(node_id(0, i), h32(f"leaf {i}")) for i in range(4)]
    inner = [(node_id(1, 0), h32("n1.0")), (node_id(1, 1), h32("n1.1")), (node_id(2, 0), h32("n2"))]
    store.init(GENESIS, make_commit(0, 0, 0, nodes=leaves[:2] + inner[:1]))
    store.commit(make_commit(1, 0, 0, nodes=leaves[2:] + inner[1:]))
    ids = [node_id(2, 0), node_id(0, 3), node_id(0, 0), node_id(1, 1), node_id(0, 3)]
    assert store.get_nodes(ids) == [
        h32("n2"),
        h32("leaf 3"),
        h32("leaf 0"),
        h32("n1.1"),
        h32("leaf 3"),
    ]
    assert store.get_nodes([]) == []
    with pytest.raises(KeyError):
        store.get_nodes([node_id(0, 0), node_id(0, 4)])
    with pytest.raises(KeyError):
        store.get_nodes([node_id(3, 0)])
    assert list(store.node_rows(0)) == [(i, h32(f"leaf {i}")) for i in range(4)]
    assert list(store.node_rows(1)) == [(0, h32("n1.0")), (1, h32("n1.1"))]
    assert list(store.node_rows(2)) == [(0, h32("n2"))]
    assert store.node_range(0, 1, 4) == [h32(f"leaf {i}") for i in range(1, 4)]
    assert store.node_range(1, 0, 2) == [h32("n1.0"), h32("n1.1")]
    assert store.node_range(2, 0, 1) == [h32("n2")] and store.node_range(0, 2, 2) == []
    for level, start, stop in ((0, 2, 5), (1, 1, 3), (3, 0, 1), (2, 0, 2)):
        with pytest.raises(KeyError):
            store.node_range(level, start, stop)
    assert list(store.node_rows(3)) == []


def test_compact_round_trip(store: Store) -> None:
    init(store)
    assert store.compact() == (0, [h32("compact 0")])
    hashes = [h32("x"), h32("y"), h32("z")]
    store.commit(make_commit(1, 0, 7, compact=(7, hashes)))
    assert store.compact() == (7, hashes)
    store.commit(make_commit(2, 7, 1, compact=(8, [h32("eight")])))
    assert store.compact() == (8, [h32("eight")])
    store.commit(make_commit(3, 8, 0, compact=(8, [h32("eight")])))
    assert store.compact() == (8, [h32("eight")])


def test_checkpoints(store: Store) -> None:
    init(store)
    assert store.checkpoint() is None
    store.add_checkpoint(0, 0, b"note 0")
    store.commit(make_commit(1, 0, 2, checkpoint=(2, 1, b"note 2")))
    store.commit(make_commit(2, 2, 3))  # no checkpoint with this block
    store.commit(make_commit(3, 5, 1, checkpoint=(6, 3, b"note 6")))
    assert store.checkpoint() == (6, 3, b"note 6")
    assert store.checkpoint(2) == (2, 1, b"note 2")
    assert store.checkpoint(0) == (0, 0, b"note 0")
    assert store.checkpoint(5) is None
    assert store.checkpoints() == [(0, 0, b"note 0"), (2, 1, b"note 2"), (6, 3, b"note 6")]
    store.add_checkpoint(2, 1, b"note 2, co-signed")  # same size: replaced
    assert store.checkpoint(2) == (2, 1, b"note 2, co-signed")
    assert len(store.checkpoints()) == 3


# -- staged commits --------------------------------------------------------------------------------


def test_staged_block_is_invisible_until_finished(store: Store) -> None:
    init(store, {"a": b"0"})
    c1 = make_commit(1, 0, 2, {"a": b"1"}, checkpoint=(2, 1, b"note 2"))
    finish = store.stage(c1)
    finishing = threading.Event()
    seen: list[tuple[Any, ...]] = []

    def read() -> None:  # may wait for the commit (SQLite in memory) but must not see it early
        got = (store.head(), store.get_state("a"), store.tx(c1.txs[0].tx_id), store.checkpoint())
        seen.append((finishing.is_set(), *got))

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(0.5)
    finishing.set()
    finish()
    reader.join(15)
    assert len(seen) == 1
    finish_called, *got = seen[0]
    before = [store.block(0), b"0", None, None]
    after = [c1.block, b"1", c1.txs[0], (2, 1, b"note 2")]
    assert got == before or (finish_called and got == after), seen
    assert store.head() == c1.block and store.get_state("a") == b"1"
    store.commit(make_commit(2, 2, 1, {"a": b"2"}))  # the next block follows as usual
    assert store.get_state("a") == b"2"


# -- threads and reopening -------------------------------------------------------------------------


def test_reads_from_another_thread_see_committed_data(store: Store) -> None:
    init(store)
    with ThreadPoolExecutor(2) as pool:
        for h in range(1, 4):
            c = make_commit(h, h - 1, 1, {f"k{h}": b"%d" % h, "shared": b"%d" % h})

            def read(c: BlockCommit = c, h: int = h) -> tuple[Any, ...]:
                return (
                    store.head(),
                    store.tx(c.txs[0].tx_id),
                    store.get_state(f"k{h}"),
                    store.get_state("shared"),
                    store.scan_state("k"),
                )

            store.commit(c)
            head, rec, k, shared, scan = pool.submit(read).result()
            assert head == c.block and rec == c.txs[0]
            assert k == b"%d" % h and shared == b"%d" % h
            assert len(scan) == h


def test_readers_during_commits_see_whole_blocks(store: Store) -> None:
    init(store, {"h/0": b"x"})
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        last = 0
        try:
            while not stop.is_set():
                head = store.head()
                assert head is not None
                assert head.height >= last
                last = head.height
                # a block and its writes are one commit: a reader that sees the block sees them
                assert store.get_states([f"h/{head.height}"])[f"h/{head.height}"] is not None
                assert store.tx(tid(head.height, 0)) is not None or head.height == 0
                store.known_txs([tid(head.height, 0)])
                store.scan_state("h/", limit=5)
            seen.append(last)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for h in range(1, 60):
            store.commit(make_commit(h, h - 1, 1, {f"h/{h}": b"x", "n": b"%d" % h}))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors[:1]
    assert len(seen) == 3
    assert store.get_state("n") == b"59"


def test_reopen_sees_everything(backend: Backend) -> None:
    if not backend.persistent:
        pytest.skip(f"{backend.name} does not outlive its store object")
    store = backend.open()
    init(store, {"a": b"0"})
    store.commit(
        make_commit(
            1,
            0,
            2,
            {"a": b"1", "b": b"1"},
            nodes=[
                (node_id(0, 0), h32("l0")),
                (node_id(0, 1), h32("l1")),
                (node_id(1, 0), h32("n")),
            ],
            compact=(2, [h32("n")]),
            checkpoint=(2, 1, b"note"),
        )
    )
    store.commit(make_commit(2, 2, 1, {"b": None}))
    store.add_checkpoint(3, 2, b"note 3")
    before = snapshot(store)
    store.close()
    again = backend.open()
    try:
        assert snapshot(again) == before
        assert again.get_state("a") == b"1" and again.get_state("b") is None
        assert again.state_at("b", 1) == (1, b"1")
        assert again.known_txs([tid(1, 0), tid(2, 0)]) == {tid(1, 0), tid(2, 0)}
        again.commit(make_commit(3, 3, 1, {"c": b"3"}))
        assert again.head() is not None and again.head().height == 3  # type: ignore[union-attr]
        # the opener reopens the same data (e.g. in a verifier's worker process)
        opener = again.opener()
        assert opener is not None
        other = pickle.loads(pickle.dumps(opener))()
        try:
            assert other.get_state("c") == b"3"
        finally:
            other.close()
    finally:
        again.close()


def test_opening_without_create_needs_a_store_there(backend: Backend) -> None:
    assert backend.open_existing is not None
    for _ in range(2):  # the refused open created nothing that would let a second one succeed
        with pytest.raises(StoreError) as exc:
            backend.open_existing()
        assert exc.value.code == Code.NOT_FOUND
    if not backend.persistent:
        return
    store = backend.open()
    init(store, {"a": b"0"})
    store.commit(make_commit(1, 0, 2, {"a": b"1"}))
    before = snapshot(store)
    store.close()
    again = backend.open_existing()
    try:
        assert snapshot(again) == before
    finally:
        again.close()


def test_private_stores_are_independent(backend: Backend) -> None:
    if backend.persistent:
        pytest.skip("only for backends where each open is a fresh private store")
    one, two = backend.open(), backend.open()
    try:
        init(one, {"a": b"1"})
        assert two.genesis() is None and two.get_state("a") is None
        assert one.opener() is None
    finally:
        one.close()
        two.close()


# -- peer-local data and cosignatures --------------------------------------------------------------

SIG_A = "— witness-a AAAAAQ==".encode()
SIG_B = "— witness-b AAAAAg==".encode()


def test_local_values(store: Store) -> None:
    assert store.get_local("witness/last") is None
    store.set_local("witness/last", b"checkpoint 5")  # before the chain exists
    init(store)
    counts = store.row_counts()
    store.set_local("witness/last", b"checkpoint 7")  # replaced
    store.set_local("evidence/\u00e9", b"\x00\xff" * 100)
    store.set_local("empty", b"")
    assert store.get_local("witness/last") == b"checkpoint 7"
    assert store.get_local("evidence/\u00e9") == b"\x00\xff" * 100
    assert store.get_local("empty") == b""
    assert store.get_local("evidence/") is None
    # not ledger data: no row counted, no state key, nothing a ledger reader sees
    assert store.row_counts() == counts
    assert store.get_state("witness/last") is None
    assert store.scan_state("") == [("config", b"genesis config")]
    with ThreadPoolExecutor(1) as pool:  # committed: another thread's connection sees it
        assert pool.submit(store.get_local, "witness/last").result() == b"checkpoint 7"


def test_set_local_is_independent_of_block_commits(store: Store) -> None:
    init(store, {"a": b"0"})
    store.set_local("k", b"before")
    with pytest.raises(StoreError) as err:
        store.commit(make_commit(1, 0, tx_ids=[tid(1, 0), tid(1, 0)]))
    assert err.value.code == "duplicate_tx"
    assert store.get_local("k") == b"before"  # the failed block did not take it with it
    finish = store.stage(make_commit(1, 0, 1, {"a": b"1"}))
    done = threading.Event()

    def record() -> None:  # e.g. the witness, while the node's block commit is in flight
        store.set_local("k", b"during")
        done.set()

    writer = threading.Thread(target=record)
    writer.start()
    time.sleep(0.05)  # let it start while the block is staged (SQLite: it waits for the lock)
    finish()
    writer.join(15)
    assert done.is_set()
    assert store.get_local("k") == b"during"
    assert store.head() is not None and store.head().height == 1  # type: ignore[union-attr]
    assert store.get_state("a") == b"1"
    store.commit(make_commit(2, 1, 1, {"a": b"2"}))
    assert store.get_local("k") == b"during"


def test_cosignatures(store: Store) -> None:
    init(store)
    store.commit(make_commit(1, 0, 2, checkpoint=(2, 1, b"note 2")))
    assert store.cosignatures(2) == {}
    counts = store.row_counts()
    store.add_cosignatures(2, {"witness-b": SIG_B, "witness-a": SIG_A})
    assert store.cosignatures(2) == {"witness-a": SIG_A, "witness-b": SIG_B}
    assert list(store.cosignatures(2)) == ["witness-a", "witness-b"]
    store.add_cosignatures(2, {"witness-a": SIG_A + b"x", "witness-c": b"\xe2\x80\x94 c"})
    assert store.cosignatures(2) == {
        "witness-a": SIG_A + b"x", "witness-b": SIG_B, "witness-c": b"\xe2\x80\x94 c"}
    store.add_cosignatures(2, {})
    assert len(store.cosignatures(2)) == 3
    store.add_cosignatures(7, {"witness-a": SIG_A})
    assert store.cosignatures(7) == {"witness-a": SIG_A}
    assert store.cosignatures(3) == {}
    assert store.row_counts() == counts
    assert store.checkpoint(2) == (2, 1, b"note 2")  # the note itself is untouched


def test_local_data_is_durable_and_survives_reopen(backend: Backend) -> None:
    if not backend.persistent:
        pytest.skip(f"{backend.name} does not outlive its store object")
    store = backend.open()
    try:
        init(store)
        store.set_local("witness/last", b"cp 1")
        store.add_cosignatures(1, {"witness-a": SIG_A, "witness-b": SIG_B})
        # committed when the calls return: a second, independent open sees both at once
        other = backend.open()
        try:
            assert other.get_local("witness/last") == b"cp 1"
            assert other.cosignatures(1) == {"witness-a": SIG_A, "witness-b": SIG_B}
        finally:
            other.close()
    finally:
        store.close()
    again = backend.open()
    try:
        assert again.get_local("witness/last") == b"cp 1"
        assert again.cosignatures(1) == {"witness-a": SIG_A, "witness-b": SIG_B}
        assert again.genesis() == GENESIS
    finally:
        again.close()
