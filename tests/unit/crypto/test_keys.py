"""Ed25519 keys against the RFC 8032 test vectors, strict verification, key ids, base64."""

from __future__ import annotations

import base64
import hashlib

import pytest

from medledger.crypto.keys import BadKeyError, SigningKey, b64, key_id, unb64, verify
from medledger.errors import Code

# RFC 8032, "Edwards-Curve Digital Signature Algorithm (EdDSA)", Section 7.1 "Test Vectors for
# Ed25519": TEST 1, TEST 2 and TEST 3 (SECRET KEY = 32-byte seed, PUBLIC KEY, MESSAGE, SIGNATURE).
RFC8032_7_1 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST 1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST 2",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="TEST 3",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_7_1)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    key = SigningKey(bytes.fromhex(secret))
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert key.public == pk
    assert key.sign(msg) == sig  # Ed25519 is deterministic
    assert verify(pk, msg, sig)


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_7_1)
def test_every_flipped_bit_is_refused(
    secret: str, public: str, message: str, signature: str
) -> None:
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    for bit in range(len(sig) * 8):
        bad = bytearray(sig)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not verify(pk, msg, bytes(bad)), f"signature bit {bit}"
    for bit in range(len(pk) * 8):
        bad = bytearray(pk)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not verify(bytes(bad), msg, sig), f"public key bit {bit}"
    for bit in range(len(msg) * 8):
        bad = bytearray(msg)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not verify(pk, bytes(bad), sig), f"message bit {bit}"
    assert not verify(pk, msg + b"\x00", sig)


def test_wrong_key_is_refused() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    sig = a.sign(b"hello")
    assert verify(a.public, b"hello", sig)
    assert not verify(b.public, b"hello", sig)


@pytest.mark.parametrize("sig_len", [0, 1, 63, 65, 128])
def test_wrong_signature_length_is_refused(sig_len: int) -> None:
    key = SigningKey.generate()
    sig = key.sign(b"m")
    assert not verify(key.public, b"m", (sig * 2)[:sig_len])


@pytest.mark.parametrize("pk_len", [0, 31, 33, 64])
def test_wrong_public_key_length_is_refused(pk_len: int) -> None:
    key = SigningKey.generate()
    assert not verify((key.public * 2)[:pk_len], b"m", key.sign(b"m"))


def test_non_canonical_s_is_refused() -> None:
    # S + L (the group order) is the same scalar mod L; strict verification must refuse it so a
    # signature cannot be mutated into another valid one (transaction ids rely on this)
    order = 2**252 + 27742317777372353535851937790883648493
    key = SigningKey(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    sig = key.sign(b"")
    s = int.from_bytes(sig[32:], "little") + order
    assert s < 2**256
    assert not verify(key.public, b"", sig[:32] + s.to_bytes(32, "little"))


def test_key_id_is_stable_and_derived_from_the_public_key() -> None:
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    kid = key_id(pk)
    assert kid == hashlib.sha256(pk).digest()[:8].hex()
    assert len(kid) == 16 and kid == kid.lower()
    key = SigningKey(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert key.kid == kid
    assert SigningKey(key.seed).kid == kid  # same seed, same id, in any process
    assert SigningKey.generate().kid != kid


def test_base64_is_strict() -> None:
    raw = bytes(range(32))
    assert unb64(b64(raw), length=32) == raw
    for bad in ("not base64!", b64(raw)[:-1], b64(raw).replace("=", ""), " " + b64(raw), "é"):
        with pytest.raises(BadKeyError) as info:
            unb64(bad)
        assert info.value.code == Code.BAD_ENVELOPE
    with pytest.raises(BadKeyError):
        unb64(b64(raw[:31]), length=32)
    # one canonical spelling: the 2 unused bits before '=' must be zero (RFC 4648 §3.5)
    text = b64(raw)  # 32 bytes: 44 characters ending in one '='
    flipped = text[:-2] + chr(ord(text[-2]) + 1) + "="
    assert base64.b64decode(flipped) == raw  # a lenient decoder takes it
    with pytest.raises(BadKeyError) as info:
        unb64(flipped)
    assert info.value.code == Code.BAD_ENVELOPE and "padding" in info.value.message
