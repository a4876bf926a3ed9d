"""The exchange between gateways: one granted end to end, and each refusal with its reason and
its access-log entry."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
from tests.conftest import T0
from tests.unit.consent.conftest import FORM, PATIENT, Parties, grant

from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Delivery, Holder, Requester, request_id, sign_request
from medledger.consent.model import Reason
from medledger.crypto import canonical, hpke
from medledger.crypto.hpke import HpkeError
from medledger.errors import Code


def entries(p: Parties) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in p.lg.store.scan_state(f"access/e/{PATIENT}/")]


def refused(p: Parties, signed: dict[str, Any], reason: Reason) -> dict[str, Any]:
    before = len(entries(p))
    with pytest.raises(ExchangeError) as err:
        p.holder.handle(signed)
    assert err.value.reason is reason, err.value
    after = entries(p)
    assert len(after) == before + 1
    last: dict[str, Any] = p.lg.state(f"access/{err.value.entry}")
    assert last["outcome"] == "denied" and last["reason"] == reason.value
    return last


def ask(p: Parties, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"holder": "hosp-a", "patient": PATIENT, "categories": ["labs"],
                            "purpose": "referral"}
    args.update(kw)
    return p.requester.request(**args)


def test_granted_exchange_delivers_checked_records_and_records_the_access(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    signed = ask(p)
    delivery = p.holder.handle(signed)
    got = p.requester.accept(signed, delivery)
    assert sorted(r.record_id for r in got) == ["lab-0", "lab-1", "lab-2"]
    assert got[0].body == b'{"lab":0}'
    [entry] = entries(p)
    assert entry["outcome"] == "granted" and entry["reason"] == "consented"
    assert entry["consent_id"] == "c1" and entry["records"] == 3
    assert entry["requester"] == "hosp-b/dr" and entry["holder"] == "hosp-a"
    # the delivery survives its wire form
    again = Delivery.from_doc(orjson.loads(orjson.dumps(delivery.to_doc())))
    assert again == delivery


def test_no_consent(parties: Parties) -> None:
    p = parties
    refused(p, ask(p), Reason.NO_CONSENT)


def test_expired(parties: Parties) -> None:
    p = parties
    grant(p.lg, end=T0 + 2_000)
    p.lg.clock.advance(5_000)
    refused(p, ask(p), Reason.CONSENT_EXPIRED)


def test_revoked_from_the_next_block(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    p.holder.handle(ask(p))
    p.lg.ok("hosp-a/steward", "consent", "revoke", {"consent_id": "c1", "reason": "asked",
                                                     "evidence": FORM})
    last = refused(p, ask(p), Reason.CONSENT_REVOKED)
    assert last["consent_id"] == "c1"


def test_wrong_purpose(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    refused(p, ask(p, purpose="research"), Reason.WRONG_PURPOSE)


def test_wrong_recipient_is_refused_and_could_not_decrypt(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    insurer = Requester(p.member("insurer/gw"), p.lg.ring.agreement["insurer"].secret)
    refused(p, insurer.request("hosp-a", PATIENT, ["labs"], "referral"),
            Reason.WRONG_RECIPIENT)
    signed = ask(p)
    delivery = p.holder.handle(signed)  # sealed to hosp-b
    with pytest.raises(HpkeError):
        insurer.accept(signed, delivery)  # the insurer's key does not open it


def test_tampered_record_is_rejected_and_recorded(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    signed = ask(p)
    delivery = p.holder.handle(signed)
    secret = p.lg.ring.agreement["hosp-b"].secret
    info = b"medledger/exchange/v1\x00" + p.lg.node.chain_id.encode() + b"\x00" + \
        delivery.request_id.encode()
    doc = orjson.loads(hpke.open(secret, delivery.sealed, info))
    body = b'{"lab":999}'
    doc["records"][0]["body"] = base64.b64encode(body).decode()
    doc["records"][0]["fingerprint"] = hashlib.sha256(body).hexdigest()  # consistent, unanchored
    kex = hpke.public_key(secret)
    forged = Delivery(delivery.request_id, delivery.entry, "hosp-a", "hosp-b",
                      delivery.kex_kid, hpke.seal(kex, canonical.encode(doc), info))
    with pytest.raises(ExchangeError) as err:
        p.requester.accept(signed, forged)
    assert err.value.reason is Reason.TAMPERED_RECORD and "anchored" in err.value.message
    rejected = p.lg.state(f"access/{err.value.entry}")
    assert rejected["outcome"] == "rejected" and rejected["recorded_by"] == "hosp-b/dr"
    doc["records"][0]["fingerprint"] = "00" * 32  # bytes no longer match their fingerprint
    forged2 = Delivery(delivery.request_id, delivery.entry, "hosp-a", "hosp-b",
                       delivery.kex_kid, hpke.seal(kex, canonical.encode(doc), info))
    with pytest.raises(ExchangeError, match="do not hash"):
        p.requester.accept(signed, forged2)


def test_replayed_request(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    signed = ask(p)
    p.holder.handle(signed)
    refused(p, signed, Reason.REPLAYED_REQUEST)
    # a fresh holder process still sees the replay on the ledger
    fresh = Holder(p.member("hosp-a/gw"), p.source)
    with pytest.raises(ExchangeError) as err:
        fresh.handle(signed)
    assert err.value.reason is Reason.REPLAYED_REQUEST and err.value.code is Code.REPLAYED_NONCE


def test_request_signed_with_a_revoked_key(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    kid = p.lg.ring.signing["hosp-b/dr"].kid
    p.lg.ok("hosp-b/root", "consortium", "revoke_key", {"member": "hosp-b/dr", "kid": kid})
    p.lg.clock.advance(1)
    signed = ask(p)
    last = refused(p, signed, Reason.KEY_REVOKED)
    # signed with that key: evidence that whoever holds the revoked key used it
    assert last["requester"] == "hosp-b/dr" and "claimed_requester" not in last
    forged = sign_request({**signed["body"], "nonce": "0f" * 16},
                          p.lg.ring.signing["hosp-b/clerk"])
    forged["kid"] = kid
    last = refused(p, forged, Reason.BAD_SIGNATURE)  # naming a revoked key proves nothing
    assert last["claimed_requester"] == "hosp-b/dr"


def unauthenticated(p: Parties, signed: dict[str, Any], reason: Reason,
                    claimed: str) -> dict[str, Any]:
    """Refused, recorded under the holder's gateway with the claim marked (ADR 0045)."""
    last = refused(p, signed, reason)
    assert last["requester"] == last["recorded_by"] == "hosp-a/gw"
    assert last["claimed_requester"] == claimed
    assert p.lg.state(f"access/req/{request_id(signed['body'])}") is None
    return last


def test_forged_signature_is_recorded_under_the_holder_and_uses_up_nothing(
        parties: Parties) -> None:
    p = parties
    grant(p.lg)
    signed = ask(p)
    forged = sign_request(signed["body"], p.lg.ring.signing["hosp-b/clerk"])
    forged["kid"] = signed["kid"]
    with pytest.raises(ExchangeError, match="unauthenticated"):
        p.holder.handle(forged)
    unauthenticated(p, forged, Reason.BAD_SIGNATURE, "hosp-b/dr")  # each attempt is recorded
    unauthenticated(p, {**forged, "signature": "not base64!"}, Reason.BAD_SIGNATURE,
                    "hosp-b/dr")
    # the forger saw the body: its copies did not use up the genuine request
    got = p.requester.accept(signed, p.holder.handle(signed))
    assert len(got) == 3
    assert [(e["requester"], e["outcome"]) for e in entries(p)] == [
        ("hosp-a/gw", "denied")] * 3 + [("hosp-b/dr", "granted")]


def test_stale_request(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    signed = ask(p)
    p.lg.clock.advance(301_000)
    refused(p, signed, Reason.STALE_REQUEST)


def test_break_glass_without_justification(parties: Parties) -> None:
    p = parties
    refused(p, ask(p, justification="   "), Reason.JUSTIFICATION_REQUIRED)


def test_break_glass_by_a_non_clinician(parties: Parties) -> None:
    p = parties
    clerk = Requester(p.member("hosp-b/clerk"), p.lg.ring.agreement["hosp-b"].secret)
    refused(p, clerk.request("hosp-a", PATIENT, ["labs"], "treatment", "unconscious"),
            Reason.BREAK_GLASS_NOT_ALLOWED)


def test_break_glass_is_time_limited_flagged_and_reviewable(parties: Parties) -> None:
    p = parties
    signed = ask(p, purpose="treatment", justification="unconscious in A&E", minutes=30)
    got = p.requester.accept(signed, p.holder.handle(signed))
    assert len(got) == 3
    [entry] = entries(p)
    assert entry["break_glass"] and entry["flagged"] and entry["reason"] == "break_glass"
    assert entry["until"] == p.lg.clock() + 30 * 60_000 and entry["justification"]
    key = f"access/review/hosp-a/{entry_key(entry)[2:]}"
    assert p.lg.state(key)["status"] == "pending"
    assert p.lg.call("hosp-b/dr", "access", "review", {
        "entry": entry_key(entry), "decision": "justified"}).code == Code.FORBIDDEN
    p.lg.ok("hosp-a/auditor", "access", "review", {"entry": entry_key(entry),
                                                    "decision": "justified", "note": "ok"})
    assert p.lg.state(key)["status"] == "justified"


def entry_key(entry: dict[str, Any]) -> str:
    return f"e/{entry['patient']}/{entry['height']:012d}/{entry['tx']}"


def test_malformed_request_loses_nothing(parties: Parties) -> None:
    p = parties
    for bad in ({}, {"body": {"x": 1}, "kid": "k", "signature": "s"}, {"body": ask(p)["body"]}):
        with pytest.raises(ExchangeError) as err:
            p.holder.handle(bad)
        assert err.value.reason is Reason.MALFORMED_REQUEST
    assert entries(p) == []


def test_the_ledger_refuses_a_grant_the_consent_does_not_cover(parties: Parties) -> None:
    p = parties
    r = p.lg.call("hosp-a/gw", "access", "record", {
        "request_id": "11" * 32, "requester": "hosp-b/dr", "holder": "hosp-a",
        "patient": PATIENT, "categories": ["labs"], "purpose": "referral",
        "outcome": "granted", "reason": "consented", "consent_id": "c1"})
    assert r.code == Code.CONFLICT and entries(p) == []
    r = p.lg.call("hosp-b/gw", "access", "record", {
        "request_id": "11" * 32, "requester": "hosp-b/dr", "holder": "hosp-a",
        "patient": PATIENT, "categories": ["labs"], "purpose": "referral",
        "outcome": "denied", "reason": "no_consent"})
    assert r.code == Code.FORBIDDEN  # only the holder records its decisions


def test_a_revocation_ordered_before_the_grant_entry_wins(parties: Parties) -> None:
    """The holder decided on an older state; the revocation lands first; nothing is sent."""
    p = parties
    grant(p.lg)

    class Racing(Holder):
        raced = False

        def _authorise(self, req: Any, now: int) -> Any:
            decided = super()._authorise(req, now)
            if self.raced:
                return decided
            self.raced = True
            p.lg.ok("hosp-a/steward", "consent", "revoke", {"consent_id": "c1",
                                                             "reason": "asked",
                                                             "evidence": FORM})
            return decided

    racing = Racing(p.member("hosp-a/gw"), p.source)
    with pytest.raises(ExchangeError) as err:
        racing.handle(ask(p))
    assert err.value.reason is Reason.CONSENT_REVOKED and "changed" in err.value.message
    [entry] = entries(p)  # the denial, recorded instead of the refused grant
    assert entry["outcome"] == "denied" and entry["reason"] == "consent_revoked"


def test_wrong_holder_unknown_requester_and_uncovered_category(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    refused(p, ask(p, holder="hosp-b"), Reason.WRONG_HOLDER)
    refused(p, ask(p, categories=["labs", "notes"]), Reason.CATEGORY_NOT_CONSENTED)
    signed = ask(p)
    ghost = {**signed["body"], "requester": "hosp-b/ghost"}
    unauthenticated(p, sign_request(ghost, p.lg.ring.signing["hosp-b/dr"]),
                    Reason.UNKNOWN_REQUESTER, "hosp-b/ghost")
    unknown_kid = {**ask(p), "kid": "no-such-key"}
    unauthenticated(p, unknown_kid, Reason.UNKNOWN_REQUESTER, "hosp-b/dr")


def test_the_ledger_keeps_a_claimed_requester_to_unauthenticated_denials(
        parties: Parties) -> None:
    p = parties
    base = {"request_id": "22" * 32, "requester": "hosp-a/gw", "holder": "hosp-a",
            "patient": PATIENT, "categories": ["labs"], "purpose": "referral",
            "outcome": "denied", "reason": "bad_signature", "claimed_requester": "hosp-b/dr"}
    for bad in ({"reason": "no_consent"}, {"outcome": "granted", "reason": "consented"},
                {"claimed_requester": "not a member"}):
        assert p.lg.call("hosp-a/gw", "access", "record", {**base, **bad}).code == Code.BAD_ARGS
    # the recorder vouches for the attempt: it cannot name anyone else as requester
    r = p.lg.call("hosp-a/gw", "access", "record", {**base, "requester": "hosp-b/dr"})
    assert r.code == Code.FORBIDDEN
    p.lg.ok("hosp-a/gw", "access", "record", base)
    p.lg.ok("hosp-a/gw", "access", "record", base)  # the same forged request again
    assert [e["claimed_requester"] for e in entries(p)] == ["hosp-b/dr"] * 2
    assert p.lg.state(f"access/req/{'22' * 32}") is None


def test_the_ledger_bounds_break_glass_grants(parties: Parties) -> None:
    """The access contract itself refuses a break-glass grant by a non-clinician, without the
    justification's hash, or with an end in the past or beyond 24 hours."""
    p = parties
    now = p.lg.clock()
    base = {"request_id": "33" * 32, "requester": "hosp-b/dr", "holder": "hosp-a",
            "patient": PATIENT, "categories": ["labs"], "purpose": "treatment",
            "outcome": "granted", "reason": "break_glass", "break_glass": True,
            "justification": "ab" * 32, "until": now + 30 * 60_000}
    for bad, code in (({"requester": "hosp-b/clerk"}, Code.FORBIDDEN),
                      ({"justification": None}, Code.BAD_ARGS),
                      ({"until": None}, Code.BAD_ARGS),
                      ({"until": now - 1}, Code.BAD_ARGS),
                      ({"until": now + 24 * 3_600_000 + 60_000}, Code.BAD_ARGS),
                      ({"break_glass": False}, Code.BAD_ARGS)):
        args = {k: v for k, v in {**base, **bad}.items() if v is not None}
        assert p.lg.call("hosp-a/gw", "access", "record", args).code == code, bad
    assert entries(p) == []
    p.lg.ok("hosp-a/gw", "access", "record", base)
    [entry] = entries(p)
    assert entry["flagged"] and p.lg.state(
        f"access/review/hosp-a/{entry_key(entry)[2:]}")["status"] == "pending"


def test_a_delivery_must_be_what_the_grant_entry_committed(parties: Parties) -> None:
    """Each record is anchored, but one is left out: the count and digest the holder put on
    the ledger with the grant do not match, so the requester rejects the delivery."""
    p = parties
    grant(p.lg)
    signed = ask(p, categories=["labs", "conditions"])
    delivery = p.holder.handle(signed)
    secret = p.lg.ring.agreement["hosp-b"].secret
    info = b"medledger/exchange/v1\x00" + p.lg.node.chain_id.encode() + b"\x00" + \
        delivery.request_id.encode()
    doc = orjson.loads(hpke.open(secret, delivery.sealed, info))
    doc["records"] = [r for r in doc["records"] if r["category"] == "labs"]
    partial = Delivery(delivery.request_id, delivery.entry, "hosp-a", "hosp-b",
                       delivery.kex_kid, hpke.seal(hpke.public_key(secret),
                                                   canonical.encode(doc), info))
    with pytest.raises(ExchangeError, match=r"got 3 records .* grant entry says 4") as err:
        p.requester.accept(signed, partial)
    assert err.value.reason is Reason.TAMPERED_RECORD
    assert p.lg.state(f"access/{err.value.entry}")["outcome"] == "rejected"
    assert len(p.requester.accept(signed, delivery)) == 4  # the delivery as sent is fine


def test_a_delivery_without_its_grant_entry_on_the_ledger_is_not_accepted(
        parties: Parties) -> None:
    p = parties
    grant(p.lg)
    signed = ask(p)
    delivery = p.holder.handle(signed)
    other = ask(p)  # never sent: no entry for its request id
    moved = Delivery(request_id(other["body"]), delivery.entry, "hosp-a", "hosp-b",
                     delivery.kex_kid, delivery.sealed)
    with pytest.raises(ExchangeError) as err:
        p.requester.accept(other, moved)
    assert err.value.reason is Reason.NOT_RECORDED and err.value.entry is None
