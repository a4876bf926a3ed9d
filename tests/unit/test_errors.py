"""The reason-code catalog: every code has an HTTP status and a title; codes are stable strings."""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest

from medledger.errors import CATALOG, Code, MedLedgerError, RejectedError


def test_catalog_covers_every_code_and_nothing_else() -> None:
    assert set(CATALOG) == set(Code)


@pytest.mark.parametrize("code", list(Code))
def test_status_is_a_real_http_error_status(code: Code) -> None:
    status, title = CATALOG[code]
    assert status in {s.value for s in HTTPStatus}
    assert 400 <= status <= 599
    assert title and title == title.strip() and not title.endswith(".")


def test_codes_are_unique_lowercase_snake_case() -> None:
    values = [c.value for c in Code]
    assert len(values) == len(set(values))
    for v in values:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", v), v
    for c in Code:  # the member name is the value, upper-cased
        assert c.name == c.value.upper()


def test_code_is_a_plain_string_on_the_wire() -> None:
    assert Code.BAD_SIGNATURE == "bad_signature"
    assert str(Code.BAD_SIGNATURE) == "bad_signature"
    assert f"{Code.TOO_LARGE}" == "too_large"


def test_errors_carry_code_and_message() -> None:
    exc = RejectedError(Code.TOO_LARGE, "got 70000 bytes, cap is 65536")
    assert isinstance(exc, MedLedgerError)
    assert exc.code is Code.TOO_LARGE
    assert exc.message == "got 70000 bytes, cap is 65536"
    assert str(exc) == "too_large: got 70000 bytes, cap is 65536"
