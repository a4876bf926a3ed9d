"""The request-signing scheme of ``medledger.api.auth``, without a server."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import orjson
import pytest

from medledger.api.auth import (
    H_KEY,
    H_MEMBER,
    H_SIGNATURE,
    H_TIME,
    AuthError,
    authenticate,
    sign_request,
    signing_input,
)
from medledger.consortium.genesis import new_member
from medledger.crypto.keys import SigningKey, b64, unb64, verify
from medledger.errors import Code
from medledger.ledger.store.base import Store

NOW = 1_800_000_000_000
KEY = SigningKey(bytes(range(32)))


class FakeState:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = {k: orjson.dumps(v) for k, v in values.items()}

    def get_state(self, key: str) -> bytes | None:
        return self.values.get(key)


def store(member: dict[str, Any] | None = None, org_status: str = "active") -> Store:
    m = member or new_member("hosp-a/gw", "gateway", b64(KEY.public), NOW - 1000, None)
    return cast(
        Store,
        FakeState(
            {"consortium/member/hosp-a/gw": m, "consortium/org/hosp-a": {"status": org_status}}
        ),
    )


def check(
    st: Store,
    headers: dict[str, str],
    path: str = "/v1/blocks/head",
    body: bytes = b"",
    method: str = "GET",
) -> str:
    return authenticate(
        st,
        method,
        path,
        body,
        headers.get(H_MEMBER),
        headers.get(H_KEY),
        headers.get(H_TIME),
        headers.get(H_SIGNATURE),
        now=NOW,
    )


def test_signing_input_layout() -> None:
    got = signing_input("get", "/v1/state/registry/a%2Fb?height=3", "1800000000000", b"")
    assert got == (
        b"medledger/http/v1\nGET\n/v1/state/registry/a%2Fb?height=3\n1800000000000\n"
        + hashlib.sha256(b"").hexdigest().encode()
    )


def test_sign_request_headers_verify() -> None:
    headers = sign_request("POST", "/v1/x?y=1", b"body", "hosp-a/gw", KEY, now_ms=NOW)
    assert headers[H_MEMBER] == "hosp-a/gw" and headers[H_KEY] == KEY.kid
    assert headers[H_TIME] == str(NOW)
    sig = unb64(headers[H_SIGNATURE], length=64)
    assert verify(KEY.public, signing_input("POST", "/v1/x?y=1", str(NOW), b"body"), sig)
    assert check(store(), headers, "/v1/x?y=1", b"body", "POST") == "hosp-a/gw"


def test_body_is_covered() -> None:
    headers = sign_request("POST", "/v1/x", b"body", "hosp-a/gw", KEY, now_ms=NOW)
    with pytest.raises(AuthError, match="does not verify"):
        check(store(), headers, "/v1/x", b"bodY", "POST")


@pytest.mark.parametrize(
    ("member", "org", "detail"),
    [
        ({"not_before": NOW + 10}, "active", "member hosp-a/gw is outside its validity period"),
        ({"not_after": NOW}, "active", "member hosp-a/gw is outside its validity period"),
        ({"status": "revoked"}, "active", "member hosp-a/gw is revoked"),
        ({}, "removed", "organisation hosp-a is removed"),
    ],
)
def test_member_and_org_status(member: dict[str, Any], org: str, detail: str) -> None:
    m = new_member("hosp-a/gw", "gateway", b64(KEY.public), NOW - 1000, None) | member
    with pytest.raises(AuthError) as info:
        check(
            store(m, org), sign_request("GET", "/v1/blocks/head", b"", "hosp-a/gw", KEY, now_ms=NOW)
        )
    assert info.value.code is Code.UNAUTHENTICATED and info.value.message == detail


def test_expired_key() -> None:
    m = new_member("hosp-a/gw", "gateway", b64(KEY.public), NOW - 1000, None)
    m["keys"][0]["not_after"] = NOW - 1
    with pytest.raises(AuthError, match=f"key {KEY.kid} of hosp-a/gw is expired"):
        check(store(m), sign_request("GET", "/v1/blocks/head", b"", "hosp-a/gw", KEY, now_ms=NOW))


def test_org_missing() -> None:
    st = cast(
        Store,
        FakeState(
            {
                "consortium/member/hosp-a/gw": new_member(
                    "hosp-a/gw", "gateway", b64(KEY.public), NOW - 1000, None
                )
            }
        ),
    )
    with pytest.raises(AuthError, match="organisation hosp-a is unknown"):
        check(st, sign_request("GET", "/p", b"", "hosp-a/gw", KEY, now_ms=NOW), "/p")


def test_skew_window_edges() -> None:
    for skew, ok in ((300_000, True), (-300_000, True), (300_001, False), (-300_001, False)):
        headers = sign_request("GET", "/p", b"", "hosp-a/gw", KEY, now_ms=NOW + skew)
        if ok:
            assert check(store(), headers, "/p") == "hosp-a/gw"
        else:
            with pytest.raises(AuthError, match="allowed ±300000 ms"):
                check(store(), headers, "/p")
