"""C2SP checkpoints and signed notes, including known answers from golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import base64
import hashlib

import nacl.signing
import pytest

from medledger.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    add_signature,
    key_id,
    make_verifiers,
    open_note,
    parse_body,
    parse_signer_key,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    signer_key_string,
    verify_checkpoint,
    vkey_string,
)

# Known-answer vectors from golang.org/x/mod/sumdb/note, file note_test.go (TestSign, TestOpen,
# TestNewVerifier, TestNewSigner), BSD-style licence. Ed25519 is deterministic, so signing the
# same text with the same seed must give these exact bytes.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngot"
    "pRZb6KE6RyyBwJnAM=\n"
).encode()
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox3"
    "3WWd1RvMc+QQ=\n"
).encode()

ROOT = hashlib.sha256(b"root").digest()
LOG = "example.org/medledger/log"


def _key(seed: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes([seed]) * 32)


def _verifiers(*named: tuple[str, nacl.signing.SigningKey]) -> dict[tuple[str, bytes], bytes]:
    return make_verifiers(vkey_string(n, bytes(k.verify_key)) for n, k in named)


def _code(fn: object, *args: object) -> str:
    assert callable(fn)
    with pytest.raises(CheckpointError) as e:
        fn(*args)
    return e.value.code


# --- known answers -----------------------------------------------------------------------------


def test_go_key_ids_and_vkeys() -> None:
    name, sk = parse_signer_key(PETER_SKEY)
    pk = bytes(sk.verify_key)
    assert name == "PeterNeumann"
    assert key_id(name, pk) == bytes.fromhex("c74f20a3")
    assert vkey_string(name, pk) == PETER_VKEY
    assert signer_key_string(name, sk) == PETER_SKEY
    assert parse_vkey(PETER_VKEY) == (name, pk)
    enoch_name, enoch_pk = parse_vkey(ENOCH_VKEY)
    assert key_id(enoch_name, enoch_pk) == bytes.fromhex("af0cfe78")


def test_go_signature_known_answer() -> None:
    name, sk = parse_signer_key(PETER_SKEY)
    assert sign_note(GO_TEXT, name, sk) == GO_TEXT + b"\n" + PETER_SIG


def test_go_open_known_answers() -> None:
    both = make_verifiers([PETER_VKEY, ENOCH_VKEY])
    note = GO_TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, both) == (GO_TEXT, ["PeterNeumann", "EnochRoot"])
    assert open_note(note, make_verifiers([PETER_VKEY])) == (GO_TEXT, ["PeterNeumann"])
    assert open_note(note, make_verifiers([ENOCH_VKEY])) == (GO_TEXT, ["EnochRoot"])
    assert _code(open_note, note, {}) == "no_known_signature"
    # Repeated signatures by one key count once (as in sumdb/note).
    twice = GO_TEXT + b"\n" + PETER_SIG + PETER_SIG + ENOCH_SIG
    assert open_note(twice, both)[1] == ["PeterNeumann", "EnochRoot"]
    # TestOpen "Invalid signature": four base64 characters spliced into the signature.
    spliced = GO_TEXT + b"\n" + PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]
    assert _code(open_note, spliced, both) == "bad_signature"
    # TestOpen "too many signatures".
    many = GO_TEXT + b"\n" + PETER_SIG * 101
    assert _code(open_note, many, both) == "malformed_note"


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,
        GO_TEXT + b"\n",
        GO_TEXT + b"\n" + PETER_SIG[:-1],
        b"\x01" + GO_TEXT + b"\n" + PETER_SIG,
        b"\xff" + GO_TEXT + b"\n" + PETER_SIG,
        GO_TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Bad Name"),
        GO_TEXT + b"\n" + PETER_SIG + b"Unexpected line.\n",
        GO_TEXT + b"\n" + PETER_SIG.replace("— ".encode(), b"- "),
        GO_TEXT + b"\n" + PETER_SIG.replace(b" x08go", b" "),
        GO_TEXT + b"\n" + "— PeterNeumann AAAA\n".encode(),  # shorter than key ID + 1 byte
        GO_TEXT + b"\n" + "— PeterNeumann not*base64\n".encode(),
    ],
    ids=[
        "text-only",
        "no-signatures",
        "no-final-newline",
        "control-char",
        "invalid-utf8",
        "space-in-name",
        "trailing-line",
        "hyphen-not-em-dash",
        "empty-signature",
        "short-signature",
        "not-base64",
    ],
)
def test_malformed_notes_rejected(note: bytes) -> None:
    assert _code(open_note, note, make_verifiers([PETER_VKEY])) == "malformed_note"


def test_go_vkey_manglings_rejected() -> None:
    b = PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                assert _code(parse_vkey, b[i:j]) == "bad_vkey"
    for i in range(len(b)):
        mangled = b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :]
        with pytest.raises(CheckpointError):
            parse_vkey(mangled)
    bad_length = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    unknown_alg = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    assert _code(parse_vkey, bad_length) == "bad_vkey"
    assert _code(parse_vkey, unknown_alg) == "bad_vkey"


def test_go_skey_manglings_rejected() -> None:
    b = PETER_SKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(CheckpointError):
                    parse_signer_key(b[i:j])
    for i in range(len(b)):
        with pytest.raises(CheckpointError):
            parse_signer_key(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])


def test_c2sp_examples_parse() -> None:
    # The examples in C2SP signed-note.md and tlog-checkpoint.md (public keys not published):
    # they must parse, and signatures from keys we do not know are ignored.
    poem = (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\n"
        "ed è subito sera.\n\n— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5dd"
        "nGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
    ).encode()
    assert _code(open_note, poem, {}) == "no_known_signature"
    sofa = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Z"
        "hcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    ).encode()
    same_name_other_key = _verifiers(("example.com/behind-the-sofa", _key(9)))
    assert _code(verify_checkpoint, sofa, same_name_other_key) == "no_known_signature"
    cp = parse_body(sofa[: sofa.index(b"\n\n") + 1])
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())


# --- checkpoints -------------------------------------------------------------------------------


def test_body_format_and_round_trip() -> None:
    cp = Checkpoint(LOG, 42, ROOT)
    assert cp.body() == f"{LOG}\n42\n".encode() + base64.b64encode(ROOT) + b"\n"
    assert parse_body(cp.body()) == cp
    ext = Checkpoint(LOG, 0, ROOT, ("ext one", "— two"))
    assert ext.body().endswith("ext one\n— two\n".encode())
    assert parse_body(ext.body()) == ext


def test_sign_and_verify_checkpoint() -> None:
    key = _key(1)
    cp = Checkpoint(LOG, 7, ROOT)
    note = sign_checkpoint(cp, LOG, key)
    assert verify_checkpoint(note, _verifiers((LOG, key))) == (cp, [LOG])
    assert verify_checkpoint(note, _verifiers((LOG, key)), origin=LOG)[0] == cp
    assert _code(verify_checkpoint, note, _verifiers((LOG, key)), "other/log") == "wrong_origin"


def test_every_one_byte_change_fails() -> None:
    key = _key(1)
    verifiers = _verifiers((LOG, key))
    note = sign_checkpoint(Checkpoint(LOG, 123456, ROOT, ("ext",)), LOG, key)
    for i in range(len(note)):
        for new in {note[i] ^ 0x01, ord("A"), ord("\n")} - {note[i]}:
            mutated = note[:i] + bytes([new]) + note[i + 1 :]
            with pytest.raises(CheckpointError):
                verify_checkpoint(mutated, verifiers)


def test_unknown_signer_ignored_and_two_signers() -> None:
    log_key, witness_key, stranger = _key(1), _key(2), _key(3)
    note = sign_checkpoint(Checkpoint(LOG, 5, ROOT), LOG, log_key)
    note = add_signature(note, "witness.example", witness_key)
    note = add_signature(note, "stranger.example", stranger)
    assert note.count("— ".encode()) == 3
    both = _verifiers((LOG, log_key), ("witness.example", witness_key))
    assert verify_checkpoint(note, both)[1] == [LOG, "witness.example"]
    assert verify_checkpoint(note, _verifiers((LOG, log_key)))[1] == [LOG]
    # Re-signing with a key already present replaces its line.
    again = add_signature(note, "witness.example", witness_key)
    assert again.count(b"witness.example") == 1
    assert verify_checkpoint(again, both)[1] == [LOG, "witness.example"]
    # Same name, different key: ignored, not a failure (signed-note "Signatures").
    impostor = add_signature(note, LOG, _key(4))
    assert verify_checkpoint(impostor, _verifiers((LOG, log_key)))[1] == [LOG]


def test_bad_signature_from_known_key_rejects_note() -> None:
    key = _key(1)
    good = sign_checkpoint(Checkpoint(LOG, 5, ROOT), LOG, key)
    other = sign_checkpoint(Checkpoint(LOG, 6, ROOT), LOG, key)
    sig_line = other[other.index(b"\n\n") + 2 :]
    forged = good[: good.index(b"\n\n") + 2] + sig_line
    assert _code(verify_checkpoint, forged, _verifiers((LOG, key))) == "bad_signature"
    # Even when another known key signed validly.
    w = _key(2)
    mixed = add_signature(forged, "w", w)
    assert _code(verify_checkpoint, mixed, _verifiers((LOG, key), ("w", w))) == "bad_signature"


def test_inconsistent_verifier_map_rejected() -> None:
    key = _key(1)
    note = sign_checkpoint(Checkpoint(LOG, 5, ROOT), LOG, key)
    kid = key_id(LOG, bytes(key.verify_key))
    assert _code(open_note, note, {(LOG, kid): bytes(_key(2).verify_key)}) == "bad_verifier"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"log\n1\n", "malformed_checkpoint"),
        (b"log\n1\nROOT", "malformed_checkpoint"),
        (b"log\n1\nROOT\n\xff\n", "malformed_checkpoint"),
        (b"log\n1\nROOT\n\tx\n", "malformed_checkpoint"),
        (b"\n1\nROOT\n", "bad_origin"),
        (b"log\n01\nROOT\n", "bad_size"),
        (b"log\n-1\nROOT\n", "bad_size"),
        (b"log\n+1\nROOT\n", "bad_size"),
        (b"log\n 1\nROOT\n", "bad_size"),
        (b"log\n1_0\nROOT\n", "bad_size"),
        (b"log\n\xd9\xa1\nROOT\n", "bad_size"),  # Arabic-Indic digit one
        (b"log\n18446744073709551616\nROOT\n", "bad_size"),
        (b"log\n1\nnot base64!\n", "bad_root"),
        (b"log\n1\n" + base64.b64encode(ROOT[:31]) + b"\n", "bad_root"),
        (b"log\n1\nROOT\n\n", "bad_extension"),
        (b"log\n1\nROOT\next\n\n", "bad_extension"),
    ],
)
def test_malformed_bodies_rejected(body: bytes, code: str) -> None:
    body = body.replace(b"ROOT", base64.b64encode(ROOT))
    assert _code(parse_body, body) == code


def test_non_canonical_root_rejected() -> None:
    text = base64.b64encode(ROOT).decode()
    assert text.endswith("=")
    # The character before '=' carries 2 unused bits; setting them decodes to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sloppy = text[:-2] + alphabet[alphabet.index(text[-2]) | 1] + "="
    assert base64.b64decode(sloppy) == ROOT
    assert _code(parse_body, f"log\n1\n{sloppy}\n".encode()) == "bad_root"


def test_checkpoint_constructor_validates() -> None:
    assert _code(Checkpoint, "", 1, ROOT) == "bad_origin"
    assert _code(Checkpoint, "a\nb", 1, ROOT) == "bad_origin"
    assert _code(Checkpoint, LOG, -1, ROOT) == "bad_size"
    assert _code(Checkpoint, LOG, 2**64, ROOT) == "bad_size"
    assert _code(Checkpoint, LOG, 1, ROOT[:31]) == "bad_root"
    assert _code(Checkpoint, LOG, 1, ROOT, ("",)) == "bad_extension"
    assert _code(Checkpoint, LOG, 1, ROOT, ("a\nb",)) == "bad_extension"


def test_sign_note_input_checks() -> None:
    key = _key(1)
    assert _code(sign_note, b"no newline", "n", key) == "malformed_note"
    assert _code(sign_note, b"bell\x07\n", "n", key) == "malformed_note"
    for bad in ["", "a+b", "a b", "a\u00a0b"]:
        assert _code(sign_note, b"text\n", bad, key) == "bad_key_name"
    assert _code(vkey_string, "n", b"short") == "bad_vkey"
