"""The HTTP API end to end: FastAPI's TestClient over a node on a temp-file SQLite store, and one
real uvicorn server driven through ``HttpTransport`` + ``Client``."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute

from medledger.api import (
    routes_events,
    routes_exchange,
    routes_ledger,
    routes_records,
    routes_surveillance,
    routes_tx,
)
from medledger.api.app import create_app
from medledger.api.auth import H_KEY, H_MEMBER, H_SIGNATURE, H_TIME, now_ms, sign_request
from medledger.client.client import Client
from medledger.client.http import HttpReceipt, HttpTransport, ProblemError, is_problem, parse_sse
from medledger.client.light import LightClient, LightClientError
from medledger.consortium.bootstrap import Keyring, new_consortium
from medledger.consortium.genesis import Genesis
from medledger.crypto import canonical
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import CATALOG, Code, RejectedError
from medledger.installed import default_registry
from medledger.ledger import merkle
from medledger.ledger.block import leaf_data
from medledger.ledger.checkpoint import make_verifiers, verify_checkpoint, vkey_string
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.node.node import Node, Receipt, checkpoint_origin
from tests.support.serve import served_app

with warnings.catch_warnings():  # starlette warns that it prefers httpx2 over httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "instance"}
GW = "hosp-a/gw"


@dataclass
class Env:
    genesis: Genesis
    ring: Keyring
    store: SQLiteStore
    node: Node
    http: TestClient
    admin: Client
    gw_key: SigningKey
    gw: Client

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        member: str = GW,
        key: SigningKey | None = None,
        now: int | None = None,
    ) -> httpx.Response:
        """A GET signed by ``member`` (default: the gateway) with ``key``."""
        request = self.http.build_request("GET", path, params=params)
        target = request.url.raw_path.decode("ascii")
        request.headers.update(sign_request("GET", target, b"", member, key or self.gw_key, now))
        return self.http.send(request)

    def register(self, record_id: str, *, client: Client | None = None) -> bytes:
        return (client or self.gw).build(
            "registry",
            "register",
            {
                "record_id": record_id,
                "record_type": "Encounter",
                "source_system": "HIS",
                "content_hash": hashlib.sha256(record_id.encode()).hexdigest(),
                "schema_version": "fhir-r4",
            },
        )

    def commit(self, *raws: bytes) -> list[Receipt]:
        """Submit straight to the node and wait for the receipts."""
        return [f.result(10) for f in self.node.submit_many(list(raws))]

    def verifiers(self) -> dict[tuple[str, bytes], bytes]:
        return make_verifiers([vkey_string("hosp-a", self.ring.signing["hosp-a/root"].public)])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    genesis, ring = new_consortium(
        "api-test",
        [
            ("hosp-a", "Hospital A", "hospital"),
            ("hosp-b", "Hospital B", "hospital"),
            ("cdc", "CDC", "cdc"),
        ],
        now_ms() - 60_000,
    )
    store = SQLiteStore(tmp_path / "ledger.db")
    node = Node.create(
        store,
        genesis,
        default_registry(),
        signer=("hosp-a", ring.signing["hosp-a/root"]),
        max_wait=0.005,
    )
    node.start()
    admin = Client(node, genesis.chain_id, "hosp-a/root", ring.signing["hosp-a/root"])
    gw_key = SigningKey.generate()
    enrolled = admin.call(
        "consortium", "enroll", {"member": GW, "role": "gateway", "public_key": b64(gw_key.public)}
    )
    assert enrolled.ok, enrolled
    gw = Client(node, genesis.chain_id, GW, gw_key)
    try:
        with TestClient(create_app(node), raise_server_exceptions=False) as http:
            yield Env(genesis, ring, store, node, http, admin, gw_key, gw)
    finally:
        node.stop()
        store.close()


def assert_problem(
    resp: httpx.Response,
    status: int,
    code: str,
    instance: str,
    detail: str | re.Pattern[str],
) -> dict[str, Any]:
    """The response is exactly the RFC 9457 problem for ``code``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = resp.json()
    assert set(doc) == PROBLEM_KEYS
    assert_problem_doc(doc, status, code, instance, detail)
    return doc


def assert_problem_doc(
    doc: dict[str, Any], status: int, code: str, instance: str, detail: str | re.Pattern[str]
) -> None:
    assert doc["type"] == f"https://medledger.dev/problems/{code}"
    assert doc["code"] == code
    assert doc["status"] == status
    assert doc["title"] == CATALOG[Code(code)][1]
    assert doc["instance"] == instance
    if isinstance(detail, re.Pattern):
        assert detail.fullmatch(doc["detail"]), doc["detail"]
    else:
        assert doc["detail"] == detail


def tampered(raw: bytes, **args: Any) -> bytes:
    """``raw`` with its args changed after signing (still canonical, signature now invalid)."""
    doc = orjson.loads(raw)
    doc["body"]["args"].update(args)
    return canonical.encode(doc)


def stranger(env: Env, member: str = "hosp-a/ghost") -> Client:
    return Client(env.node, env.genesis.chain_id, member, SigningKey.generate())


def sse_events(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(data) for _, data in parse_sse(iter(text.splitlines()))]


# -- health, routing, OpenAPI ---------------------------------------------------------------


def test_health_needs_no_auth(env: Env) -> None:
    resp = env.http.get("/v1/health")
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "ok",
        "chain_id": "api-test",
        "height": env.node.height,
        "log_size": env.node.head.log_size,
        "head_hash": env.node.head.hash.hex(),
    }
    # answered from memory: the same block the store holds as its head
    stored = env.node.store.head()
    assert stored is not None and resp.json()["head_hash"] == stored.hash.hex()


def test_unknown_route_and_wrong_method_are_problems(env: Env) -> None:
    assert_problem(env.http.get("/v1/nope"), 404, "not_found", "/v1/nope", "no route GET /v1/nope")
    assert_problem(env.http.get("/"), 404, "not_found", "/", "no route GET /")
    resp = env.http.delete("/v1/blocks/head")
    assert resp.status_code == 405
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["allow"] == "GET"
    assert resp.json() == {
        "type": "https://medledger.dev/problems/method_not_allowed",
        "title": "Method not allowed on this resource",
        "status": 405,
        "detail": "/v1/blocks/head does not accept DELETE",
        "code": "method_not_allowed",
        "instance": "/v1/blocks/head",
    }


def test_internal_errors_leak_no_traceback(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(height: int) -> None:
        raise RuntimeError("secret database path /var/lib/x")

    monkeypatch.setattr(env.store, "block", boom)
    resp = env.get("/v1/blocks/1")
    assert_problem(
        resp,
        500,
        "internal",
        "/v1/blocks/1",
        "the server failed to handle the request; see the node's log",
    )
    assert "secret" not in resp.text and "Traceback" not in resp.text


def test_openapi_lists_every_route_with_summary(env: Env) -> None:
    schema = env.http.get("/openapi.json").json()
    ops = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}
    assert set(ops) == {
        ("POST", "/v1/tx"),
        ("POST", "/v1/txs"),
        ("GET", "/v1/tx/{tx_id}"),
        ("GET", "/v1/tx/{tx_id}/proof"),
        ("GET", "/v1/proof/consistency"),
        ("GET", "/v1/proof/state/{contract}/{key}"),
        ("GET", "/v1/blocks/head"),
        ("GET", "/v1/blocks/{height}"),
        ("GET", "/v1/checkpoints/latest"),
        ("GET", "/v1/checkpoints/final"),
        ("GET", "/v1/checkpoints/evidence"),
        ("GET", "/v1/checkpoints/{size}"),
        ("GET", "/v1/state/{contract}/{key}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/health"),
        ("GET", "/v1/records/{owner}/{record_id}/lineage"),
        ("GET", "/v1/surveillance/counts"),
        ("GET", "/v1/surveillance/signals"),
        ("GET", "/v1/surveillance/signals/{signal_id}"),
        ("GET", "/v1/surveillance/signals/{signal_id}/line-list"),
        ("GET", "/v1/consent/patients/{patient}"),
        ("GET", "/v1/consent/patients/{patient}/log"),
        ("GET", "/v1/consent/check"),
        ("POST", "/v1/exchange/request"),
    }
    routers = (routes_tx.router, routes_ledger.router, routes_events.router,
               routes_records.router, routes_surveillance.router, routes_exchange.router)
    app_routes = {
        (m, r.path)
        for router in routers
        for r in router.routes
        if isinstance(r, APIRoute)
        for m in r.methods
    }
    assert {(m, p.replace(":path", "")) for m, p in app_routes} == set(ops)
    for (method, path), op in ops.items():
        assert op.get("summary"), (method, path)
        assert op.get("description"), (method, path)
        assert op.get("tags"), (method, path)
        problems = [
            s
            for s, r in op["responses"].items()
            if "application/problem+json" in r.get("content", {})
        ]
        assert problems, (method, path)
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        if path == "/v1/health" or method == "POST":
            assert not headers
        else:
            assert headers == {H_MEMBER, H_KEY, H_TIME, H_SIGNATURE}, path
    assert schema["paths"]["/v1/tx"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["paths"]["/v1/txs"]["post"]["requestBody"]["content"]["application/x-ndjson"]


# -- submitting one transaction ---------------------------------------------------------------


def test_submit_waits_for_receipt_with_verifiable_proof(env: Env) -> None:
    raw = env.register("r1")
    resp = env.http.post("/v1/tx", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    tx_id = hashlib.sha256(raw).hexdigest()
    assert doc["tx_id"] == tx_id and doc["code"] == "ok" and doc["message"] == ""
    assert doc["value"] == {"version": 1}
    assert doc["events"] == [
        {"data": {"owner": "hosp-a", "record_id": "r1", "version": 1}, "name": "record_registered"}
    ]
    cp, names = verify_checkpoint(
        doc["checkpoint"].encode(), env.verifiers(), checkpoint_origin("api-test")
    )
    assert names == ["hosp-a"]
    assert doc["proof"]["size"] == cp.size and doc["proof"]["index"] == doc["index"]
    result = {k: doc[k] for k in ("code", "events", "message", "value")}
    leaf = merkle.leaf_hash(leaf_data(bytes.fromhex(tx_id), doc["height"], result))
    merkle.verify_inclusion(
        leaf, doc["index"], cp.size, [bytes.fromhex(h) for h in doc["proof"]["hashes"]], cp.root
    )
    # resubmitting the same bytes is idempotent: the same receipt
    again = env.http.post("/v1/tx", content=raw)
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("tx_id", "height", "index")} == {
        k: doc[k] for k in ("tx_id", "height", "index")
    }


def test_submit_without_wait_returns_202(env: Env) -> None:
    raw = env.register("r-nowait")
    resp = env.http.post("/v1/tx", params={"wait": "false"}, content=raw)
    assert resp.status_code == 202
    tx_id = hashlib.sha256(raw).hexdigest()
    assert resp.json() == {"tx_id": tx_id}
    receipt = env.node.submit(raw).result(10)  # the same in-flight or committed tx
    assert receipt.tx_id.hex() == tx_id and receipt.ok


def test_committed_but_failed_tx_gets_a_receipt(env: Env) -> None:
    env.commit(env.register("dup"))
    resp = env.http.post("/v1/tx", content=env.register("dup"))
    assert resp.status_code == 200
    assert resp.json()["code"] == "already_exists"
    assert resp.json()["message"] == "record dup already registered"


def test_submit_ingress_refusals_are_problems(env: Env) -> None:
    good = env.register("r-good")
    cases: list[tuple[bytes, int, str, str | re.Pattern[str]]] = [
        (b"{not json", 400, "malformed_json", re.compile(r"not JSON: .+")),
        (b'{"body":{"x":1.5}}', 400, "float_not_allowed", "got float 1.5, want int or string"),
        (
            b" " + good,
            400,
            "non_canonical",
            f"got {len(good) + 1} bytes, canonical form has {len(good)} bytes "
            "(first difference at byte 0)",
        ),
        (
            b'{"body":{},"sigs":[]}',
            400,
            "bad_envelope",
            re.compile(r"body fields: got \[\], want \[.*\]"),
        ),
        (
            tampered(good, record_id="evil"),
            401,
            "bad_signature",
            "signature by hosp-a/gw does not verify",
        ),
        (
            env.register("x", client=stranger(env)),
            401,
            "unknown_signer",
            "no enrolled member hosp-a/ghost",
        ),
        (
            env.register("x", client=Client(env.node, "other-chain", GW, env.gw_key)),
            400,
            "wrong_chain",
            "got 'other-chain', want 'api-test'",
        ),
        (b"x" * (64 * 1024 + 1), 413, "too_large", "body of 65537 bytes exceeds the cap of 65536"),
    ]
    for raw, status, code, detail in cases:
        assert_problem(env.http.post("/v1/tx", content=raw), status, code, "/v1/tx", detail)


def test_replayed_nonce_is_refused(env: Env) -> None:
    first = env.gw.build(
        "registry",
        "register",
        {
            "record_id": "n1",
            "record_type": "Encounter",
            "source_system": "HIS",
            "content_hash": "ab" * 32,
            "schema_version": "v1",
        },
        nonce=42,
    )
    env.commit(first)
    replay = env.gw.build(
        "registry",
        "register",
        {
            "record_id": "n2",
            "record_type": "Encounter",
            "source_system": "HIS",
            "content_hash": "ab" * 32,
            "schema_version": "v1",
        },
        nonce=42,
    )
    assert_problem(
        env.http.post("/v1/tx", content=replay),
        409,
        "replayed_nonce",
        "/v1/tx",
        "hosp-a/gw already used nonce 42",
    )


def test_submit_bad_query_is_bad_args(env: Env) -> None:
    assert_problem(
        env.http.post("/v1/tx", params={"timeout": "61"}, content=b"{}"),
        422,
        "bad_args",
        "/v1/tx",
        "query.timeout: Input should be less than or equal to 60",
    )
    assert_problem(
        env.http.post("/v1/tx", params={"wait": "maybe"}, content=b"{}"),
        422,
        "bad_args",
        "/v1/tx",
        "query.wait: Input should be a valid boolean, unable to interpret input",
    )


def test_submit_timeout_is_504_and_tx_still_commits(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    original = env.node._commit_batch

    def held(items: Any, block_time: int, **kw: Any) -> None:
        gate.wait(10)
        original(items, block_time, **kw)

    monkeypatch.setattr(env.node, "_commit_batch", held)
    raw = env.register("slow")
    tx_id = hashlib.sha256(raw).hexdigest()
    assert_problem(
        env.http.post("/v1/tx", params={"timeout": "0.2"}, content=raw),
        504,
        "timeout",
        "/v1/tx",
        f"no receipt for {tx_id} within 0.2 s; it may still commit",
    )
    raw2 = env.register("slow2")
    batch = env.http.post("/v1/txs", params={"timeout": "0.2"}, content=raw2)
    (entry,) = batch.json()["receipts"]
    assert set(entry) == PROBLEM_KEYS | {"tx_id"}
    assert entry["tx_id"] == hashlib.sha256(raw2).hexdigest()
    assert_problem_doc(
        entry, 504, "timeout", "/v1/txs", "no receipt within 0.2 s; it may still commit"
    )
    gate.set()
    assert env.node.submit(raw).result(10).ok
    assert env.get(f"/v1/tx/{tx_id}").status_code == 200


# -- batches ------------------------------------------------------------------------------


def test_batch_mixes_receipts_and_problems(env: Env) -> None:
    env.commit(env.register("taken"))
    good1, good2 = env.register("b1"), env.register("b2")
    lines = [
        good1,
        b" " + good2,  # non-canonical
        good2,
        tampered(env.register("b-evil"), record_id="b-evil2"),
        env.register("b-chain", client=Client(env.node, "other-chain", GW, env.gw_key)),
        env.register("b-ghost", client=stranger(env)),
        good1,  # the same bytes twice: one transaction, the same receipt
        env.register("taken"),  # commits, fails execution
    ]
    body = b"\r\n".join(lines) + b"\n\n"
    resp = env.http.post("/v1/txs", content=body, headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    out = resp.json()["receipts"]
    assert len(out) == len(lines)
    ids = [hashlib.sha256(r).hexdigest() for r in lines]
    for i in (0, 2, 6, 7):
        assert not is_problem(out[i]) and out[i]["tx_id"] == ids[i]
        assert set(out[i]) == {"tx_id", "height", "index", "code", "message", "value", "events"}
    assert [out[i]["code"] for i in (0, 2, 6, 7)] == ["ok", "ok", "ok", "already_exists"]
    assert out[0] == out[6]
    expected = {
        1: (400, "non_canonical", re.compile(r"got \d+ bytes, canonical form has \d+ bytes .*")),
        3: (401, "bad_signature", "signature by hosp-a/gw does not verify"),
        4: (400, "wrong_chain", "got 'other-chain', want 'api-test'"),
        5: (401, "unknown_signer", "no enrolled member hosp-a/ghost"),
    }
    for i, (status, code, detail) in expected.items():
        assert set(out[i]) == PROBLEM_KEYS | {"tx_id"} and out[i]["tx_id"] == ids[i]
        assert_problem_doc(out[i], status, code, "/v1/txs", detail)
    # good ones committed, bad ones changed nothing
    for rid in ("b1", "b2"):
        assert env.get(f"/v1/state/registry/record/hosp-a/{rid}").status_code == 200
    for rid in ("b-evil", "b-evil2", "b-chain", "b-ghost"):
        assert_problem(
            env.get(f"/v1/state/registry/record/hosp-a/{rid}"),
            404,
            "not_found",
            f"/v1/state/registry/record/hosp-a/{rid}",
            re.compile(rf"no value for registry/record/hosp-a/{rid} at height \d+"),
        )


def test_batch_without_wait_returns_202(env: Env) -> None:
    raws = [env.register(f"nw{i}") for i in range(20)]
    resp = env.http.post("/v1/txs", params={"wait": "false"}, content=b"\n".join([*raws, b"{bad"]))
    assert resp.status_code == 202
    out = resp.json()["receipts"]
    assert out[:20] == [{"tx_id": hashlib.sha256(r).hexdigest()} for r in raws]
    assert out[20]["code"] == "malformed_json" and out[20]["status"] == 400
    assert all(r.ok for r in env.commit(*raws))


def test_batch_empty_and_too_many(env: Env) -> None:
    resp = env.http.post("/v1/txs", content=b"\n\n")
    assert resp.status_code == 200 and resp.json() == {"receipts": []}
    assert_problem(
        env.http.post("/v1/txs", content=b"{}\n" * 10_001),
        413,
        "too_large",
        "/v1/txs",
        "got 10001 lines, cap is 10000",
    )


def test_batch_of_a_thousand(env: Env) -> None:
    raws = [env.register(f"k{i}") for i in range(1000)]
    t0 = time.perf_counter()
    resp = env.http.post("/v1/txs", content=b"\n".join(raws))
    elapsed = time.perf_counter() - t0
    out = resp.json()["receipts"]
    assert [r["code"] for r in out] == ["ok"] * 1000
    assert [r["tx_id"] for r in out] == [hashlib.sha256(r).hexdigest() for r in raws]
    assert elapsed < 10, elapsed


# -- reading transactions and proofs ---------------------------------------------------------


def test_get_tx(env: Env) -> None:
    raw = env.register("g1")
    (receipt,) = env.commit(raw)
    tx_id = receipt.tx_id.hex()
    resp = env.get(f"/v1/tx/{tx_id}")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["receipt"] == receipt.to_doc()
    assert canonical.encode(doc["tx"]) == raw
    assert doc["result"] == {
        "code": "ok",
        "events": receipt.events,
        "message": "",
        "value": {"version": 1},
    }
    unknown = "00" * 32
    assert_problem(
        env.get(f"/v1/tx/{unknown}"),
        404,
        "unknown_tx",
        f"/v1/tx/{unknown}",
        f"no committed transaction {unknown}",
    )
    assert_problem(
        env.get("/v1/tx/xyz"),
        422,
        "bad_args",
        "/v1/tx/xyz",
        "path.tx_id: String should match pattern '^[0-9a-f]{64}$'",
    )


def test_tx_proof(env: Env) -> None:
    (r1,) = env.commit(env.register("p1"))
    env.commit(env.register("p2"), env.register("p3"))
    (r4,) = env.commit(env.register("p4"))
    tx_id = r1.tx_id.hex()
    doc = env.get(f"/v1/tx/{tx_id}/proof").json()
    cp, _ = verify_checkpoint(doc["checkpoint"].encode(), env.verifiers())
    assert doc["size"] == cp.size == env.node.head.log_size
    assert doc["root"] == cp.root.hex() == env.node.head.log_root.hex()
    leaf = merkle.leaf_hash(
        leaf_data(
            r1.tx_id,
            r1.height,
            {"code": r1.code, "events": r1.events, "message": r1.message, "value": r1.value},
        )
    )
    assert doc["leaf_hash"] == leaf.hex() and doc["tx_id"] == tx_id and doc["index"] == r1.index
    merkle.verify_inclusion(
        leaf, r1.index, cp.size, [bytes.fromhex(h) for h in doc["hashes"]], cp.root
    )
    # against an older size, with that size's checkpoint
    old = env.get(f"/v1/tx/{tx_id}/proof", {"size": r1.index + 1}).json()
    assert old["size"] == r1.index + 1
    old_cp, _ = verify_checkpoint(old["checkpoint"].encode(), env.verifiers())
    assert old_cp.size == old["size"] and old_cp.root.hex() == old["root"]
    merkle.verify_inclusion(
        leaf, r1.index, old["size"], [bytes.fromhex(h) for h in old["hashes"]], old_cp.root
    )
    size = env.node.head.log_size
    path = f"/v1/tx/{tx_id}/proof"
    assert_problem(
        env.get(path, {"size": size + 1}),
        400,
        "bad_proof_request",
        path,
        f"need index {r1.index} < size {size + 1} <= log size {size}",
    )
    r4_path = f"/v1/tx/{r4.tx_id.hex()}/proof"
    assert_problem(
        env.get(r4_path, {"size": r4.index}),
        400,
        "bad_proof_request",
        r4_path,
        f"need index {r4.index} < size {r4.index} <= log size {size}",
    )
    assert_problem(
        env.get(path, {"size": 0}),
        422,
        "bad_args",
        path,
        "query.size: Input should be greater than or equal to 1",
    )
    missing = f"/v1/tx/{'ab' * 32}/proof"
    assert_problem(
        env.get(missing), 404, "unknown_tx", missing, f"no committed transaction {'ab' * 32}"
    )


def test_consistency_proof(env: Env) -> None:
    env.commit(env.register("c1"))
    env.commit(env.register("c2"), env.register("c3"))
    size = env.node.head.log_size
    doc = env.get("/v1/proof/consistency", {"old": 2, "new": size}).json()
    assert doc["old"] == 2 and doc["new"] == size
    old_root, new_root = bytes.fromhex(doc["old_root"]), bytes.fromhex(doc["new_root"])
    assert new_root == env.node.head.log_root
    merkle.verify_consistency(
        2, size, old_root, new_root, [bytes.fromhex(h) for h in doc["hashes"]]
    )
    latest = env.get("/v1/proof/consistency", {"old": 1}).json()
    assert latest["new"] == size
    path = "/v1/proof/consistency"
    assert_problem(
        env.get(path, {"old": 0, "new": size}),
        400,
        "bad_proof_request",
        path,
        f"need 0 < old 0 <= new {size} <= log size {size}",
    )
    assert_problem(
        env.get(path, {"old": 3, "new": 2}),
        400,
        "bad_proof_request",
        path,
        f"need 0 < old 3 <= new 2 <= log size {size}",
    )
    assert_problem(
        env.get(path, {"old": 1, "new": size + 1}),
        400,
        "bad_proof_request",
        path,
        f"need 0 < old 1 <= new {size + 1} <= log size {size}",
    )
    assert_problem(env.get(path), 422, "bad_args", path, "query.old: Field required")


# -- blocks and checkpoints ------------------------------------------------------------------


def test_blocks(env: Env) -> None:
    receipts = env.commit(env.register("bl1"), env.register("bl2"))
    head = env.get("/v1/blocks/head").json()
    assert head["height"] == env.node.height
    assert head["hash"] == env.node.head.hash.hex()
    assert head["header"] == env.node.head.to_doc()
    assert hashlib.sha256(canonical.encode(head["header"])).hexdigest() == head["hash"]
    block = env.get(f"/v1/blocks/{receipts[0].height}").json()
    assert [r.tx_id.hex() for r in receipts if r.height == block["height"]] == [
        t for t in block["tx_ids"] if t in {r.tx_id.hex() for r in receipts}
    ]
    genesis = env.get("/v1/blocks/0").json()
    assert genesis["tx_ids"] == [] and genesis["header"]["prev"] == env.genesis.hash.hex()
    assert_problem(
        env.get("/v1/blocks/99"), 404, "unknown_block", "/v1/blocks/99", "no block at height 99"
    )
    assert_problem(
        env.get("/v1/blocks/-1"),
        422,
        "bad_args",
        "/v1/blocks/-1",
        "path.height: Input should be greater than or equal to 0",
    )


def test_checkpoints(env: Env) -> None:
    env.commit(env.register("cp1"))
    latest = env.get("/v1/checkpoints/latest")
    assert latest.status_code == 200
    assert latest.headers["content-type"] == "text/plain; charset=utf-8"
    size, height, note = env.store.checkpoint()  # type: ignore[misc]
    assert latest.content == note
    cp, _ = verify_checkpoint(latest.content, env.verifiers(), checkpoint_origin("api-test"))
    assert cp.size == size == env.node.head.log_size
    # an embedded node has kept no equivocation evidence (a cluster peer's: test_tamper.py)
    assert env.get("/v1/checkpoints/evidence").json() == []
    as_json = env.get("/v1/checkpoints/latest", {"format": "json"}).json()
    assert as_json == {"size": size, "height": height, "note": note.decode()}
    assert env.get(f"/v1/checkpoints/{size - 1}").content == env.store.checkpoint(size - 1)[2]  # type: ignore[index]
    assert env.get("/v1/checkpoints/0", {"format": "json"}).json()["height"] == 0
    assert_problem(
        env.get("/v1/checkpoints/12345"),
        404,
        "not_found",
        "/v1/checkpoints/12345",
        "no checkpoint for log size 12345",
    )
    assert_problem(
        env.get("/v1/checkpoints/latest", {"format": "xml"}),
        422,
        "bad_args",
        "/v1/checkpoints/latest",
        "query.format: Input should be 'note' or 'json'",
    )


# -- state ---------------------------------------------------------------------------------


def test_state_current_and_historical(env: Env) -> None:
    (first,) = env.commit(env.register("s1"))
    (amend,) = env.commit(
        env.gw.build(
            "registry",
            "amend",
            {
                "record_id": "s1",
                "content_hash": "cd" * 32,
                "schema_version": "fhir-r5",
                "reason": "mapping fix",
            },
        )
    )
    assert amend.ok, amend
    path = "/v1/state/registry/record/hosp-a/s1"
    now = env.get(path).json()
    assert now["contract"] == "registry" and now["key"] == "record/hosp-a/s1"
    assert now["height"] == amend.height and now["at"] == env.node.height
    assert [v["schema_version"] for v in now["value"]["versions"]] == ["fhir-r4", "fhir-r5"]
    then = env.get(path, {"height": first.height}).json()
    assert then["height"] == first.height and then["at"] == first.height
    assert len(then["value"]["versions"]) == 1
    assert_problem(
        env.get(path, {"height": first.height - 1}),
        404,
        "not_found",
        path,
        f"no value for registry/record/hosp-a/s1 at height {first.height - 1}",
    )
    future = env.node.height + 5
    assert_problem(
        env.get(path, {"height": future}),
        404,
        "unknown_block",
        path,
        f"height {future} is above the head {env.node.height}",
    )
    assert_problem(
        env.get("/v1/state/_nonce/x"),
        422,
        "bad_args",
        "/v1/state/_nonce/x",
        "path.contract: String should match pattern '^[a-z][a-z0-9_]{0,62}$'",
    )
    member = env.get(f"/v1/state/consortium/member/{GW}").json()
    assert member["value"]["role"] == "gateway"


def test_state_proof(env: Env) -> None:
    (first,) = env.commit(env.register("p1"))
    (other,) = env.commit(env.register("p2"))
    (amend,) = env.commit(env.gw.build("registry", "amend", {
        "record_id": "p1", "content_hash": "cd" * 32, "schema_version": "fhir-r5",
        "reason": "mapping fix"}))
    assert amend.ok and first.height < other.height < amend.height
    light = LightClient("api-test", env.genesis.org_keys())
    key, path = "registry/record/hosp-a/p1", "/v1/proof/state/registry/record/hosp-a/p1"

    doc = env.get(path, {"height": other.height}).json()
    fact = light.verify_state(doc, key=key, height=other.height)
    assert fact.written == first.height and fact.blocks == other.height - first.height + 1
    assert fact.value == env.store.state_at(key, other.height)[1]  # type: ignore[index]
    now = light.verify_state(env.get(path).json(), key=key)
    assert (now.height, now.written) == (env.node.height, amend.height)
    assert orjson.loads(now.value or b"")["versions"][-1]["schema_version"] == "fhir-r5"
    before = light.verify_state(env.get(path, {"height": first.height - 1}).json())
    assert before.value is None and before.written is None and before.blocks == first.height
    latest = env.store.checkpoint()
    assert latest is not None
    anchored = light.verify_state(env.get(path, {"height": first.height,
                                                  "size": latest[0]}).json())
    assert anchored.anchor == latest[1] and anchored.checkpoint.size == latest[0]

    assert_problem(env.get(path, {"height": other.height, "max_blocks": 1}), 400,
                   "bad_proof_request", path,
                   f"proof of '{key}' at height {other.height} needs "
                   f"{other.height - first.height + 1} block headers ('{key}' was last written at "
                   f"{first.height}; checkpoint at block {other.height}), more than max_blocks 1")
    future = env.node.height + 3
    assert_problem(env.get(path, {"height": future}), 404, "unknown_block", path,
                   f"height {future} is not in [0, {env.node.height}]")
    assert_problem(env.get(path, {"size": 10_000}), 404, "not_found", path,
                   "no signed checkpoint for log size 10000")
    assert env.get(path, {"max_blocks": 0}).status_code == 422
    assert env.get("/v1/proof/state/_x/y").status_code == 422


# -- events ---------------------------------------------------------------------------------


def test_events_stream_committed_valid_txs(env: Env) -> None:
    (ok1,) = env.commit(env.register("e1"))
    failed, ok2 = env.commit(env.register("e1"), env.register("e2"))
    assert failed.code == "already_exists"
    resp = env.get("/v1/events", {"from_height": 0, "until_height": env.node.height})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert [(e["name"], e["height"]) for e in events] == [
        ("member_enrolled", 1),
        ("record_registered", ok1.height),
        ("record_registered", ok2.height),
    ]
    assert events[1] == {
        "height": ok1.height,
        "tx_id": ok1.tx_id.hex(),
        "index": ok1.index,
        "name": "record_registered",
        "data": {"owner": "hosp-a", "record_id": "e1", "version": 1},
    }
    assert "event: record_registered\n" in resp.text
    assert f"id: {ok1.height}:{ok1.index}:0\n" in resp.text
    only_last = sse_events(
        env.get("/v1/events", {"from_height": ok2.height, "until_height": ok2.height}).text
    )
    assert [e["tx_id"] for e in only_last] == [ok2.tx_id.hex()]


def test_events_follow_new_blocks(env: Env) -> None:
    target = env.node.height + 1
    box: dict[str, httpx.Response] = {}
    reader = threading.Thread(
        target=lambda: box.update(
            r=env.get("/v1/events", {"from_height": target, "until_height": target})
        )
    )
    reader.start()
    time.sleep(0.3)
    assert reader.is_alive()  # waiting for the block to commit
    (receipt,) = env.commit(env.register("live"))
    assert receipt.height == target
    reader.join(10)
    assert not reader.is_alive()
    assert [e["tx_id"] for e in sse_events(box["r"].text)] == [receipt.tx_id.hex()]


# -- authentication ---------------------------------------------------------------------


READ_PATHS = [
    f"/v1/tx/{'00' * 32}",
    f"/v1/tx/{'00' * 32}/proof",
    "/v1/proof/consistency?old=1",
    "/v1/proof/state/consortium/config",
    "/v1/blocks/head",
    "/v1/blocks/0",
    "/v1/checkpoints/latest",
    "/v1/checkpoints/evidence",
    "/v1/checkpoints/1",
    "/v1/state/consortium/config",
    "/v1/events?until_height=0",
]


@pytest.mark.parametrize("path", READ_PATHS)
def test_every_read_requires_auth(env: Env, path: str) -> None:
    resp = env.http.get(path)
    assert_problem(
        resp,
        401,
        "unauthenticated",
        path.split("?")[0],
        f"missing header(s) {H_MEMBER}, {H_KEY}, {H_TIME}, {H_SIGNATURE}",
    )
    assert resp.headers["www-authenticate"] == 'MedLedger-Ed25519 realm="medledger"'
    assert env.get(path).status_code in (200, 404)


def _with_headers(env: Env, path: str, headers: dict[str, str]) -> httpx.Response:
    return env.http.get(path, headers=headers)


def test_auth_failures(env: Env) -> None:
    path = "/v1/blocks/head"
    good = sign_request("GET", path, b"", GW, env.gw_key)
    assert _with_headers(env, path, good).status_code == 200
    ghost = SigningKey.generate()

    def fails(resp: httpx.Response, detail: str | re.Pattern[str]) -> None:
        assert_problem(resp, 401, "unauthenticated", path, detail)

    fails(env.get(path, member="hosp-a/ghost", key=ghost), "no enrolled member hosp-a/ghost")
    forged = sign_request("GET", path, b"", GW, ghost)
    forged[H_KEY] = env.gw_key.kid
    fails(
        _with_headers(env, path, forged),
        f"signature by {GW} (key {env.gw_key.kid}) does not verify over GET {path}",
    )
    other_path = sign_request("GET", "/v1/blocks/0", b"", GW, env.gw_key)
    fails(
        _with_headers(env, path, other_path),
        f"signature by {GW} (key {env.gw_key.kid}) does not verify over GET {path}",
    )
    other_kid = sign_request("GET", path, b"", GW, ghost)
    fails(_with_headers(env, path, other_kid), f"member {GW} has no key {ghost.kid}")
    for skew in (-301_000, 301_000):
        fails(
            env.get(path, now=now_ms() + skew),
            re.compile(
                rf"request time \d+ is {'-' if skew < 0 else ''}\d+ ms from the "
                r"server's \d+; allowed ±300000 ms"
            ),
        )
    assert env.get(path, now=now_ms() - 250_000).status_code == 200
    fails(
        _with_headers(env, path, {**good, H_MEMBER: "nobody"}),
        f"{H_MEMBER} 'nobody' is not 'org/member'",
    )
    fails(
        _with_headers(env, path, {**good, H_KEY: "XYZ"}),
        f"{H_KEY} 'XYZ' is not 16 lower-case hex digits",
    )
    fails(
        _with_headers(env, path, {**good, H_TIME: "-5"}), f"{H_TIME} '-5' is not Unix milliseconds"
    )
    fails(
        _with_headers(env, path, {**good, H_SIGNATURE: "***"}),
        f"{H_SIGNATURE}: not standard base64: '***'",
    )
    partial = {k: v for k, v in good.items() if k != H_TIME}
    fails(_with_headers(env, path, partial), f"missing header(s) {H_TIME}")


def test_auth_signs_the_query_string(env: Env) -> None:
    path = "/v1/checkpoints/latest"
    headers = sign_request("GET", f"{path}?format=json", b"", GW, env.gw_key)
    assert env.http.get(path, params={"format": "json"}, headers=headers).status_code == 200
    resp = env.http.get(path, params={"format": "note"}, headers=headers)
    assert_problem(
        resp,
        401,
        "unauthenticated",
        path,
        f"signature by {GW} (key {env.gw_key.kid}) does not verify over GET {path}?format=note",
    )


def test_auth_refuses_revoked_member_and_key(env: Env) -> None:
    path = "/v1/blocks/head"
    nurse_key = SigningKey.generate()
    (r,) = env.commit(
        env.admin.build(
            "consortium",
            "enroll",
            {"member": "hosp-a/nurse", "role": "nurse", "public_key": b64(nurse_key.public)},
        )
    )
    assert r.ok
    assert env.get(path, member="hosp-a/nurse", key=nurse_key).status_code == 200
    (r,) = env.commit(
        env.admin.build("consortium", "revoke_member", {"member": "hosp-a/nurse", "reason": "left"})
    )
    assert r.ok
    assert_problem(
        env.get(path, member="hosp-a/nurse", key=nurse_key),
        401,
        "unauthenticated",
        path,
        "member hosp-a/nurse is revoked",
    )
    (r,) = env.commit(
        env.gw.build("consortium", "revoke_key", {"member": GW, "kid": env.gw_key.kid})
    )
    assert r.ok, r
    assert_problem(
        env.get(path), 401, "unauthenticated", path, f"key {env.gw_key.kid} of {GW} is revoked"
    )


def test_auth_refuses_member_of_removed_org(env: Env) -> None:
    path = "/v1/blocks/head"
    cdc_key = env.ring.signing["cdc/root"]
    assert env.get(path, member="cdc/root", key=cdc_key).status_code == 200
    at = env.node.height + 2
    (r,) = env.commit(
        env.admin.build(
            "consortium",
            "propose",
            {
                "proposal": "drop-cdc",
                "action": "remove_org",
                "payload": {"id": "cdc"},
                "effective_height": at,
            },
        )
    )
    assert r.ok, r
    hosp_b = Client(env.node, "api-test", "hosp-b/root", env.ring.signing["hosp-b/root"])
    (r,) = env.commit(hosp_b.build("consortium", "approve", {"proposal": "drop-cdc"}))
    assert r.ok and r.value["status"] == "scheduled", r
    for i in range(5):  # the removal applies at the start of its scheduled block
        if orjson.loads(env.store.get_state("consortium/org/cdc") or b"{}")["status"] != "active":
            break
        env.commit(env.register(f"tick{i}"))
    assert_problem(
        env.get(path, member="cdc/root", key=cdc_key),
        401,
        "unauthenticated",
        path,
        "organisation cdc is removed",
    )


# -- a real server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _lab(record_id: str) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "record_type": "Lab",
        "source_system": "LIS",
        "content_hash": "ef" * 32,
        "schema_version": "v1",
    }


def test_http_transport_end_to_end(env: Env) -> None:
    with served_app(create_app(env.node)) as url:
        base = f"{url}/v1"  # the transport accepts the API root too
        with HttpTransport(base, GW, env.gw_key) as transport:
            assert transport.health()["chain_id"] == "api-test"
            client = Client(transport, "api-test", GW, env.gw_key)
            receipt = client.call("registry", "register", _lab("lab:1"))
            assert isinstance(receipt, HttpReceipt) and receipt.ok
            assert receipt.checkpoint is not None and receipt.proof is not None
            cp, _ = verify_checkpoint(receipt.checkpoint.encode(), env.verifiers())
            assert receipt.proof["size"] == cp.size
            again = client.call("registry", "register", _lab("lab:1"))
            assert again.code == "already_exists"
            ghost = Client(transport, "api-test", "hosp-a/ghost", SigningKey.generate())
            with pytest.raises(RejectedError) as info:
                ghost.call("registry", "register", _lab("x"))
            assert info.value.code is Code.UNKNOWN_SIGNER
            assert info.value.message == "no enrolled member hosp-a/ghost"
            assert isinstance(info.value, ProblemError) and info.value.status == 401
            assert info.value.problem["instance"] == "/v1/tx"
            tx_id = transport.submit_nowait(client.build("registry", "register", _lab("nw")))
            assert len(tx_id) == 64

            raws = [client.build("registry", "register", _lab(f"hb{i}")) for i in range(50)]
            batch = transport.submit_batch([*raws, b"{junk"])
            assert [b["code"] for b in batch] == ["ok"] * 50 + ["malformed_json"]
            assert is_problem(batch[-1]) and not is_problem(batch[0])

            tx = transport.get(f"/v1/tx/{receipt.tx_id.hex()}")
            assert tx["receipt"]["tx_id"] == receipt.tx_id.hex()
            state = transport.get("/v1/state/registry/record/hosp-a/lab:1")
            assert state["value"]["record_type"] == "Lab"
            at_height = transport.get(
                "/v1/state/registry/record/hosp-a/lab:1", {"height": receipt.height}
            )
            assert at_height["height"] == receipt.height
            light = LightClient("api-test", env.genesis.org_keys())
            proof, fact = transport.state_proof("registry/record/hosp-a/lab:1", light,
                                                receipt.height)
            assert fact.written == receipt.height and orjson.loads(fact.value or b"")[
                "record_type"] == "Lab"
            _, later = transport.state_proof("registry/record/hosp-a/lab:1", light)
            assert later.height == env.node.height and later.written == receipt.height
            with pytest.raises(LightClientError):  # not what was asked for
                light.verify_state(proof, height=receipt.height + 1)
            note = transport.get("/v1/checkpoints/latest")
            assert isinstance(note, str) and note.startswith("medledger/api-test\n")
            with pytest.raises(RejectedError) as info:
                transport.get("/v1/blocks/9999")
            assert info.value.code is Code.UNKNOWN_BLOCK

            head = env.node.height
            events = list(transport.events(from_height=receipt.height, until_height=head))
            names = [e["name"] for e in events]
            assert names == ["record_registered"] * 52  # lab:1, nw, hb0..hb49
            assert events[0]["tx_id"] == receipt.tx_id.hex()
            # a live stream (no end) stops when the client goes away
            live = transport.events(from_height=receipt.height)
            assert next(live)["tx_id"] == receipt.tx_id.hex()
            live.close()

        with HttpTransport(base, "hosp-a/ghost", SigningKey.generate()) as outsider:
            with pytest.raises(RejectedError) as info:
                outsider.get("/v1/blocks/head")
            assert info.value.code is Code.UNAUTHENTICATED


def test_http_transport_unreachable_node() -> None:
    with HttpTransport(f"http://127.0.0.1:{_free_port()}") as transport:
        with pytest.raises(RejectedError) as info:
            transport.health()
        assert info.value.code is Code.NODE_UNAVAILABLE
        future = transport.submit(b"{}")
        with pytest.raises(RejectedError):
            future.result(10)


def test_record_lineage(env: Env) -> None:
    (first,) = env.commit(env.register("lin-api"))
    (amend,) = env.commit(env.gw.build("registry", "amend", {
        "record_id": "lin-api", "content_hash": "ef" * 32, "schema_version": "fhir-r5",
        "reason": "unit fix"}))
    assert first.ok and amend.ok
    doc = env.get("/v1/records/hosp-a/lin-api/lineage").json()
    assert doc["owner"] == "hosp-a" and len(doc["lineage"]) == 1
    versions = doc["lineage"][0]["versions"]
    assert [v["height"] for v in versions] == [first.height, amend.height]
    assert versions[1]["content_hash"] == "ef" * 32
    path = "/v1/records/hosp-a/nothing/lineage"
    assert_problem(env.get(path), 404, "not_found", path, "hosp-a never registered nothing")
    resp = env.http.get("/v1/records/hosp-a/lin-api/lineage")
    assert resp.status_code == 401
