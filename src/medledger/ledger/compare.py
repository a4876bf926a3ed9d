"""Where two stores of the same chain stop agreeing.

``compare`` first compares genesis, then the stored blocks (hash, header bytes, log position)
``CHUNK`` heights at a time up to the lower head. When ``contents`` is set it then compares what
the headers commit to below that point: transactions (id, height, raw bytes, result) ``CHUNK``
log indices at a time, and the history of state writes, streamed from both stores in (height,
key) order. A tampered row therefore shows at its own height even when both headers agree.

One store being shorter is not a divergence. Merkle nodes and checkpoints are not compared:
nodes are derived from the transactions and each peer signs its own checkpoints
(``verify`` checks both against a replay).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from medledger.crypto import canonical
from medledger.errors import MedLedgerError
from medledger.ledger.block import BlockHeader
from medledger.ledger.store.base import Store, StoredBlock, TxRecord

CHUNK = 1_000
HEADER_FIELDS = ("chain", "height", "prev", "time", "txs", "log_size", "log_root",
                 "writes_root", "state_root")
Found = tuple[int, str, tuple[str, ...], str] | None  # (height, part, fields, detail)


@dataclass(frozen=True)
class Divergence:
    """The first height at which two stores differ, and what differs there.

    ``part`` is ``genesis``, ``header`` (header bytes; ``fields`` names the header fields),
    ``hash`` (stored block hash with equal headers), ``block`` (log position columns),
    ``missing_block``, ``txs`` or ``state``.
    """

    height: int
    part: str
    fields: tuple[str, ...]
    detail: str
    a_head: int | None
    b_head: int | None

    def to_doc(self) -> dict[str, Any]:
        return {"height": self.height, "part": self.part, "fields": list(self.fields),
                "detail": self.detail, "a_head": self.a_head, "b_head": self.b_head}


def head_height(store: Store) -> int | None:
    head = store.head()
    return None if head is None else head.height


def compare(a: Store, b: Store, *, contents: bool = True) -> Divergence | None:
    """The first divergence between ``a`` and ``b`` up to the lower of their heads, or None.

    An empty store (no genesis) diverges from nothing. With ``contents=False`` only genesis
    and the blocks are compared (one chunked pass over the block table of each store).
    """
    ha, hb = head_height(a), head_height(b)
    ga, gb = a.genesis(), b.genesis()
    if ga is None or gb is None or ha is None or hb is None:
        return None
    if ga != gb:
        return Divergence(0, "genesis", _doc_diff(ga, gb), "genesis documents differ", ha, hb)
    top = min(ha, hb)
    found = _compare_blocks(a, b, top)
    if contents:
        limit = top if found is None else found[0] - 1
        if limit >= 0:
            found = _first(found, _compare_txs(a, b, limit))
            limit = limit if found is None else min(limit, found[0])
            found = _first(found, _compare_state(a, b, limit))
    if found is None:
        return None
    height, part, fields, detail = found
    return Divergence(height, part, fields, detail, ha, hb)


def _first(one: Found, two: Found) -> Found:
    """The lower of two findings (the earlier one on a tie)."""
    if one is None or (two is not None and two[0] < one[0]):
        return two
    return one


def _compare_blocks(a: Store, b: Store, top: int) -> Found:
    for start in range(0, top + 1, CHUNK):
        stop = min(start + CHUNK, top + 1)
        ba, bb = a.blocks(start, stop), b.blocks(start, stop)
        if ba == bb and len(ba) == stop - start:
            continue
        by_a, by_b = {x.height: x for x in ba}, {x.height: x for x in bb}
        for h in range(start, stop):
            found = _compare_block(h, by_a.get(h), by_b.get(h))
            if found is not None:
                return found
    return None


def _compare_block(h: int, x: StoredBlock | None, y: StoredBlock | None) -> Found:
    if x is None or y is None:
        which = "A" if x is None else "B"
        return h, "missing_block", (), f"{which} has no block {h} below its head"
    if x.header != y.header:
        fields = _header_diff(x.header, y.header)
        return h, "header", fields, f"block {h} headers differ in {', '.join(fields)}"
    if x.hash != y.hash:
        want = hashlib.sha256(x.header).digest()
        bad = [n for n, blk in (("A", x), ("B", y)) if blk.hash != want]
        return h, "hash", ("hash",), (f"block {h} headers are equal but the stored hash of "
                                      f"{' and '.join(bad)} is not the header's SHA-256")
    if x != y:
        fields = tuple(f for f in ("first_index", "tx_count") if getattr(x, f) != getattr(y, f))
        return h, "block", fields, f"block {h} log position differs in {', '.join(fields)}"
    return None


def _header_diff(x: bytes, y: bytes) -> tuple[str, ...]:
    try:
        hx, hy = BlockHeader.decode(x), BlockHeader.decode(y)
    except (MedLedgerError, KeyError, TypeError, ValueError):
        return ("undecodable",)
    return tuple(f for f in HEADER_FIELDS if getattr(hx, f) != getattr(hy, f)) or ("encoding",)


def _doc_diff(x: bytes, y: bytes) -> tuple[str, ...]:
    """Top-level keys whose values differ between two JSON objects (empty if not objects)."""
    try:
        dx, dy = canonical.decode(x), canonical.decode(y)
    except MedLedgerError:
        return ()
    if not isinstance(dx, dict) or not isinstance(dy, dict):
        return ()
    return tuple(sorted(k for k in dx.keys() | dy.keys() if dx.get(k) != dy.get(k)))


def _compare_txs(a: Store, b: Store, limit: int) -> Found:
    """Transactions of blocks 0..limit (whose block rows agree), CHUNK log indices at a time."""
    last = a.block(limit)
    if last is None:
        return None
    end = last.first_index + last.tx_count
    for start in range(0, end, CHUNK):
        stop = min(start + CHUNK, end)
        ta, tb = a.txs_range(start, stop), b.txs_range(start, stop)
        if ta == tb and len(ta) == stop - start:
            continue
        by_a, by_b = {t.index: t for t in ta}, {t.index: t for t in tb}
        for i in range(start, stop):
            detail = _tx_diff(i, by_a.get(i), by_b.get(i))
            if detail is not None:
                fields, text = detail
                return _height_of_index(a, i, limit), "txs", fields, text
    return None


def _tx_diff(i: int, x: TxRecord | None, y: TxRecord | None) -> tuple[tuple[str, ...], str] | None:
    if x is None or y is None:
        if x is y:
            return (), f"neither store has transaction {i} of its blocks"
        return (), f"{'A' if x is None else 'B'} lacks transaction {i}"
    fields = tuple(f for f in ("tx_id", "height", "raw", "result")
                   if getattr(x, f) != getattr(y, f))
    return (fields, f"transaction {i} differs in {', '.join(fields)}") if fields else None


def _height_of_index(store: Store, index: int, limit: int) -> int:
    """The height of the block holding log ``index`` (binary search over agreed blocks)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        blk = store.block(mid)
        if blk is not None and blk.first_index <= index:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _compare_state(a: Store, b: Store, limit: int) -> Found:
    """State writes of blocks 0..limit, streamed from both stores in (height, key) order."""
    with contextlib.closing(_upto(a.state_rows(), limit)) as rows_a, \
            contextlib.closing(_upto(b.state_rows(), limit)) as rows_b:
        return _first_state_difference(rows_a, rows_b)


def _first_state_difference(rows_a: Iterator[tuple[str, int, bytes | None]],
                            rows_b: Iterator[tuple[str, int, bytes | None]]) -> Found:
    for x, y in itertools.zip_longest(rows_a, rows_b):
        if x == y:
            continue
        if x is None or y is None or (x[1], x[0]) != (y[1], y[0]):
            # the first row one store has and the other lacks: the lower in (height, key) order
            if y is None or (x is not None and (x[1], x[0]) < (y[1], y[0])):
                assert x is not None
                return x[1], "state", ("key",), f"B lacks the write of {x[0]!r} at height {x[1]}"
            return y[1], "state", ("key",), f"A lacks the write of {y[0]!r} at height {y[1]}"
        return x[1], "state", ("value",), f"the write of {x[0]!r} at height {x[1]} differs"
    return None


def _upto(rows: Iterator[tuple[str, int, bytes | None]], limit: int,
          ) -> Generator[tuple[str, int, bytes | None], None, None]:
    """Rows up to height ``limit``; closing this closes ``rows`` (e.g. its connection)."""
    try:
        for row in rows:
            if row[1] > limit:
                break
            yield row
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
