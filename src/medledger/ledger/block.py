"""Blocks and log leaves.

A block header commits to everything that must be tamper-evident; nothing about a block lives
outside it unhashed (unlike Fabric's block metadata). Header (canonical JSON)::

    {"chain": "demo-1", "height": 7, "log_root": hex, "log_size": 1234,
     "prev": hex (previous block hash; at height 0 the genesis hash), "state_root": hex,
     "time": 1764259200000, "txs": 100, "v": 1, "writes_root": hex}

``log_root``/``log_size`` are the RFC 9162 log over all transactions after this block, so the
header commits to every transaction *and its result*: each log leaf is
``canonical({"height": h, "result": {...}, "tx": tx_id_hex})``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from medledger.crypto import canonical

HEADER_VERSION = 1


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain: str
    height: int
    prev: bytes
    time: int
    txs: int
    log_size: int
    log_root: bytes
    writes_root: bytes
    state_root: bytes

    def to_doc(self) -> dict[str, Any]:
        return {
            "chain": self.chain, "height": self.height, "log_root": self.log_root.hex(),
            "log_size": self.log_size, "prev": self.prev.hex(),
            "state_root": self.state_root.hex(), "time": self.time, "txs": self.txs,
            "v": HEADER_VERSION, "writes_root": self.writes_root.hex(),
        }

    def encode(self) -> bytes:
        return canonical.encode(self.to_doc())

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def decode(cls, raw: bytes) -> BlockHeader:
        """Strict decode; raises CanonicalError/KeyError/ValueError on malformed input."""
        d = canonical.decode(raw)
        if d.get("v") != HEADER_VERSION or len(d) != 10:
            raise ValueError("unknown block header version or fields")
        return cls(
            d["chain"], d["height"], bytes.fromhex(d["prev"]), d["time"], d["txs"],
            d["log_size"], bytes.fromhex(d["log_root"]), bytes.fromhex(d["writes_root"]),
            bytes.fromhex(d["state_root"]),
        )


def result_doc(
    code: str, message: str = "", value: Any = None, events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The result of executing one transaction: ``code`` is ``ok`` or a reason code."""
    return {"code": str(code), "events": events or [], "message": message, "value": value}


def leaf_data(tx_id: bytes, height: int, result: dict[str, Any]) -> bytes:
    """The bytes hashed into the transaction log for one transaction (RFC 9162 leaf input)."""
    return canonical.encode({"height": height, "result": result, "tx": tx_id.hex()})


def leaf_data_raw(tx_id: bytes, height: int, result: bytes) -> bytes:
    """``leaf_data`` from the result's canonical bytes (keys height < result < tx are sorted)."""
    return b'{"height":%d,"result":%s,"tx":"%s"}' % (height, result, tx_id.hex().encode())
