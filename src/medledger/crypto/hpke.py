"""Hybrid Public Key Encryption (RFC 9180), base mode, single-shot, to an X25519 key.

The one suite the consortium uses for "ciphertext for a named recipient":

* KEM  DHKEM(X25519, HKDF-SHA256)   kem_id 0x0020 (RFC 9180 §7.1)
* KDF  HKDF-SHA256                  kdf_id 0x0001 (§7.2)
* AEAD AES-128-GCM (default)        aead_id 0x0001, or ChaCha20-Poly1305, aead_id 0x0003 (§7.3)

``seal(pk, plaintext, info)`` is RFC 9180 §6.1 ``Seal(pkR, info, aad="", pt)`` and returns
``enc || ct``: the 32-byte encapsulated key followed by the AEAD ciphertext (16-byte tag at the
end). ``open(sk, sealed, info)`` is ``Open``. Per §8.1 the application's context goes into
``info`` (single-shot APIs take no other associated data here); a ciphertext opens only with
the same ``info``, so binding ``info`` to, say, a report's identity stops a payload being moved
into another record.

Keys are raw 32-byte X25519 keys, as the consortium registers them (``kex_key``, base64 in
genesis). The work is done by pyca/cryptography's ``hazmat.primitives.hpke`` (OpenSSL); this
module only fixes the suite, the wire form and the errors. X25519 public keys of small order
(whose shared secret is all zeros) are refused, as RFC 9180 §7.1.4 requires.
"""

from __future__ import annotations

from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke as _hpke
from cryptography.hazmat.primitives.asymmetric import x25519

from medledger.errors import Code, MedLedgerError

__all__ = ["ENC_LENGTH", "TAG_LENGTH", "Aead", "HpkeError", "open", "public_key", "seal"]

ENC_LENGTH = 32  # Nenc of DHKEM(X25519, HKDF-SHA256)
TAG_LENGTH = 16  # Nt of both AEADs
KEY_LENGTH = 32


class HpkeError(MedLedgerError):
    """A key of the wrong size or order, or a ciphertext that does not open (``bad_args``)."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.BAD_ARGS, message)


class Aead(Enum):
    """The AEADs the suite may use; the value is the RFC 9180 aead_id."""

    AES_128_GCM = 0x0001
    CHACHA20_POLY1305 = 0x0003


_AEADS = {Aead.AES_128_GCM: _hpke.AEAD.AES_128_GCM,
          Aead.CHACHA20_POLY1305: _hpke.AEAD.CHACHA20_POLY1305}


def _suite(aead: Aead) -> _hpke.Suite:
    return _hpke.Suite(_hpke.KEM.X25519, _hpke.KDF.HKDF_SHA256, _AEADS[aead])


def _check_length(what: str, key: bytes) -> None:
    if len(key) != KEY_LENGTH:
        raise HpkeError(f"{what} has {len(key)} bytes; want {KEY_LENGTH}")


def public_key(secret: bytes) -> bytes:
    """The raw X25519 public key of the raw secret key ``secret``."""
    _check_length("X25519 secret key", secret)
    return x25519.X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def seal(recipient: bytes, plaintext: bytes, info: bytes, aead: Aead = Aead.AES_128_GCM) -> bytes:
    """``enc || ct`` encrypting ``plaintext`` to the X25519 public key ``recipient`` (32 bytes).

    A fresh ephemeral key is drawn for every call, so equal plaintexts give unrelated outputs.
    Raises HpkeError for a key of the wrong length or of small order.
    """
    _check_length("X25519 public key", recipient)
    pk = x25519.X25519PublicKey.from_public_bytes(recipient)
    try:
        return _suite(aead).encrypt(plaintext, pk, info=info)
    except ValueError as exc:  # all-zero shared secret: a small-order public key
        raise HpkeError(f"cannot encrypt to this X25519 key: {exc}") from None


def open(secret: bytes, sealed: bytes, info: bytes, aead: Aead = Aead.AES_128_GCM) -> bytes:
    """The plaintext of ``sealed`` (``enc || ct``) for the X25519 secret key ``secret``.

    Raises HpkeError when the ciphertext is too short, was sealed to another key or with
    another ``info`` or AEAD, or was changed in any byte.
    """
    _check_length("X25519 secret key", secret)
    if len(sealed) < ENC_LENGTH + TAG_LENGTH:
        raise HpkeError(f"sealed message has {len(sealed)} bytes; want at least "
                        f"{ENC_LENGTH + TAG_LENGTH} (enc and tag)")
    sk = x25519.X25519PrivateKey.from_private_bytes(secret)
    try:
        return _suite(aead).decrypt(sealed, sk, info=info)
    except (InvalidTag, ValueError):
        raise HpkeError("sealed message does not open: wrong key, wrong info or AEAD, "
                        "or changed in transit") from None
