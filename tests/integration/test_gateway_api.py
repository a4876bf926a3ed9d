"""The gateway's local HTTP API: upload → run → reconciliation, quarantine, review decisions;
every error an RFC 9457 problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medledger.gateway.api import GatewayState, create_gateway_app
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.profile import load_profile
from medledger.gateway.synth import generate
from medledger.gateway.vault import Vault

pytestmark = pytest.mark.integration
TOKEN = "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    syn = tmp_path / "syn"
    generate(syn, seed=2, persons=40, rows=60)
    profiles = {p.profile.id: p for p in (load_profile(f) for f in (syn / "hosp-a").glob(
        "*.toml"))}
    with Vault(tmp_path / "v") as v:
        state = GatewayState(v, PseudonymKey("k1", b"\x06" * 32), profiles, TOKEN)
        yield TestClient(create_gateway_app(state)), syn


def _problem(r: object, status: int, code: str) -> None:
    assert r.status_code == status  # type: ignore[attr-defined]
    assert r.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    doc = r.json()  # type: ignore[attr-defined]
    assert doc["code"] == code and doc["status"] == status and doc["detail"]


def test_upload_runs_and_reconciliation(client: tuple[TestClient, Path]) -> None:
    c, syn = client
    body = (syn / "hosp-a" / "diagnoses.csv").read_bytes()
    r = c.post("/v1/gateway/runs", params={"profile": "hosp-a-diagnoses",
                                           "filename": "diagnoses.csv"}, content=body,
               headers=AUTH)
    assert r.status_code == 201, r.text
    doc = r.json()
    f = doc["files"][0]
    assert f["balanced"] and f["emitted"] > 0 and f["quarantined"] > 0
    again = c.post("/v1/gateway/runs", params={"profile": "hosp-a-diagnoses",
                                               "filename": "diagnoses.csv"}, content=body,
                   headers=AUTH).json()
    assert again["files"][0]["status"] == "already_ingested"
    runs = c.get("/v1/gateway/runs", headers=AUTH).json()["runs"]
    assert {doc["run_id"], again["run_id"]} <= {x["run_id"] for x in runs}
    one = c.get(f"/v1/gateway/runs/{doc['run_id']}", headers=AUTH).json()
    assert one["files"][0]["rows_in"] == f["rows_in"]
    files = c.get("/v1/gateway/files", headers=AUTH).json()["files"]
    assert files[0]["source_name"] == "hosp-a/diagnoses.csv"
    every = c.get("/v1/gateway/quarantine", headers=AUTH).json()["items"]
    assert len(every) == f["quarantined"] and "raw" not in every[0]
    reason = every[0]["reason"]
    q = c.get("/v1/gateway/quarantine", params={"reason": reason}, headers=AUTH).json()
    assert q["items"] and all(i["reason"] == reason for i in q["items"])


def test_review_over_http(client: tuple[TestClient, Path]) -> None:
    c, syn = client
    c.post("/v1/gateway/runs", params={"profile": "hosp-a-diagnoses",
                                       "filename": "diagnoses.csv"},
           content=(syn / "hosp-a" / "diagnoses.csv").read_bytes(), headers=AUTH)
    items = c.get("/v1/gateway/review", headers=AUTH).json()["items"]
    assert items
    first = items[0]
    target = first["candidates"][0]["target"]
    _problem(c.post(f"/v1/gateway/review/{first['id']}/decision",
                    json={"code": "XX9", "reviewer": "li"}, headers=AUTH), 422, "bad_args")
    _problem(c.post(f"/v1/gateway/review/{first['id']}/decision",
                    json={"reviewer": "li"}, headers=AUTH), 422, "bad_args")
    _problem(c.post("/v1/gateway/review/99999/decision", json={"code": target,
                                                               "reviewer": "li"},
                    headers=AUTH), 404, "not_found")
    ok = c.post(f"/v1/gateway/review/{first['id']}/decision",
                json={"code": target, "reviewer": "li"}, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["decided"] >= 1
    applied = c.post("/v1/gateway/review/apply", headers=AUTH).json()
    assert applied["applied"] == ok.json()["decided"]


def test_errors_are_problems(client: tuple[TestClient, Path]) -> None:
    c, _ = client
    _problem(c.get("/v1/gateway/runs"), 401, "unauthenticated")
    _problem(c.get("/v1/gateway/runs", headers={"Authorization": "Bearer wrong"}), 401,
             "unauthenticated")
    _problem(c.get("/v1/gateway/runs/nope", headers=AUTH), 404, "not_found")
    _problem(c.post("/v1/gateway/runs", params={"profile": "nope", "filename": "a.csv"},
                    content=b"x", headers=AUTH), 404, "not_found")
    _problem(c.post("/v1/gateway/runs", params={"profile": "hosp-a-labs",
                                                "filename": "../etc"}, content=b"x",
                    headers=AUTH), 422, "bad_args")
    _problem(c.get("/v1/gateway/quarantine", params={"limit": 0}, headers=AUTH), 422,
             "bad_args")
