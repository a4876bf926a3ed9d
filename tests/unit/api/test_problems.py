"""Every reason code renders as a valid RFC 9457 problem, and framework errors do too."""

from __future__ import annotations

import logging
import warnings

import pytest
from fastapi import FastAPI, HTTPException, Query

from medledger.api.problems import (
    INTERNAL_DETAIL,
    PROBLEM_MEDIA_TYPE,
    install,
    problem_doc,
    problem_responses,
)
from medledger.errors import CATALOG, Code, MedLedgerError, RejectedError

with warnings.catch_warnings():  # starlette warns that it prefers httpx2 over httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEYS = {"type", "title", "status", "detail", "code", "instance"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install(app)

    @app.get("/raise/{code}")
    def raise_code(code: str) -> None:
        raise RejectedError(Code(code), f"because of {code}")

    @app.get("/typed")
    def typed(n: int = Query(ge=1)) -> int:
        return n

    @app.get("/http/{status}")
    def http_error(status: int) -> None:
        raise HTTPException(status, "framework says no")

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("password=hunter2")

    return TestClient(app, raise_server_exceptions=False)


def test_catalog_covers_every_code() -> None:
    assert set(CATALOG) == set(Code)


@pytest.mark.parametrize("code", list(CATALOG))
def test_every_code_renders_a_problem(client: TestClient, code: Code) -> None:
    status, title = CATALOG[code]
    doc = problem_doc(code, "why", "/here")
    assert doc == {
        "type": f"https://medledger.dev/problems/{code.value}",
        "title": title,
        "status": status,
        "detail": "why",
        "code": code.value,
        "instance": "/here",
    }
    resp = client.get(f"/raise/{code.value}")
    assert resp.status_code == status
    assert resp.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert resp.json() == {
        **doc,
        "detail": f"because of {code.value}",
        "instance": f"/raise/{code.value}",
    }
    assert ("www-authenticate" in resp.headers) == (code is Code.UNAUTHENTICATED)


def test_extensions_and_overrides() -> None:
    doc = problem_doc(Code.TIMEOUT, "slow", "/v1/txs", tx_id="ab")
    assert set(doc) == KEYS | {"tx_id"} and doc["tx_id"] == "ab"
    doc = problem_doc(Code.NOT_FOUND, "x", "/", status=405, title="Method Not Allowed")
    assert doc["status"] == 405 and doc["title"] == "Method Not Allowed"


def test_validation_error_is_bad_args(client: TestClient) -> None:
    resp = client.get("/typed", params={"n": "0"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert resp.json() == {
        "type": "https://medledger.dev/problems/bad_args",
        "title": CATALOG[Code.BAD_ARGS][1],
        "status": 422,
        "detail": "query.n: Input should be greater than or equal to 1",
        "code": "bad_args",
        "instance": "/typed",
    }


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "not_found"),
        (401, "unauthenticated"),
        (413, "too_large"),
        (503, "node_unavailable"),
        (409, "conflict"),
        (400, "bad_args"),
    ],
)
def test_http_exceptions_become_problems(client: TestClient, status: int, code: str) -> None:
    resp = client.get(f"/http/{status}")
    assert resp.status_code == status
    assert resp.headers["content-type"] == PROBLEM_MEDIA_TYPE
    doc = resp.json()
    assert set(doc) == KEYS
    assert doc["code"] == code and doc["status"] == status
    assert doc["type"] == f"https://medledger.dev/problems/{code}"
    assert doc["detail"] == "framework says no" and doc["instance"] == f"/http/{status}"
    cat_status, cat_title = CATALOG[Code(code)]
    if cat_status == status:
        assert doc["title"] == cat_title


def test_unknown_route(client: TestClient) -> None:
    resp = client.get("/nowhere")
    assert resp.status_code == 404
    assert resp.json()["detail"] == "no route GET /nowhere"
    assert resp.json()["code"] == "not_found"


def test_unexpected_exception_is_internal_without_leak(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="medledger.api"):
        resp = client.get("/crash")
    assert resp.status_code == 500
    assert resp.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert resp.json() == {
        "type": "https://medledger.dev/problems/internal",
        "title": "Internal error",
        "status": 500,
        "detail": INTERNAL_DETAIL,
        "code": "internal",
        "instance": "/crash",
    }
    assert "hunter2" not in resp.text
    assert any("GET /crash" in r.getMessage() for r in caplog.records)


def test_medledger_error_with_unknown_code_is_internal(client: TestClient) -> None:
    app = FastAPI()
    install(app)

    @app.get("/odd")
    def odd() -> None:
        raise MedLedgerError("no_such_code", "odd")  # type: ignore[arg-type]

    resp = TestClient(app, raise_server_exceptions=False).get("/odd")
    assert resp.status_code == 500 and resp.json()["code"] == "internal"


def test_problem_responses_document_the_media_type() -> None:
    docs = problem_responses(400, 404)
    assert set(docs) == {400, 404}
    for entry in docs.values():
        schema = entry["content"][PROBLEM_MEDIA_TYPE]["schema"]
        assert set(schema["required"]) == KEYS
    assert "unknown_tx" in docs[404]["description"]
