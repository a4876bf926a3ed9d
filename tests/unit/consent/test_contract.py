"""The consent contract through a real node: who may grant and revoke, history, refusals."""

from __future__ import annotations

from tests.conftest import T0, Ledger
from tests.unit.consent.conftest import FORM, PATIENT, grant

from medledger.errors import Code


def index(lg: Ledger) -> dict[str, dict[str, object]]:
    doc: dict[str, dict[str, object]] = lg.state(f"consent/p/{PATIENT}")
    return doc


def test_hospital_grant_needs_the_signed_forms_hash(lg: Ledger) -> None:
    r = lg.call("hosp-a/steward", "consent", "grant", {
        "consent_id": "c1", "patient": PATIENT, "purpose": "referral", "categories": ["labs"],
        "recipient_org": "hosp-b", "start": T0})
    assert r.code == Code.BAD_ARGS and "evidence" in r.message
    assert lg.state(f"consent/p/{PATIENT}") is None
    grant(lg)
    doc = lg.state("consent/c/c1")
    assert doc["signed_by"] == "form" and doc["evidence"] == FORM
    assert index(lg)["c1"]["status"] == "active"


def test_patient_agent_grants_only_once_linked(lg: Ledger) -> None:
    args = {"consent_id": "c2", "patient": PATIENT, "purpose": "research",
            "categories": ["labs"], "recipient_role": "researcher", "start": T0}
    assert lg.call("patients/p1", "consent", "grant", args).code == Code.FORBIDDEN
    lg.ok("hosp-a/steward", "consent", "link_agent", {"patient": PATIENT,
                                                       "member": "patients/p1"})
    lg.ok("patients/p1", "consent", "grant", args)
    assert lg.state("consent/c/c2")["signed_by"] == "patient"
    other = "k1-" + "ee" * 16
    r = lg.call("patients/p1", "consent", "grant", {**args, "consent_id": "c3",
                                                     "patient": other})
    assert r.code == Code.FORBIDDEN and lg.state("consent/c/c3") is None


def test_link_agent_refuses_a_member_who_is_not_a_patient_agent(lg: Ledger) -> None:
    r = lg.call("hosp-a/steward", "consent", "link_agent", {"patient": PATIENT,
                                                             "member": "hosp-b/dr"})
    assert r.code == Code.NOT_FOUND


def test_others_may_not_record_consents(lg: Ledger) -> None:
    r = lg.call("insurer/gw", "consent", "grant", {
        "consent_id": "c1", "patient": PATIENT, "purpose": "insurance-claim",
        "categories": ["labs"], "recipient_org": "insurer", "start": T0, "evidence": FORM})
    assert r.code == Code.FORBIDDEN
    r = lg.call("hosp-a/gw", "consent", "grant", {
        "consent_id": "c1", "patient": PATIENT, "purpose": "referral",
        "categories": ["labs"], "recipient_org": "hosp-b", "start": T0, "evidence": FORM})
    assert r.code == Code.FORBIDDEN  # a gateway is not a person who saw the form


def test_bad_arguments_are_refused_with_bad_args(lg: Ledger) -> None:
    base = {"consent_id": "c1", "patient": PATIENT, "purpose": "referral",
            "categories": ["labs"], "recipient_org": "hosp-b", "start": T0, "evidence": FORM}
    for bad in ({"purpose": "marketing"}, {"patient": "12345678901"},
                {"recipient_role": "physician"}, {"end": T0}, {"categories": ["Labs!"]},
                {"categories": ["labs", "labs"]}, {"recipient_org": None}):
        r = lg.call("hosp-a/steward", "consent", "grant", {**base, **bad})
        assert r.code == Code.BAD_ARGS, bad
    assert lg.state("consent/c/c1") is None


def test_revoke_keeps_history_queryable_by_height(lg: Ledger) -> None:
    grant(lg)
    granted_at = lg.node.height
    r = lg.ok("hosp-a/steward", "consent", "revoke", {"consent_id": "c1",
                                                       "reason": "patient asked",
                                                       "evidence": FORM})
    assert index(lg)["c1"]["status"] == "revoked"
    assert lg.state_at(f"consent/p/{PATIENT}", granted_at)["c1"]["status"] == "active"
    assert lg.state_at(f"consent/p/{PATIENT}", r.height)["c1"]["status"] == "revoked"
    doc = lg.state("consent/c/c1")
    assert doc["revoked"]["tx"] == r.tx_id.hex() and doc["revoked"]["height"] == r.height
    again = lg.call("hosp-a/steward", "consent", "revoke", {"consent_id": "c1",
                                                             "reason": "x", "evidence": FORM})
    assert again.code == Code.INVALID_STATE
    missing = lg.call("hosp-a/steward", "consent", "revoke", {"consent_id": "zz",
                                                               "reason": "x", "evidence": FORM})
    assert missing.code == Code.NOT_FOUND


def test_duplicate_consent_id_is_already_exists(lg: Ledger) -> None:
    grant(lg)
    r = lg.call("hosp-a/steward", "consent", "grant", {
        "consent_id": "c1", "patient": PATIENT, "purpose": "research", "categories": ["labs"],
        "recipient_org": "research", "start": T0, "evidence": FORM})
    assert r.code == Code.ALREADY_EXISTS
    assert lg.state("consent/c/c1")["purpose"] == "referral"
