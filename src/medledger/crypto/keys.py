"""Keys: Ed25519 for signatures (PyNaCl / libsodium), X25519 for key agreement.

Public keys travel as standard base64 of their 32 raw bytes. A key id (``kid``) is the first
8 bytes of SHA-256 over the raw public key, in hex: short, stable, and unambiguous in practice
within one consortium (a collision is refused at enrolment).

libsodium's verification is strict (it rejects non-canonical ``S`` and small-order keys), so a
valid signature cannot be mutated into another valid one, which the transaction id relies on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from functools import cached_property

import nacl.exceptions
import nacl.public
import nacl.signing
from nacl.bindings import crypto_sign_open

from medledger.errors import Code, MedLedgerError


class BadKeyError(MedLedgerError):
    """A key that cannot be decoded."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, *, length: int | None = None) -> bytes:
    """Strict standard base64 decoding; ``length`` checks the decoded size.

    Only the one canonical spelling is accepted: padding bits must be zero (RFC 4648 §3.5), so
    no two strings decode to the same bytes — otherwise one signed body could travel under two
    transaction ids (the id hashes the envelope's bytes)."""
    try:
        # what base64.b64decode(..., validate=True) does, without its wrappers (hot: every
        # transaction signature is decoded through here)
        data = text.encode("ascii")
        raw = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadKeyError(Code.BAD_ENVELOPE, f"not standard base64: {text[:40]!r}") from None
    if binascii.b2a_base64(raw, newline=False) != data:
        raise BadKeyError(Code.BAD_ENVELOPE, f"non-canonical base64 (padding bits set): "
                                             f"{text[:40]!r}")
    if length is not None and len(raw) != length:
        raise BadKeyError(Code.BAD_ENVELOPE, f"got {len(raw)} bytes, want {length}")
    return raw


def key_id(public_key: bytes) -> str:
    """Key id of a raw public key: hex of SHA-256(pk)[:8]."""
    return hashlib.sha256(public_key).digest()[:8].hex()


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with its public half."""

    seed: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @cached_property
    def _nacl(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @cached_property
    def public(self) -> bytes:
        return bytes(self._nacl.verify_key)

    @cached_property
    def kid(self) -> str:
        return key_id(self.public)

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature."""
        return bytes(self._nacl.sign(message).signature)

    def nacl_key(self) -> nacl.signing.SigningKey:
        return self._nacl


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``.

    Releases the GIL inside libsodium, so a thread pool verifies on every core.
    """
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class AgreementKey:
    """An X25519 private key (for HPKE-based encrypted exchange)."""

    secret: bytes

    @classmethod
    def generate(cls) -> AgreementKey:
        return cls(bytes(nacl.public.PrivateKey.generate()))

    @property
    def public(self) -> bytes:
        return bytes(nacl.public.PrivateKey(self.secret).public_key)
