"""Diagnosis and lab matching: exact and curated hits accepted, everything else reviewed.

The first cases are the confident wrong mappings plain fuzzy matching produced in the research
notes (原发性高血压 → I15, "diabetes mellitus type II" → E10, HTN → T75.0, 冠心病 → I42, ...).
"""

from __future__ import annotations

import pytest

from medledger.gateway.errors import Reason, ReviewReason, RowRejected
from medledger.gateway.terminology import Terminology
from medledger.gateway.tfidf import NgramIndex

T = Terminology()


@pytest.mark.parametrize(("term", "want"), [
    ("原发性高血压", "I10"), ("diabetes mellitus type II", "E11.9"), ("HTN", "I10"),
    ("T2DM", "E11.9"), ("冠心病", "I25.1"), ("慢阻肺", "J44.9"), ("新冠肺炎", "U07.1"),
    ("慢性肾功能不全", None), ("Essential (primary) hypertension", "I10"),
    ("２型糖尿病", "E11.9"),           # full-width digit, NFKC-normalised
    ("Ⅱ型糖尿病", "E11.9"), ("community acquired pneumonia", "J18.9"),
])
def test_curated_terms(term: str, want: str | None) -> None:
    m = T.diagnosis(None, term)
    assert m.who_code == want
    if want is None:
        assert m.review is not None


@pytest.mark.parametrize("tcm", ["消渴病", "胸痹心痛", "气虚血瘀证", "肝肾阴虚证"])
def test_tcm_is_never_guessed(tcm: str) -> None:
    m = T.diagnosis(None, tcm)
    assert m.who_code is None
    assert m.review is ReviewReason.NO_STANDARD_EQUIVALENT
    assert m.candidates == ()


def test_misspelling_gets_ranked_suggestions_but_is_not_accepted() -> None:
    m = T.diagnosis(None, "diabetis melitus type 2")
    assert m.who_code is None and m.review is ReviewReason.NO_EXACT_MATCH
    assert m.candidates[0].target == "E11.9"
    assert 0 < len(m.candidates) <= 5
    assert m.candidates[0].score > m.candidates[1].score


def test_national_extension_keeps_code_and_maps_to_who_parent() -> None:
    m = T.diagnosis("E11.900", "2型糖尿病")
    assert (m.who_code, m.national_code, m.method) == ("E11.9", "E11.900", "national_code")
    assert T.diagnosis("i10.X00", None).who_code == "I10"


def test_unknown_extension_goes_to_review_with_its_parent_as_candidate() -> None:
    m = T.diagnosis("E11.901", None)
    assert m.who_code is None and m.review is ReviewReason.UNKNOWN_EXTENSION
    assert [c.target for c in m.candidates] == ["E11.9"]


def test_malformed_code_is_quarantined() -> None:
    with pytest.raises(RowRejected) as exc:
        T.diagnosis("ZZE", "HTN")
    assert exc.value.reason is Reason.UNKNOWN_CODE


def test_code_and_term_that_disagree_go_to_review() -> None:
    m = T.diagnosis("I10", "2型糖尿病")
    assert m.who_code is None and m.review is ReviewReason.CODE_TEXT_CONFLICT


def test_hospital_synonyms_and_steward_decisions_are_used() -> None:
    t = Terminology(hospital_dx={"DM-II": "E11.9"},
                    decisions={("dx", "sugar disease"): "E11.9"})
    assert t.diagnosis(None, "dm-ii").method == "synonym"
    assert t.diagnosis(None, "Sugar disease").method == "manual"
    assert T.diagnosis(None, "sugar disease").who_code is None


def test_labs() -> None:
    assert T.lab(None, "GLU").analyte is not None
    assert T.lab("14749-6", None).method == "exact_code"
    assert T.lab(None, "血红蛋白").analyte.key == "hemoglobin"  # type: ignore[union-attr]
    m = T.lab(None, "Ferritin")
    assert m.analyte is None and m.review is ReviewReason.UNKNOWN_TEST


def test_ngram_index_scores_identity_one_and_orders_by_similarity() -> None:
    idx = NgramIndex([("a", "hypertension"), ("b", "hypotension"), ("c", "asthma")])
    hits = idx.search("hypertension")
    assert hits[0].target == "a" and hits[0].score == pytest.approx(1.0)
    assert hits[1].target == "b" and hits[1].score < 1.0
    assert all(h.target != "c" for h in idx.search("hypertension", floor=0.3))


@pytest.mark.parametrize(("term", "want"), [
    # index-style inversions and bracketed qualifiers name the same concept
    ("hypertension, essential", "I10"), ("diabetes mellitus, type 1", "E10.9"),
    ("infarction, cerebral", "I63.9"), ("hypertension, secondary", "I15.9"),
    ("高血压（原发性）", "I10"), ("哮喘(支气管)", "J45.9"),
    # a qualifier that only says "unspecified" is dropped; the WHO ", unspecified" title
    # answers to the bare term
    ("heart failure NOS", "I50.9"), ("COPD, unspecified", "J44.9"), ("心力衰竭（未特指）", "I50.9"),
    ("Cardiomyopathy", "I42.9"), ("gastritis NOS", "K29.7"),
])
def test_variants_by_terminology_conventions(term: str, want: str) -> None:
    m = T.diagnosis(None, term)
    assert m.who_code == want and m.method in ("variant", "exact_term", "synonym")


@pytest.mark.parametrize("term", [
    "房颤（阵发性）",            # paroxysmal AF has its own WHO code (I48.0): not I48.9
    "高脂血症（混合型）",          # mixed hyperlipidaemia is E78.2, not E78.5
    "hypertension, malignant", "diabetes mellitus, gestational", "pneumonia, aspiration",
    "CHD", "CHB", "TB",          # ambiguous abbreviations
])
def test_qualifiers_that_change_the_concept_go_to_review(term: str) -> None:
    m = T.diagnosis(None, term)
    assert m.who_code is None and m.review is not None
