"""The consent decision on hand-built indexes: each reason, and the precedence between them."""

from __future__ import annotations

from typing import Any

from medledger.consent.model import Reason, decide

T = 1_000_000


def consent(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"purpose": "referral", "categories": ["labs"],
                           "recipient": {"org": "hosp-b"}, "start": T, "end": T + 100,
                           "status": "active"}
    doc.update(kw)
    return doc


def reason(index: dict[str, Any] | None, org: str = "hosp-b", role: str = "physician",
           purpose: str = "referral", cats: list[str] | None = None, t: int = T + 1) -> Reason:
    return decide(index, org, role, purpose, cats or ["labs"], t).reason


def test_granted_names_the_consent() -> None:
    d = decide({"c1": consent()}, "hosp-b", "physician", "referral", ["labs"], T + 1)
    assert d.granted and d.consent_id == "c1"


def test_each_refusal() -> None:
    assert reason(None) is Reason.NO_CONSENT
    assert reason({}) is Reason.NO_CONSENT
    assert reason({"c1": consent(status="revoked")}) is Reason.CONSENT_REVOKED
    assert reason({"c1": consent()}, t=T + 100) is Reason.CONSENT_EXPIRED
    assert reason({"c1": consent()}, t=T - 1) is Reason.CONSENT_NOT_STARTED
    assert reason({"c1": consent()}, cats=["labs", "notes"]) is Reason.CATEGORY_NOT_CONSENTED
    assert reason({"c1": consent()}, purpose="research") is Reason.WRONG_PURPOSE
    assert reason({"c1": consent()}, org="insurer") is Reason.WRONG_RECIPIENT
    assert reason({"c1": consent()}, org="insurer", purpose="research") is Reason.NO_CONSENT


def test_role_recipient_and_all_categories() -> None:
    idx = {"c1": consent(recipient={"role": "physician"}, categories=["all"], end=None)}
    assert reason(idx, org="hosp-c", cats=["labs", "notes"], t=T + 10**9) is Reason.CONSENTED
    assert reason(idx, org="hosp-c", role="nurse") is Reason.WRONG_RECIPIENT


def test_an_active_consent_wins_over_a_revoked_one_whatever_the_order() -> None:
    for ids in (("a", "b"), ("b", "a")):
        idx = {ids[0]: consent(status="revoked"), ids[1]: consent()}
        assert decide(idx, "hosp-b", "physician", "referral", ["labs"], T + 1).consent_id == ids[1]


def test_revoked_is_reported_over_weaker_reasons() -> None:
    idx = {"a": consent(purpose="research"), "b": consent(status="revoked")}
    assert reason(idx) is Reason.CONSENT_REVOKED
