"""Consent, exchange and the access log over HTTP: a granted exchange, a refused one as an
RFC 9457 problem with its reason, the consent status at an old height, the patient's log."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import orjson
import pytest

from medledger.api.app import create_app
from medledger.api.auth import sign_request
from medledger.api.routes_exchange import install_holder
from medledger.client.http import ProblemError
from medledger.client.light import LightClient, LightClientError
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Delivery
from medledger.consent.model import Reason
from medledger.consent.remote import ask_holder
from medledger.consent.status import verify_status
from medledger.errors import Code, MedLedgerError
from tests.conftest import Ledger
from tests.unit.consent.conftest import (  # noqa: F401 (fixtures)
    FORM,
    OTHER,
    PATIENT,
    Parties,
    cons,
    grant,
    lg,
    parties,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def get(client: TestClient, led: Ledger, member: str, path: str) -> Any:
    headers = sign_request("GET", path, b"", member, led.ring.signing[member])
    return client.get(path, headers=headers)


def test_exchange_consent_and_log_over_http(parties: Parties) -> None:  # noqa: F811
    p = parties
    app = create_app(p.lg.node)
    client = TestClient(app)
    signed = p.requester.request("hosp-a", PATIENT, ["labs"], "referral")
    r = client.post("/v1/exchange/request", content=orjson.dumps(signed))
    assert r.status_code == 503 and r.json()["code"] == "node_unavailable"
    install_holder(app, p.holder)

    r = client.post("/v1/exchange/request", content=orjson.dumps(signed))
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    doc = r.json()
    assert doc["code"] == "forbidden" and doc["reason"] == "no_consent" and doc["entry"]

    grant(p.lg)
    granted_at = p.lg.node.height
    signed = p.requester.request("hosp-a", PATIENT, ["labs"], "referral")
    r = client.post("/v1/exchange/request", content=orjson.dumps(signed))
    assert r.status_code == 200, r.text
    got = p.requester.accept(signed, Delivery.from_doc(r.json()))
    assert len(got) == 3

    r = client.post("/v1/exchange/request", content=orjson.dumps(signed))
    assert r.status_code == 409 and r.json()["reason"] == "replayed_request"
    r = client.post("/v1/exchange/request", content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"

    p.lg.ok("hosp-a/steward", "consent", "revoke", {"consent_id": "c1", "reason": "asked",
                                                     "evidence": FORM})
    now = get(client, p.lg, "hosp-b/gw", f"/v1/consent/patients/{PATIENT}").json()
    assert now["consents"]["c1"]["status"] == "revoked"
    then = get(client, p.lg, "hosp-b/gw",
               f"/v1/consent/patients/{PATIENT}?height={granted_at}").json()
    assert then["consents"]["c1"]["status"] == "active"
    q = (f"/v1/consent/check?patient={PATIENT}&org=hosp-b&role=physician&purpose=referral"
         f"&categories=labs&height={granted_at}")
    assert get(client, p.lg, "hosp-b/gw", q).json()["reason"] == "consented"
    bad = get(client, p.lg, "hosp-b/gw", q.replace("labs", "Labs!"))
    assert bad.status_code == 422 and bad.json()["code"] == "bad_args"

    path = f"/v1/consent/patients/{PATIENT}/log"
    assert get(client, p.lg, "hosp-b/dr", path).status_code == 403
    log = get(client, p.lg, "hosp-a/auditor", path).json()["entries"]
    assert [e["entry"]["reason"] for e in log] == ["no_consent", "consented",
                                                    "replayed_request"]
    assert all(e["proof"]["hashes"] is not None for e in log)


def test_consent_status_with_proof_over_http(parties: Parties) -> None:  # noqa: F811
    """The status before and after a revocation, each proven offline: the index's last write
    and no change in any block since, up to a signed checkpoint."""
    p = parties
    client = TestClient(create_app(p.lg.node))
    light = LightClient(p.lg.node.chain_id, p.lg.node.genesis.org_keys())
    path = f"/v1/consent/patients/{PATIENT}"
    before = p.lg.node.height
    grant(p.lg)
    granted_at = p.lg.node.height
    for i in range(3):  # blocks that write other keys
        grant(p.lg, f"other-{i}", patient=OTHER)
    p.lg.ok("hosp-a/steward", "consent", "revoke", {"consent_id": "c1", "reason": "asked",
                                                     "evidence": FORM})
    revoked_at = p.lg.node.height

    doc = get(client, p.lg, "hosp-b/gw", f"{path}?prove=true").json()
    consents, fact = verify_status(light, PATIENT, doc["proof"], doc["height"])
    assert consents == doc["consents"] and consents["c1"]["status"] == "revoked"
    assert fact.written == revoked_at and doc["height"] == p.lg.node.height

    doc = get(client, p.lg, "hosp-b/gw", f"{path}?prove=true&height={revoked_at - 1}").json()
    consents, fact = verify_status(light, PATIENT, doc["proof"], revoked_at - 1)
    assert consents["c1"]["status"] == "active" and fact.written == granted_at
    assert len(doc["proof"]["absent"]) == revoked_at - 1 - granted_at == 3
    # the same proof does not pass for the revocation's height, nor for another patient
    with pytest.raises(LightClientError):
        verify_status(light, PATIENT, doc["proof"], revoked_at)
    with pytest.raises(LightClientError):
        verify_status(light, OTHER, doc["proof"])

    doc = get(client, p.lg, "hosp-b/gw", f"{path}?prove=true&height={before}").json()
    consents, fact = verify_status(light, PATIENT, doc["proof"], before)
    assert consents == {} == doc["consents"] and fact.written is None

    r = get(client, p.lg, "hosp-b/gw", f"{path}?prove=true&height={revoked_at - 1}&max_blocks=2")
    assert r.status_code == 400 and r.json()["code"] == "bad_proof_request"
    r = get(client, p.lg, "hosp-b/gw", f"{path}?prove=true&height={revoked_at + 50}")
    assert r.status_code == 404 and r.json()["code"] == "unknown_block"
    plain = get(client, p.lg, "hosp-b/gw", f"{path}?height={revoked_at - 1}").json()
    assert "proof" not in plain and plain["consents"]["c1"]["status"] == "active"


def test_the_patients_own_agent_reads_their_log_and_no_one_elses(
        parties: Parties) -> None:  # noqa: F811
    p = parties
    client = TestClient(create_app(p.lg.node))
    p.lg.ok("hosp-a/steward", "consent", "link_agent", {"patient": PATIENT,
                                                         "member": "patients/p1"})
    grant(p.lg)
    p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "referral"))
    r = get(client, p.lg, "patients/p1", f"/v1/consent/patients/{PATIENT}/log")
    assert r.status_code == 200, r.text
    [item] = r.json()["entries"]
    assert item["entry"]["requester"] == "hosp-b/dr" and item["entry"]["outcome"] == "granted"
    r = get(client, p.lg, "patients/p1", f"/v1/consent/patients/{OTHER}/log")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_the_requester_asks_a_holder_over_http(parties: Parties) -> None:  # noqa: F811
    """``consent.remote.ask_holder``: the delivery, or the holder's refusal as the same
    ExchangeError (reason and access-log entry), or the node's problem."""
    p = parties
    app = create_app(p.lg.node)
    client = TestClient(app, base_url="http://hosp-a.test")
    signed = p.requester.request("hosp-a", PATIENT, ["labs"], "referral")
    with pytest.raises(ProblemError) as problem:
        ask_holder(client, signed)  # this node serves no holder
    assert problem.value.code is Code.NODE_UNAVAILABLE and problem.value.status == 503
    install_holder(app, p.holder)
    with pytest.raises(ExchangeError) as err:
        ask_holder(client, signed)
    assert err.value.reason is Reason.NO_CONSENT and err.value.code is Code.FORBIDDEN
    assert err.value.message.startswith("no_consent: consent check")
    assert p.lg.state(f"access/{err.value.entry}")["reason"] == "no_consent"
    grant(p.lg)
    signed = p.requester.request("hosp-a", PATIENT, ["labs"], "referral")
    got = p.requester.accept(signed, ask_holder(client, signed))
    assert sorted(r.record_id for r in got) == ["lab-0", "lab-1", "lab-2"]
    with pytest.raises(ExchangeError) as err:
        ask_holder(client, signed)
    assert err.value.reason is Reason.REPLAYED_REQUEST and err.value.entry
    with pytest.raises(MedLedgerError) as down:
        ask_holder(httpx.Client(base_url="http://127.0.0.1:9", timeout=2), signed)
    assert down.value.code is Code.NODE_UNAVAILABLE
