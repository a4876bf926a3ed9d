"""The cluster demo: five organisations' peers as separate processes on a 3-server NATS cluster.

Hospitals submit records to their own peers over HTTP; every peer executes every block; the
checkpoints become final once a quorum of organisations cosigned them; a light client checks a
proof against a final checkpoint only; one peer is killed with SIGKILL and catches up; an
insider edits the CDC's database behind the ledger's back, and the other peers catch it at the
next change to that record, with evidence anyone can check against the genesis; finally peers'
stores are compared and verified in full. Every figure is read back.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from medledger.client.client import Client
from medledger.client.http import HttpTransport
from medledger.client.light import LightClient
from medledger.cluster.drills import (
    edit_behind_the_ledger,
    fetched_evidence,
    record_tx,
    wait_alarms,
)
from medledger.cluster.local import LocalCluster
from medledger.consortium.genesis import Genesis
from medledger.demo.ledger import DemoResult
from medledger.installed import default_registry
from medledger.ledger.compare import compare
from medledger.ledger.finality import ConsortiumKeys, FinalCheckpoint
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.verify import verify_store
from medledger.workspace import DEFAULT_ORGS

ORGS = DEFAULT_ORGS[:5]  # three hospitals, the CDC, the research centre
HOSPITALS = ("hosp-a", "hosp-b", "hosp-c")


def _wait(c: LocalCluster, height: int, *, final: bool, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        peers = c.status()["peers"].values()
        key = "final_height" if final else "height"
        if all(p.get(key, -1) >= height for p in peers):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"peers did not reach {key} {height}: "
                               f"{[p.get(key) for p in peers]}")
        time.sleep(0.2)


def _register(c: LocalCluster, ring: object, chain: str, n: int, tag: str) -> int:
    top = 0
    for org in HOSPITALS:
        with HttpTransport(c.url(org)) as http:
            client = Client(http, chain, f"{org}/gw", ring.signing[f"{org}/gw"])  # type: ignore[attr-defined]
            raws = [client.build("registry", "register", {
                "record_id": f"{tag}-{org}-{i:05d}", "record_type": "Encounter",
                "source_system": "HIS-v3", "schema_version": "fhir-r4/1",
                "content_hash": hashlib.sha256(f"{org}/{tag}/{i}".encode()).hexdigest()})
                for i in range(n)]
            docs = http.submit_batch(raws, timeout=60)
            bad = [d for d in docs if d.get("code") != "ok"]
            if bad:
                raise RuntimeError(f"{org}: {bad[0]}")
            top = max(top, *(d["height"] for d in docs))
    return top


def run(records_per_hospital: int = 200, workdir: Path | None = None) -> DemoResult:
    out = DemoResult()
    with tempfile.TemporaryDirectory(prefix="medledger-cluster-") as tmp:
        root = (workdir or Path(tmp)) / "cluster"
        t0 = time.perf_counter()
        c = LocalCluster.create(root, ORGS, chain="demo-cluster")
        try:
            c.start()
            out.add("cluster", f"{len(c.peers)} peers ({', '.join(c.peers)}) as processes, "
                    f"3 NATS JetStream servers, R3 streams; up in {time.perf_counter() - t0:.1f} s")
            ring = c.keyring()
            genesis = Genesis.load((root / "genesis.json").read_bytes())
            t1 = time.perf_counter()
            top = _register(c, ring, c.chain, records_per_hospital, "enc")
            _wait(c, top, final=True)
            status = c.status()["peers"]
            roots = {(p["height"], p["log_root"], p["state_root"]) for p in status.values()}
            leader = next(o for o, p in status.items() if p.get("sequencer"))
            out.add("records", f"{3 * records_per_hospital} registered by 3 hospitals, each "
                    f"through its own peer; final on all peers in {time.perf_counter() - t1:.1f} s")
            out.add("peers agree", f"{len(status)} peers at height {top}+, one log root and "
                    f"state root each: {'yes' if len(roots) == 1 else 'NO'} "
                    f"(sequencer: {leader})")
            out.ok &= len(roots) == 1
            # a light client that trusts only the organisations' keys and final checkpoints
            keys = {o: k for o, k in genesis.org_keys().items() if o in c.peers}
            light = LightClient(c.chain, keys, witnesses=keys)
            with HttpTransport(c.url("cdc"), "cdc/analyst", ring.signing["cdc/analyst"]) as h:
                final = h.get("/v1/checkpoints/final", {"format": "json"})
                cp = light.checkpoint(final["note"].encode())
                head = h.get("/v1/blocks/head")
                tx_id = head["tx_ids"][0] if head.get("tx_ids") else None
                if tx_id is None:
                    blk = h.get(f"/v1/blocks/{final['height']}")
                    tx_id = blk["tx_ids"][0]
                bundle = h.get(f"/v1/tx/{tx_id}/proof", {"size": cp.size})
            light.verify_bundle(bundle)
            fin = FinalCheckpoint.verify(final["note"].encode(),
                                         ConsortiumKeys(log=keys, witnesses=keys))
            out.add("final checkpoint", f"log size {cp.size} cosigned by {len(fin.cosigners)} of "
                    f"{len(keys)} organisations (quorum {-(-2 * len(keys) // 3)}); inclusion "
                    "proof verified by a light client that accepts only final checkpoints")
            # kill -9 one hospital's peer, keep writing, bring it back
            c.kill_peer("hosp-c")
            more = _register_some(c, ring, ("hosp-a", "hosp-b"))
            c.start_peer("hosp-c")
            c.wait_healthy(orgs=["hosp-c"])
            _wait(c, more, final=False)
            status = c.status()["peers"]
            same = len({(p["height"], p["state_root"]) for p in status.values()}) == 1
            out.add("kill -9 and restart", f"hosp-c killed while hospitals wrote on; after "
                    f"restart it caught up to height {status['hosp-c']['height']}: "
                    f"{'identical roots' if same else 'ROOTS DIFFER'}")
            out.ok &= same
            edited = _tamper_and_catch(c, genesis, out)
        finally:
            c.stop()
        a = SQLiteStore(root / "peers" / "hosp-a" / "ledger.db")
        b = SQLiteStore(root / "peers" / "hosp-c" / "ledger.db")
        try:
            div = compare(a, b)
            report = verify_store(b, default_registry())
        finally:
            a.close()
            b.close()
        out.add("ledger compare", "hosp-a and hosp-c stores: no divergence" if div is None
                else f"DIVERGE at height {div.height}")
        out.add("full verify (hosp-c)", f"{'OK' if report.ok else 'FAILED'}: {report.blocks} "
                f"blocks, {report.txs} txs in {report.seconds:.2f} s")
        out.ok &= div is None and report.ok
        cdc = SQLiteStore(root / "peers" / "cdc" / "ledger.db")
        a = SQLiteStore(root / "peers" / "hosp-a" / "ledger.db")
        try:
            bad = verify_store(cdc, default_registry()).first_bad_height
            div = compare(a, cdc)
        finally:
            a.close()
            cdc.close()
        out.add("cdc's own verify", f"first inconsistent height {bad} (the edited row was "
                f"written at {edited}); compare with hosp-a: diverges at height "
                f"{None if div is None else div.height}")
        out.ok &= bad == edited and div is not None and div.height == edited
    return out


RECORD = "enc-hosp-a-00000"


def _tamper_and_catch(c: LocalCluster, genesis: Genesis, out: DemoResult) -> int:
    """An insider marks one of hosp-a's records retracted in cdc's database; hosp-a then
    amends that record, cdc executes the amendment differently, its checkpoint differs, and
    the other peers raise an alarm naming it and keep evidence. Returns the height of the
    edited row."""
    edited = edit_behind_the_ledger(c, "cdc", "hosp-a", RECORD)
    amended = record_tx(c, "hosp-a", "amend", RECORD, "corrected")
    alarms = wait_alarms(c, "cdc", amended.height)
    if alarms is None:
        out.add("tampering caught", "NO: not every other peer raised an alarm naming cdc")
        out.ok = False
        return edited
    out.add("tampering caught", f"cdc's database edited behind the ledger's back ({RECORD} "
            f"marked retracted); at hosp-a's amendment of it (height {amended.height}) cdc "
            f"executed differently: alarm naming cdc at height {min(alarms.values())} on all "
            f"{len(alarms)} other peers, which stay final without it")
    report = fetched_evidence(c, "hosp-b", "cdc", genesis)
    sides = sorted(", ".join(s.log_signers) for s in (report.a, report.b))
    out.add("evidence", f"fetched from hosp-b's peer and checked with the genesis keys alone: "
            f"{report.kind} checkpoints signed by {sides[0]} and by {sides[1]}")
    out.ok &= "cdc" in sides and amended.ok
    return edited


def _register_some(c: LocalCluster, ring: object, orgs: tuple[str, ...]) -> int:
    top = 0
    for org in orgs:
        with HttpTransport(c.url(org)) as http:
            client = Client(http, c.chain, f"{org}/gw", ring.signing[f"{org}/gw"])  # type: ignore[attr-defined]
            for i in range(20):
                r = http.submit_one(client.build("registry", "register", {
                    "record_id": f"late-{org}-{i}", "record_type": "Encounter",
                    "source_system": "HIS-v3", "schema_version": "fhir-r4/1",
                    "content_hash": hashlib.sha256(f"late/{org}/{i}".encode()).hexdigest()}))
                top = max(top, r.height)
    return top
