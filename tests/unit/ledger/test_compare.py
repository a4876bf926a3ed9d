"""``compare``: the first height at which two stores of one chain differ, on chains built by real
nodes. Store B starts as a byte-for-byte copy of A (SQLite backup) and is then tampered with at a
known height through raw SQL, as an attacker or a broken disk would."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import Consortium, Ledger, make_consortium

from medledger.ledger import compare as compare_mod
from medledger.ledger.compare import Divergence, compare
from medledger.ledger.store.sqlite import SQLiteStore

HEIGHT = 12


@pytest.fixture
def chain(ledger: Ledger) -> Ledger:
    ledger.advance_to(HEIGHT)
    return ledger


@pytest.fixture
def copy_of(tmp_path: Path) -> Iterator[Callable[[Ledger], tuple[SQLiteStore, Path]]]:
    opened: list[SQLiteStore] = []

    def copy(ledger: Ledger) -> tuple[SQLiteStore, Path]:
        src = ledger.store
        assert isinstance(src, SQLiteStore) and src.path is not None
        dst = tmp_path / f"copy-{len(opened)}.db"
        with sqlite3.connect(src.path) as a, sqlite3.connect(dst) as b:
            a.backup(b)  # a consistent snapshot, WAL included
        opened.append(SQLiteStore(dst))
        return opened[-1], dst

    yield copy
    for s in opened:
        s.close()


def _sql(path: Path, query: str, params: tuple[object, ...] = ()) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute(query, params).rowcount == 1


def test_copies_agree_and_a_shorter_store_is_no_divergence(chain: Ledger, copy_of: Callable[
        [Ledger], tuple[SQLiteStore, Path]]) -> None:
    same, _ = copy_of(chain)
    assert compare(chain.store, same) is None
    chain.advance_to(HEIGHT + 3)  # the copy is now 3 blocks behind, but agrees below
    assert compare(chain.store, same) is None and compare(same, chain.store) is None
    assert compare_mod.head_height(chain.store) == HEIGHT + 3
    assert compare_mod.head_height(same) == HEIGHT


@pytest.mark.parametrize("chunk", [1000, 4, 1])
def test_tampered_state_row_is_found_at_its_height(
        chain: Ledger, copy_of: Callable[[Ledger], tuple[SQLiteStore, Path]],
        monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(compare_mod, "CHUNK", chunk)
    store, path = copy_of(chain)
    key, height, _ = next(r for r in chain.store.state_rows() if r[1] == 7)
    _sql(path, "UPDATE state SET value = CAST(? AS BLOB) WHERE key = ? AND height = ?",
         (b'{"forged":true}', key, height))
    d = compare(chain.store, store)
    assert d is not None and (d.height, d.part, d.fields) == (7, "state", ("value",))
    assert key in d.detail and (d.a_head, d.b_head) == (HEIGHT, HEIGHT)
    # the headers are untouched: a headers-only comparison cannot see it
    assert compare(chain.store, store, contents=False) is None


def test_extra_state_row_is_found_at_its_height(
        chain: Ledger, copy_of: Callable[[Ledger], tuple[SQLiteStore, Path]]) -> None:
    store, path = copy_of(chain)
    _sql(path, "INSERT INTO state VALUES ('consortium/member/evil/x', 5, X'7B7D')")
    d = compare(chain.store, store)
    assert d is not None and (d.height, d.part) == (5, "state")
    assert "A lacks" in d.detail and "evil" in d.detail
    assert compare(store, chain.store) == Divergence(5, "state", ("key",), d.detail.replace(
        "A lacks", "B lacks"), HEIGHT, HEIGHT)


@pytest.mark.parametrize("chunk", [1000, 5, 1])
def test_tampered_header_names_the_field(
        chain: Ledger, copy_of: Callable[[Ledger], tuple[SQLiteStore, Path]],
        monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(compare_mod, "CHUNK", chunk)
    store, path = copy_of(chain)
    blk = chain.store.block(9)
    assert blk is not None
    doc = json.loads(blk.header)
    doc["state_root"] = "00" * 32
    doc["time"] += 1
    forged = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    _sql(path, "UPDATE blocks SET header = ? WHERE height = 9", (forged,))
    d = compare(chain.store, store)
    assert d is not None and (d.height, d.part) == (9, "header")
    assert d.fields == ("time", "state_root")
    assert compare(chain.store, store, contents=False) == d


def test_tampered_hash_and_missing_block(
        chain: Ledger, copy_of: Callable[[Ledger], tuple[SQLiteStore, Path]]) -> None:
    store, path = copy_of(chain)
    _sql(path, "UPDATE blocks SET hash = zeroblob(32) WHERE height = 4")
    d = compare(chain.store, store)
    assert d is not None and (d.height, d.part) == (4, "hash") and "of B is not" in d.detail
    other, path2 = copy_of(chain)
    _sql(path2, "DELETE FROM blocks WHERE height = 6")
    d = compare(chain.store, other)
    assert d is not None and (d.height, d.part) == (6, "missing_block")


@pytest.mark.parametrize("chunk", [1000, 2])
def test_tampered_transaction_is_found_in_its_block(
        chain: Ledger, copy_of: Callable[[Ledger], tuple[SQLiteStore, Path]],
        monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(compare_mod, "CHUNK", chunk)
    store, path = copy_of(chain)
    blk = chain.store.block(8)
    assert blk is not None and blk.tx_count >= 1
    _sql(path, "UPDATE txs SET result = CAST(? AS BLOB) WHERE idx = ?",
         (b'{"code":"ok","forged":1}', blk.first_index))
    d = compare(chain.store, store)
    assert d is not None and (d.height, d.part, d.fields) == (8, "txs", ("result",))
    # a later tampered header does not hide the earlier difference
    _sql(path, "UPDATE blocks SET header = CAST('{}' AS BLOB) WHERE height = 10")
    d = compare(chain.store, store)
    assert d is not None and (d.height, d.part) == (8, "txs")
    # an earlier header difference wins over it
    _sql(path, "UPDATE blocks SET header = CAST('{}' AS BLOB) WHERE height = 3")
    d = compare(chain.store, store)
    assert d is not None and (d.height, d.part, d.fields) == (3, "header", ("undecodable",))


def test_different_genesis_diverges_at_0(
        chain: Ledger, make_ledger: Callable[[Consortium], Ledger]) -> None:
    other = make_ledger(make_consortium({"key_expiry_warning_ms": 1}))
    other.advance_to(2)
    d = compare(chain.store, other.store)
    assert d is not None and (d.height, d.part) == (0, "genesis")
    assert "policies" in d.fields and (d.a_head, d.b_head) == (HEIGHT, 2)


def test_an_empty_store_diverges_from_nothing(chain: Ledger, tmp_path: Path) -> None:
    empty = SQLiteStore(tmp_path / "empty.db")
    try:
        assert compare(chain.store, empty) is None and compare(empty, empty) is None
    finally:
        empty.close()
