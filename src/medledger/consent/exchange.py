"""Consented exchange of a patient's records between two members' gateways.

1. The requester signs a request (``sign_request``): who asks, which holder, whose records
   (pseudonym), which categories, the purpose, a random nonce and the time; optionally a
   break-glass justification and duration. Ed25519 over ``DOMAIN ‖ canonical JSON``.
2. The holder (``Holder.handle``) checks, in order: the schema; the signature under the named
   member's key ``kid`` as registered on the ledger, whatever its status (``unknown_requester``,
   ``bad_signature``: unauthenticated, recorded under this gateway with the claimed member as
   ``claimed_requester``, ADR 0045); the member and key active now (``key_revoked``); that it
   is the holder (``wrong_holder``); freshness (± 5 min); replay (the request id already on the
   ledger or seen here); then break-glass rules or the consent decision at the ledger's current
   height (``model.decide``). Every decision — granted or denied — becomes an ``access.record``
   transaction; the holder releases nothing before the grant is in a block (the contract
   re-checks the consent at block time).
3. A grant is one HPKE message (RFC 9180, X25519 + AES-128-GCM; ``medledger.crypto.hpke``) sealed
   to the requester organisation's registered ``kex_key``, with ``info`` naming the chain and the
   request id: another organisation's key cannot open it.
4. The requester (``Requester.accept``) opens it and checks every record: SHA-256 of its bytes
   equals its fingerprint, and the fingerprint is a leaf of the batch the holder anchored on the
   ledger; and the delivery as a whole: its count and ``records_digest`` are the ones the
   holder's grant entry for this request id committed on the ledger (nothing left out, nothing
   added). Any mismatch records a ``rejected`` entry (``tampered_record``) and raises.

Malformed requests (schema failures) get ``malformed_request`` and are not recorded: nobody can
be named. Every other refusal is recorded, and raises ``ExchangeError`` with the entry key.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Protocol

import orjson
from pydantic import Field, ValidationError

from medledger.consent import model as m
from medledger.consent.errors import ExchangeError
from medledger.consent.sources import RecordSource, SharedRecord
from medledger.consortium.model import member_key, org_key, signing_key
from medledger.contracts.base import Args
from medledger.crypto import canonical, hpke
from medledger.crypto.keys import SigningKey, key_id, unb64, verify
from medledger.errors import MedLedgerError
from medledger.gateway.anchor import leaf_id
from medledger.ledger import merkle
from medledger.ledger import tx as txmod
from medledger.node.node import Node, Receipt
from medledger.records.batch import verify_in_batch

DOMAIN = b"medledger/exchange-request/v1\x00"
MAX_SKEW_MS = 300_000
MAX_BREAK_GLASS_MINUTES = 24 * 60
TIMEOUT = 30.0
Clock = Callable[[], int]


class BreakGlass(Args):
    justification: str = Field(max_length=2000)
    minutes: int = Field(ge=1, le=MAX_BREAK_GLASS_MINUTES)


class RequestBody(Args):
    chain: str = Field(min_length=1, max_length=64)
    requester: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,62}$")
    holder: str = Field(pattern=m.ORG)
    patient: str = Field(pattern=m.PATIENT)
    categories: list[str] = Field(min_length=1, max_length=16)
    purpose: Literal["treatment", "referral", "research", "insurance-claim", "public-health"]
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    time: int = Field(ge=0)
    break_glass: BreakGlass | None = None


def request_id(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical.encode(body)).hexdigest()


def sign_request(body: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The signed request ``{"body", "kid", "signature"}`` (signature base64)."""
    sig = key.sign(DOMAIN + canonical.encode(body))
    return {"body": body, "kid": key.kid, "signature": base64.b64encode(sig).decode()}


def _payload_info(chain: str, rid: str) -> bytes:
    return b"medledger/exchange/v1\x00" + chain.encode() + b"\x00" + rid.encode()


def records_digest(records: Sequence[SharedRecord]) -> str:
    """SHA-256 over each released record's id, version and fingerprint, in delivery order: what
    the holder's grant entry commits to and the requester compares with what it received."""
    return _digest((r.record_id, r.version, r.fingerprint) for r in records)


def _digest(rows: Iterable[tuple[str, int, str]]) -> str:
    h = hashlib.sha256()
    for record_id, version, fingerprint in rows:
        h.update(f"{record_id}\x00{version}\x00{fingerprint}\n".encode())
    return h.hexdigest()


class Ledger(Protocol):
    """One member's view of its organisation's ledger, as ``Holder`` and ``Requester`` use it:
    ``LedgerMember`` on an in-process node, ``consent.remote.HttpLedgerMember`` on a node's
    HTTP API."""

    member_id: str
    org: str
    key: SigningKey
    clock: Clock

    @property
    def chain_id(self) -> str: ...

    def state(self, key: str) -> Any:
        """The parsed value of state ``key`` (``<contract>/<key>``) at the head, or None."""

    def call(self, contract: str, method: str, args: dict[str, Any]) -> Receipt:
        """Sign ``contract.method(args)`` as ``member_id``, submit it, wait for the receipt."""


class LedgerMember:
    """Acts on an in-process node as one member: reads state, submits signed transactions."""

    def __init__(self, node: Node, member_id: str, key: SigningKey, clock: Clock) -> None:
        self.node, self.member_id, self.key, self.clock = node, member_id, key, clock
        self.org = member_id.split("/")[0]
        self._nonces = itertools.count(clock() * 1000 + secrets.randbelow(1000))
        self._lock = threading.Lock()

    @property
    def chain_id(self) -> str:
        return self.node.chain_id

    def state(self, key: str) -> Any:
        raw = self.node.store.get_state(key)
        return None if raw is None else orjson.loads(raw)

    def call(self, contract: str, method: str, args: dict[str, Any]) -> Receipt:
        with self._lock:
            nonce = next(self._nonces)
        body = txmod.make_body(chain=self.node.chain_id, contract=contract, method=method,
                               args=args, signer=self.member_id, nonce=nonce, time=self.clock())
        return self.node.submit(txmod.build(body, {self.member_id: self.key})).result(TIMEOUT)


@dataclass(frozen=True)
class Delivery:
    """What a holder sends back for a granted request."""

    request_id: str
    entry: str
    holder: str
    recipient_org: str
    kex_kid: str
    sealed: bytes

    def to_doc(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "entry": self.entry, "holder": self.holder,
                "recipient_org": self.recipient_org, "kex_kid": self.kex_kid,
                "sealed": base64.b64encode(self.sealed).decode()}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Delivery:
        return cls(doc["request_id"], doc["entry"], doc["holder"], doc["recipient_org"],
                   doc["kex_kid"], base64.b64decode(doc["sealed"], validate=True))


class Holder:
    """The holding organisation's side: decide, record, seal."""

    def __init__(self, ledger: Ledger, source: RecordSource) -> None:
        self.ledger, self.source = ledger, source
        self._seen: dict[str, int] = {}  # request id -> request time; older ones are stale
        self._lock = threading.Lock()

    def handle(self, signed: dict[str, Any]) -> Delivery:
        """Decide ``signed`` and return the sealed delivery; raises ExchangeError otherwise."""
        try:
            req = RequestBody.model_validate(signed.get("body"))
            kid, sig_b64 = str(signed["kid"]), str(signed["signature"])
        except (ValidationError, KeyError, TypeError, AttributeError) as exc:
            raise ExchangeError(m.Reason.MALFORMED_REQUEST, f"request does not parse: {exc}")\
                from None
        try:
            raw = canonical.encode(signed["body"])
        except MedLedgerError as exc:
            raise ExchangeError(m.Reason.MALFORMED_REQUEST, exc.message) from None
        rid = hashlib.sha256(raw).hexdigest()
        now = self.ledger.clock()
        member = self.ledger.state(f"consortium/{member_key(req.requester)}")
        reason, detail = self._signature(member, req, raw, kid, sig_b64)
        if reason is not None:  # nobody is authenticated: the holder vouches for the attempt
            entry = self._record(req, rid, "denied", reason, claimed_requester=req.requester)
            raise ExchangeError(reason, f"unauthenticated: {detail}", entry)
        reason, detail = self._authenticate(member, req, rid, kid, now)
        decision = m.Decision(m.Reason.NO_CONSENT)
        if reason is None:
            reason, detail, decision = self._authorise(req, now)
        if reason is not None:
            entry = self._record(req, rid, "denied", reason, decision.consent_id)
            raise ExchangeError(reason, detail, entry)
        return self._release(req, rid, decision, now)

    @staticmethod
    def _signature(member: dict[str, Any] | None, req: RequestBody, raw: bytes, kid: str,
                   sig_b64: str) -> tuple[m.Reason | None, str]:
        """Did ``member`` (the one the request names, as on the ledger now) sign it with its key
        ``kid``, whatever that key's status? Until this holds the request's claims are nobody's
        (ADR 0045)."""
        if member is None:
            return m.Reason.UNKNOWN_REQUESTER, f"no member {req.requester}"
        keys = [k for k in member["keys"] if k["kid"] == kid]
        if not keys:
            return m.Reason.UNKNOWN_REQUESTER, f"member {req.requester} has no key {kid}"
        try:
            sig = base64.b64decode(sig_b64, validate=True)
        except ValueError:
            return m.Reason.BAD_SIGNATURE, "signature is not base64"
        if not verify(unb64(keys[0]["pub"], length=32), DOMAIN + raw, sig):
            return m.Reason.BAD_SIGNATURE, f"signature does not verify under key {kid}"
        return None, ""

    def _authenticate(self, member: dict[str, Any], req: RequestBody, rid: str, kid: str,
                      now: int) -> tuple[m.Reason | None, str]:
        """The signer's standing now (member and key active), the holder, freshness, replay."""
        if member["status"] != "active":
            return m.Reason.KEY_REVOKED, f"member {req.requester} is {member['status']}"
        try:
            signing_key(member, kid, now)
        except MedLedgerError as exc:
            return m.Reason.KEY_REVOKED, exc.message
        if req.holder != self.ledger.org or req.chain != self.ledger.chain_id:
            return m.Reason.WRONG_HOLDER, (f"request is for {req.holder} on {req.chain}; this is "
                                           f"{self.ledger.org} on {self.ledger.chain_id}")
        if abs(now - req.time) > MAX_SKEW_MS:
            return m.Reason.STALE_REQUEST, (f"request time {req.time}; want within "
                                            f"{MAX_SKEW_MS} ms of {now}")
        with self._lock:
            seen = rid in self._seen
            self._seen[rid] = req.time
            if len(self._seen) > 100_000:  # forget what freshness alone now refuses
                self._seen = {k: t for k, t in self._seen.items()
                              if t >= now - 2 * MAX_SKEW_MS}
        if seen or self.ledger.state(f"access/req/{rid}") is not None:
            return m.Reason.REPLAYED_REQUEST, f"request {rid} was already decided"
        return None, ""

    def _authorise(self, req: RequestBody, now: int) -> tuple[m.Reason | None, str, m.Decision]:
        member = self.ledger.state(f"consortium/{member_key(req.requester)}")
        if req.break_glass is not None:
            org = self.ledger.state(f"consortium/{org_key(member['org'])}")
            if not req.break_glass.justification.strip():
                return (m.Reason.JUSTIFICATION_REQUIRED, "break-glass needs a justification",
                        m.Decision(m.Reason.JUSTIFICATION_REQUIRED))
            if member["role"] not in {"physician", "nurse"} or org["kind"] not in {
                    "hospital", "clinic"}:
                return (m.Reason.BREAK_GLASS_NOT_ALLOWED, f"{req.requester} "
                        f"({member['role']}) may not break the glass",
                        m.Decision(m.Reason.BREAK_GLASS_NOT_ALLOWED))
            return None, "", m.Decision(m.Reason.BREAK_GLASS)
        index = self.ledger.state(f"consent/{m.patient_key(req.patient)}")
        d = m.decide(index, member["org"], member["role"], req.purpose, req.categories, now)
        if not d.granted:
            return d.reason, f"consent check for {req.purpose}: {d.reason}", d
        return None, "", d

    def _record(self, req: RequestBody, rid: str, outcome: str, reason: m.Reason,
                consent_id: str | None = None, *, claimed_requester: str | None = None,
                **extra: Any) -> str:
        """Record the decision as ``access.record``; an unauthenticated attempt names this
        gateway as requester and the member it claimed as ``claimed_requester``."""
        requester = req.requester
        if claimed_requester is not None:
            requester, extra["claimed_requester"] = self.ledger.member_id, claimed_requester
        args = {"request_id": rid, "requester": requester, "holder": self.ledger.org,
                "patient": req.patient, "categories": req.categories, "purpose": req.purpose,
                "outcome": outcome, "reason": reason.value, "consent_id": consent_id,
                "break_glass": req.break_glass is not None, **extra}
        r = self.ledger.call("access", "record", args)
        if not r.ok:
            raise ExchangeError(m.Reason.NOT_RECORDED, f"access entry refused: {r.code}: "
                                f"{r.message}")
        return str(r.value["entry"])

    def _release(self, req: RequestBody, rid: str, d: m.Decision, now: int) -> Delivery:
        records = self.source.records(req.patient, req.categories)
        extra: dict[str, Any] = {"records": len(records),
                                 "records_digest": records_digest(records)}
        if req.break_glass is not None:
            extra["justification"] = hashlib.sha256(
                req.break_glass.justification.encode()).hexdigest()
            extra["until"] = now + req.break_glass.minutes * 60_000
        try:
            entry = self._record(req, rid, "granted", d.reason, d.consent_id, **extra)
        except ExchangeError:
            # the ledger refused the grant: the consent changed (e.g. a revocation was ordered
            # first). Decide again on the new state and record that denial instead.
            reason, detail, d2 = self._authorise(req, self.ledger.clock())
            if reason is None:
                raise
            denied = self._record(req, rid, "denied", reason, d2.consent_id)
            raise ExchangeError(reason, f"consent changed before the grant was recorded: "
                                f"{detail}", denied) from None
        org = self.ledger.state(f"consortium/{org_key(self.requester_org(req))}")
        kex = unb64(org["kex_key"], length=32)
        payload = canonical.encode({"request_id": rid, "holder": self.ledger.org, "records": [
            {"record_id": r.record_id, "version": r.version, "category": r.category,
             "body": base64.b64encode(r.body).decode(), "fingerprint": r.fingerprint,
             "batch_id": r.batch_id, "leaf_index": r.leaf_index, "count": r.count,
             "proof": [p.hex() for p in r.proof]} for r in records]})
        sealed = hpke.seal(kex, payload, _payload_info(self.ledger.chain_id, rid))
        return Delivery(rid, entry, self.ledger.org, org["id"], key_id(kex), sealed)

    @staticmethod
    def requester_org(req: RequestBody) -> str:
        return req.requester.split("/")[0]


@dataclass(frozen=True)
class Received:
    record_id: str
    version: int
    category: str
    body: bytes


class Requester:
    """The requesting organisation's side: sign requests, open and check deliveries."""

    def __init__(self, ledger: Ledger, kex_secret: bytes) -> None:
        self.ledger, self.kex_secret = ledger, kex_secret

    def request(self, holder: str, patient: str, categories: list[str], purpose: str,
                justification: str | None = None, minutes: int = 60) -> dict[str, Any]:
        body: dict[str, Any] = {
            "chain": self.ledger.chain_id, "requester": self.ledger.member_id,
            "holder": holder, "patient": patient, "categories": categories,
            "purpose": purpose, "nonce": secrets.token_hex(16), "time": self.ledger.clock()}
        if justification is not None:
            body["break_glass"] = {"justification": justification, "minutes": minutes}
        return sign_request(body, self.ledger.key)

    def accept(self, signed: dict[str, Any], delivery: Delivery) -> list[Received]:
        """Open ``delivery`` and check every record against its anchored fingerprint, and the
        whole delivery against the holder's grant entry on the ledger (count and digest)."""
        rid = request_id(signed["body"])
        if delivery.request_id != rid:
            raise ExchangeError(m.Reason.TAMPERED_RECORD, "delivery answers another request")
        granted = self._grant_entry(rid)
        plain = hpke.open(self.kex_secret, delivery.sealed,
                          _payload_info(self.ledger.chain_id, rid))
        doc = orjson.loads(plain)
        out: list[Received] = []
        roots: dict[str, Any] = {}
        for r in doc["records"]:
            problem = self._check(delivery.holder, r, roots)
            if problem:
                self._refuse(signed, rid, delivery.holder, f"record {r['record_id']}: {problem}")
            out.append(Received(r["record_id"], r["version"], r["category"],
                                base64.b64decode(r["body"])))
        digest = _digest((r["record_id"], r["version"], r["fingerprint"]) for r in doc["records"])
        if (granted.get("records"), granted.get("records_digest")) != (len(out), digest):
            self._refuse(signed, rid, delivery.holder, f"got {len(out)} records (digest "
                         f"{digest[:12]}), the ledger's grant entry says "
                         f"{granted.get('records')} ({str(granted.get('records_digest'))[:12]})")
        return out

    def _grant_entry(self, rid: str) -> dict[str, Any]:
        """The holder's ``granted`` entry for request ``rid``, found through ``req/<rid>`` on
        this member's ledger (not through the delivery, which anyone on the path could edit)."""
        ref = self.ledger.state(f"access/req/{rid}")
        entry = None if ref is None else self.ledger.state(f"access/{ref['entry']}")
        if entry is None:
            raise ExchangeError(m.Reason.NOT_RECORDED, f"no access entry for request {rid} on "
                                "this ledger yet; accept again once this peer has the holder's "
                                "block")
        if entry["outcome"] != "granted":
            raise ExchangeError(m.Reason.TAMPERED_RECORD, f"the ledger records request {rid} "
                                f"as {entry['outcome']} ({entry['reason']}), not granted")
        return dict(entry)

    def _refuse(self, signed: dict[str, Any], rid: str, holder: str, problem: str) -> NoReturn:
        entry = self._reject(RequestBody.model_validate(signed["body"]), rid, holder)
        raise ExchangeError(m.Reason.TAMPERED_RECORD, problem, entry)

    def _check(self, holder: str, r: dict[str, Any], roots: dict[str, Any]) -> str | None:
        body = base64.b64decode(r["body"])
        if hashlib.sha256(body).hexdigest() != r["fingerprint"]:
            return "bytes do not hash to the fingerprint"
        if r["batch_id"] not in roots:
            roots[r["batch_id"]] = self.ledger.state(f"registry/batch/{holder}/{r['batch_id']}")
        anchored = roots[r["batch_id"]]
        if anchored is None:
            return f"batch {r['batch_id']} of {holder} is not anchored"
        try:
            verify_in_batch(leaf_id(r["record_id"], r["version"]), bytes.fromhex(r["fingerprint"]),
                            r["leaf_index"], anchored["count"],
                            [bytes.fromhex(p) for p in r["proof"]], bytes.fromhex(anchored["root"]))
        except merkle.ProofError as exc:
            return f"fingerprint is not in the anchored batch: {exc}"
        return None

    def _reject(self, req: RequestBody, rid: str, holder: str) -> str:
        r = self.ledger.call("access", "record", {
            "request_id": rid, "requester": req.requester, "holder": holder,
            "patient": req.patient, "categories": req.categories, "purpose": req.purpose,
            "outcome": "rejected", "reason": m.Reason.TAMPERED_RECORD.value,
            "break_glass": req.break_glass is not None})
        if not r.ok:
            raise ExchangeError(m.Reason.NOT_RECORDED, f"rejection refused: {r.code}")
        return str(r.value["entry"])
