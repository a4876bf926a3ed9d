"""k-anonymity: hierarchies, rare-code roll-up and the lattice search, by hand and against a
brute-force reference over every node."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.gateway import icd10
from medledger.gateway.errors import GatewayError
from medledger.gateway.kanon import LEVELS, Lattice, Record, report, search

Groups = dict[tuple[Any, ...], dict[int, int]]


def _groups(rows: list[tuple[tuple[Any, ...], int]]) -> Groups:
    out: Groups = defaultdict(lambda: defaultdict(int))
    for qi, patient in rows:
        out[qi][patient] += 1
    return out


def _rec(code: str, date: str = "2024-03-05", year: int | None = 1980,
         system: str = "icd10", rtype: str = "Condition") -> Record:
    return Record("k1-x", rtype, system, code, date, "", "", year, "male")


def test_classes_count_patients_not_records() -> None:
    rows = [((1980, "male"), 1)] * 6 + [((1981, "male"), 2), ((1982, "male"), 3),
                                        ((1983, "male"), 4), ((1984, "male"), 5),
                                        ((1990, "female"), 6)]
    groups = _groups(rows)
    lat = Lattice(("birth_year", "gender"), 5, groups)
    exact, _ = lat.evaluate((0, 0), groups)
    assert (exact.classes, exact.smallest, exact.suppressed) == (6, 1, 11)  # all alone
    band5, kept = lat.evaluate((1, 0), groups)
    # 1980-1984 male holds patients 1..5 (10 rows); 1990-1994 female holds patient 6 alone
    assert (band5.classes, band5.smallest, band5.suppressed) == (2, 1, 1)
    assert kept == {("1980-1984", "male")}
    top, _ = lat.evaluate((4, 1), groups)
    assert (top.classes, top.smallest, top.suppressed) == (1, 6, 0)


def test_search_takes_the_least_generalisation_within_the_suppression_limit() -> None:
    rows = [((1980 + i % 5, "male"), i) for i in range(10)] + [((1990, "female"), 99)]
    _, _, chosen, kept = search(_groups(rows), ("birth_year", "gender"), 5, 0.1)
    assert chosen is not None and chosen.levels == (1, 0) and chosen.suppressed == 1
    assert kept == {("1980-1984", "male")}
    # no suppression allowed: the lone woman forces gender away
    _, _, strict, _ = search(_groups(rows), ("birth_year", "gender"), 5, 0.0)
    assert strict is not None and strict.suppressed == 0 and strict.levels[1] == 1


def test_rare_codes_roll_up_to_their_category_then_chapter() -> None:
    # E11.9 held by 5 patients stays; E10.9 (2 patients) rolls up to E10; at the category
    # level E10 is still rare (2 < 5) and rolls up to chapter IV; I10 (1 patient) → I10/IX
    rows = [(((("Condition", "icd10", "E11.9")),), p) for p in range(5)]
    rows += [((("Condition", "icd10", "E10.9"),), p) for p in (10, 11)]
    rows += [((("Condition", "icd10", "I10"),), 20)]
    groups = _groups(rows)
    lat = Lattice(("code",), 5, groups)
    gen0, gen1 = lat.generaliser((0,)), lat.generaliser((1,))
    assert gen0((("Condition", "icd10", "E11.9"),)) == (("Condition", "icd10", "E11.9"),)
    assert gen0((("Condition", "icd10", "E10.9"),)) == (("Condition", "icd10", "E10"),)
    assert gen1((("Condition", "icd10", "E11.9"),)) == (("Condition", "icd10", "E11"),)
    assert gen1((("Condition", "icd10", "E10.9"),)) == (("Condition", "icd10", "IV E00-E90"),)
    assert gen1((("Condition", "icd10", "I10"),)) == (("Condition", "icd10", "IX I00-I99"),)
    assert lat.generaliser((3,))((("Condition", "icd10", "I10"),)) == (
        ("Condition", "icd10", "*"),)
    # other systems: a rare code becomes *, a frequent one stays
    groups2 = _groups([((("Observation", "loinc", "14749-6"),), p) for p in range(5)]
                      + [((("Observation", "loinc", "2160-0"),), 9)])
    lat2 = Lattice(("code",), 5, groups2)
    assert lat2.generaliser((0,))((("Observation", "loinc", "2160-0"),))[0][2] == "*"
    assert lat2.generaliser((0,))((("Observation", "loinc", "14749-6"),))[0][2] == "14749-6"


def test_age_and_date_hierarchies() -> None:
    rec = _rec("E11.9", "2024-03-05", 1981)
    assert rec.quasi(("age", "date")) == (43, "2024-03-05")
    lat = Lattice(("age", "date"), 2, _groups([(rec.quasi(("age", "date")), 1)]))
    assert lat.generaliser((0, 0))((43, "2024-03-05")) == ("40-44", "2024-03-05")
    assert lat.generaliser((1, 1))((43, "2024-03-05")) == ("40-49", "2024-03")
    assert lat.generaliser((2, 2))((43, "2024-03-05")) == ("40-59", "2024")
    assert lat.generaliser((3, 3))((43, "2024-03-05")) == ("*", "*")
    assert lat.generaliser((0, 0))((93, "2024-03-05"))[0] == "90+"
    assert lat.generaliser((2, 0))((None, "2024-03-05"))[0] == "unknown"
    assert _rec("E11.9", year=None).quasi(("age",)) == (None,)


def test_icd10_chapters() -> None:
    assert icd10.chapter("E11.9") == "IV E00-E90"
    assert icd10.chapter("D50.1") == "III D50-D89" and icd10.chapter("D48") == "II C00-D48"
    assert icd10.chapter("U07.1") == "XXII U00-U85"
    assert all(icd10.chapter(c) is not None for c in icd10.WHO)


def _reference(groups: Groups, qis: tuple[str, ...], k: int, limit: float
               ) -> tuple[int | None, int]:
    """Brute force: the least height of an acceptable node, and the least suppression there."""
    lat = Lattice(qis, k, groups)
    total = sum(sum(p.values()) for p in groups.values())
    found: dict[int, int] = {}
    for levels in itertools.product(*(range(len(LEVELS[q])) for q in qis)):
        gen = lat.generaliser(levels)
        people: dict[tuple[Any, ...], set[int]] = defaultdict(set)
        rows: dict[tuple[Any, ...], int] = defaultdict(int)
        for full, pats in groups.items():
            people[gen(full)].update(pats)
            rows[gen(full)] += sum(pats.values())
        sup = sum(rows[g] for g, p in people.items() if len(p) < k)
        if sup <= limit * total:
            h = sum(levels)
            found[h] = min(found.get(h, sup), sup)
    if not found:
        return None, 0
    h = min(found)
    return h, found[h]


ROW = st.tuples(st.sampled_from([None, 1950, 1951, 1962, 1980, 1984]),
                st.sampled_from(["male", "female"]),
                st.sampled_from([("Condition", "icd10", c) for c in
                                 ("E11.9", "E10.9", "I10", "I25.1", "J18.9")] +
                                [("Observation", "loinc", "14749-6")]),
                st.sampled_from(["2023-01-05", "2023-01-20", "2024-06-01"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ROW, st.integers(0, 12)), min_size=1, max_size=40),
       st.integers(2, 4), st.sampled_from([0.0, 0.1, 0.3]))
def test_search_matches_brute_force(rows: list[tuple[tuple[Any, ...], int]], k: int,
                                    limit: float) -> None:
    qis = ("birth_year", "gender", "code", "date")
    groups = _groups(rows)
    _, _, chosen, kept = search(groups, qis, k, limit)
    height, least = _reference(groups, qis, k, limit)
    if height is None:                 # too few patients for k even at the top
        assert chosen is None
        return
    assert chosen is not None and sum(chosen.levels) == height
    assert chosen.suppressed == least
    lat = Lattice(qis, k, groups)
    gen = lat.generaliser(chosen.levels)
    people: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    for full, pats in groups.items():
        if gen(full) in kept:
            people[gen(full)].update(pats)
    assert all(len(p) >= k for p in people.values())


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    from medledger.gateway.vault import Vault

    with Vault(tmp_path) as v:
        with pytest.raises(GatewayError, match="unknown quasi-identifiers"):
            report(v, ("zip",))
        with pytest.raises(GatewayError, match="name one twice"):
            report(v, ("gender", "gender"))
        with pytest.raises(GatewayError, match="k is 1"):
            report(v, k=1)
        empty = report(v, out=tmp_path / "x.csv")
        assert empty["rows"] == 0 and empty["k_anonymous_after_suppression"]
        assert (tmp_path / "x.csv").read_text().startswith("subject,record_type,birth_year")
