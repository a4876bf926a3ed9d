"""Canonical JSON: exactly one byte form per value, and only that form is accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.crypto.canonical import MAX_SAFE_INT, CanonicalError, decode, encode
from medledger.errors import Code

# -- strategies --------------------------------------------------------------------------------

ints = st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
# st.text() never yields lone surrogates, which are not valid UTF-8 and cannot be encoded
scalars = st.none() | st.booleans() | ints | st.text(max_size=20)


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=25,
    )


any_values = json_values(st.text(max_size=8))
ascii_key_values = json_values(st.text(st.characters(max_codepoint=0x7F), max_size=8))


def same(a: Any, b: Any) -> bool:
    """Equality that also tells True from 1 and 0 from False (Python's == does not)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def code_of(data: bytes) -> Code:
    with pytest.raises(CanonicalError) as info:
        decode(data)
    return info.value.code


# -- examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (None, b"null"),
        (True, b"true"),
        (False, b"false"),
        (0, b"0"),
        (-7, b"-7"),
        (MAX_SAFE_INT, b"9007199254740991"),
        (-MAX_SAFE_INT, b"-9007199254740991"),
        ("", b'""'),
        ("a/b", b'"a/b"'),  # the solidus is never escaped
        ("é😀", '"é😀"'.encode()),  # non-ASCII stays raw UTF-8
        ('q"b\\', b'"q\\"b\\\\"'),
        ("\b\t\n\f\r", b'"\\b\\t\\n\\f\\r"'),
        ("\x00\x1f", b'"\\u0000\\u001f"'),  # other controls: \u00XX, lower-case hex
        ("\x7f\u2028", '"\x7f\u2028"'.encode()),  # DEL and U+2028 stay raw (JSON.stringify)
        ([], b"[]"),
        ({}, b"{}"),
        ({"b": [1, {"d": None, "c": True}], "a": ""}, b'{"a":"","b":[1,{"c":true,"d":null}]}'),
        ({"": 1, "A": 2, "a": 3, "é": 4}, '{"":1,"A":2,"a":3,"é":4}'.encode()),
    ],
)
def test_examples_round_trip(value: Any, wire: bytes) -> None:
    assert encode(value) == wire
    assert same(decode(wire), value)


def test_keys_sort_by_code_point_not_utf16() -> None:
    # ADR 0002: U+E000 sorts before U+1F600 by code point; UTF-16 (RFC 8785) would swap them
    assert encode({"\U0001f600": 1, "\ue000": 2}) == '{"\ue000":2,"\U0001f600":1}'.encode()


@pytest.mark.parametrize(
    "value", [1.5, 0.0, -0.0, 1.0, float("nan"), float("inf"), [1, 2.5], {"a": {"b": [0.1]}}]
)
def test_encode_rejects_floats(value: Any) -> None:
    with pytest.raises(CanonicalError) as info:
        encode(value)
    assert info.value.code == Code.FLOAT_NOT_ALLOWED


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, b"bytes", {1: "int key"}, {None: 1}, object(), "\ud800", {"k": "\udfff"}],
)
def test_encode_rejects_non_json(value: Any) -> None:
    with pytest.raises(CanonicalError) as info:
        encode(value)
    assert info.value.code == Code.NON_CANONICAL


def test_integer_range() -> None:
    for ok in (MAX_SAFE_INT, -MAX_SAFE_INT):
        assert decode(encode(ok)) == ok
    for bad in (MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 2**64, -(2**70)):
        with pytest.raises(CanonicalError) as info:
            encode(bad)
        assert info.value.code == Code.NON_CANONICAL
        assert code_of(str(bad).encode()) == Code.NON_CANONICAL


def test_nesting_is_capped() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(CanonicalError) as info:
        encode(deep)
    assert info.value.code == Code.BAD_ENVELOPE
    assert code_of(b"[" * 40 + b"]" * 40) == Code.BAD_ENVELOPE


@pytest.mark.parametrize("data", [b"1.5", b"-0.25", b"[1,2.5]", b'{"a":1e-2}', b"1.50"])
def test_decode_rejects_fractions_as_floats(data: bytes) -> None:
    assert code_of(data) == Code.FLOAT_NOT_ALLOWED


@pytest.mark.parametrize(
    "data",
    [
        # insignificant whitespace
        b' {"a":1}',
        b'{"a":1} ',
        b'{"a":1}\n',
        b'{"a": 1}',
        b'{ "a":1}',
        b"[1, 2]",
        b"true ",
        # key order
        b'{"b":1,"a":2}',
        b'{"a":{"y":1,"x":2}}',
        # duplicate keys, equal or not
        b'{"a":1,"a":1}',
        b'{"a":1,"a":2}',
        # number forms of integers
        b"-0",
        b"1.0",
        b"1e2",
        b"1E2",
        b"100e0",
        b"0.1e1",
        b"-0.0",
        b'{"n":1.0}',
        # escapes JSON.stringify would not produce
        b'"\\/"',
        b'"\\u00E9"',
        b'"\\u00e9"',
        b'"\\u0041"',
        b'"\\u001F"',
        b'"\\u0008"',
        b'"\\ud83d\\ude00"',
    ],
)
def test_decode_rejects_other_forms_as_non_canonical(data: bytes) -> None:
    assert code_of(data) == Code.NON_CANONICAL


@pytest.mark.parametrize(
    "data",
    [
        b'"\xff"',  # not UTF-8 at all
        b'"\xc3"',  # truncated sequence
        b'"\xc0\xaf"',  # overlong "/"
        b'"\xed\xa0\x80"',  # UTF-8 encoded surrogate
        b'"\\ud800"',  # escaped lone surrogate
        b"\xef\xbb\xbf{}",  # byte order mark
        b"",
        b"{",
        b"[1,2,]",
        b"nul",
        b"NaN",
        b"01",
        b"+1",
        b"'a'",
        b'{"a"}',
        b'"\x01"',
    ],
)
def test_decode_rejects_malformed(data: bytes) -> None:
    assert code_of(data) == Code.MALFORMED_JSON


# -- properties ----------------------------------------------------------------------------------


@given(any_values)
def test_decode_inverts_encode(value: Any) -> None:
    wire = encode(value)
    assert same(decode(wire), value)
    assert encode(decode(wire)) == wire


@given(any_values, any_values)
def test_encode_is_injective(a: Any, b: Any) -> None:
    assert (encode(a) == encode(b)) == same(a, b)


@given(any_values)
def test_any_single_byte_edit_is_refused_or_a_different_value(value: Any) -> None:
    wire = encode(value)
    for i in range(len(wire)):
        edited = wire[:i] + wire[i + 1 :]  # drop one byte
        try:
            other = decode(edited)
        except CanonicalError:
            continue
        assert not same(other, value)


@given(ascii_key_values)
def test_agrees_with_stdlib_json_byte_for_byte(value: Any) -> None:
    # Cross-check against an independent implementation: Python's json module with sorted keys,
    # no whitespace and raw UTF-8 produces exactly the JCS/JSON.stringify form for values without
    # floats. Keys are ASCII so that the stdlib's code-point key order cannot differ from JCS.
    independent = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert encode(value) == independent.encode("utf-8")
