"""Transaction envelopes: building, signing, and strict decoding.

Wire form (canonical JSON, see ``medledger.crypto.canonical``)::

    {"body": {"args": {...}, "chain": "...", "contract": "...", "cosigners": [...],
              "method": "...", "nonce": 7, "signer": "hosp-a/dr-li", "time": 1764259200000},
     "sigs": [{"by": "hosp-a/dr-li", "kid": "…16 hex…", "sig": "base64 64 bytes"}, ...]}

* Every signature covers ``SIG_DOMAIN + canonical(body)``.
* ``sigs`` holds exactly one signature by the signer and one by each co-signer, sorted by ``by``.
* ``time`` is Unix milliseconds; ``nonce`` a non-negative integer unique per signer.
* The transaction id is SHA-256 over the whole canonical wire bytes. Ed25519 signatures are
  deterministic and libsodium rejects malleated ones, so one body signed by the same keys always
  gives the same id (a client's retry is idempotent).
"""

from __future__ import annotations

import hashlib
import re
from binascii import a2b_base64 as b64decode
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from medledger.crypto import canonical
from medledger.crypto.keys import BadKeyError, SigningKey, b64, unb64
from medledger.errors import Code, RejectedError

SIG_DOMAIN = b"medledger/tx/v1\n"
MAX_TX_BYTES = 64 * 1024
BODY_FIELDS = frozenset(
    {"args", "chain", "contract", "cosigners", "method", "nonce", "signer", "time"}
)
ENVELOPE_FIELDS = frozenset({"body", "sigs"})
SIG_FIELDS = frozenset({"by", "kid", "sig"})
MEMBER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,62}\Z")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}\Z")
KID = re.compile(r"^[0-9a-f]{16}\Z")  # \Z: "$" would also accept a trailing newline


@dataclass(frozen=True, slots=True)
class Signature:
    by: str
    kid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Transaction:
    """A decoded, canonically encoded, structurally valid transaction (signatures unchecked).

    Built only by ``decode`` (or ``decode_trusted`` from bytes ``decode`` accepted), so the body's
    fields have the types ``decode`` checks; the accessors return them as they are."""

    raw: bytes
    tx_id: bytes
    body: dict[str, Any]
    signed: bytes  # SIG_DOMAIN + canonical(body)
    sigs: tuple[Signature, ...]

    @property
    def chain(self) -> str:
        chain: str = self.body["chain"]
        return chain

    @property
    def contract(self) -> str:
        contract: str = self.body["contract"]
        return contract

    @property
    def method(self) -> str:
        method: str = self.body["method"]
        return method

    @property
    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = self.body["args"]
        return args

    @property
    def signer(self) -> str:
        signer: str = self.body["signer"]
        return signer

    @property
    def cosigners(self) -> list[str]:
        cos: list[str] = self.body["cosigners"]
        return cos

    @property
    def nonce(self) -> int:
        nonce: int = self.body["nonce"]
        return nonce

    @property
    def time(self) -> int:
        time: int = self.body["time"]
        return time


def make_body(
    *,
    chain: str,
    contract: str,
    method: str,
    args: dict[str, Any],
    signer: str,
    nonce: int,
    time: int,
    cosigners: Sequence[str] = (),
) -> dict[str, Any]:
    """The unsigned body of a transaction."""
    return {
        "args": args,
        "chain": chain,
        "contract": contract,
        "cosigners": sorted(cosigners),
        "method": method,
        "nonce": nonce,
        "signer": signer,
        "time": time,
    }


def sign_body(body: dict[str, Any], member_id: str, key: SigningKey) -> Signature:
    """One member's signature over ``body``."""
    return Signature(member_id, key.kid, key.sign(SIG_DOMAIN + canonical.encode(body)))


def assemble(body: dict[str, Any], sigs: Sequence[Signature]) -> bytes:
    """Canonical wire bytes of a signed transaction."""
    return _wire(canonical.encode(body), sigs)


def build(body: dict[str, Any], keys: dict[str, SigningKey]) -> bytes:
    """Sign ``body`` with every key in ``keys`` (member id → key) and return the wire bytes.
    The body is checked and encoded once, for every signature and the envelope."""
    encoded = canonical.encode(body)
    signed = SIG_DOMAIN + encoded
    return _wire(encoded, [Signature(mid, k.kid, k.sign(signed)) for mid, k in keys.items()])


def _wire(encoded_body: bytes, sigs: Sequence[Signature]) -> bytes:
    """``canonical({"body": body, "sigs": [...]})`` from the body's canonical bytes: keys "body"
    < "sigs" are in order, and the signature list is encoded (and checked) on its own."""
    ordered = sorted(sigs, key=lambda s: s.by)
    docs = canonical.encode([{"by": s.by, "kid": s.kid, "sig": b64(s.sig)} for s in ordered])
    return b'{"body":' + encoded_body + b',"sigs":' + docs + b"}"


def tx_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def decode(raw: bytes, *, max_bytes: int = MAX_TX_BYTES) -> Transaction:
    """Decode wire bytes strictly; raises RejectedError with a reason code.

    Checks size, canonical encoding, envelope shape and field types. It does not check the chain
    id, signatures, membership or replay: those need ledger state (see ``medledger.node.admit``).
    """
    if len(raw) > max_bytes:
        raise RejectedError(Code.TOO_LARGE, f"got {len(raw)} bytes, cap is {max_bytes}")
    try:
        doc = _canonical_doc(raw)
    except canonical.CanonicalError as exc:
        raise RejectedError(exc.code, exc.message) from None
    if type(doc) is not dict or doc.keys() != ENVELOPE_FIELDS:
        raise RejectedError(Code.BAD_ENVELOPE, "want an object with exactly 'body' and 'sigs'")
    body, sig_docs = doc["body"], doc["sigs"]
    _check_body(body)
    sigs = _parse_sigs(sig_docs)
    want = sorted({body["signer"], *body["cosigners"]})
    got = [s.by for s in sigs]
    if got != want:
        missing = sorted(set(want) - set(got))
        if missing:
            raise RejectedError(Code.MISSING_SIGNATURE, f"no signature by {', '.join(missing)}")
        raise RejectedError(Code.BAD_ENVELOPE, f"got signatures by {got}, want exactly {want}")
    # raw is canonical, so the bytes of "body" are exactly canonical(body): they run from after
    # '{"body":' to the last ',"sigs":[' (inside body a '"' is always escaped or structural,
    # and no signature field can contain that sequence).
    signed = SIG_DOMAIN + raw[8 : raw.rindex(b',"sigs":[')]
    return Transaction(raw, tx_id(raw), body, signed, sigs)


def _canonical_doc(raw: bytes) -> Any:
    """``canonical.decode(raw)``, walking only ``body.args`` for types when the rest of the
    envelope already has the shape and types ``decode`` requires (strings, safe non-negative
    integers, the fixed containers: nothing there can be a float or a big integer). Anything
    else goes through ``canonical.decode`` itself, so the same bytes are accepted, with the same
    value, and every rejection has the same code and message (ADR 0057)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return canonical.decode(raw)
    if _plain_envelope(doc):
        try:
            canonical.check(doc["body"]["args"], depth=2)
            if canonical.encode_checked_parts(doc) == raw:
                return doc
        except (canonical.CanonicalError, orjson.JSONEncodeError):
            pass
    return canonical.decode(raw)


def _plain_envelope(doc: Any) -> bool:
    """True if ``doc`` (from ``orjson.loads``: keys are strings) has the envelope's containers
    and every value outside ``body.args`` is a string or an integer in [0, 2**53 - 1]."""
    if type(doc) is not dict or doc.keys() != ENVELOPE_FIELDS:
        return False
    body, sigs = doc["body"], doc["sigs"]
    if type(body) is not dict or body.keys() != BODY_FIELDS or type(body["args"]) is not dict:
        return False
    if (type(body["chain"]) is not str or type(body["contract"]) is not str
            or type(body["method"]) is not str or type(body["signer"]) is not str):
        return False
    nonce, time = body["nonce"], body["time"]
    if (type(nonce) is not int or type(time) is not int
            or not 0 <= nonce <= canonical.MAX_SAFE_INT or not 0 <= time <= canonical.MAX_SAFE_INT):
        return False
    cos = body["cosigners"]
    if type(cos) is not list or (cos and any(type(c) is not str for c in cos)):
        return False
    if type(sigs) is not list:
        return False
    for d in sigs:
        if type(d) is not dict:
            return False
        for v in d.values():
            if type(v) is not str:
                return False
    return True


def _check_body(body: Any) -> None:
    if type(body) is not dict or body.keys() != BODY_FIELDS:
        got = sorted(body) if type(body) is dict else type(body).__name__
        raise RejectedError(
            Code.BAD_ENVELOPE, f"body fields: got {got}, want {sorted(BODY_FIELDS)}"
        )
    for field in ("chain", "contract", "method", "signer"):
        if type(body[field]) is not str:
            raise RejectedError(Code.BAD_ENVELOPE, f"body.{field} must be a string")
    if not NAME.match(body["contract"]) or not NAME.match(body["method"]):
        raise RejectedError(Code.BAD_ENVELOPE, "contract and method must match [a-z][a-z0-9_]*")
    if not MEMBER_ID.match(body["signer"]):
        raise RejectedError(Code.BAD_ENVELOPE, f"signer {body['signer']!r} is not 'org/member'")
    for field in ("nonce", "time"):
        if type(body[field]) is not int or body[field] < 0:
            raise RejectedError(Code.BAD_ENVELOPE, f"body.{field} must be a non-negative integer")
    if type(body["args"]) is not dict:
        raise RejectedError(Code.BAD_ENVELOPE, "body.args must be an object")
    cos = body["cosigners"]
    if type(cos) is not list or (cos and any(type(c) is not str or not MEMBER_ID.match(c)
                                             for c in cos)):
        raise RejectedError(Code.BAD_ENVELOPE, "body.cosigners must be a list of member ids")
    if cos and (cos != sorted(set(cos)) or body["signer"] in cos):
        raise RejectedError(Code.BAD_ENVELOPE, "cosigners must be sorted, unique, not the signer")


def _parse_sigs(docs: Any) -> tuple[Signature, ...]:
    if type(docs) is not list or not docs:
        raise RejectedError(Code.MISSING_SIGNATURE, "sigs must be a non-empty list")
    out = []
    for d in docs:
        if type(d) is not dict or d.keys() != SIG_FIELDS:
            raise RejectedError(Code.BAD_ENVELOPE, "each signature has exactly by, kid, sig")
        if type(d["by"]) is not str or type(d["kid"]) is not str or type(d["sig"]) is not str:
            raise RejectedError(Code.BAD_ENVELOPE, "signature fields must be strings")
        if not KID.match(d["kid"]):
            raise RejectedError(Code.BAD_ENVELOPE, f"kid {d['kid']!r} is not 16 hex digits")
        try:
            sig = unb64(d["sig"], length=64)
        except BadKeyError as exc:
            raise RejectedError(Code.BAD_SIGNATURE, exc.message) from None
        out.append(Signature(d["by"], d["kid"], sig))
    return tuple(out)


def decode_trusted(raw: bytes, tid: bytes | None = None) -> Transaction:
    """Rebuild a Transaction from bytes that ``decode`` has already accepted (in another
    process): parses without repeating the canonical and envelope checks. ``tid`` is the
    transaction id that process computed from the same bytes (hashed again when omitted)."""
    doc = orjson.loads(raw)
    docs = doc["sigs"]
    if len(docs) == 1:  # the usual case: one signer, no generator
        d = docs[0]
        sigs: tuple[Signature, ...] = (Signature(d["by"], d["kid"], b64decode(d["sig"])),)
    else:
        sigs = tuple(Signature(d["by"], d["kid"], b64decode(d["sig"])) for d in docs)
    signed = SIG_DOMAIN + raw[8 : raw.rindex(b',"sigs":[')]
    return Transaction(raw, tx_id(raw) if tid is None else tid, doc["body"], signed, sigs)
