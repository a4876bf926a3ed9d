"""``medledger bench consent``: the consent check with many consents on the ledger, and one
exchange of many records end to end.

1. Grants ``consents`` consents (two per patient) through an embedded node — real signed
   ``consent.grant`` transactions, committed in blocks — then times ``checks`` consent checks
   of random patients on a freshly opened store (cold cache): one state read (``p/<patient>``)
   plus ``model.decide``. The same at a past height (``Store.state_at``).
2. One holder, one requester, ``records`` records of one patient: sign the request, the holder's
   checks and consent decision, the access entry committed in a block, HPKE sealing, transfer
   as JSON, opening, and every record checked against the anchored batch root.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from medledger.consent import model as m
from medledger.consent.exchange import Delivery, Holder, LedgerMember, Requester
from medledger.consent.sources import MemorySource
from medledger.errors import RejectedError
from medledger.ledger import tx as txmod
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.workspace import DEFAULT_ORGS, Workspace

DAY = 86_400_000
MEMBERS = [("hosp-a/gw", "gateway"), ("hosp-a/steward", "data-steward"),
           ("hosp-b/dr", "physician")]


@dataclass
class ConsentBench:
    consents: int = 0
    load_seconds: float = 0.0
    check_us: dict[str, float] = field(default_factory=dict)
    past_check_us: dict[str, float] = field(default_factory=dict)
    granted_share: float = 0.0
    records: int = 0
    exchange_ms: dict[str, float] = field(default_factory=dict)
    db_bytes: int = 0

    def to_doc(self) -> dict[str, Any]:
        return dict(self.__dict__)


def patient(i: int) -> str:
    return f"k1-{i:032x}"


def _stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"mean": statistics.fmean(s), "p50": s[len(s) // 2],
            "p99": s[min(len(s) - 1, len(s) * 99 // 100)], "max": s[-1]}


def _load(ws: Workspace, consents: int, progress: Callable[[str], None]) -> tuple[float, int]:
    ring = ws.keyring()
    key = ring.signing["hosp-a/steward"]
    with ws.node(max_block_txs=2000, max_wait=0.02) as node:
        t0 = time.perf_counter()
        now = time.time_ns() // 1_000_000
        nonce = now * 1000
        pending = []
        chunk = 2000
        for start in range(0, consents, chunk):
            raws = []
            for i in range(start, min(consents, start + chunk)):
                nonce += 1
                args = {"consent_id": f"c{i}", "patient": patient(i // 2),
                        "purpose": "referral" if i % 2 == 0 else "research",
                        "categories": ["labs", "conditions"],
                        "recipient_org": "hosp-b" if i % 2 == 0 else "research",
                        "start": now - DAY, "end": now + 365 * DAY, "evidence": "ab" * 32}
                body = txmod.make_body(chain=node.chain_id, contract="consent", method="grant",
                                       args=args, signer="hosp-a/steward", nonce=nonce,
                                       time=time.time_ns() // 1_000_000)
                raws.append(txmod.build(body, {"hosp-a/steward": key}))
            while True:
                try:
                    pending.append(node.submit_many(raws, wait_admission=False))
                    break
                except RejectedError:  # ingress queue full: let the node catch up
                    _drain(pending[:1])
                    pending = pending[1:]
            while len(pending) > 8:
                _drain(pending[:1])
                pending = pending[1:]
            if (start // chunk) % 50 == 0:
                progress(f"granted {start:,} consents")
        _drain(pending)
        height = node.height
        return time.perf_counter() - t0, height


def _drain(batches: list[Any]) -> None:
    for futs in batches:
        for f in futs:
            r = f.result(600)
            if not r.ok:
                raise RuntimeError(f"grant failed: {r.code}: {r.message}")


def _checks(db: Path, n_patients: int, checks: int, height: int | None) -> tuple[
        dict[str, float], float]:
    store = SQLiteStore(db)
    rng = random.Random(7)
    now = time.time_ns() // 1_000_000
    samples, granted = [], 0
    try:
        for _ in range(checks):
            p = patient(rng.randrange(n_patients))
            t0 = time.perf_counter()
            if height is None:
                raw = store.get_state(f"consent/{m.patient_key(p)}")
            else:
                found = store.state_at(f"consent/{m.patient_key(p)}", height)
                raw = None if found is None else found[1]
            d = m.decide(None if raw is None else orjson.loads(raw), "hosp-b", "physician",
                         "referral", ["labs"], now)
            samples.append((time.perf_counter() - t0) * 1e6)
            granted += d.granted
    finally:
        store.close()
    return _stats(samples), granted / checks


def _exchange(ws: Workspace, records: int) -> dict[str, float]:
    ring = ws.keyring()
    with ws.node(max_wait=0.002) as node:
        def clock() -> int:
            return time.time_ns() // 1_000_000
        def member(mid: str) -> LedgerMember:
            return LedgerMember(node, mid, ring.signing[mid], clock)
        p = patient(10**9)
        source = MemorySource("bench-exchange")
        for i in range(records):
            body = orjson.dumps({"resourceType": "Observation", "id": f"o{i}",
                                 "subject": {"reference": f"Patient/{p}"},
                                 "valueQuantity": {"value": i, "unit": "mg/dL"}})
            source.add(p, "labs", f"o{i}", body)
        steward = member("hosp-a/steward")
        _ok(member("hosp-a/gw").call("registry", "anchor_batch", source.anchor_args()))
        now = clock()
        _ok(steward.call("consent", "grant", {
            "consent_id": "bench-x", "patient": p, "purpose": "referral",
            "categories": ["labs"], "recipient_org": "hosp-b", "start": now - DAY,
            "end": now + DAY, "evidence": "cd" * 32}))
        holder = Holder(member("hosp-a/gw"), source)
        requester = Requester(member("hosp-b/dr"), ring.agreement["hosp-b"].secret)
        t0 = time.perf_counter()
        signed = requester.request("hosp-a", p, ["labs"], "referral")
        wire_in = orjson.dumps(signed)
        t1 = time.perf_counter()
        delivery = holder.handle(orjson.loads(wire_in))
        wire_out = orjson.dumps(delivery.to_doc())
        t2 = time.perf_counter()
        got = requester.accept(signed, Delivery.from_doc(orjson.loads(wire_out)))
        t3 = time.perf_counter()
        if len(got) != records:
            raise RuntimeError(f"received {len(got)} records, want {records}")
        return {"request": (t1 - t0) * 1e3, "holder": (t2 - t1) * 1e3,
                "requester": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3,
                "sealed_bytes": float(len(delivery.sealed))}


def _ok(r: Any) -> None:
    if not r.ok:
        raise RuntimeError(f"{r.code}: {r.message}")


def run(root: Path, consents: int = 1_000_000, checks: int = 10_000, records: int = 1_000,
        progress: Callable[[str], None] = lambda _: None) -> ConsentBench:
    out = ConsentBench(consents=consents, records=records)
    ws = Workspace.init(root / "consortium", "bench-consent", DEFAULT_ORGS, MEMBERS)
    progress(f"granting {consents:,} consents through the node")
    out.load_seconds, height = _load(ws, consents, progress)
    db = ws.root / ws.config["store"]
    out.db_bytes = db.stat().st_size
    progress(f"{checks:,} consent checks on a cold store")
    out.check_us, out.granted_share = _checks(db, max(1, consents // 2), checks, None)
    out.past_check_us, _ = _checks(db, max(1, consents // 2), checks, height // 2)
    progress(f"exchanging {records:,} records end to end")
    out.exchange_ms = _exchange(ws, records)
    return out
