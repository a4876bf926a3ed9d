"""The consent decision on hand-built indexes: each reason, and the precedence between them."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

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


def _reference_granted(index: dict[str, Any], org: str, role: str, purpose: str,
                       cats: list[str], t: int) -> bool:
    """Slow and plain: some consent matches in every respect."""
    for s in index.values():
        r = s["recipient"]
        who = r.get("org") == org if "org" in r else r.get("role") == role
        period = s["start"] <= t and (s["end"] is None or t < s["end"])
        covers = "all" in s["categories"] or all(c in s["categories"] for c in cats)
        if who and s["purpose"] == purpose and s["status"] == "active" and period and covers:
            return True
    return False


summaries = st.fixed_dictionaries({
    "purpose": st.sampled_from(["referral", "research"]),
    "categories": st.lists(st.sampled_from(["labs", "conditions", "all"]), min_size=1,
                           max_size=2, unique=True),
    "recipient": st.one_of(st.fixed_dictionaries({"org": st.sampled_from(["hosp-b", "x"])}),
                           st.fixed_dictionaries({"role": st.sampled_from(["physician",
                                                                            "nurse"])})),
    "start": st.integers(0, 10), "end": st.one_of(st.none(), st.integers(11, 20)),
    "status": st.sampled_from(["active", "revoked"])})


@given(index=st.dictionaries(st.sampled_from(["a", "b", "c"]), summaries, max_size=3),
       org=st.sampled_from(["hosp-b", "x"]), role=st.sampled_from(["physician", "nurse"]),
       purpose=st.sampled_from(["referral", "research"]),
       cats=st.lists(st.sampled_from(["labs", "conditions"]), min_size=1, max_size=2,
                     unique=True), t=st.integers(0, 25))
def test_decide_agrees_with_the_reference(index: dict[str, Any], org: str, role: str,
                                          purpose: str, cats: list[str], t: int) -> None:
    d = decide(index, org, role, purpose, cats, t)
    assert d.granted == _reference_granted(index, org, role, purpose, cats, t)
    if d.granted or (index and d.reason is not Reason.NO_CONSENT):
        assert d.consent_id in index
