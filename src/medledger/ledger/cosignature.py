"""Witness cosignatures: C2SP ``tlog-cosignature`` v1, Ed25519 type.

A cosignature is a signed-note signature line appended to a checkpoint note
(tlog-cosignature "Format")::

    — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)

* key ID = ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]``; the 0x04 type byte keeps
  a witness's cosignatures apart from note signatures (0x01) under the same name;
* ``timestamp`` is POSIX seconds, at most ``2**63 - 1``;
* the Ed25519 (RFC 8032) signature covers ``cosignature/v1\\n``, then ``time <timestamp>\\n`` in
  decimal without leading zeroes, then the whole checkpoint body including its extension lines
  (tlog-cosignature "Ed25519 signed message").

It states: "as of that time, this is the largest checkpoint consistent with everything I have
seen for this origin". Checking consistency and persisting before signing is the job of
:class:`medledger.ledger.witness.Witness`; this module formats and verifies. Cosigner keys may
travel as verifier keys of type 0x04 (:func:`cosigner_vkey`). Every failure raises
:class:`~medledger.ledger.checkpoint.CheckpointError` with a stable ``code``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from medledger.ledger.checkpoint import (
    CheckpointError,
    format_signature_line,
    key_id,
    parse_body,
    parse_vkey,
    split_note,
    vkey_string,
)

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = 2**63 - 1
_HEADER = b"cosignature/v1\n"
_PAYLOAD = 8 + 64  # timestamp, Ed25519 signature

WitnessKeys = Mapping[str, bytes]
"""Trusted witnesses: ``witness name -> 32-byte Ed25519 public key``."""


@dataclass(frozen=True)
class Cosignature:
    """A cosignature that verified: who (``name``), when (``timestamp``) and its ``line``."""

    name: str
    timestamp: int
    line: str


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x04 || public_key)[:4]`` (tlog-cosignature "Format")."""
    return key_id(name, public_key, ALG_COSIGNATURE_V1)


def cosigner_vkey(name: str, public_key: bytes) -> str:
    """Verifier key ``name+hex(key ID)+base64(0x04 || public key)``."""
    return vkey_string(name, public_key, ALG_COSIGNATURE_V1)


def parse_cosigner_vkey(vkey: str) -> tuple[str, bytes]:
    """Inverse of :func:`cosigner_vkey`; checks the 0x04 type byte, length and key ID."""
    return parse_vkey(vkey, ALG_COSIGNATURE_V1)


def signed_message(body: bytes, timestamp: int) -> bytes:
    """The bytes a cosignature signs: ``cosignature/v1\\ntime <timestamp>\\n`` + ``body``."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError("bad_timestamp", f"timestamp {timestamp} is not in [0, 2**63)")
    return _HEADER + b"time %d\n" % timestamp + body


def cosign(body: bytes, name: str, signing_key: nacl.signing.SigningKey, timestamp: int) -> str:
    """The cosignature line by ``name`` over checkpoint ``body`` at ``timestamp`` (seconds).

    ``body`` must parse as a checkpoint; consistency is the caller's business.
    """
    parse_body(body)
    sig = signing_key.sign(signed_message(body, timestamp)).signature
    kid = cosigner_key_id(name, bytes(signing_key.verify_key))
    return format_signature_line(name, kid, timestamp.to_bytes(8, "big") + sig)


@dataclass(frozen=True)
class CosignatureCheck:
    """Result of :func:`check_cosignatures`: the note ``text``, one ``valid`` cosignature per
    witness (in note order) and the names of known witnesses with only failing lines."""

    text: bytes
    valid: tuple[Cosignature, ...]
    invalid: tuple[str, ...]


def check_cosignatures(note: bytes, witnesses: WitnessKeys) -> CosignatureCheck:
    """Check the cosignature lines of ``note`` by ``witnesses``; never raises for a bad line.

    Lines whose ``(name, key ID)`` matches no witness (log signatures, strangers) are ignored. A
    witness counts once, if any of its lines verifies, so neither a repeated line nor a garbage
    line put in front of a good one changes the result. Raises only for a malformed note.
    """
    text, lines = split_note(note)
    known = {(n, cosigner_key_id(n, _key(n, pk))): pk for n, pk in witnesses.items()}
    valid: dict[str, Cosignature] = {}
    failed: list[str] = []
    for sig in lines:
        pk = known.get((sig.name, sig.key_id))
        if pk is None or sig.name in valid:
            continue
        ts = _verified_timestamp(pk, text, sig.signature) if sig.canonical() else None
        if ts is None:
            failed.append(sig.name)
        else:
            valid[sig.name] = Cosignature(sig.name, ts, sig.line())
    invalid = tuple(dict.fromkeys(n for n in failed if n not in valid))
    return CosignatureCheck(text, tuple(valid.values()), invalid)


def verify_cosignatures(note: bytes, witnesses: WitnessKeys) -> list[tuple[str, int]]:
    """Strict check: ``[(witness name, timestamp)]`` of the cosignatures that verified.

    As signed-note verification treats note signatures, a known witness whose lines all fail
    rejects the note (``bad_cosignature``) and so does a note with no known cosignature
    (``no_known_cosignature``). Use :func:`check_cosignatures` to count instead.
    """
    check = check_cosignatures(note, witnesses)
    if check.invalid:
        raise CheckpointError("bad_cosignature", f"invalid cosignature by {check.invalid[0]}")
    if not check.valid:
        raise CheckpointError(
            "no_known_cosignature", f"no cosignature by any of {sorted(witnesses)}"
        )
    return [(c.name, c.timestamp) for c in check.valid]


def signature_lines(lines: Iterable[str | bytes]) -> list[str]:
    """Lines as text, each ending in one newline (stores may keep them as bytes, unterminated)."""
    out = [ln.decode("utf-8") if isinstance(ln, bytes) else ln for ln in lines]
    return [ln if ln.endswith("\n") else ln + "\n" for ln in out]


def attach(note: bytes, lines: Iterable[str | bytes]) -> bytes:
    """``note`` with signature ``lines`` appended (a line already present is not repeated)."""
    text, sigs = split_note(note)
    have = [s.line() for s in sigs]
    new = [ln for ln in dict.fromkeys(signature_lines(lines)) if ln not in have]
    out = text + b"\n" + "".join(have + new).encode("utf-8")
    if len(split_note(out)[1]) != len(have) + len(new):  # each new "line" must be exactly one
        raise CheckpointError("malformed_note", "each appended item must be one signature line")
    return out


def _key(name: str, public_key: bytes) -> bytes:
    if len(public_key) != 32:
        raise CheckpointError("bad_verifier", f"witness {name} key is {len(public_key)} bytes")
    return public_key


def _verified_timestamp(public_key: bytes, text: bytes, payload: bytes) -> int | None:
    if len(payload) != _PAYLOAD:
        return None
    ts = int.from_bytes(payload[:8], "big")
    if ts > MAX_TIMESTAMP:
        return None
    try:
        nacl.signing.VerifyKey(public_key).verify(signed_message(text, ts), payload[8:])
    except nacl.exceptions.BadSignatureError:
        return None
    return ts
