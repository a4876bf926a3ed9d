"""Checking a key-history (state) proof offline: "after block h, key K had value V (or none)".

``verify_state_proof(doc, light)`` needs nothing but the proof document
(``medledger.ledger.stateproof``, ADR 0035) and a ``LightClient`` that trusts the consortium's
organisation keys. It checks, and raises ``LightClientError`` unless all hold:

1. the checkpoint note is signed as ``light`` requires (quorum, or finality with witnesses) and
   names exactly one block, ``medledger-block <a> <hash>``;
2. the headers are consecutive blocks ``s .. a`` of this chain, each ``prev`` the hash of the
   one before, and the last one *is* the checkpoint's block: its hash is the named hash and its
   ``log_size``/``log_root`` are the checkpoint's (so every header is bound to the signature);
3. ``s <= height <= a``, and ``height``/``key`` are the ones the caller asked about;
4. with ``written`` = s: the leaf ``encode_write(key, value)`` is in ``writes_root(s)``; with
   ``written`` null: ``s`` is block 0 and ``value`` null;
5. for every block from ``written + 1`` (or 0) to ``height``, exactly in order, ``key`` is not
   in its writes: an empty writes tree, or proven leaves ``k1 < key < k2`` at adjacent indices,
   or the first leaf above ``key``, or the last leaf below it.

Non-membership rests on the block's writes tree being sorted by key, which every honest node
builds and ``medledger verify`` re-derives; the RFC 9162 domain separation of leaves and
interior nodes makes an inclusion proof fix a leaf's real position, so claimed neighbours at
adjacent indices are neighbours.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from medledger.crypto import canonical
from medledger.errors import Code, MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader
from medledger.ledger.checkpoint import Checkpoint
from medledger.ledger.state import encode_write
from medledger.ledger.stateproof import PROOF_TYPE

if TYPE_CHECKING:
    from medledger.client.light import LightClient

_BLOCK_RE = re.compile(r"medledger-block (0|[1-9][0-9]{0,18}) ([0-9a-f]{64})")


@dataclass(frozen=True)
class StateFact:
    """What a verified state proof establishes."""

    key: str
    height: int
    value: bytes | None  # None: no value (never written, or deleted)
    written: int | None  # height of the write that set ``value``; None: never written
    checkpoint: Checkpoint
    anchor: int  # the checkpointed block the headers chain up to
    blocks: int  # headers checked


def _fail(message: str) -> NoReturn:
    from medledger.client.light import LightClientError

    raise LightClientError(Code.VERIFY_FAILED, f"state proof: {message}")


def _malformed(message: str) -> NoReturn:
    from medledger.client.light import LightClientError

    raise LightClientError(Code.BAD_PROOF_REQUEST, f"state proof: {message}")


def _int(value: Any, what: str, low: int = 0) -> int:
    if type(value) is not int or value < low:
        _malformed(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def _str(value: Any, what: str) -> str:
    if type(value) is not str:
        _malformed(f"{what} must be a string, got {type(value).__name__}")
    return value


def _value(value: Any, what: str) -> bytes | None:
    if value is None:
        return None
    text = _str(value, what)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        _malformed(f"{what} is not standard base64")
    if base64.b64encode(raw).decode("ascii") != text:
        _malformed(f"{what} is not canonical base64")
    return raw


def _hashes(value: Any, what: str) -> list[bytes]:
    if type(value) is not list:
        _malformed(f"{what} must be a list of hex hashes")
    try:
        out = [bytes.fromhex(_str(h, what)) for h in value]
    except ValueError:
        _malformed(f"{what} holds a hash that is not hex")
    return out


def _header(doc: Any, i: int) -> BlockHeader:
    if type(doc) is not dict:
        _malformed(f"headers[{i}] must be an object")
    try:
        return BlockHeader.decode(canonical.encode(doc))
    except (MedLedgerError, KeyError, ValueError, TypeError) as exc:
        _malformed(f"headers[{i}] is not a block header: {exc}")


def _included(leaf: bytes, proof: Mapping[str, Any], size: int, root: bytes, what: str) -> int:
    index = _int(proof.get("index"), f"{what} index")
    hashes = _hashes(proof.get("hashes"), f"{what} hashes")
    try:
        merkle.verify_inclusion(leaf, index, size, hashes, root)
    except merkle.ProofError as exc:
        _fail(f"{what}: {exc}")
    return index


def _neighbour(entry: Mapping[str, Any], side: str, size: int, root: bytes,
               h: int) -> tuple[str, int] | None:
    doc = entry.get(side)
    if doc is None:
        return None
    if type(doc) is not dict:
        _malformed(f"block {h} {side} must be an object or null")
    what = f"block {h} {side} neighbour"
    key = _str(doc.get("key"), f"{what} key")
    value = _value(doc.get("value"), f"{what} value")
    index = _included(merkle.leaf_hash(encode_write(key, value)), doc, size, root, what)
    return key, index


def check_absent(key: str, entry: Mapping[str, Any], header: BlockHeader) -> None:
    """Raise unless ``entry`` proves ``key`` is not among the writes of ``header``'s block."""
    h, root = header.height, header.writes_root
    size = _int(entry.get("size"), f"block {h} size")
    if size == 0:
        if entry.get("left") is not None or entry.get("right") is not None:
            _malformed(f"block {h}: an empty writes tree has no neighbours")
        if root != merkle.EMPTY_ROOT:
            _fail(f"block {h} wrote something (writes_root {root.hex()} is not the empty tree)")
        return
    left = _neighbour(entry, "left", size, root, h)
    right = _neighbour(entry, "right", size, root, h)
    if left is None and right is None:
        _malformed(f"block {h}: a non-empty writes tree needs a neighbour")
    if left is not None and not left[0] < key:
        _fail(f"block {h}: left neighbour {left[0]!r} does not sort below {key!r}")
    if right is not None and not key < right[0]:
        _fail(f"block {h}: right neighbour {right[0]!r} does not sort above {key!r}")
    if left is None and right is not None and right[1] != 0:
        _fail(f"block {h}: no left neighbour, but the right one is leaf {right[1]}, not 0")
    if right is None and left is not None and left[1] != size - 1:
        _fail(f"block {h}: no right neighbour, but the left one is leaf {left[1]}, not the "
              f"last ({size - 1})")
    if left is not None and right is not None and right[1] != left[1] + 1:
        _fail(f"block {h}: neighbours are leaves {left[1]} and {right[1]}, not adjacent")


def verify_state_proof(
    doc: Mapping[str, Any],
    light: LightClient,
    *,
    key: str | None = None,
    height: int | None = None,
) -> StateFact:
    """Check a state proof document (see the module doc); with ``key``/``height`` also that
    it is about that key at that height. Returns what it proves."""
    if not isinstance(doc, Mapping) or doc.get("type") != PROOF_TYPE:
        _malformed(f"not a {PROOF_TYPE} document")
    if doc.get("chain") != light.chain_id:
        _fail(f"proof is for chain {doc.get('chain')!r}, want {light.chain_id!r}")
    k = _str(doc.get("key"), "key")
    h = _int(doc.get("height"), "height")
    if key is not None and k != key:
        _fail(f"proof is about key {k!r}, want {key!r}")
    if height is not None and h != height:
        _fail(f"proof is about height {h}, want {height}")
    value = _value(doc.get("value"), "value")
    written_raw = doc.get("written")
    written = None if written_raw is None else _int(written_raw, "written")
    raw_headers = doc.get("headers")
    if type(raw_headers) is not list or not raw_headers:
        _malformed("headers must be a non-empty list")
    headers = [_header(d, i) for i, d in enumerate(raw_headers)]
    absent = doc.get("absent")
    if type(absent) is not list:
        _malformed("absent must be a list")

    cp = light.checkpoint(_str(doc.get("checkpoint"), "checkpoint").encode("utf-8"))
    named = [m for e in cp.extensions if (m := _BLOCK_RE.fullmatch(e))]
    if len(named) != 1 or sum(e.startswith("medledger-block ") for e in cp.extensions) != 1:
        _fail("the checkpoint does not name exactly one block")
    anchor, anchor_hash = int(named[0].group(1)), bytes.fromhex(named[0].group(2))

    start = headers[0].height
    for i, hd in enumerate(headers):
        if hd.chain != light.chain_id:
            _fail(f"header {hd.height} is of chain {hd.chain!r}, want {light.chain_id!r}")
        if hd.height != start + i:
            _fail(f"headers[{i}] is block {hd.height}, want {start + i} (a block is missing)")
        if i and hd.prev != headers[i - 1].hash:
            _fail(f"block {hd.height}'s prev is not the hash of block {hd.height - 1}")
    last = headers[-1]
    if last.height != anchor or last.hash != anchor_hash:
        _fail(f"the headers end at block {last.height} ({last.hash.hex()[:16]}…), the "
              f"checkpoint names block {anchor} ({anchor_hash.hex()[:16]}…)")
    if (last.log_size, last.log_root) != (cp.size, cp.root):
        _fail(f"block {anchor}'s log ({last.log_size}, {last.log_root.hex()[:16]}…) is not the "
              f"checkpoint's ({cp.size}, {cp.root.hex()[:16]}…)")
    if not start <= h <= anchor:
        _fail(f"height {h} is outside the headers {start}..{anchor}")

    write = doc.get("write")
    if written is None:
        if start != 0:
            _fail(f"a key never written must be proven absent from block 0, not {start}")
        if value is not None or write is not None:
            _fail("a key never written has no value and no write proof")
        first_absent = 0
    else:
        if written != start:
            _fail(f"written {written} is not the first header's height {start}")
        if type(write) is not dict:
            _malformed("write must be an object when written is set")
        size = _int(write.get("size"), "write size", low=1)
        _included(merkle.leaf_hash(encode_write(k, value)), write, size, headers[0].writes_root,
                  f"write of {k!r} in block {written}")
        first_absent = written + 1
    want = list(range(first_absent, h + 1))
    got = [e.get("height") if type(e) is dict and type(e.get("height")) is int else None
           for e in absent]
    if got != want:
        _fail(f"non-membership proofs cover blocks {got[:3]}…, want exactly {first_absent}..{h}")
    for entry in absent:
        check_absent(k, entry, headers[entry["height"] - start])
    return StateFact(k, h, value, written, cp, anchor, len(headers))
