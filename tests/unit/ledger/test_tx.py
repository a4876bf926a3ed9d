"""Transaction envelopes: strict decoding with a reason code for every refusal, and tx ids."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.crypto import canonical
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import Code, RejectedError
from medledger.ledger import tx as txmod

ALICE = SigningKey(bytes(range(32)))
BOB = SigningKey(bytes(range(1, 33)))
CAROL = SigningKey(bytes(range(2, 34)))


def body(**over: Any) -> dict[str, Any]:
    b = txmod.make_body(
        chain="test-1",
        contract="registry",
        method="anchor_batch",
        args={"batch_id": "b1", "count": 1},
        signer="hosp-a/alice",
        nonce=7,
        time=1_764_259_200_000,
    )
    b.update(over)
    return b


def sig_doc(by: str, key: SigningKey = ALICE, b: dict[str, Any] | None = None) -> dict[str, str]:
    s = txmod.sign_body(b if b is not None else body(), by, key)
    return {"by": s.by, "kid": s.kid, "sig": b64(s.sig)}


def wire(doc: Any) -> bytes:
    return canonical.encode(doc)


def refused(raw: bytes, **kw: Any) -> Code:
    with pytest.raises(RejectedError) as info:
        txmod.decode(raw, **kw)
    return info.value.code


# -- accepted ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cosigners", [[], ["hosp-b/bob"], ["hosp-b/bob", "hosp-c/carol"]])
def test_build_and_assemble_give_the_canonical_envelope(cosigners: list[str]) -> None:
    """``build`` encodes the body once and splices it into the envelope: the bytes must be
    exactly the canonical encoding of the whole document, whatever the key order given."""
    b = body(cosigners=cosigners, args={"z": [1, {"b": "é\u2028", "a": None}], "a": True})
    keys = dict(reversed(list({"hosp-a/alice": ALICE, "hosp-b/bob": BOB,
                               "hosp-c/carol": CAROL}.items())))
    keys = {m: k for m, k in keys.items() if m == "hosp-a/alice" or m in cosigners}
    sigs = sorted((txmod.sign_body(b, m, k) for m, k in keys.items()), key=lambda s: s.by)
    want = canonical.encode(
        {"body": b, "sigs": [{"by": s.by, "kid": s.kid, "sig": b64(s.sig)} for s in sigs]})
    assert txmod.build(b, keys) == want
    assert txmod.assemble(b, list(reversed(sigs))) == want
    assert txmod.decode(want).body == b


def test_build_refuses_a_float_in_the_body() -> None:
    with pytest.raises(canonical.CanonicalError):
        txmod.build(body(args={"dose": 1.5}), {"hosp-a/alice": ALICE})


def test_decode_built_transaction() -> None:
    b = body(cosigners=["hosp-b/bob"])
    raw = txmod.build(b, {"hosp-a/alice": ALICE, "hosp-b/bob": BOB})
    tx = txmod.decode(raw)
    assert tx.raw == raw
    assert tx.body == b
    assert (tx.chain, tx.contract, tx.method, tx.signer) == (
        "test-1",
        "registry",
        "anchor_batch",
        "hosp-a/alice",
    )
    assert (tx.nonce, tx.time, tx.cosigners, tx.args) == (
        7,
        1_764_259_200_000,
        ["hosp-b/bob"],
        {"batch_id": "b1", "count": 1},
    )
    assert [s.by for s in tx.sigs] == ["hosp-a/alice", "hosp-b/bob"]
    assert [s.kid for s in tx.sigs] == [ALICE.kid, BOB.kid]
    # every signature covers the domain tag and the canonical body
    assert tx.signed == txmod.SIG_DOMAIN + canonical.encode(b)
    assert tx.sigs[0].sig == ALICE.sign(tx.signed)


def test_signed_bytes_are_the_canonical_body_even_with_tricky_strings() -> None:
    b = body(args={"x": ',"sigs":[', "y": '"}]', "z": "é\n\\"})
    tx = txmod.decode(txmod.build(b, {"hosp-a/alice": ALICE}))
    assert tx.signed == txmod.SIG_DOMAIN + canonical.encode(b)


def test_tx_id_is_sha256_of_the_wire_bytes() -> None:
    raw = txmod.build(body(), {"hosp-a/alice": ALICE})
    assert txmod.decode(raw).tx_id == hashlib.sha256(raw).digest() == txmod.tx_id(raw)


def test_resigning_gives_the_same_id() -> None:
    b = body(cosigners=["hosp-b/bob", "hosp-c/carol"])
    one = txmod.build(b, {"hosp-a/alice": ALICE, "hosp-b/bob": BOB, "hosp-c/carol": CAROL})
    # the same keys in another order, with fresh key objects: same bytes, same id
    two = txmod.build(
        dict(b),
        {
            "hosp-c/carol": SigningKey(CAROL.seed),
            "hosp-a/alice": SigningKey(ALICE.seed),
            "hosp-b/bob": BOB,
        },
    )
    assert one == two
    assert txmod.decode(one).tx_id == txmod.decode(two).tx_id
    other = txmod.build(
        body(nonce=8, cosigners=b["cosigners"]),
        {"hosp-a/alice": ALICE, "hosp-b/bob": BOB, "hosp-c/carol": CAROL},
    )
    assert txmod.decode(other).tx_id != txmod.decode(one).tx_id


def test_make_body_sorts_cosigners() -> None:
    assert body(cosigners=sorted(["hosp-c/x", "hosp-b/y"]))["cosigners"] == ["hosp-b/y", "hosp-c/x"]
    b = txmod.make_body(
        chain="c",
        contract="k",
        method="m",
        args={},
        signer="a/b",
        nonce=0,
        time=0,
        cosigners=["z/z", "c/c"],
    )
    assert b["cosigners"] == ["c/c", "z/z"]


def test_decode_does_not_check_signature_validity() -> None:
    # signatures need ledger state (the signer's key), so decode only checks their shape
    raw = wire(
        {"body": body(), "sigs": [{"by": "hosp-a/alice", "kid": "0" * 16, "sig": b64(bytes(64))}]}
    )
    assert txmod.decode(raw).sigs[0].sig == bytes(64)


# -- refused -------------------------------------------------------------------------------------


def test_too_large() -> None:
    raw = txmod.build(body(args={"pad": "x" * txmod.MAX_TX_BYTES}), {"hosp-a/alice": ALICE})
    assert refused(raw) == Code.TOO_LARGE
    small = txmod.build(body(), {"hosp-a/alice": ALICE})
    assert refused(small, max_bytes=len(small) - 1) == Code.TOO_LARGE
    assert txmod.decode(small, max_bytes=len(small)).raw == small
    # the size cap comes first: oversized garbage is too_large, not malformed
    assert refused(b"{" * (txmod.MAX_TX_BYTES + 1)) == Code.TOO_LARGE


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"body":', b'"\xff"'])
def test_malformed_json(raw: bytes) -> None:
    assert refused(raw) == Code.MALFORMED_JSON


def test_non_canonical() -> None:
    raw = txmod.build(body(), {"hosp-a/alice": ALICE})
    assert refused(raw + b" ") == Code.NON_CANONICAL
    assert refused(raw.replace(b'{"body":', b'{ "body":', 1)) == Code.NON_CANONICAL
    assert refused(raw.replace(b'"count":1', b'"count":1.0')) == Code.NON_CANONICAL
    assert refused(raw.replace(b'"batch_id":"b1"', b'"batch_id":"\\u00621"')) == Code.NON_CANONICAL
    # keys out of order: sigs before body
    doc = canonical.decode(raw)
    swapped = (
        b'{"sigs":'
        + canonical.encode(doc["sigs"])
        + b',"body":'
        + canonical.encode(doc["body"])
        + b"}"
    )
    assert refused(swapped) == Code.NON_CANONICAL


def test_float_not_allowed() -> None:
    raw = txmod.build(body(), {"hosp-a/alice": ALICE})
    assert refused(raw.replace(b'"count":1', b'"count":1.5')) == Code.FLOAT_NOT_ALLOWED


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda b: b.pop(key)


BAD_BODIES: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("missing field", _drop("nonce")),
    ("missing args", _drop("args")),
    ("extra field", lambda b: b.update(extra=1)),
    ("chain not a string", lambda b: b.update(chain=1)),
    ("contract not a string", lambda b: b.update(contract=None)),
    ("method not a string", lambda b: b.update(method=["x"])),
    ("signer not a string", lambda b: b.update(signer=7)),
    ("contract name upper case", lambda b: b.update(contract="Registry")),
    ("method name with dash", lambda b: b.update(method="anchor-batch")),
    ("empty method", lambda b: b.update(method="")),
    ("signer without org", lambda b: b.update(signer="alice")),
    ("signer with upper case", lambda b: b.update(signer="Hosp-a/alice")),
    # a regex "$" would accept these trailing newlines
    ("signer with trailing newline", lambda b: b.update(signer="hosp-a/alice\n")),
    ("contract with trailing newline", lambda b: b.update(contract="registry\n")),
    ("method with trailing newline", lambda b: b.update(method="anchor_batch\n")),
    ("cosigner with trailing newline", lambda b: b.update(cosigners=["hosp-b/bob\n"])),
    ("nonce negative", lambda b: b.update(nonce=-1)),
    ("nonce a string", lambda b: b.update(nonce="7")),
    ("nonce a boolean", lambda b: b.update(nonce=True)),
    ("time negative", lambda b: b.update(time=-5)),
    ("time a string", lambda b: b.update(time="2025-11-27")),
    ("args a list", lambda b: b.update(args=[])),
    ("args null", lambda b: b.update(args=None)),
    ("cosigners not a list", lambda b: b.update(cosigners="hosp-b/bob")),
    ("cosigner not a member id", lambda b: b.update(cosigners=["bob"])),
    ("cosigner not a string", lambda b: b.update(cosigners=[1])),
    ("cosigners unsorted", lambda b: b.update(cosigners=["hosp-c/carol", "hosp-b/bob"])),
    ("cosigners repeated", lambda b: b.update(cosigners=["hosp-b/bob", "hosp-b/bob"])),
    ("signer as cosigner", lambda b: b.update(cosigners=["hosp-a/alice"])),
]


@pytest.mark.parametrize("mutate", [m for _, m in BAD_BODIES], ids=[n for n, _ in BAD_BODIES])
def test_bad_body(mutate: Callable[[dict[str, Any]], Any]) -> None:
    b = body()
    mutate(b)
    sigs = [
        {"by": by, "kid": "0" * 16, "sig": b64(bytes(64))}
        for by in sorted({str(b.get("signer")), *[str(c) for c in b.get("cosigners") or []]})
    ]
    assert refused(wire({"body": b, "sigs": sigs})) == Code.BAD_ENVELOPE


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "tx",
        {"body": {}},
        {"sigs": []},
        {"body": {}, "sigs": [], "extra": 1},
        {"body": [], "sigs": []},
        {"body": None, "sigs": []},
    ],
    ids=[
        "list",
        "string",
        "no sigs",
        "no body",
        "extra top-level field",
        "body a list",
        "body null",
    ],
)
def test_bad_envelope_shape(doc: Any) -> None:
    assert refused(wire(doc)) == Code.BAD_ENVELOPE


GOOD_SIG = {"by": "hosp-a/alice", "kid": "0" * 16, "sig": b64(bytes(64))}


@pytest.mark.parametrize(
    "sig",
    [
        "just a string",
        {"by": "hosp-a/alice", "kid": "0" * 16},
        {**GOOD_SIG, "alg": "ed25519"},
        {**GOOD_SIG, "by": 1},
        {**GOOD_SIG, "kid": 1},
        {**GOOD_SIG, "sig": None},
        {**GOOD_SIG, "kid": "0" * 15},
        {**GOOD_SIG, "kid": "0" * 17},
        {**GOOD_SIG, "kid": "A" * 16},
        {**GOOD_SIG, "kid": "g" * 16},
        {**GOOD_SIG, "kid": "0" * 16 + "\n"},
    ],
    ids=[
        "not an object",
        "missing sig",
        "extra field",
        "by not a string",
        "kid not a string",
        "sig not a string",
        "kid too short",
        "kid too long",
        "kid upper case",
        "kid not hex",
        "kid with trailing newline",
    ],
)
def test_bad_signature_entry(sig: Any) -> None:
    assert refused(wire({"body": body(), "sigs": [sig]})) == Code.BAD_ENVELOPE


@pytest.mark.parametrize(
    "sig_text",
    [b64(bytes(63)), b64(bytes(65)), "", "not base64!", b64(bytes(64))[:-1]],
    ids=["63 bytes", "65 bytes", "empty", "not base64", "bad padding"],
)
def test_undecodable_signature_is_bad_signature(sig_text: str) -> None:
    assert (
        refused(wire({"body": body(), "sigs": [{**GOOD_SIG, "sig": sig_text}]}))
        == Code.BAD_SIGNATURE
    )


def _padding_bit_set(text: str) -> str:
    """The same bytes spelled with a padding bit set: the last data character before '=='
    carries 4 unused bits (a 64-byte signature is 88 characters ending in '==')."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert text.endswith("==")
    last = alphabet.index(text[-3])
    assert last & 0xF == 0
    return text[:-3] + alphabet[last | 1] + "=="


def test_a_signature_spelled_with_padding_bits_set_is_refused() -> None:
    """Two spellings of one signature would give one signed body two transaction ids."""
    good = sig_doc("hosp-a/alice")
    other = _padding_bit_set(good["sig"])
    assert base64.b64decode(other) == base64.b64decode(good["sig"])  # lenient decoders agree
    assert txmod.decode(wire({"body": body(), "sigs": [good]})).sigs[0].sig
    assert refused(wire({"body": body(), "sigs": [{**good, "sig": other}]})) == \
        Code.BAD_SIGNATURE


def test_missing_signature() -> None:
    assert refused(wire({"body": body(), "sigs": []})) == Code.MISSING_SIGNATURE
    assert refused(wire({"body": body(), "sigs": None})) == Code.MISSING_SIGNATURE
    assert refused(wire({"body": body(), "sigs": {}})) == Code.MISSING_SIGNATURE
    # signed by someone else only
    assert (
        refused(wire({"body": body(), "sigs": [{**GOOD_SIG, "by": "hosp-b/bob"}]}))
        == Code.MISSING_SIGNATURE
    )
    # a co-signer did not sign
    b = body(cosigners=["hosp-b/bob"])
    assert (
        refused(wire({"body": b, "sigs": [sig_doc("hosp-a/alice", ALICE, b)]}))
        == Code.MISSING_SIGNATURE
    )
    with pytest.raises(RejectedError) as info:
        txmod.decode(wire({"body": b, "sigs": [sig_doc("hosp-a/alice", ALICE, b)]}))
    assert "hosp-b/bob" in info.value.message


def test_signatures_must_be_sorted_unique_and_expected() -> None:
    b = body(cosigners=["hosp-b/bob"])
    alice, bob = sig_doc("hosp-a/alice", ALICE, b), sig_doc("hosp-b/bob", BOB, b)
    assert txmod.decode(wire({"body": b, "sigs": [alice, bob]}))
    assert refused(wire({"body": b, "sigs": [bob, alice]})) == Code.BAD_ENVELOPE
    assert refused(wire({"body": b, "sigs": [alice, alice, bob]})) == Code.BAD_ENVELOPE
    assert refused(wire({"body": b, "sigs": [alice, bob, bob]})) == Code.BAD_ENVELOPE
    carol = sig_doc("hosp-c/carol", CAROL, b)
    assert refused(wire({"body": b, "sigs": [alice, bob, carol]})) == Code.BAD_ENVELOPE


# -- the envelope fast path of decode agrees with canonical.decode ------------------------------

_scalars = (st.none() | st.booleans() | st.text(max_size=6)
            | st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=40)


@st.composite
def _envelopes(draw: st.DrawFn) -> bytes:
    """Envelope-shaped documents: each field either of the right type or any JSON value, sorted
    or not, sometimes with a byte changed."""
    b = body(args=draw(st.dictionaries(st.text(max_size=5), _json, max_size=4)))
    for field in draw(st.sets(st.sampled_from(sorted(b)), max_size=2)):
        b[field] = draw(_json)
    sigs: Any = [sig_doc("hosp-a/alice")]
    if draw(st.booleans()):
        sigs[0]["kid"] = draw(_json)
    doc: Any = {"body": b, "sigs": sigs} if draw(st.integers(0, 9)) else draw(_json)
    raw = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS if draw(st.booleans()) else 0)
    if raw and draw(st.booleans()):
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    return raw


def _outcome(fn: Callable[[bytes], Any], raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(raw)
    except canonical.CanonicalError as exc:
        return "error", (exc.code, exc.message)


@settings(max_examples=600, deadline=None)
@given(raw=_envelopes())
def test_envelope_fast_path_accepts_and_refuses_exactly_as_canonical_decode(raw: bytes) -> None:
    assert _outcome(txmod._canonical_doc, raw) == _outcome(canonical.decode, raw)


def test_envelope_fast_path_still_walks_args_and_the_rest() -> None:
    """Floats, big integers and deep nesting are refused wherever they are (the reference is
    canonical.decode's own answer, and the cases do reach the fast path's checks)."""
    deep: Any = "x"
    for _ in range(31):
        deep = [deep]
    cases = [body(args={"a": 1.5}), body(args={"a": [2**53]}), body(args={"a": deep}),
             body(nonce=2**53), body(cosigners=[1.0])]
    for b in cases:
        raw = orjson.dumps({"body": b, "sigs": [sig_doc("hosp-a/alice")]},
                           option=orjson.OPT_SORT_KEYS)
        got = _outcome(txmod._canonical_doc, raw)
        assert got[0] == "error" and got == _outcome(canonical.decode, raw)
    ok = wire({"body": body(args={"a": [[["x"]]], "n": -(2**53 - 1)}),
               "sigs": [sig_doc("hosp-a/alice")]})
    assert _outcome(txmod._canonical_doc, ok) == ("ok", canonical.decode(ok))
