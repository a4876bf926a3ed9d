"""``medledger bench cluster``: throughput, submit-to-final latency and catch-up of a local cluster.

A local cluster (``cluster/local.py``) runs 3 NATS servers and one peer process per organisation
on this machine. Signed transactions are built before the clock starts; client threads post them
as NDJSON batches to the hospitals' peers (each hospital to its own). A monitor polls every
peer's ``/v1/health`` every 50 ms, so the figures are what the peers report. Three phases
run on one cluster, in this order:

1. **throughput** — every peer running: a saturating load of ``txs`` transactions; committed
   tx/s of each peer (log growth from the first submission to that peer holding everything),
   the slowest one's reported, and submit-to-final latency under that load (per transaction,
   from its batch's post to the first poll showing the submitting peer's final,
   quorum-cosigned, log size past its index);
2. **catch-up** — one non-submitting peer is stopped gracefully, a second load of the same size
   runs through the others, then the peer is started; its replay rate from its first health
   answer to holding every transaction (process start and store opening excluded);
3. **paced** — ``rate`` tx/s offered for ``paced_seconds``: submit-to-final p50/p99.

``--faults`` adds a fourth phase with faults injected under load and reports: the longest pause in
commits after the NATS stream leader is killed, acknowledged transactions lost or duplicated,
and whether a peer killed with SIGKILL catches up to identical roots.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medledger.bench.baseline import verify_rate
from medledger.bench.common import BenchError, Progress, _quiet
from medledger.client.client import Client
from medledger.client.http import HttpTransport
from medledger.cluster.local import LocalCluster
from medledger.errors import MedLedgerError
from medledger.workspace import DEFAULT_ORGS

HOSPITALS = ("hosp-a", "hosp-b", "hosp-c")


@dataclass
class ClusterBench:
    peers: int
    txs: int = 0
    seconds: float = 0.0
    per_peer_tps: dict[str, float] = field(default_factory=dict)
    blocks: int = 0  # blocks the throughput phase's transactions took (slowest peer's count)
    final_p50_ms: float = 0.0  # under the saturating load
    final_p99_ms: float = 0.0
    paced_rate: float = 0.0  # offered tx/s of the paced run
    paced_p50_ms: float = 0.0  # submit-to-final at that rate
    paced_p99_ms: float = 0.0
    paced_txs: int = 0
    paced_batch: int = 0  # transactions per request of the paced run
    catchup_tps: float = 0.0
    catchup_txs: int = 0
    catchup_seconds: float = 0.0  # from the process start to holding everything
    catchup_from_start: bool = False  # replayed before its first health answer: rate timed
    # from the process start (a lower bound)
    behind_seconds: float = 0.0  # the catch-up phase's load, through the other peers
    faults: dict[str, Any] = field(default_factory=dict)
    # one thread's Ed25519 verifications/s, read before the cluster starts and after each
    # timed phase (the machine's speed that day: every figure above scales with it)
    ed25519_per_s: list[float] = field(default_factory=list)

    @property
    def min_tps(self) -> float:
        return min(self.per_peer_tps.values(), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"peers": self.peers, "txs": self.txs, "seconds": round(self.seconds, 2),
                "per_peer_tps": {k: round(v) for k, v in self.per_peer_tps.items()},
                "min_tps": round(self.min_tps), "blocks": self.blocks,
                "final_p50_ms": round(self.final_p50_ms, 1),
                "final_p99_ms": round(self.final_p99_ms, 1),
                "paced_rate": round(self.paced_rate), "paced_txs": self.paced_txs,
                "paced_batch": self.paced_batch,
                "paced_p50_ms": round(self.paced_p50_ms, 1),
                "paced_p99_ms": round(self.paced_p99_ms, 1),
                "catchup_tps": round(self.catchup_tps), "catchup_txs": self.catchup_txs,
                "catchup_seconds": round(self.catchup_seconds, 2),
                "catchup_from_start": self.catchup_from_start,
                "behind_seconds": round(self.behind_seconds, 2),
                "faults": self.faults,
                "ed25519_per_s": [round(x) for x in self.ed25519_per_s]}


class _Monitor:
    """Polls every peer's health; keeps (time, log_size, final_size, height) per peer."""

    def __init__(self, c: LocalCluster, interval: float = 0.05,
                 orgs: Sequence[str] | None = None) -> None:
        self.c, self.interval = c, interval
        self.series: dict[str, list[tuple[float, int, int, int]]] = {
            o: [] for o in (orgs or c.peers)}
        self._stop = threading.Event()
        # one poller per peer, so a slow answer from one does not delay the others' samples
        self._threads = [threading.Thread(target=self._run, args=(o,), daemon=True)
                         for o in self.series]

    def start(self) -> _Monitor:
        for t in self._threads:
            t.start()
        return self

    def _run(self, org: str) -> None:
        with HttpTransport(self.c.url(org), wait_timeout=2) as http:
            while not self._stop.is_set():
                try:
                    h = http.health()
                except MedLedgerError:
                    time.sleep(self.interval)
                    continue
                cl = h.get("cluster") or {}
                # the sample's time is when the request was answered (within its round trip)
                self.series[org].append((time.monotonic(), int(h["log_size"]),
                                         int(cl.get("final_size", 0)), int(h["height"])))
                time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def wait_size(self, size: int, timeout: float = 300) -> None:
        """Until every watched peer's newest sample shows a log of ``size`` transactions (the
        peers answer no extra requests for it)."""
        deadline = time.monotonic() + timeout
        while not all(s and s[-1][1] >= size for s in self.series.values()):
            if time.monotonic() > deadline:
                last = {o: s[-1][1] if s else None for o, s in self.series.items()}
                raise BenchError(f"peers did not reach log size {size}: {last}")
            time.sleep(0.02)

    def size_at(self, org: str, t: float) -> int:
        best = 0
        for ts, size, _, _ in self.series[org]:
            if ts <= t:
                best = size
        return best

    def first_final(self, org: str, index: int, after: float) -> float | None:
        for ts, _, final, _ in self.series[org]:
            if ts >= after and final > index:
                return ts
        return None


def _build(c: LocalCluster, per_hospital: int, tag: str) -> dict[str, list[bytes]]:
    ring = c.keyring()
    out: dict[str, list[bytes]] = {}
    for org in HOSPITALS:
        if org not in c.peers:
            continue
        client = Client(None, c.chain, f"{org}/gw", ring.signing[f"{org}/gw"])  # type: ignore[arg-type]
        out[org] = [client.build("registry", "anchor_batch", {
            "batch_id": f"{tag}-{org}-{i}", "root": hashlib.sha256(f"{tag}{org}{i}".encode())
            .hexdigest(), "count": 1, "record_type": "Observation", "source_system": "LIS",
            "schema_version": "1"}) for i in range(per_hospital)]
    return out


@dataclass
class _Load:
    sent: list[tuple[float, str, list[dict[str, Any]]]] = field(default_factory=list)
    errors: int = 0
    acked: dict[str, int] = field(default_factory=dict)  # tx id -> height


def _drive(c: LocalCluster, raws: dict[str, list[bytes]], batch: int, threads_per_peer: int,
           load: _Load, retry: bool = False) -> None:
    lock = threading.Lock()

    def post(org: str, chunks: list[list[bytes]]) -> None:
        with HttpTransport(c.url(org), wait_timeout=60) as http:
            for chunk in chunks:
                give_up = time.monotonic() + (120 if retry else 0)
                while True:
                    t0 = time.monotonic()
                    try:
                        docs = http.submit_batch(chunk, timeout=60)
                    except MedLedgerError:
                        with lock:
                            load.errors += 1
                        if time.monotonic() > give_up:
                            break
                        time.sleep(0.2)
                        continue
                    ok = [d for d in docs if d.get("code") == "ok"]
                    with lock:
                        load.sent.append((t0, org, docs))
                        load.acked.update((d["tx_id"], d["height"]) for d in ok)
                    if len(ok) == len(chunk) or time.monotonic() > give_up:
                        break
                    time.sleep(0.2)

    workers = []
    for org, items in raws.items():
        chunks = [items[i:i + batch] for i in range(0, len(items), batch)]
        for k in range(threads_per_peer):
            workers.append(threading.Thread(target=post, args=(org, chunks[k::threads_per_peer])))
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _wait_all(c: LocalCluster, size: int, orgs: Sequence[str] | None = None,
              timeout: float = 300) -> None:
    """Until every peer (or those of ``orgs``) holds a log of ``size`` transactions."""
    deadline = time.monotonic() + timeout
    while True:
        st = c.status()["peers"]
        sizes = {o: st[o].get("log_size", 0) for o in (orgs or st)}
        if all(v >= size for v in sizes.values()):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"peers did not reach log size {size}: {sizes}")
        time.sleep(0.05)


def run(root: Path, *, peers: int = 4, txs: int = 30_000, batch: int = 500,
        threads_per_peer: int = 2, max_block_txs: int = 2000, faults: bool = False,
        rate: float = 200.0, paced_seconds: float = 15.0, paced_batch: int = 10,
        fault_txs: int = 18_000, progress: Progress = _quiet) -> ClusterBench:
    """Three phases on one cluster: throughput with every peer running, catch-up of one peer
    stopped during a second load of the same size, then the paced run (and ``faults``)."""
    orgs = DEFAULT_ORGS[:peers]
    if peers < 3:
        raise BenchError("the cluster bench needs at least 3 peers (3 hospitals submit)")
    c = LocalCluster.create(root / "cluster", orgs, chain="bench-cluster")
    for org in c.peers:
        from medledger.cluster.local import PeerConfig

        p = root / "cluster" / "peers" / org / "peer.json"
        cfg = PeerConfig.load(p)
        cfg.max_block_txs = max_block_txs
        cfg.save(p)
    out = ClusterBench(peers=peers, ed25519_per_s=[verify_rate()])
    laggard = orgs[-1][0]  # a non-submitting peer, stopped during the second load
    try:
        progress(f"starting {peers} peers and 3 NATS servers")
        c.start()
        progress("signing transactions; warming up (admission processes start on first use)")
        warm = _build(c, 20, "warm")
        _drive(c, warm, 20, 1, _Load(), True)
        raws = _build(c, txs // 3, "load")
        more = _build(c, txs // 3, "behind")
        base = sum(len(v) for v in warm.values())
        _wait_all(c, base)
        total = sum(len(v) for v in raws.values())
        progress(f"throughput: {total:,} txs to {', '.join(raws)}, all {peers} peers running")
        _throughput(c, out, raws, base, batch, threads_per_peer)
        out.ed25519_per_s.append(verify_rate())
        end = base + total
        progress(f"catch-up: {laggard} stopped, {total:,} more txs through the others")
        c.kill_peer(laggard, 15)  # graceful stop
        running = [o for o in c.peers if o != laggard]
        load = _Load()
        t0 = time.monotonic()
        _drive(c, more, batch, threads_per_peer, load)
        end += total
        _wait_all(c, end, running)
        out.behind_seconds = time.monotonic() - t0
        if len(load.acked) != total:
            raise BenchError(f"{total - len(load.acked)} transactions were not acknowledged")
        progress(f"catch-up: starting {laggard}")
        _catch_up(c, out, laggard, end, end - total)
        out.ed25519_per_s.append(verify_rate())
        if rate > 0:
            progress(f"paced load: {rate:,.0f} tx/s for {paced_seconds:.0f} s")
            _paced(c, out, rate, paced_seconds, paced_batch)
        if faults:
            out.faults = _faults(c, progress, fault_txs)
    finally:
        c.stop()
    return out


def _throughput(c: LocalCluster, out: ClusterBench, raws: dict[str, list[bytes]], base: int,
                batch: int, threads_per_peer: int) -> None:
    """Saturating load with every peer running: each peer's commit rate (first submission to
    that peer holding everything) and submit-to-final latency."""
    total = sum(len(v) for v in raws.values())
    end = base + total
    mon = _Monitor(c).start()
    load = _Load()
    t0 = time.monotonic()
    _drive(c, raws, batch, threads_per_peer, load)
    mon.wait_size(end)
    t1 = time.monotonic()
    deadline = time.monotonic() + 60  # the last checkpoints become final
    while any(mon.series[o][-1][2] < end for o in c.peers if mon.series[o]) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    mon.stop()
    if len(load.acked) != total:
        raise BenchError(f"{total - len(load.acked)} transactions were not acknowledged")
    out.txs, out.seconds = total, t1 - t0
    for org in c.peers:
        last = next((ts for ts, size, _, _ in mon.series[org] if size >= end), t1)
        out.per_peer_tps[org] = total / max(1e-9, last - t0)
        first_h = next((h for ts, _, _, h in mon.series[org] if ts >= t0), 0)
        last_h = next((h for _, size, _, h in mon.series[org] if size >= end), 0)
        out.blocks = max(out.blocks, last_h - first_h)
    lat = []
    for sent_at, org, docs in load.sent:
        for d in docs:
            t = mon.first_final(org, int(d["index"]), sent_at)
            if t is not None:
                lat.append(t - sent_at)
    if lat:
        q = statistics.quantiles(lat, n=100)
        out.final_p50_ms, out.final_p99_ms = statistics.median(lat) * 1000, q[98] * 1000


def _catch_up(c: LocalCluster, out: ClusterBench, laggard: str, end: int, held: int) -> None:
    """Start the stopped peer (it holds ``held`` transactions); its replay rate from its first
    health answer (the process start and its store's opening excluded) to holding all ``end``.
    A backlog replayed before the first answer (a small one, on a fast machine) is timed from
    the process start instead: a lower bound, flagged in ``catchup_from_start``."""
    mon = _Monitor(c, orgs=[laggard]).start()  # only it is polled: it does the work timed
    t2 = time.monotonic()
    c.start_peer(laggard)
    c.wait_healthy(orgs=[laggard])
    t3 = time.monotonic()
    mon.wait_size(end)
    mon.stop()
    t4 = next(ts for ts, size, _, _ in mon.series[laggard] if size >= end)
    ser = [x for x in mon.series.get(laggard) or [] if x[0] >= t2]
    first_t, first_size = (ser[0][0], ser[0][1]) if ser else (t3, 0)
    out.catchup_from_start = first_size >= end
    if out.catchup_from_start:
        first_t, first_size = t2, held
    out.catchup_txs = end - first_size
    out.catchup_tps = out.catchup_txs / max(1e-9, t4 - first_t)
    out.catchup_seconds = t4 - t2


def _paced(c: LocalCluster, out: ClusterBench, rate: float, seconds: float,
           per_batch: int = 10) -> None:
    """Offer ``rate`` tx/s in requests of ``per_batch``, round-robin over the hospitals' peers,
    and time each transaction from its request's scheduled send to the first poll showing it
    final."""
    from concurrent.futures import ThreadPoolExecutor

    n = max(1, int(rate * seconds / per_batch))
    raws = _build(c, n * per_batch // len(HOSPITALS) + per_batch, "paced")
    orgs = [o for o in HOSPITALS if o in raws]
    chunks = [(orgs[k % len(orgs)], raws[orgs[k % len(orgs)]][(k // len(orgs)) * per_batch:
                                                             (k // len(orgs) + 1) * per_batch])
              for k in range(n)]
    https = {o: HttpTransport(c.url(o), wait_timeout=60) for o in orgs}
    mon = _Monitor(c, interval=0.02).start()
    sent: list[tuple[float, str, list[dict[str, Any]]]] = []
    lock = threading.Lock()

    def send(at: float, org: str, chunk: list[bytes]) -> None:
        docs = https[org].submit_batch(chunk, timeout=60)
        with lock:
            sent.append((at, org, docs))

    interval = per_batch / rate
    t0 = time.monotonic() + 0.1
    # each request blocks until its batch is committed: enough senders for a second's worth of
    # requests in flight, so the client's own queue does not add to the latency it measures
    with ThreadPoolExecutor(min(256, max(16, int(rate / per_batch)))) as pool:
        futs = []
        for k, (org, chunk) in enumerate(chunks):
            at = t0 + k * interval
            time.sleep(max(0.0, at - time.monotonic()))
            futs.append(pool.submit(send, at, org, chunk))
        for f in futs:
            f.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(
            mon.first_final(org, int(d["index"]), at) for at, org, docs in sent[-3:] for d in docs):
        time.sleep(0.05)
    mon.stop()
    for h in https.values():
        h.close()
    lat = [t - at for at, org, docs in sent for d in docs
           if (t := mon.first_final(org, int(d["index"]), at)) is not None]
    if len(lat) >= 2:
        q = statistics.quantiles(lat, n=100)
        out.paced_p50_ms, out.paced_p99_ms = statistics.median(lat) * 1000, q[98] * 1000
    out.paced_rate, out.paced_txs, out.paced_batch = rate, len(lat), per_batch


def _faults(c: LocalCluster, progress: Progress, txs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start_size = min(p.get("log_size", 0) for p in c.status()["peers"].values())
    raws = _build(c, txs // len(HOSPITALS), "fault")
    total = start_size + sum(len(v) for v in raws.values())
    load = _Load()
    mon = _Monitor(c).start()
    th = threading.Thread(target=_drive, args=(c, raws, 100, 1, load, True))
    th.start()
    time.sleep(2.0)
    nats = c.nats
    leader = nats.stream_leader(f"ML_{c.chain}_TXS")
    progress(f"faults: killing the TXS stream leader {leader} (SIGKILL)")
    killed_at = time.monotonic()
    if leader:
        nats.kill(leader)
    time.sleep(3.0)
    victim = "hosp-c"
    progress(f"faults: killing peer {victim} (SIGKILL)")
    c.kill_peer(victim)
    time.sleep(2.0)
    if leader:
        nats.start(leader, detach=True)
    c.start_peer(victim)
    th.join()
    _wait_all(c, total)
    mon.stop()
    watch = "hosp-a"
    times = [ts for ts, size, _, _ in mon.series[watch] if ts >= killed_at]
    sizes = [size for ts, size, _, _ in mon.series[watch] if ts >= killed_at]
    pause, last_t, last_s = 0.0, killed_at, sizes[0] if sizes else 0
    for ts, size in zip(times, sizes, strict=True):
        if size > last_s:
            pause = max(pause, ts - last_t)
            last_t, last_s = ts, size
    st = c.status()["peers"]
    roots = {(p["log_size"], p["log_root"], p["state_root"]) for p in st.values()}
    out["stale_sequencer_refused"] = _fence_probe(c)
    acked = len(load.acked)
    out.update({
        "killed_stream_leader": leader, "longest_commit_pause_s": round(pause, 2),
        "acked": acked, "log_growth": min(p["log_size"] for p in st.values()) - start_size,
        "lost": sum(len(v) for v in raws.values()) - acked,
        "duplicated": min(p["log_size"] for p in st.values()) - start_size - acked,
        "client_retries": load.errors,
        "killed_peer_caught_up_identical": len(roots) == 1,
    })
    victim = list(c.peers)[-1]  # a peer no load is submitted to
    out["cut_off"] = _cut_off(c, victim, progress, max(30, txs // 6))
    out["tamper"] = _tamper(c, victim, progress)  # last: the victim stays diverged
    return out


CUT_SECONDS = 5.0


def _log_size(c: LocalCluster, org: str) -> int:
    h = c.health(org)
    return int(((h or {}).get("cluster") or {}).get("log_size", -1))


def _cut_off(c: LocalCluster, victim: str, progress: Progress, txs: int) -> dict[str, Any]:
    """``victim`` on one NATS server only, that server killed while the others commit ``txs``
    transactions, then restarted: did the victim hold still, and how fast did it catch up?"""
    from medledger.cluster.local import PeerConfig

    lonely = c.nats.specs[-1]
    path = c.root / "peers" / victim / "peer.json"
    cfg = PeerConfig.load(path)
    servers = list(cfg.servers)
    c.kill_peer(victim, 15)
    cfg.servers = [lonely.url]
    cfg.save(path)
    try:
        c.start_peer(victim)
        c.wait_healthy(orgs=[victim])
        _wait_all(c, max(_log_size(c, o) for o in c.peers), [victim])
        held = _log_size(c, victim)
        progress(f"faults: cutting {victim} off from NATS (its only server, {lonely.name}, "
                 f"killed for {CUT_SECONDS:.0f} s)")
        c.nats.kill(lonely.name)
        t0 = time.monotonic()
        raws = _build(c, txs // len(HOSPITALS), "cut")
        load = _Load()
        _drive(c, raws, 100, 1, load, True)
        time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - t0)))
        during = _log_size(c, victim)
        top = max(_log_size(c, o) for o in c.peers if o != victim)
        cut = time.monotonic() - t0
        c.nats.start(lonely.name, detach=True)
        back = time.monotonic()
        _wait_all(c, top, [victim], timeout=120)
        caught = time.monotonic() - back
    finally:
        cfg.servers = servers  # for its next start
        cfg.save(path)
    st = c.status()["peers"]
    roots = {(p["log_size"], p["log_root"], p["state_root"]) for p in st.values()}
    return {"peer": victim, "server": lonely.name, "cut_s": round(cut, 2),
            "held": during == held, "committed_meanwhile": top - held,
            "caught_up_s": round(caught, 2), "identical": len(roots) == 1}


def _tamper(c: LocalCluster, victim: str, progress: Progress) -> dict[str, Any]:
    """An insider edits ``victim``'s database (one of hosp-a's records marked retracted);
    hosp-a then amends the record. How long until every other peer alarms, does the evidence
    verify with the genesis alone, and does the victim's own verify name the edit?"""
    from medledger.cluster.drills import (
        edit_behind_the_ledger,
        fetched_evidence,
        record_tx,
        wait_alarms,
    )
    from medledger.consortium.genesis import Genesis
    from medledger.installed import default_registry
    from medledger.ledger.store.sqlite import SQLiteStore
    from medledger.ledger.verify import verify_store

    record = "bench-tampered"
    registered = record_tx(c, "hosp-a", "register", record, "v1")
    _wait_all(c, registered.index + 1)
    progress(f"faults: editing {victim}'s database behind the ledger's back")
    edited = edit_behind_the_ledger(c, victim, "hosp-a", record)
    amended = record_tx(c, "hosp-a", "amend", record, "fix")
    t0 = time.monotonic()
    alarms = wait_alarms(c, victim, amended.height)
    alarm_s = time.monotonic() - t0
    genesis = Genesis.load((c.root / "genesis.json").read_bytes())
    signers: set[str] = set()
    if alarms is not None:
        report = fetched_evidence(c, HOSPITALS[1], victim, genesis)
        signers = {n for side in (report.a, report.b) for n in side.log_signers}
    store = SQLiteStore(c.root / "peers" / victim / "ledger.db", create=False)
    try:
        first_bad = verify_store(store, default_registry()).first_bad_height
    finally:
        store.close()
    return {"peer": victim, "edited_height": edited, "amended_height": amended.height,
            "alarmed_by": len(alarms or {}), "others": len(c.peers) - 1,
            "alarm_s": None if alarms is None else round(alarm_s, 2),
            "evidence_names_it": victim in signers, "own_verify_first_bad": first_bad}


def _fence_probe(c: LocalCluster) -> bool:
    """A sequencer that believes the chain is one block shorter tries to append: refused?"""
    from medledger.errors import Code, RejectedError
    from medledger.ordering.jetstream import Link, Sequencer, last_cut
    from medledger.ordering.wire import EMPTY_RANGE, BlockCut, Names

    names = Names(c.chain)
    link = Link(c.nats.urls, "bench-fence-probe")
    try:
        async def probe() -> bool:
            height, cut = await last_cut(link.js, names)
            if cut is None or height < 1:
                return False
            stale = Sequencer(link.js, names, "bench-usurper")
            try:
                await stale._append(height - 1, BlockCut(cut.last + 1, cut.last, cut.time,
                                                         "bench-usurper", EMPTY_RANGE))
            except RejectedError as exc:
                return exc.code == Code.FENCED and (await last_cut(link.js, names))[0] == height
            return False

        return link.call(probe(), timeout=30)
    finally:
        link.close()


def summary(b: ClusterBench) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows."""
    rows = [
        ("committed tx/s, slowest peer", f"{b.min_tps:,.0f} with all {len(b.per_peer_tps)} "
         f"peers running ({', '.join(f'{o} {v:,.0f}' for o, v in b.per_peer_tps.items())})",
         ">= 3,000"),
        ("blocks for that load", f"{b.blocks:,} (mean {b.txs / max(1, b.blocks):,.0f} txs "
         "per block)", "—"),
        ("submit-to-final p50 / p99, saturated", f"{b.final_p50_ms:,.0f} / "
         f"{b.final_p99_ms:,.0f} ms", "—"),
        (f"submit-to-final p50 / p99 at {b.paced_rate:,.0f} tx/s",
         f"{b.paced_p50_ms:,.0f} / {b.paced_p99_ms:,.0f} ms ({b.paced_txs:,} txs, "
         f"{b.paced_batch} per request)" if b.paced_txs else "not run (--rate 0)",
         "p99 <= 1,000 ms"),
        ("catch-up replay", f"{b.catchup_tps:,.0f} tx/s over {b.catchup_txs:,} txs "
         f"(a peer stopped during a second load of {b.txs:,}; {b.catchup_seconds:.1f} s "
         "with its process start"
         + ("; replayed before its first health answer, so timed from the process start: a "
            "lower bound)" if b.catchup_from_start else ")"), ">= 10,000 tx/s"),
    ]
    if b.ed25519_per_s:
        rows.append(("machine: Ed25519 verifications/s, one thread",
                     " / ".join(f"{x:,.0f}" for x in b.ed25519_per_s)
                     + " (before the run, after throughput, after catch-up)", "—"))
    f = b.faults
    if f:
        rows += [
            ("stream leader killed", f"{f['killed_stream_leader']}: longest commit pause "
             f"{f['longest_commit_pause_s']} s", "<= 10 s"),
            ("acked lost / duplicated", f"{f['lost']} / {f['duplicated']} "
             f"({f['acked']:,} acked, {f['client_retries']} client retries)", "0 / 0"),
            ("peer kill -9, restart", "identical roots" if f["killed_peer_caught_up_identical"]
             else "ROOTS DIFFER", "identical"),
            ("stale sequencer appends", "refused (fenced), stream unchanged"
             if f.get("stale_sequencer_refused") else "ACCEPTED", "refused"),
        ]
        if "cut_off" in f:
            k = f["cut_off"]
            rows.append(("peer cut off from NATS", f"{k['peer']} ({k['server']} killed "
                         f"{k['cut_s']} s): {'held still' if k['held'] else 'MOVED'} while "
                         f"{k['committed_meanwhile']:,} txs committed elsewhere; caught up "
                         f"{k['caught_up_s']} s after the server returned; "
                         + ("identical roots" if k["identical"] else "ROOTS DIFFER"),
                         "catches up"))
        if "tamper" in f:
            t = f["tamper"]
            rows.append(("tampered peer store", f"{t['peer']}: alarm naming it on "
                         f"{t['alarmed_by']} of {t['others']} peers "
                         + (f"{t['alarm_s']} s after the amendment" if t["alarm_s"] is not None
                            else "(TIMED OUT)")
                         + "; evidence verified with the genesis keys"
                         + ("" if t["evidence_names_it"] else " NOT naming it")
                         + f"; its own verify: first bad height {t['own_verify_first_bad']} "
                         f"(edited at {t['edited_height']})",
                         "detected by itself and the others"))
    return rows


