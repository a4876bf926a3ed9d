"""A patient's access log: granted and denied entries, each proven offline by a light client."""

from __future__ import annotations

import base64

import orjson
import pytest
from tests.unit.consent.conftest import FORM, OTHER, PATIENT, Parties, grant

from medledger.client.light import LightClient
from medledger.consent.errors import ExchangeError
from medledger.consent.log import patient_log, verify_item
from medledger.errors import Code, MedLedgerError


def test_log_shows_grants_and_denials_each_with_a_valid_proof(parties: Parties) -> None:
    p = parties
    grant(p.lg)
    p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "referral"))
    p.lg.ok("hosp-a/steward", "consent", "revoke", {"consent_id": "c1", "reason": "asked",
                                                     "evidence": FORM})
    with pytest.raises(ExchangeError):
        p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "referral"))
    p.lg.filler()  # a later checkpoint covers every entry
    log = patient_log(p.lg.store, PATIENT)
    assert [(i["entry"]["outcome"], i["entry"]["reason"]) for i in log] == [
        ("granted", "consented"), ("denied", "consent_revoked")]
    light = LightClient(p.lg.node.chain_id, p.lg.node.genesis.org_keys())
    for item in log:
        assert verify_item(light, item) >= item["proof"]["index"] + 1
    assert patient_log(p.lg.store, OTHER) == []


def test_a_doctored_entry_fails_verification(parties: Parties) -> None:
    p = parties
    p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "treatment",
                                        "unconscious", 10))
    p.lg.filler()
    [item] = patient_log(p.lg.store, PATIENT)
    light = LightClient(p.lg.node.chain_id, p.lg.node.genesis.org_keys())
    verify_item(light, item)
    doctored = {**item, "entry": {**item["entry"], "requester": "hosp-b/nurse"}}
    with pytest.raises(MedLedgerError, match="requester") as err:
        verify_item(light, doctored)
    assert err.value.code is Code.VERIFY_FAILED
    tx = orjson.loads(base64.b64decode(item["tx"]))
    tx["body"]["args"]["requester"] = "hosp-b/nurse"
    other_tx = {**item, "tx": base64.b64encode(orjson.dumps(tx)).decode()}
    with pytest.raises(MedLedgerError):
        verify_item(light, other_tx)


def test_not_a_pseudonym_is_bad_args(parties: Parties) -> None:
    with pytest.raises(MedLedgerError) as err:
        patient_log(parties.lg.store, "110101199003071234")
    assert err.value.code is Code.BAD_ARGS


def test_an_unauthenticated_attempt_is_in_the_log_as_such_and_proven(parties: Parties) -> None:
    p = parties
    signed = p.requester.request("hosp-a", PATIENT, ["labs"], "referral")
    forged = {**signed, "signature": base64.b64encode(b"\x00" * 64).decode()}
    with pytest.raises(ExchangeError):
        p.holder.handle(forged)
    p.lg.filler()
    [item] = patient_log(p.lg.store, PATIENT)
    e = item["entry"]
    assert (e["requester"], e["claimed_requester"], e["reason"]) == (
        "hosp-a/gw", "hosp-b/dr", "bad_signature")
    light = LightClient(p.lg.node.chain_id, p.lg.node.genesis.org_keys())
    verify_item(light, item)
    framed = {**item, "entry": {**e, "requester": "hosp-b/dr", "claimed_requester": None}}
    with pytest.raises(MedLedgerError, match="requester") as err:
        verify_item(light, framed)
    assert err.value.code is Code.VERIFY_FAILED


def test_a_break_glass_entry_shows_where_its_review_stands(parties: Parties) -> None:
    p = parties
    p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "treatment",
                                        "unconscious", 10))
    [item] = patient_log(p.lg.store, PATIENT)
    assert item["review"]["status"] == "pending"
    p.lg.ok("hosp-a/auditor", "access", "review", {"entry": item["key"],
                                                    "decision": "unjustified", "note": "no"})
    [item] = patient_log(p.lg.store, PATIENT)
    assert item["review"]["status"] == "unjustified" and item["review"]["by"] == "hosp-a/auditor"
    grant(p.lg)
    p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "referral"))
    assert "review" not in patient_log(p.lg.store, PATIENT)[1]
