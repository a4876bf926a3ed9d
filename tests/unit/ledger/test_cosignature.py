"""C2SP tlog-cosignature v1 (Ed25519): a published real-world vector, named broken variants, and
signing cross-checked against an independent implementation."""

from __future__ import annotations

import base64
import hashlib

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.support.c2sp_vectors import (
    ARCHE_BODY,
    ARCHE_LINES,
    ARCHE_LOG_VKEY,
    ARCHE_NOTE,
    ARCHE_TIME,
    WITNESS_VKEYS,
    WITNESSES,
)

from medledger.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    make_verifiers,
    open_note,
    sign_checkpoint,
    vkey_string,
)
from medledger.ledger.cosignature import (
    MAX_TIMESTAMP,
    attach,
    check_cosignatures,
    cosign,
    cosigner_key_id,
    cosigner_vkey,
    parse_cosigner_vkey,
    signed_message,
    verify_cosignatures,
)

# --- known answers (tests/support/c2sp_vectors.py) -------------------------------------------

# RFC 8032 §7.1 TEST 1 secret key and its public key, for the signing cross-check.
RFC8032_SK = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PK = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
ROOT = hashlib.sha256(b"root").digest()
BODY = Checkpoint("medledger/test-1", 325, ROOT, ("medledger-block 31 " + "ab" * 32,)).body()


def _code(fn: object, *args: object) -> str:
    assert callable(fn)
    with pytest.raises(CheckpointError) as e:
        fn(*args)
    return e.value.code


def _note(body: bytes, lines: list[str]) -> bytes:
    return body + b"\n" + "".join(ln + "\n" for ln in lines).encode()


def _relabel(line: str, payload: bytes) -> str:
    """``line`` with its base64 replaced by ``payload``."""
    return line.rsplit(" ", 1)[0] + " " + base64.b64encode(payload).decode()


def _payload(line: str) -> bytes:
    return base64.b64decode(line.rsplit(" ", 1)[1])


def test_real_witness_cosignatures_verify() -> None:
    got = verify_cosignatures(ARCHE_NOTE, WITNESSES)
    assert got == [(name, ARCHE_TIME) for name in WITNESSES]
    # The log's own signature is a note signature (0x01), not a cosignature.
    assert open_note(ARCHE_NOTE, make_verifiers([ARCHE_LOG_VKEY]))[0] == ARCHE_BODY


def test_real_witness_key_ids_and_vkeys() -> None:
    for vkey, line in zip(WITNESS_VKEYS, ARCHE_LINES[2:], strict=True):
        name, pk = parse_cosigner_vkey(vkey)
        assert cosigner_vkey(name, pk) == vkey
        assert cosigner_key_id(name, pk) == bytes.fromhex(vkey.split("+")[1]) == _payload(line)[:4]
    # A type-0x04 vkey is not a note-signing (0x01) vkey and vice versa.
    assert _code(parse_cosigner_vkey, ARCHE_LOG_VKEY) == "bad_vkey"
    assert _code(make_verifiers, [WITNESS_VKEYS[0]]) == "bad_vkey"


def _broken_variants() -> dict[str, bytes]:
    remora = ARCHE_LINES[4]
    p = _payload(remora)
    later = p[:4] + (ARCHE_TIME + 1).to_bytes(8, "big") + p[12:]
    sig_bit = p[:-1] + bytes([p[-1] ^ 0x01])
    b64 = remora.rsplit(" ", 1)[1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sloppy = b64[:-3] + alphabet[alphabet.index(b64[-3]) | 1] + "=="  # same bytes, unused bits
    assert sloppy != b64 and base64.b64decode(sloppy) == p
    only_remora = [ARCHE_LINES[1]]

    def with_remora(line: str, body: bytes = ARCHE_BODY) -> bytes:
        return _note(body, [*only_remora, line])

    return {
        "wrong-timestamp": with_remora(_relabel(remora, later)),
        "signature-bit-flipped": with_remora(_relabel(remora, sig_bit)),
        "signature-truncated": with_remora(_relabel(remora, p[:-1])),
        "signature-extended": with_remora(_relabel(remora, p + b"\x00")),
        "non-canonical-base64": with_remora(remora.rsplit(" ", 1)[0] + " " + sloppy),
        "size-changed": with_remora(remora, ARCHE_BODY.replace(b"1432088532", b"1432088533")),
        "extension-line-added": with_remora(remora, ARCHE_BODY + b"extra\n"),
    }


@pytest.mark.parametrize("variant", sorted(_broken_variants()))
def test_real_vector_broken_variants_rejected(variant: str) -> None:
    note = _broken_variants()[variant]
    check = check_cosignatures(note, WITNESSES)
    assert (check.valid, check.invalid) == ((), ("remora.n621.de",))
    assert _code(verify_cosignatures, note, WITNESSES) == "bad_cosignature"


def test_real_vector_with_other_key_types_is_ignored() -> None:
    # The same public keys under the note-signature type (0x01) do not match the 0x04 key IDs.
    name, pk = parse_cosigner_vkey(WITNESS_VKEYS[2])
    assert _code(verify_cosignatures, ARCHE_NOTE, {"remora.n621.de": RFC8032_PK}) == (
        "no_known_cosignature"
    )
    assert check_cosignatures(ARCHE_NOTE, {}).valid == ()
    assert [c.name for c in check_cosignatures(ARCHE_NOTE, {name: pk}).valid] == [name]


# --- signing -----------------------------------------------------------------------------------


def test_cosign_matches_independent_implementation() -> None:
    """Our line equals one built by hand from the spec with pyca/cryptography's Ed25519 (an
    independent implementation: OpenSSL, not libsodium): key ID, big-endian u64 time, signature
    over "cosignature/v1\\ntime <t>\\n" + body. No published vector fixes a private key."""
    name, t = "hosp-a", 1_764_259_200
    sk = nacl.signing.SigningKey(RFC8032_SK)
    assert bytes(sk.verify_key) == RFC8032_PK
    independent = Ed25519PrivateKey.from_private_bytes(RFC8032_SK)
    message = b"cosignature/v1\n" + f"time {t}\n".encode() + BODY
    kid = hashlib.sha256(name.encode() + b"\n\x04" + RFC8032_PK).digest()[:4]
    blob = kid + t.to_bytes(8, "big") + independent.sign(message)
    want = f"— {name} {base64.b64encode(blob).decode()}\n"
    assert signed_message(BODY, t) == message
    assert cosign(BODY, name, sk, t) == want


def test_round_trip_attach_and_verify() -> None:
    log_key, w1, w2 = (nacl.signing.SigningKey(bytes([i]) * 32) for i in (1, 2, 3))
    note = sign_checkpoint(Checkpoint("medledger/test-1", 5, ROOT), "hosp-a", log_key)
    body = note[: note.index(b"\n\n") + 1]
    lines = [cosign(body, n, k, 7) for n, k in (("w1", w1), ("w2", w2))]
    cosigned = attach(note, lines)
    keys = {"w1": bytes(w1.verify_key), "w2": bytes(w2.verify_key)}
    assert verify_cosignatures(cosigned, keys) == [("w1", 7), ("w2", 7)]
    assert attach(cosigned, lines) == cosigned  # already there: not repeated
    # Note-signature checks ignore cosignatures (other key IDs), and vice versa.
    log_vkeys = make_verifiers([vkey_string("hosp-a", bytes(log_key.verify_key))])
    assert open_note(cosigned, log_vkeys) == (body, ["hosp-a"])
    assert check_cosignatures(cosigned, {"hosp-a": bytes(log_key.verify_key)}).valid == ()
    # A cosignature over another body fails on this note.
    stray = attach(note, [cosign(BODY, "w1", w1, 7)])
    assert _code(verify_cosignatures, stray, keys) == "bad_cosignature"


def test_duplicates_and_garbage_in_front_count_once() -> None:
    k = nacl.signing.SigningKey(bytes([5]) * 32)
    good = cosign(BODY, "w", k, 9)
    p = _payload(good)
    garbage = _relabel(good, p[:12] + bytes(64))
    note = _note(BODY, [garbage.rstrip("\n"), good.rstrip("\n"), good.rstrip("\n")])
    check = check_cosignatures(note, {"w": bytes(k.verify_key)})
    assert [(c.name, c.timestamp) for c in check.valid] == [("w", 9)]
    assert check.invalid == ()


def test_timestamp_bounds() -> None:
    k = nacl.signing.SigningKey(bytes([6]) * 32)
    keys = {"w": bytes(k.verify_key)}
    top = cosign(BODY, "w", k, MAX_TIMESTAMP)
    assert verify_cosignatures(_note(BODY, [top.rstrip()]), keys) == [("w", MAX_TIMESTAMP)]
    assert _code(cosign, BODY, "w", k, MAX_TIMESTAMP + 1) == "bad_timestamp"
    assert _code(cosign, BODY, "w", k, -1) == "bad_timestamp"
    # A validly signed line whose timestamp exceeds 2**63 - 1 is still refused (spec MUST).
    over = MAX_TIMESTAMP + 1
    msg = b"cosignature/v1\ntime %d\n" % over + BODY
    blob = cosigner_key_id("w", keys["w"]) + over.to_bytes(8, "big") + k.sign(msg).signature
    line = "— w " + base64.b64encode(blob).decode()
    assert check_cosignatures(_note(BODY, [line]), keys).invalid == ("w",)


def test_cosign_input_checks() -> None:
    k = nacl.signing.SigningKey(bytes([7]) * 32)
    assert _code(cosign, b"not a checkpoint\n", "w", k, 1) == "malformed_checkpoint"
    assert _code(cosign, BODY, "bad name", k, 1) == "bad_key_name"
    assert _code(cosign, BODY, "a+b", k, 1) == "bad_key_name"
    short_key = {"w": b"short"}
    assert _code(check_cosignatures, _note(BODY, ["— w AAAAAAAA"]), short_key) == "bad_verifier"
    note = _note(BODY, [cosign(BODY, "w", k, 1).rstrip()])
    assert _code(attach, note, ["— v AAAAAAAA\n— u AAAAAAAA\n"]) == "malformed_note"
    assert _code(attach, note, ["not a signature line\n"]) == "malformed_note"
