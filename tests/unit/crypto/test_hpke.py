"""``medledger.crypto.hpke`` against RFC 9180 Appendix A, a reference, and broken variants.

The library draws a fresh ephemeral key for every seal, so the RFC's ciphertexts cannot be
produced through it directly. Instead a slow, obviously-correct reference of RFC 9180 §4, §5.1,
§5.2 and §7.1 (written here from the RFC's pseudocode, on HMAC and the raw primitives) is first
checked against every intermediate value of the RFC's test vectors, then used to seal with the
RFC's ephemeral key for ``hpke.open`` and to open what ``hpke.seal`` produces.

Vectors: RFC 9180 Appendix A.1.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, Base
Setup Information) and A.2.1 (the same with ChaCha20Poly1305), values quoted from the RFC,
encryptions from A.1.1.1 and A.2.1.1 (sequence numbers 0 and 1).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.crypto import hpke
from medledger.errors import Code

# ---------------------------------------------------------------- RFC 9180 Appendix A values


@dataclass(frozen=True)
class Vector:
    section: str
    aead: hpke.Aead
    info: str
    ikm_e: str
    pk_em: str
    sk_em: str
    ikm_r: str
    pk_rm: str
    sk_rm: str
    shared_secret: str
    key_schedule_context: str
    secret: str
    key: str
    base_nonce: str
    exporter_secret: str
    encryptions: tuple[tuple[int, str, str, str], ...]  # (seq, aad, nonce, ct)


PT = "4265617574792069732074727574682c20747275746820626561757479"
INFO = "4f6465206f6e2061204772656369616e2055726e"

A_1_1 = Vector(  # RFC 9180 A.1.1 and A.1.1.1
    section="A.1.1",
    aead=hpke.Aead.AES_128_GCM,
    info=INFO,
    ikm_e="7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234",
    pk_em="37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    sk_em="52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736",
    ikm_r="6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037",
    pk_rm="3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
    sk_rm="4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
    shared_secret="fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc",
    key_schedule_context="00725611c9d98c07c03f60095cd32d400d8347d45ed670"
    "97bbad50fc56da742d07cb6cffde367bb0565ba28bb02c90744a20f5ef37f3052352"
    "6106f637abb05449",
    secret="12fff91991e93b48de37e7daddb52981084bd8aa64289c3788471d9a9712f397",
    key="4531685d41d65f03dc48f6b8302c05b0",
    base_nonce="56d890e5accaaf011cff4b7d",
    exporter_secret="45ff1c2e220db587171952c0592d5f5ebe103f1561a2614e38f2ffd47e99e3f8",
    encryptions=(
        (0, "436f756e742d30", "56d890e5accaaf011cff4b7d",
         "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9"
         "6d8770ac83d07bea87e13c512a"),
        (1, "436f756e742d31", "56d890e5accaaf011cff4b7c",
         "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab25"
         "1c03d0c22a56b8ca42c2063b84"),
    ),
)

A_2_1 = Vector(  # RFC 9180 A.2.1 and A.2.1.1
    section="A.2.1",
    aead=hpke.Aead.CHACHA20_POLY1305,
    info=INFO,
    ikm_e="909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b",
    pk_em="1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
    sk_em="f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600",
    ikm_r="1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df",
    pk_rm="4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a",
    sk_rm="8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
    shared_secret="0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7",
    key_schedule_context="00431df6cd95e11ff49d7013563baf7f11588c75a6611e"
    "e2a4404a49306ae4cfc5b69c5718a60cc5876c358d3f7fc31ddb598503f67be58ea1"
    "e798c0bb19eb9796",
    secret="5b9cd775e64b437a2335cf499361b2e0d5e444d5cb41a8a53336d8fe402282c6",
    key="ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91",
    base_nonce="5c4d98150661b848853b547f",
    exporter_secret="a3b010d4994890e2c6968a36f64470d3c824c8f5029942feb11e7a74b2921922",
    encryptions=(
        (0, "436f756e742d30", "5c4d98150661b848853b547f",
         "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db"
         "21993c62ce81883d2dd1b51a28"),
        (1, "436f756e742d31", "5c4d98150661b848853b547e",
         "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e"
         "85285337cc95ba5f59992dc98c"),
    ),
)
VECTORS = [A_1_1, A_2_1]

# ---------------------------------------------------------------- reference (RFC 9180 text)

KEM_ID, KDF_ID = 0x0020, 0x0001


def i2osp(n: int, length: int) -> bytes:
    return n.to_bytes(length, "big")


def extract(salt: bytes, ikm: bytes) -> bytes:  # RFC 5869 HKDF-Extract with SHA-256
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def expand(prk: bytes, info: bytes, length: int) -> bytes:  # RFC 5869 HKDF-Expand
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:  # §4
    return extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return expand(prk, i2osp(length, 2) + b"HPKE-v1" + suite_id + label + info, length)


KEM_SUITE = b"KEM" + i2osp(KEM_ID, 2)


def derive_key_pair(ikm: bytes) -> tuple[bytes, bytes]:  # §7.1.3 for X25519
    prk = labeled_extract(KEM_SUITE, b"", b"dkp_prk", ikm)
    sk = labeled_expand(KEM_SUITE, prk, b"sk", b"", 32)
    return sk, hpke.public_key(sk)


def dh(sk: bytes, pk: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(sk).exchange(
        x25519.X25519PublicKey.from_public_bytes(pk))


def kem_shared_secret(dh_value: bytes, enc: bytes, pk_rm: bytes) -> bytes:  # §4.1
    prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh_value)
    return labeled_expand(KEM_SUITE, prk, b"shared_secret", enc + pk_rm, 32)


@dataclass(frozen=True)
class Context:
    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes


def key_schedule(aead: hpke.Aead, shared_secret: bytes, info: bytes) -> Context:  # §5.1, mode 0
    suite_id = b"HPKE" + i2osp(KEM_ID, 2) + i2osp(KDF_ID, 2) + i2osp(aead.value, 2)
    psk_id_hash = labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(suite_id, b"", b"info_hash", info)
    ksc = i2osp(0, 1) + psk_id_hash + info_hash
    secret = labeled_extract(suite_id, shared_secret, b"secret", b"")
    nk = 16 if aead is hpke.Aead.AES_128_GCM else 32
    return Context(ksc, secret, labeled_expand(suite_id, secret, b"key", ksc, nk),
                   labeled_expand(suite_id, secret, b"base_nonce", ksc, 12),
                   labeled_expand(suite_id, secret, b"exp", ksc, 32))


def nonce(ctx: Context, seq: int) -> bytes:  # §5.2
    return bytes(a ^ b for a, b in zip(ctx.base_nonce, i2osp(seq, 12), strict=True))


def aead_cipher(aead: hpke.Aead, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return AESGCM(key) if aead is hpke.Aead.AES_128_GCM else ChaCha20Poly1305(key)


def ref_seal(aead: hpke.Aead, sk_e: bytes, pk_r: bytes, info: bytes, aad: bytes, pt: bytes,
             seq: int = 0) -> bytes:
    enc = hpke.public_key(sk_e)
    ctx = key_schedule(aead, kem_shared_secret(dh(sk_e, pk_r), enc, pk_r), info)
    return enc + aead_cipher(aead, ctx.key).encrypt(nonce(ctx, seq), pt, aad)


def ref_open(aead: hpke.Aead, sk_r: bytes, sealed: bytes, info: bytes) -> bytes:
    enc, ct = sealed[:32], sealed[32:]
    pk_r = hpke.public_key(sk_r)
    ctx = key_schedule(aead, kem_shared_secret(dh(sk_r, enc), enc, pk_r), info)
    return aead_cipher(aead, ctx.key).decrypt(nonce(ctx, 0), ct, b"")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ---------------------------------------------------------------- the reference is the RFC


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.section)
def test_reference_reproduces_every_rfc_value(v: Vector) -> None:
    assert derive_key_pair(h(v.ikm_e)) == (h(v.sk_em), h(v.pk_em))
    assert derive_key_pair(h(v.ikm_r)) == (h(v.sk_rm), h(v.pk_rm))
    ss = kem_shared_secret(dh(h(v.sk_em), h(v.pk_rm)), h(v.pk_em), h(v.pk_rm))
    assert ss.hex() == v.shared_secret
    assert kem_shared_secret(dh(h(v.sk_rm), h(v.pk_em)), h(v.pk_em), h(v.pk_rm)) == ss
    ctx = key_schedule(v.aead, ss, h(v.info))
    assert ctx.key_schedule_context.hex() == v.key_schedule_context
    assert (ctx.secret.hex(), ctx.key.hex()) == (v.secret, v.key)
    assert (ctx.base_nonce.hex(), ctx.exporter_secret.hex()) == (v.base_nonce, v.exporter_secret)
    for seq, aad, want_nonce, ct in v.encryptions:
        assert nonce(ctx, seq).hex() == want_nonce
        sealed = ref_seal(v.aead, h(v.sk_em), h(v.pk_rm), h(v.info), h(aad), h(PT), seq)
        assert sealed == h(v.pk_em) + h(ct), f"{v.section} sequence {seq}"


# ---------------------------------------------------------------- the module is the reference


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.section)
def test_public_key_of_the_rfc_secret_keys(v: Vector) -> None:
    assert hpke.public_key(h(v.sk_rm)) == h(v.pk_rm)
    assert hpke.public_key(h(v.sk_em)) == h(v.pk_em)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.section)
def test_open_accepts_a_message_sealed_with_the_rfc_ephemeral_key(v: Vector) -> None:
    sealed = ref_seal(v.aead, h(v.sk_em), h(v.pk_rm), h(v.info), b"", h(PT))
    assert sealed[:32] == h(v.pk_em)  # enc is the RFC's
    assert hpke.open(h(v.sk_rm), sealed, h(v.info), v.aead) == h(PT)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.section)
def test_seal_output_opens_with_the_reference(v: Vector) -> None:
    sealed = hpke.seal(h(v.pk_rm), h(PT), h(v.info), v.aead)
    assert len(sealed) == 32 + len(h(PT)) + 16
    assert ref_open(v.aead, h(v.sk_rm), sealed, h(v.info)) == h(PT)


# ---------------------------------------------------------------- named broken variants


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]


BROKEN = {
    "wrong-info": lambda s, v: (h(v.sk_rm), s, b"another context", v.aead),
    "wrong-key": lambda s, v: (h(A_2_1.sk_rm if v is A_1_1 else A_1_1.sk_rm), s, h(v.info),
                               v.aead),
    "wrong-aead": lambda s, v: (h(v.sk_rm), s, h(v.info),
                                hpke.Aead.CHACHA20_POLY1305 if v is A_1_1 else
                                hpke.Aead.AES_128_GCM),
    "enc-flipped": lambda s, v: (h(v.sk_rm), _flip(s, 3), h(v.info), v.aead),
    "ct-flipped": lambda s, v: (h(v.sk_rm), _flip(s, 40), h(v.info), v.aead),
    "tag-flipped": lambda s, v: (h(v.sk_rm), _flip(s, len(s) - 1), h(v.info), v.aead),
    "truncated": lambda s, v: (h(v.sk_rm), s[:-1], h(v.info), v.aead),
    "trailing-garbage": lambda s, v: (h(v.sk_rm), s + b"\x00", h(v.info), v.aead),
    "preceding-garbage": lambda s, v: (h(v.sk_rm), b"\x00" + s, h(v.info), v.aead),
    "too-short": lambda s, v: (h(v.sk_rm), s[:47], h(v.info), v.aead),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.section)
def test_broken_variants_do_not_open(v: Vector, name: str) -> None:
    sealed = ref_seal(v.aead, h(v.sk_em), h(v.pk_rm), h(v.info), b"", h(PT))
    with pytest.raises(hpke.HpkeError) as err:
        hpke.open(*BROKEN[name](sealed, v))
    assert err.value.code is Code.BAD_ARGS


@pytest.mark.parametrize("point", [bytes(32), i2osp(1, 32)[::-1]], ids=["zero", "one"])
def test_small_order_public_keys_are_refused(point: bytes) -> None:
    """RFC 9180 §7.1.4: an all-zero X25519 shared secret must abort."""
    with pytest.raises(hpke.HpkeError, match="cannot encrypt"):
        hpke.seal(point, b"x", b"")


def test_keys_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(hpke.HpkeError, match="31 bytes; want 32"):
        hpke.seal(bytes(31), b"x", b"")
    with pytest.raises(hpke.HpkeError, match="33 bytes; want 32"):
        hpke.open(bytes(33), bytes(64), b"")


# ---------------------------------------------------------------- properties


@settings(max_examples=50, deadline=None)
@given(pt=st.binary(max_size=2048), info=st.binary(max_size=64),
       aead=st.sampled_from(list(hpke.Aead)), secret=st.binary(min_size=32, max_size=32))
def test_round_trip_and_fresh_ephemeral_keys(pt: bytes, info: bytes, aead: hpke.Aead,
                                             secret: bytes) -> None:
    pk = hpke.public_key(secret)
    a, b = hpke.seal(pk, pt, info, aead), hpke.seal(pk, pt, info, aead)
    assert a[:32] != b[:32] and a != b
    assert hpke.open(secret, a, info, aead) == pt == ref_open(aead, secret, b, info)
