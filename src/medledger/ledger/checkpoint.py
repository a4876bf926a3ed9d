"""Log checkpoints (C2SP ``tlog-checkpoint``) as Ed25519 signed notes (C2SP ``signed-note``).

A checkpoint body is ``origin\\n<size>\\n<base64 root>\\n`` followed by optional non-empty
extension lines (tlog-checkpoint "Note text"). A signed note is the text (ending in newline), a
blank line, then one or more lines ``— <key name> base64(key ID || signature)`` (signed-note
"Format"). The key ID is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` and the signature
is Ed25519 (RFC 8032) over the text (signed-note "Ed25519 signatures"). Verifier keys travel as
``name+hex(key ID)+base64(0x01 || public key)``, as golang.org/x/mod/sumdb/note writes them
(type 0x04 for witness cosigner keys, see :mod:`medledger.ledger.cosignature`).

Base64 here is standard (RFC 4648 §4) and must be canonical, so a one-character change to a
root or a known signer's signature never decodes to the same bytes. Every failure raises
:class:`CheckpointError` with a stable ``code``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import nacl.exceptions
import nacl.signing

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100
_SIG_PREFIX = "— "  # em dash U+2014, space
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_HEX8_RE = re.compile(r"[0-9a-fA-F]{8}")

Verifiers = Mapping[tuple[str, bytes], bytes]
"""Trusted keys: ``(key name, 4-byte key ID) -> 32-byte Ed25519 public key``."""


class CheckpointError(ValueError):
    """A malformed or unverifiable checkpoint, note or key; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _b64decode(text: str, code: str, what: str) -> bytes:
    """Canonical standard base64 (re-encoding gives back ``text``)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointError(code, f"{what} is not standard base64: {text[:40]!r}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(code, f"{what} is not canonical base64: {text[:40]!r}")
    return raw


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head: ``origin``, tree ``size`` and 32-byte RFC 9162 ``root``."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError(
                "bad_origin", f"origin must be one non-empty line: {self.origin!r}"
            )
        if not 0 <= self.size < 2**64:
            raise CheckpointError("bad_size", f"size {self.size} is not in [0, 2**64)")
        if len(self.root) != 32:
            raise CheckpointError("bad_root", f"root is {len(self.root)} bytes, want 32")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise CheckpointError("bad_extension", f"extension must be one line: {ext!r}")

    def body(self) -> bytes:
        """The note text (tlog-checkpoint "Note text"), ending in a newline."""
        lines = [self.origin, str(self.size), _b64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")


def parse_body(text: bytes) -> Checkpoint:
    """Strictly parse a checkpoint body; the inverse of :meth:`Checkpoint.body`."""
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("malformed_checkpoint", "body is not UTF-8") from None
    if not s.endswith("\n") or _has_controls(s):
        raise CheckpointError("malformed_checkpoint", "body must end in newline, no controls")
    lines = s[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("malformed_checkpoint", f"body has {len(lines)} lines, want >= 3")
    origin, size, root, *extensions = lines
    if not origin:
        raise CheckpointError("bad_origin", "origin line is empty")
    if not _SIZE_RE.fullmatch(size):
        raise CheckpointError("bad_size", f"size line {size[:30]!r} is not a decimal integer")
    return Checkpoint(origin, int(size), _b64decode(root, "bad_root", "root"), tuple(extensions))


def _has_controls(s: str) -> bool:
    return any(ord(c) < 0x20 and c != "\n" for c in s)


def _valid_name(name: str) -> bool:
    """Key names are non-empty, without Unicode spaces or ``+`` (signed-note "Format")."""
    return bool(name) and "+" not in name and not any(c.isspace() or c < " " for c in name)


def _check_name(name: str, code: str = "bad_key_name") -> None:
    if not _valid_name(name):
        raise CheckpointError(code, f"invalid key name {name!r}")


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    """``SHA-256(name || 0x0A || alg || public_key)[:4]`` (signed-note "Signatures")."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def vkey_string(name: str, public_key: bytes, alg: int = ALG_ED25519) -> str:
    """Verifier key ``name+hex(key ID)+base64(alg || public key)`` (signed-note "Verifier
    keys"); ``alg`` is 0x01 for note signatures, 0x04 for Ed25519 cosignatures."""
    _check_name(name)
    if len(public_key) != 32:
        raise CheckpointError("bad_vkey", f"public key is {len(public_key)} bytes, want 32")
    return f"{name}+{key_id(name, public_key, alg).hex()}+{_b64(bytes([alg]) + public_key)}"


def parse_vkey(vkey: str, alg: int = ALG_ED25519) -> tuple[str, bytes]:
    """Parse a verifier key of type ``alg`` into ``(name, public key)``; checks the type byte,
    the key length and the key ID."""
    parts = vkey.split("+", 2)
    if len(parts) != 3 or not _HEX8_RE.fullmatch(parts[1]):
        raise CheckpointError("bad_vkey", f"not name+keyid+key: {vkey[:60]!r}")
    name, kid_hex, key64 = parts
    _check_name(name, "bad_vkey")
    raw = _b64decode(key64, "bad_vkey", "verifier key")
    if len(raw) != 33 or raw[0] != alg:
        raise CheckpointError("bad_vkey", f"key must be 0x{alg:02x} followed by 32 Ed25519 bytes")
    if key_id(name, raw[1:], alg) != bytes.fromhex(kid_hex):
        raise CheckpointError("bad_vkey", f"key ID {kid_hex} does not match name and key")
    return name, raw[1:]


def signer_key_string(name: str, signing_key: nacl.signing.SigningKey) -> str:
    """Private key ``PRIVATE+KEY+name+hex(key ID)+base64(0x01 || seed)`` (sumdb/note format)."""
    vkey = vkey_string(name, bytes(signing_key.verify_key))
    return f"PRIVATE+KEY+{vkey.rsplit('+', 1)[0]}+{_b64(bytes([ALG_ED25519]) + bytes(signing_key))}"


def parse_signer_key(skey: str) -> tuple[str, nacl.signing.SigningKey]:
    """Inverse of :func:`signer_key_string`; checks the key ID against the derived public key."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _HEX8_RE.fullmatch(parts[3]):
        raise CheckpointError("bad_skey", "not PRIVATE+KEY+name+keyid+key")
    name = parts[2]
    _check_name(name, "bad_skey")
    raw = _b64decode(parts[4], "bad_skey", "signer key")
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise CheckpointError("bad_skey", "key must be 0x01 followed by a 32-byte Ed25519 seed")
    key = nacl.signing.SigningKey(raw[1:])
    if key_id(name, bytes(key.verify_key)) != bytes.fromhex(parts[3]):
        raise CheckpointError("bad_skey", f"key ID {parts[3]} does not match name and key")
    return name, key


def make_verifiers(vkeys: Iterable[str]) -> dict[tuple[str, bytes], bytes]:
    """Build a :data:`Verifiers` map from verifier key strings."""
    out: dict[tuple[str, bytes], bytes] = {}
    for vkey in vkeys:
        name, pk = parse_vkey(vkey)
        out[(name, key_id(name, pk))] = pk
    return out


def format_signature_line(name: str, kid: bytes, signature: bytes) -> str:
    """``— <name> base64(key ID || signature)`` and a newline (signed-note "Format")."""
    _check_name(name)
    if len(kid) != 4 or not signature:
        raise CheckpointError("malformed_note", "want a 4-byte key ID and a non-empty signature")
    return f"{_SIG_PREFIX}{name} {_b64(kid + signature)}\n"


def _signature_line(text: bytes, name: str, signing_key: nacl.signing.SigningKey) -> str:
    kid = key_id(name, bytes(signing_key.verify_key))
    return format_signature_line(name, kid, signing_key.sign(text).signature)


def _check_text(text: bytes) -> str:
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("malformed_note", "note is not valid UTF-8") from None
    if _has_controls(s):
        raise CheckpointError("malformed_note", "note contains an ASCII control character")
    return s


def sign_note(text: bytes, name: str, signing_key: nacl.signing.SigningKey) -> bytes:
    """Sign ``text`` (UTF-8, no controls but newline, ending in newline) as a one-signer note."""
    if not _check_text(text).endswith("\n"):
        raise CheckpointError("malformed_note", "note text must end with a newline")
    return text + b"\n" + _signature_line(text, name, signing_key).encode("utf-8")


class SignatureLine(NamedTuple):
    """One parsed signature line: key ``name``, 4-byte ``key_id``, the ``b64`` text as written
    and the decoded ``signature`` bytes that follow the key ID."""

    name: str
    key_id: bytes
    b64: str
    signature: bytes

    def canonical(self) -> bool:
        """True when the base64 is canonical (re-encoding gives back the same text)."""
        return _b64(self.key_id + self.signature) == self.b64

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {self.b64}\n"


def split_note(note: bytes) -> tuple[bytes, list[SignatureLine]]:
    """``(text, signature lines)``; checks syntax only (signed-note "Format"), so lines from
    unknown keys or of other signature types are returned too."""
    s = _check_text(note)
    split = s.rfind("\n\n")
    if split < 0 or not s.endswith("\n") or split + 2 == len(s):
        raise CheckpointError("malformed_note", "no signature block after a blank line")
    lines = s[split + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError("malformed_note", f"{len(lines)} signatures, max {MAX_SIGNATURES}")
    sigs: list[SignatureLine] = []
    for line in lines:
        name, sep, b64 = line.removeprefix(_SIG_PREFIX).partition(" ")
        if not line.startswith(_SIG_PREFIX) or not sep or not _valid_name(name):
            raise CheckpointError("malformed_note", f"bad signature line {line[:60]!r}")
        try:
            raw = base64.b64decode(b64.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise CheckpointError("malformed_note", f"bad signature line {line[:60]!r}") from None
        if len(raw) < 5:
            raise CheckpointError("malformed_note", f"signature of {len(raw)} bytes is too short")
        sigs.append(SignatureLine(name, raw[:4], b64, raw[4:]))
    return s[: split + 1].encode("utf-8"), sigs


def add_signature(note: bytes, name: str, signing_key: nacl.signing.SigningKey) -> bytes:
    """Append a signature by ``signing_key`` to ``note`` (replacing one by the same key)."""
    text, sigs = split_note(note)
    kid = key_id(name, bytes(signing_key.verify_key))
    kept = "".join(f"{_SIG_PREFIX}{n} {b}\n" for n, k, b, _ in sigs if (n, k) != (name, kid))
    return text + b"\n" + (kept + _signature_line(text, name, signing_key)).encode("utf-8")


def check_note(
    note: bytes, verifiers: Verifiers
) -> tuple[bytes, list[str], list[tuple[str, bytes]]]:
    """Check every signature by a known key; ``(text, names verified, (name, key ID) failed)``.

    Lenient: signatures whose ``(name, key ID)`` is not in ``verifiers`` are ignored, repeated
    signatures by one key count once, and a failing one is reported rather than raised (base64
    that is not canonical fails). Raises only for a malformed note or an inconsistent verifier.
    """
    text, sigs = split_note(note)
    names: list[str] = []
    failed: list[tuple[str, bytes]] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in sigs:
        pk = verifiers.get((sig.name, sig.key_id))
        if pk is None or (sig.name, sig.key_id) in seen:
            continue
        if len(pk) != 32 or key_id(sig.name, pk) != sig.key_id:
            raise CheckpointError(
                "bad_verifier", f"verifier {sig.name}+{sig.key_id.hex()} has another key"
            )
        seen.add((sig.name, sig.key_id))
        if sig.canonical() and _ed25519_ok(pk, text, sig.signature):
            names.append(sig.name)
        else:
            failed.append((sig.name, sig.key_id))
    return text, names, failed


def _ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def open_note(note: bytes, verifiers: Verifiers) -> tuple[bytes, list[str]]:
    """Verify a signed note; return ``(text, names of known keys whose signature verified)``.

    Signatures whose ``(name, key ID)`` is not in ``verifiers`` are ignored; one from a known key
    that fails rejects the note (``bad_signature``); with none verified it is rejected
    (``no_known_signature``). Repeated signatures by one key count once.
    """
    text, names, failed = check_note(note, verifiers)
    if failed:
        name, kid = failed[0]
        raise CheckpointError("bad_signature", f"invalid signature by {name}+{kid.hex()}")
    if not names:
        n = len(split_note(note)[1])
        raise CheckpointError("no_known_signature", f"none of {n} signatures is from a known key")
    return text, names


def sign_checkpoint(cp: Checkpoint, name: str, signing_key: nacl.signing.SigningKey) -> bytes:
    """Sign ``cp`` as a note; tlog-checkpoint says ``name`` SHOULD equal ``cp.origin``."""
    return sign_note(cp.body(), name, signing_key)


def verify_checkpoint(
    note: bytes, verifiers: Verifiers, origin: str | None = None
) -> tuple[Checkpoint, list[str]]:
    """Open a signed checkpoint note and parse its body; optionally require its ``origin``."""
    text, names = open_note(note, verifiers)
    cp = parse_body(text)
    if origin is not None and cp.origin != origin:
        raise CheckpointError("wrong_origin", f"origin {cp.origin!r}, want {origin!r}")
    return cp, names
