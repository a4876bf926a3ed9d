"""What travels through the cluster's ordering service, and the names it travels under.

Two JetStream streams per chain (R3 in a cluster):

* ``ML_<chain>_TXS`` (subject ``medledger.<chain>.txs``): submitted transactions. A message is
  one or more canonical wire transactions joined by ``\\n`` — canonical JSON never contains a raw
  newline byte, so the framing is unambiguous. ``Nats-Msg-Id`` is the tx id (one tx) or the
  SHA-256 of the concatenated tx ids (a batch), so a retried submission is stored once.
* ``ML_<chain>_BLOCKS`` (subject ``medledger.<chain>.blocks``): block cuts. Message *h* is block
  *h*: it names a contiguous range of TXS sequence numbers, the digest of those messages' bytes
  (``range_digest``) and the block time. A peer executes a range only if it hashes to the
  digest, so a peer served a different copy of the range (a stale or diverged replica) stalls
  and re-reads instead of forking (ADR 0060). The sequencer
  appends with ``Nats-Expected-Last-Sequence: h-1``, so a deposed sequencer cannot append.
  ``Nats-Msg-Id`` is the hash of the message, so a retry of the same cut is idempotent while a
  different cut for the same height is fenced, not silently deduplicated.
* ``ML_<chain>_COSIG`` (subjects ``medledger.<chain>.cosig.<org>``): each peer's signed
  checkpoint with its witness cosignature, one message per block.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from medledger.crypto import canonical
from medledger.errors import Code, MedLedgerError

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Names:
    chain: str

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.chain):
            raise ValueError(f"chain id {self.chain!r} cannot name a stream "
                             "(letters, digits, '-' and '_' only)")

    @property
    def txs_stream(self) -> str:
        return f"ML_{self.chain}_TXS"

    @property
    def txs_subject(self) -> str:
        return f"medledger.{self.chain}.txs"

    @property
    def blocks_stream(self) -> str:
        return f"ML_{self.chain}_BLOCKS"

    @property
    def blocks_subject(self) -> str:
        return f"medledger.{self.chain}.blocks"

    @property
    def cosig_stream(self) -> str:
        return f"ML_{self.chain}_COSIG"

    def cosig_subject(self, org: str = "*") -> str:
        return f"medledger.{self.chain}.cosig.{org}"

    @property
    def lease_bucket(self) -> str:
        return f"ml_{self.chain}_sequencer"

    @property
    def lease_stream(self) -> str:
        """The stream JetStream keeps the lease bucket in."""
        return f"KV_{self.lease_bucket}"


def frame_txs(raws: Sequence[bytes]) -> bytes:
    for raw in raws:
        if b"\n" in raw or not raw:
            raise MedLedgerError(Code.BAD_ENVELOPE, "a wire transaction cannot hold a newline")
    return b"\n".join(raws)


def unframe_txs(payload: bytes) -> list[bytes]:
    return payload.split(b"\n") if payload else []


def txs_msg_id(tx_ids: Sequence[bytes]) -> str:
    if len(tx_ids) == 1:
        return tx_ids[0].hex()
    return "batch-" + hashlib.sha256(b"".join(tx_ids)).hexdigest()


def range_digest(datas: Iterable[bytes]) -> str:
    """SHA-256 (hex) over a run of TXS messages' bytes, each preceded by its length (4 bytes,
    big-endian), so the digest pins both the messages and where each one ends."""
    h = hashlib.sha256()
    for data in datas:
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.hexdigest()


EMPTY_RANGE = range_digest(())
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BlockCut:
    """Block ``height`` holds the TXS messages ``first..last`` (inclusive) at ``time`` (Unix ms);
    ``digest`` is ``range_digest`` of those messages as the sequencer read them.

    ``first == last + 1`` is an empty block (not cut by an honest sequencer, but well defined).
    """

    first: int
    last: int
    time: int
    by: str  # the sequencer that cut it (informational; peers check everything themselves)
    digest: str

    def encode(self) -> bytes:
        return canonical.encode({"v": 2, "first": self.first, "last": self.last,
                                 "time": self.time, "by": self.by, "txs_sha256": self.digest})

    @property
    def msg_id(self) -> str:
        return "cut-" + hashlib.sha256(self.encode()).hexdigest()

    @classmethod
    def decode(cls, raw: bytes) -> BlockCut:
        try:
            doc = orjson.loads(raw)
            cut = cls(int(doc["first"]), int(doc["last"]), int(doc["time"]), str(doc["by"]),
                      str(doc["txs_sha256"]))
            ok = doc.get("v") == 2 and canonical.encode(doc) == raw
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, MedLedgerError):
            ok = False
        if not ok or cut.first < 1 or cut.last < cut.first - 1 or cut.time < 0 or \
                not _HEX64.fullmatch(cut.digest):
            raise MedLedgerError(Code.ORDERING_FAULT, f"malformed block cut: {raw[:80]!r}")
        return cut
