"""Proof of equivocation: two signed checkpoints of one log that cannot both be honest.

For one origin, two checkpoints *conflict* (:func:`conflict`) when they have

* ``same_size`` — the same tree size and different root hashes (an RFC 9162 tree of a given size
  has one root, so one of the two histories was rewritten);
* ``same_height`` — the same ``medledger-block <height> <block hash hex>`` height and a different
  block hash, size or root (one height, two blocks);
* ``height_order`` — a smaller size with a later block height (on an honest chain the log only
  grows with the height).

:class:`Equivocation` holds the two signed notes, signature lines included, and serialises to
canonical JSON (ADR 0002)::

    {"a": "<note>", "b": "<note>", "kind": "same_height", "origin": "medledger/…",
     "type": "medledger/equivocation/v1"}

with ``a`` before ``b`` in a fixed order, so one pair always gives the same bytes. Anyone holding
the consortium's public keys checks it offline with :func:`verify_equivocation`, which names who
signed (as log) or cosigned (as witness) each side. :func:`first_divergent_height` locates where
two peers' chains part.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medledger.crypto import canonical
from medledger.crypto.canonical import CanonicalError
from medledger.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_note,
    parse_body,
    split_note,
)
from medledger.ledger.cosignature import check_cosignatures
from medledger.ledger.finality import ConsortiumKeys

if TYPE_CHECKING:
    from medledger.ledger.store.base import Store

EVIDENCE_TYPE = "medledger/equivocation/v1"
KINDS = ("same_size", "same_height", "height_order")
_BLOCK_RE = re.compile(r"medledger-block (0|[1-9][0-9]{0,18}) ([0-9a-f]{64})")


class EquivocationError(CheckpointError):
    """Evidence that is malformed (``bad_evidence``), whose notes do not conflict
    (``not_conflicting``) or whose side is signed by no trusted key (``unsigned_side``)."""


def block_ref(cp: Checkpoint) -> tuple[int, bytes] | None:
    """``(height, block hash)`` from the one ``medledger-block`` extension line, else None."""
    refs = [m for e in cp.extensions if (m := _BLOCK_RE.fullmatch(e))]
    if len(refs) != 1 or sum(e.startswith("medledger-block ") for e in cp.extensions) != 1:
        return None
    return int(refs[0][1]), bytes.fromhex(refs[0][2])


def conflict(a: Checkpoint, b: Checkpoint) -> str | None:
    """The kind of conflict between two checkpoints of one origin (see module doc), or None."""
    if a.origin != b.origin:
        return None
    if a.size == b.size and a.root != b.root:
        return "same_size"
    ra, rb = block_ref(a), block_ref(b)
    if ra is None or rb is None:
        return None
    if ra[0] == rb[0]:
        return None if (ra[1], a.size, a.root) == (rb[1], b.size, b.root) else "same_height"
    if (a.size - b.size) * (ra[0] - rb[0]) < 0:
        return "height_order"
    return None


def _order_key(cp: Checkpoint, body: bytes) -> tuple[int, int, bytes]:
    ref = block_ref(cp)
    return cp.size, -1 if ref is None else ref[0], body


@dataclass(frozen=True)
class Equivocation:
    """Two signed notes for one ``origin`` that conflict in the way ``kind`` says."""

    origin: str
    kind: str
    a: bytes
    b: bytes

    @classmethod
    def from_notes(cls, note1: bytes, note2: bytes) -> Equivocation:
        """Evidence from two signed notes (in either order); ``not_conflicting`` otherwise.

        Signatures are not checked here: :func:`verify_equivocation` does that.
        """
        (c1, t1), (c2, t2) = _parse(note1), _parse(note2)
        kind = conflict(c1, c2)
        if kind is None:
            raise EquivocationError(
                "not_conflicting", f"{_describe(c1)} and {_describe(c2)} can both be honest"
            )
        if _order_key(c2, t2) < _order_key(c1, t1):
            note1, note2 = note2, note1
        return cls(c1.origin, kind, note1, note2)

    @property
    def checkpoints(self) -> tuple[Checkpoint, Checkpoint]:
        return _parse(self.a)[0], _parse(self.b)[0]

    def to_json(self) -> bytes:
        return canonical.encode(
            {"a": self.a.decode("utf-8"), "b": self.b.decode("utf-8"), "kind": self.kind,
             "origin": self.origin, "type": EVIDENCE_TYPE}
        )

    @classmethod
    def from_json(cls, data: bytes) -> Equivocation:
        """Strict inverse of :meth:`to_json`: canonical bytes, exact fields, consistent kind,
        origin and order (re-deriving the evidence from its notes gives it back)."""
        try:
            doc: Any = canonical.decode(data)
        except CanonicalError as exc:
            raise EquivocationError("bad_evidence", f"not canonical JSON: {exc}") from None
        fields = {"a", "b", "kind", "origin", "type"}
        if not isinstance(doc, dict) or set(doc) != fields or doc["type"] != EVIDENCE_TYPE:
            raise EquivocationError("bad_evidence", f"want an object with fields {sorted(fields)}"
                                    f" and type {EVIDENCE_TYPE!r}")
        if not all(isinstance(doc[k], str) for k in fields):
            raise EquivocationError("bad_evidence", "every field must be a string")
        again = cls.from_notes(doc["a"].encode("utf-8"), doc["b"].encode("utf-8"))
        if again != cls(doc["origin"], doc["kind"], doc["a"].encode(), doc["b"].encode()):
            raise EquivocationError(
                "bad_evidence", f"stated {doc['kind']}/{doc['origin']!r} or order does not "
                f"match the notes ({again.kind}/{again.origin!r})"
            )
        return again

    @property
    def height(self) -> int | None:
        """The height the chains differ at (``same_height``) or at or before (other kinds: the
        lower block height of the two); None when a note has no ``medledger-block`` line."""
        refs = [block_ref(cp) for cp in self.checkpoints]
        heights = [r[0] for r in refs if r is not None]
        return min(heights) if len(heights) == 2 else None

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the canonical JSON: a stable name for this piece of evidence."""
        return hashlib.sha256(self.to_json()).hexdigest()

    def describe(self) -> str:
        ca, cb = self.checkpoints
        return f"{self.origin}: {self.kind}: {_describe(ca)} vs {_describe(cb)}"


@dataclass(frozen=True)
class Side:
    """One note of the evidence: its checkpoint, who signed it as log, who cosigned it."""

    checkpoint: Checkpoint
    log_signers: tuple[str, ...]
    cosigners: tuple[str, ...]


@dataclass(frozen=True)
class EquivocationReport:
    origin: str
    kind: str
    a: Side
    b: Side

    @property
    def signed_both(self) -> tuple[str, ...]:
        """Organisations whose key signed or cosigned both sides: each of them equivocated."""
        def names(s: Side) -> set[str]:
            return set(s.log_signers) | set(s.cosigners)

        return tuple(sorted(names(self.a) & names(self.b)))


def verify_equivocation(
    evidence: Equivocation | bytes, keys: ConsortiumKeys
) -> EquivocationReport:
    """Check evidence independently: it parses, the notes really conflict, and each note carries
    at least one valid signature (log key) or cosignature (witness key) from ``keys``.

    Invalid or unknown signature lines are ignored, not fatal: they prove nothing either way.
    """
    ev = Equivocation.from_json(evidence) if isinstance(evidence, bytes) else evidence
    again = Equivocation.from_notes(ev.a, ev.b)
    if (again.kind, again.origin) != (ev.kind, ev.origin):
        raise EquivocationError("bad_evidence", f"stated {ev.kind}, notes show {again.kind}")
    sides = []
    for label, note in (("a", ev.a), ("b", ev.b)):
        text, log_signers, _ = check_note(note, keys.log_verifiers())
        cosigners = tuple(c.name for c in check_cosignatures(note, keys.witnesses).valid)
        if not log_signers and not cosigners:
            raise EquivocationError(
                "unsigned_side", f"note {label} has no valid signature by a consortium key"
            )
        sides.append(Side(parse_body(text), tuple(log_signers), cosigners))
    return EquivocationReport(ev.origin, ev.kind, sides[0], sides[1])


def peer_evidence_key(org: str) -> str:
    """Where a cluster peer keeps the evidence against ``org`` in its store's local table
    (written before the alarm is shown; one piece per organisation, the first found)."""
    return f"equivocation/{org}"


def kept_evidence(store: Store, orgs: Iterable[str], origin: str) -> dict[str, bytes]:
    """The evidence a peer's store holds (canonical JSON), labelled: by the organisation whose
    checkpoint disagreed with this peer's, and ``witness:<origin>`` for what its witness kept
    when a log presented a checkpoint conflicting with one it had cosigned."""
    from medledger.ledger.witness import evidence_key as witness_evidence_key

    found = {org: store.get_local(peer_evidence_key(org)) for org in sorted(orgs)}
    found[f"witness:{origin}"] = store.get_local(witness_evidence_key(origin))
    return {label: ev for label, ev in found.items() if ev is not None}


def report_doc(report: EquivocationReport, evidence: Equivocation) -> dict[str, Any]:
    """A verified report as JSON: the conflict, where the chains part, and who signed or
    cosigned each side (``signed_both``: organisations whose keys are on both sides)."""
    def side(s: Side) -> dict[str, Any]:
        ref = block_ref(s.checkpoint)
        return {"size": s.checkpoint.size, "root": s.checkpoint.root.hex(),
                "block": None if ref is None else {"height": ref[0], "hash": ref[1].hex()},
                "log_signers": list(s.log_signers), "cosigners": list(s.cosigners)}

    return {"origin": report.origin, "kind": report.kind, "height": evidence.height,
            "digest": evidence.digest, "a": side(report.a), "b": side(report.b),
            "signed_both": list(report.signed_both)}


def first_divergent_height(
    mine: Mapping[int, bytes], theirs: Mapping[int, bytes]
) -> int | None:
    """The lowest height both sides know whose values (checkpoint bodies or block hashes)
    differ, or None when they agree on every height they share. A height only one side has is
    not a divergence: that side is ahead, or missing data."""
    for height in sorted(mine.keys() & theirs.keys()):
        if mine[height] != theirs[height]:
            return height
    return None


def _parse(note: bytes) -> tuple[Checkpoint, bytes]:
    text = split_note(note)[0]
    return parse_body(text), text


def _describe(cp: Checkpoint) -> str:
    ref = block_ref(cp)
    where = "" if ref is None else f" block {ref[0]} {ref[1].hex()[:16]}"
    return f"size {cp.size} root {cp.root.hex()[:16]}{where}"
