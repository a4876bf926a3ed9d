"""Block commit rate of the store backends, measured in one run on the same prepared blocks.

Each block holds ``--txs`` transactions of ~350-byte raw bytes with a ~50-byte result, one
~200-byte state write per transaction and ~2 Merkle nodes per transaction (leaves and inner
nodes), plus a checkpoint note: roughly what a node's ``store.commit`` receives. Only ``commit``
is timed. Backends: SQLite (WAL, synchronous=FULL, a file in a temporary directory), PostgreSQL
with binary COPY (the store as shipped) and, for comparison, PostgreSQL with ``executemany``
(pipeline mode) instead of COPY. PostgreSQL runs in a fresh schema that is dropped afterwards.

    .venv/bin/python bench/store_backends.py [--blocks 30] [--txs 1000] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from medledger.ledger.merkle import node_id
from medledger.ledger.store.base import BlockCommit, Store, StoredBlock, TxRecord
from medledger.ledger.store.postgres import PostgresStore
from medledger.ledger.store.sqlite import SQLiteStore

DEFAULT_DSN = os.environ.get("MEDLEDGER_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=root")
RESULT = b'{"code":"ok","events":[],"message":"","value":null}'


class ExecutemanyPostgresStore(PostgresStore):
    """The PostgreSQL store with its bulk rows sent by ``executemany`` (psycopg pipelines it)."""

    def _insert_rows(self, cur: psycopg.Cursor[tuple[Any, ...]], table: str,
                     types: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        marks = sql.SQL(", ").join(sql.Placeholder() * len(types))
        query = sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(table), marks)
        cur.executemany(query, list(rows))


def make_blocks(count: int, txs: int) -> list[BlockCommit]:
    """Block 0 (empty) and ``count`` blocks of ``txs`` transactions each."""
    blocks = [BlockCommit(StoredBlock(0, b"\0" * 32, b"{}", 0, 0), [], {"config": b"{}"}, [],
                          (0, []))]
    for h in range(1, count + 1):
        first = (h - 1) * txs
        recs: list[TxRecord] = []
        writes: dict[str, bytes | None] = {}
        for i in range(first, first + txs):
            raw = (b'{"body":{"n":%d},"pad":"' % i).ljust(348, b"x") + b'"}'
            recs.append(TxRecord(i, hashlib.sha256(raw).digest(), h, raw, RESULT))
            writes[f"registry/record/{i:012d}"] = b"v" * 200
        nodes = [(node_id(level, j), hashlib.sha256(b"%d %d" % (level, j)).digest())
                 for level in range(11) for j in range(first >> level, (first + txs) >> level)]
        header = b'{"height":%d}' % h
        block = StoredBlock(h, hashlib.sha256(header).digest(), header, first, txs)
        blocks.append(BlockCommit(block, recs, writes, nodes,
                                  (first + txs, [hashlib.sha256(b"%d" % h).digest()]),
                                  (first + txs, h, b"note %d" % h)))
    return blocks


def run(name: str, store: Store, blocks: list[BlockCommit]) -> tuple[str, float, float]:
    store.init(b"{}", blocks[0])
    per_block = []
    for bc in blocks[1:]:
        t0 = time.perf_counter()
        store.commit(bc)
        per_block.append(time.perf_counter() - t0)
    txs = sum(len(bc.txs) for bc in blocks)
    assert store.row_counts()["txs"] == txs, "rows missing"
    store.close()
    return name, txs / sum(per_block), statistics.median(per_block) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=30)
    ap.add_argument("--txs", type=int, default=1000)
    ap.add_argument("--dsn", default=DEFAULT_DSN)
    args = ap.parse_args()
    blocks = make_blocks(args.blocks, args.txs)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run("sqlite", SQLiteStore(Path(tmp) / "bench.db"), blocks))
    backends: list[tuple[str, Callable[[str, str], Store]]] = [
        ("postgres (COPY)", PostgresStore), ("postgres (executemany)", ExecutemanyPostgresStore)]
    for name, cls in backends:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        try:
            results.append(run(name, cls(args.dsn, schema), blocks))
        finally:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)))
    print(f"{args.blocks} blocks x {args.txs} txs (~350-byte raw), commit() only")
    for name, rate, median_ms in results:
        print(f"  {name:<24} {rate:>9,.0f} tx/s   median {median_ms:6.1f} ms/block")


if __name__ == "__main__":
    main()
