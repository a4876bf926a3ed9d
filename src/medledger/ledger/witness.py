"""A peer's witness: cosigns checkpoints only after checking them (C2SP ``tlog-witness``).

:meth:`Witness.add_checkpoint` follows tlog-witness "add-checkpoint". For a signed checkpoint
note, an ``old_size`` and an RFC 9162 consistency proof from ``old_size``, in this order:

1. origin not trusted → ``unknown_origin`` (404); no trusted log signature verifies →
   ``bad_log_signature`` (403); not a checkpoint note → ``malformed_request`` (400);
2. it conflicts with the stored checkpoint (:func:`~medledger.ledger.equivocation.conflict`) →
   ``equivocation`` (409): the two notes are kept as evidence, the alarm fires, nothing is signed;
3. ``old_size`` above the size, or more than 63 proof hashes → ``malformed_request`` (400);
4. ``old_size`` is not the stored size (0 before the first) → ``size_conflict`` (409), carrying
   ``stored_size`` (tlog-witness answers it as ``text/x.tlog.size``);
5. the proof must be empty from size 0 and otherwise prove the stored ``(size, root)`` is a
   prefix of the new one (equal sizes: empty proof, equal roots) → ``bad_proof`` (422);
6. the new note is persisted with ``set_local`` — which must be atomic and durable before it
   returns — and only then is the cosignature made and returned. A write that fails →
   ``persist_failed`` (503), no cosignature. A checkpoint at the stored size and root is
   cosigned again without a write.

Steps 2–6 run under one lock, so two requests cannot interleave into the rollback race that
tlog-witness describes; a :class:`Witness` must be the only writer of its persistence keys.
Every error is a :class:`WitnessError` (a ``CheckpointError``) with a stable ``code`` and the
HTTP ``status`` from :data:`STATUS`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from medledger.crypto.keys import SigningKey
from medledger.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_note,
    key_id,
    parse_body,
    split_note,
)
from medledger.ledger.cosignature import cosign, cosigner_vkey
from medledger.ledger.equivocation import Equivocation, conflict
from medledger.ledger.merkle import ProofError, verify_consistency

log = logging.getLogger(__name__)

MAX_PROOF_HASHES = 63
STATUS: dict[str, int] = {
    "malformed_request": 400,
    "bad_log_signature": 403,
    "unknown_origin": 404,
    "size_conflict": 409,
    "equivocation": 409,
    "bad_proof": 422,
    "persist_failed": 503,
}
"""Every code :meth:`Witness.add_checkpoint` raises, with its tlog-witness HTTP status."""

LogKeys = Mapping[str, Mapping[str, bytes]]
"""Trusted logs: ``origin -> {note signer name -> Ed25519 public key}``."""


class Persistence(Protocol):
    """Small local key-value storage (the ledger ``Store`` provides it).

    ``set_local`` must be atomic and durable when it returns: the witness cosigns only after.
    """

    def get_local(self, key: str) -> bytes | None: ...

    def set_local(self, key: str, value: bytes) -> None: ...


class WitnessError(CheckpointError):
    """A refused ``add-checkpoint``; ``status`` is its HTTP status (:data:`STATUS`)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        stored_size: int | None = None,
        evidence: Equivocation | None = None,
    ) -> None:
        super().__init__(code, message)
        self.status = STATUS[code]
        self.stored_size = stored_size
        self.evidence = evidence


def checkpoint_key(origin: str) -> str:
    """Persistence key of the latest cosigned note for ``origin``."""
    return f"witness/checkpoint/{origin}"


def evidence_key(origin: str) -> str:
    """Persistence key of the first equivocation evidence kept for ``origin``."""
    return f"witness/equivocation/{origin}"


class Witness:
    """Cosigns checkpoints of the trusted ``logs`` as ``name`` with ``signing_key``."""

    def __init__(
        self,
        name: str,
        signing_key: SigningKey,
        persistence: Persistence,
        logs: LogKeys,
        *,
        clock: Callable[[], float] = time.time,
        alarm: Callable[[Equivocation], None] | None = None,
    ) -> None:
        self.name = name
        self._key = signing_key
        self._store = persistence
        self._verifiers = {
            origin: {(n, key_id(n, pk)): pk for n, pk in keys.items()}
            for origin, keys in logs.items()
        }
        if any(len(pk) != 32 for keys in logs.values() for pk in keys.values()):
            raise ValueError("every trusted log key must be a 32-byte Ed25519 public key")
        cosigner_vkey(name, signing_key.public)  # a bad name fails now, not after a write
        self._clock = clock
        self._alarm = alarm or _log_alarm
        self._lock = threading.Lock()

    @property
    def vkey(self) -> str:
        """This witness's cosigner verifier key (type 0x04)."""
        return cosigner_vkey(self.name, self._key.public)

    def latest(self, origin: str) -> bytes | None:
        """The last note this witness cosigned (as the log signed it) for ``origin``."""
        return self._store.get_local(checkpoint_key(origin))

    def evidence(self, origin: str) -> Equivocation | None:
        """The equivocation evidence kept for ``origin``, if any."""
        raw = self._store.get_local(evidence_key(origin))
        return None if raw is None else Equivocation.from_json(raw)

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], note: bytes) -> str:
        """Check ``note`` against the stored checkpoint, persist it, return a cosignature line."""
        cp = self._authenticate(note)
        with self._lock:
            stored = self.latest(cp.origin)
            stored_cp = None
            if stored is not None:
                stored_cp = parse_body(split_note(stored)[0])
                self._check_conflict(stored, stored_cp, note, cp)
            self._check_extends(old_size, proof, stored_cp, cp)
            if stored_cp is None or stored_cp.size != cp.size:
                try:
                    self._store.set_local(checkpoint_key(cp.origin), note)
                except Exception as exc:
                    raise WitnessError("persist_failed", f"could not persist: {exc}") from exc
            return cosign(cp.body(), self.name, self._key.nacl_key(), int(self._clock()))

    def _authenticate(self, note: bytes) -> Checkpoint:
        try:
            cp = parse_body(split_note(note)[0])
        except CheckpointError as exc:
            raise WitnessError("malformed_request", f"not a checkpoint note: {exc}") from None
        verifiers = self._verifiers.get(cp.origin)
        if verifiers is None:
            raise WitnessError("unknown_origin", f"origin {cp.origin!r} is not a trusted log")
        if not check_note(note, verifiers)[1]:
            raise WitnessError(
                "bad_log_signature", f"no valid signature by a key trusted for {cp.origin!r}"
            )
        return cp

    def _check_conflict(
        self, stored: bytes, stored_cp: Checkpoint, note: bytes, cp: Checkpoint
    ) -> None:
        if conflict(stored_cp, cp) is None:
            return
        ev = Equivocation.from_notes(stored, note)
        try:
            if self._store.get_local(evidence_key(cp.origin)) is None:
                self._store.set_local(evidence_key(cp.origin), ev.to_json())
        except Exception:
            log.exception("could not keep equivocation evidence %s", ev.digest)
        self._alarm(ev)
        raise WitnessError("equivocation", ev.describe(), evidence=ev)

    def _check_extends(
        self, old_size: int, proof: Sequence[bytes], stored: Checkpoint | None, cp: Checkpoint
    ) -> None:
        if not 0 <= old_size <= cp.size:
            raise WitnessError("malformed_request", f"old size {old_size} is not in [0, {cp.size}]")
        if len(proof) > MAX_PROOF_HASHES:
            raise WitnessError("malformed_request", f"{len(proof)} proof hashes, max 63")
        have = 0 if stored is None else stored.size
        if old_size != have:
            raise WitnessError(
                "size_conflict", f"old size {old_size}, latest cosigned size {have}",
                stored_size=have,
            )
        if stored is None or old_size == 0:
            if proof:
                raise WitnessError("bad_proof", f"proof from 0 has {len(proof)} hashes, want 0")
            return
        try:
            verify_consistency(stored.size, cp.size, stored.root, cp.root, proof)
        except ProofError as exc:
            what = f"consistency {stored.size} -> {cp.size}"
            raise WitnessError("bad_proof", f"{what}: {exc}") from None


def _log_alarm(ev: Equivocation) -> None:
    at = "" if ev.height is None else f"; chains differ at or before height {ev.height}"
    log.critical("EQUIVOCATION %s%s (evidence %s)", ev.describe(), at, ev.digest)


_OLD_RE = re.compile(r"old (0|[1-9][0-9]{0,19})")


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], bytes]:
    """Parse a tlog-witness ``add-checkpoint`` request body into ``(old size, proof, note)``:
    an ``old <size>`` line, up to 63 base64 hash lines, an empty line, the signed note."""
    head, sep, note = body.partition(b"\n\n")
    lines = head.split(b"\n")
    m = _OLD_RE.fullmatch(lines[0].decode("ascii", "replace"))
    if not sep or m is None or len(lines) > 1 + MAX_PROOF_HASHES:
        raise WitnessError("malformed_request", "want 'old <size>', <= 63 hash lines, empty line")
    proof = [_hash(line) for line in lines[1:]]
    return int(m[1]), proof, note


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The request body :func:`parse_add_checkpoint` reads."""
    hashes = b"".join(base64.b64encode(h) + b"\n" for h in proof)
    return b"old %d\n" % old_size + hashes + b"\n" + note


def _hash(line: bytes) -> bytes:
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise WitnessError("malformed_request", f"proof line {line[:48]!r} is not base64") from None
    if len(raw) != 32 or base64.b64encode(raw) != line:
        raise WitnessError("malformed_request", f"proof line {line[:48]!r} is not a hash")
    return raw
