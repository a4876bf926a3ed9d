"""Resident-ID check digits, identifier patterns and date parsing."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from medledger.gateway.dates import parse_date
from medledger.gateway.errors import Reason, RowRejected
from medledger.gateway.identifiers import (
    find_mobiles,
    find_rids,
    normalise_rid,
    rid_check_char,
    valid_rid,
)

GB11643_EXAMPLE = "11010519491231002X"  # the worked example of GB 11643-1999


def test_check_character_of_the_standard_example() -> None:
    assert rid_check_char(GB11643_EXAMPLE[:17]) == "X"
    assert valid_rid(GB11643_EXAMPLE)


@pytest.mark.parametrize("broken", [
    "110105194912310021",          # wrong check character
    "11010519491231002",           # 17 characters
    "01010519491231002X",          # leading zero
    "1101051949123100AX",          # letter in the body
])
def test_broken_ids_fail(broken: str) -> None:
    assert not valid_rid(broken)


def test_normalise_strips_spaces_and_uppercases_x() -> None:
    assert normalise_rid(" 110105 19491231 002x ") == GB11643_EXAMPLE


def test_patterns_find_ids_and_mobiles_but_not_inside_hashes() -> None:
    assert find_rids(f"id {GB11643_EXAMPLE.lower()} end") == [GB11643_EXAMPLE]
    assert find_rids("id 110105194912310021 end") == []        # fails its check digit
    assert find_mobiles("tel +86 138-1234-5678.") != []
    assert find_mobiles("k1-a13812345678b0c") == []            # hex digits of a pseudonym


@pytest.mark.parametrize(("raw", "fmts", "want"), [
    ("2023-05-06", ["%Y-%m-%d"], date(2023, 5, 6)),
    ("05/06/2023", ["%m/%d/%Y"], date(2023, 5, 6)),
    ("2023年5月6日", ["zh"], date(2023, 5, 6)),
    ("2023年05月06日", ["zh"], date(2023, 5, 6)),
    ("2023/5/6", ["zh"], date(2023, 5, 6)),
    ("45231", ["excel-serial"], date(2023, 11, 1)),            # spreadsheet day 45231
    ("61", ["excel-serial"], date(1900, 3, 1)),                # first day after the fake 2/29
    (45231, ["excel-serial"], date(2023, 11, 1)),
    (datetime(2023, 5, 6, 10, 30), [], date(2023, 5, 6)),
])
def test_dates(raw: object, fmts: list[str], want: date) -> None:
    assert parse_date(raw, fmts) == want


@pytest.mark.parametrize(("raw", "fmts", "reason"), [
    ("2023-02-30", ["%Y-%m-%d"], Reason.INVALID_DATE),
    ("2023年2月30日", ["zh"], Reason.INVALID_DATE),
    ("60", ["excel-serial"], Reason.INVALID_DATE),             # 1900-02-29 never existed
    ("13/45/2023", ["%m/%d/%Y"], Reason.INVALID_DATE),
    ("1850-01-01", ["%Y-%m-%d"], Reason.INVALID_DATE),
    ("  ", ["%Y-%m-%d"], Reason.MISSING_VALUE),
])
def test_bad_dates(raw: str, fmts: list[str], reason: Reason) -> None:
    with pytest.raises(RowRejected) as exc:
        parse_date(raw, fmts)
    assert exc.value.reason is reason
