"""Fault drills on a local cluster, shared by ``medledger demo --cluster`` and
``medledger bench cluster --faults``: an insider edits one peer's database behind the ledger's
back, and the other peers must catch it when the edited record next changes."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import time
from typing import Any

import orjson

from medledger.client.client import Client
from medledger.client.http import HttpReceipt, HttpTransport
from medledger.cluster.local import LocalCluster
from medledger.consortium.genesis import Genesis
from medledger.ledger.equivocation import EquivocationReport, verify_equivocation
from medledger.ledger.finality import ConsortiumKeys


def record_tx(c: LocalCluster, org: str, method: str, record_id: str, tag: str) -> HttpReceipt:
    """``registry.register`` or ``registry.amend`` of ``org``'s record ``record_id`` through
    ``org``'s own peer, as its gateway; the peer's receipt."""
    ring = c.keyring()
    args: dict[str, Any] = {"record_id": record_id, "schema_version": "fhir-r4/1",
                            "content_hash": hashlib.sha256(f"{record_id}/{tag}".encode())
                            .hexdigest()}
    if method == "register":
        args |= {"record_type": "Encounter", "source_system": "HIS-v3"}
    else:
        args["reason"] = tag
    with HttpTransport(c.url(org)) as http:
        client = Client(http, c.chain, f"{org}/gw", ring.signing[f"{org}/gw"])
        return http.submit_one(client.build("registry", method, args))


def edit_behind_the_ledger(c: LocalCluster, victim: str, owner: str, record_id: str) -> int:
    """Stop ``victim``'s peer, mark ``owner``'s record retracted in its SQLite store as an
    insider with database access could, and start the peer again. Returns the height of the
    edited row."""
    c.kill_peer(victim, signal.SIGTERM)
    db = sqlite3.connect(c.root / "peers" / victim / "ledger.db")
    try:
        row = db.execute(
            "SELECT key, height, value FROM state WHERE key LIKE ? ORDER BY height DESC LIMIT 1",
            (f"%record/{owner}/{record_id}",)).fetchone()
        if row is None:
            raise LookupError(f"{victim} holds no record {owner}/{record_id}")
        key, height, value = row
        doc = orjson.loads(value)
        doc["status"] = "retracted"
        db.execute("UPDATE state SET value=? WHERE key=? AND height=?",
                   (orjson.dumps(doc), key, height))
        db.commit()
    finally:
        db.close()
    c.start_peer(victim)
    c.wait_healthy(orgs=[victim])
    return int(height)


def wait_alarms(c: LocalCluster, against: str, final_height: int,
                timeout: float = 60) -> dict[str, int] | None:
    """Wait until every other peer raised an equivocation alarm naming ``against`` and is
    final at ``final_height`` without it: {peer: alarm height}, or None on timeout."""
    others = [o for o in c.peers if o != against]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.status()["peers"]
        found = {o: min(a["height"] for a in alarms) for o in others
                 if (alarms := [a for a in status[o].get("alarms", [])
                                if a.get("org") == against])}
        final = all(status[o].get("final_height", -1) >= final_height for o in others)
        if len(found) == len(others) and final:
            return found
        time.sleep(0.1)
    return None


def fetched_evidence(c: LocalCluster, reader: str, against: str,
                     genesis: Genesis) -> EquivocationReport:
    """The evidence against ``against`` as ``reader``'s peer serves it
    (``GET /v1/checkpoints/evidence``, read as ``reader``'s gateway), verified with the
    genesis keys alone."""
    ring = c.keyring()
    with HttpTransport(c.url(reader), f"{reader}/gw", ring.signing[f"{reader}/gw"]) as h:
        kept = {d["against"]: d["evidence"] for d in h.get("/v1/checkpoints/evidence")}
    keys = genesis.org_keys()
    return verify_equivocation(kept[against].encode(), ConsortiumKeys(log=keys, witnesses=keys))
