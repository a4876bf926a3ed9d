"""Finality: a checkpoint cosigned by a quorum of the consortium's organisations.

Every organisation runs a witness (:mod:`medledger.ledger.witness`) that cosigns a checkpoint only
after checking it extends everything it cosigned before. A checkpoint is *final* once
``quorum(n) = ⌈2n/3⌉`` distinct organisations of the ``n`` have validly cosigned it (unless a
consortium sets another threshold). A log that showed two histories would need a quorum on both,
so at least ``2⌈2n/3⌉ - n ≥ n/3`` organisations would have cosigned both and equivocated
themselves — and their two cosigned notes are then portable evidence against them
(:mod:`medledger.ledger.equivocation`). Light clients accept only final checkpoints
(:meth:`FinalCheckpoint.verify`).

Counting is lenient on purpose: unknown signers, lines that fail and repeated lines are ignored,
so nobody can make a final checkpoint look non-final by appending lines to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from medledger.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_note,
    key_id,
    parse_body,
    split_note,
)
from medledger.ledger.cosignature import (
    Cosignature,
    WitnessKeys,
    check_cosignatures,
    signature_lines,
)


class FinalityError(CheckpointError):
    """A checkpoint that is not final (``not_final``), has no trusted log signature
    (``no_log_signature``) or is for another log (``wrong_origin``)."""


def quorum(n: int) -> int:
    """``⌈2n/3⌉`` cosigning organisations out of ``n >= 1``."""
    if n < 1:
        raise ValueError(f"a consortium has at least one organisation, got {n}")
    return -(-2 * n // 3)


@dataclass(frozen=True)
class ConsortiumKeys:
    """The public keys a verifier trusts, by organisation id.

    ``log`` keys sign checkpoints as notes (type 0x01, the peer that built the block);
    ``witnesses`` keys cosign them (type 0x04). One organisation may use one key for both.
    """

    log: Mapping[str, bytes]
    witnesses: WitnessKeys = field(default_factory=dict)

    def log_verifiers(self) -> dict[tuple[str, bytes], bytes]:
        return {(name, key_id(name, pk)): pk for name, pk in self.log.items()}


@dataclass(frozen=True)
class Finality:
    """Which organisations validly cosigned ``checkpoint`` and whether that makes it final."""

    checkpoint: Checkpoint
    cosigners: tuple[Cosignature, ...]  # one per organisation, sorted by name
    needed: int

    @property
    def organisations(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cosigners)

    @property
    def final(self) -> bool:
        return len(self.cosigners) >= self.needed


def check_finality(
    body: bytes, lines: Iterable[str | bytes], witnesses: WitnessKeys, needed: int | None = None
) -> Finality:
    """Count the organisations whose cosignature line in ``lines`` verifies over ``body``.

    ``needed`` defaults to ``quorum(len(witnesses))``. Unknown, invalid and repeated signers are
    ignored; lines that are not signature lines make the input malformed.
    """
    cp = parse_body(body)
    want = quorum(len(witnesses)) if needed is None else needed
    text = "".join(signature_lines(lines))
    if not text:
        return Finality(cp, (), want)
    check = check_cosignatures(body + b"\n" + text.encode("utf-8"), witnesses)
    return Finality(cp, tuple(sorted(check.valid, key=lambda c: c.name)), want)


@dataclass(frozen=True)
class FinalCheckpoint:
    """A checkpoint note signed by a trusted log key and cosigned by a quorum of witnesses."""

    checkpoint: Checkpoint
    note: bytes
    log_signers: tuple[str, ...]
    cosigners: tuple[Cosignature, ...]
    needed: int

    @classmethod
    def verify(
        cls,
        note: bytes,
        keys: ConsortiumKeys,
        *,
        origin: str | None = None,
        needed: int | None = None,
    ) -> FinalCheckpoint:
        """Check ``note`` end to end, offline: syntax, at least one valid log signature by a
        ``keys.log`` key, the origin, and ``needed`` (default ``quorum(len(keys.witnesses))``)
        distinct valid cosignatures by ``keys.witnesses``."""
        text, log_signers, _failed = check_note(note, keys.log_verifiers())
        cp = parse_body(text)
        if origin is not None and cp.origin != origin:
            raise FinalityError("wrong_origin", f"origin {cp.origin!r}, want {origin!r}")
        if not log_signers:
            raise FinalityError(
                "no_log_signature", f"none of {len(split_note(note)[1])} lines is a valid "
                f"signature by a log key of {sorted(keys.log)}"
            )
        fin = check_finality(text, _cosignature_lines(note), keys.witnesses, needed)
        if not fin.final:
            raise FinalityError(
                "not_final", f"cosigned by {list(fin.organisations)}, want at least "
                f"{fin.needed} of {sorted(keys.witnesses)}"
            )
        return cls(cp, note, tuple(log_signers), fin.cosigners, fin.needed)


def _cosignature_lines(note: bytes) -> list[str]:
    return [s.line() for s in split_note(note)[1]]
