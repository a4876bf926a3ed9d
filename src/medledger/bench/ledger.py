"""Ledger benchmarks for issue 2: throughput, verify speed, proof latency, node memory.

Workloads (each returns a result dataclass; every figure in it is measured in the run):

* :func:`signature_baseline` — raw Ed25519 verification with PyNaCl on 1 and 2 threads (and 2
  processes): the machine's signature ceiling, which bounds any validating ledger on it.
* :func:`run_inprocess` — a fresh workspace, one gateway enrolled per hospital, N pre-signed
  ``registry.register`` transactions fed through ``Node.submit_many`` in chunks; committed tx/s,
  per-chunk submit→receipt latency, blocks cut, and the process's memory after every 10 %.
* :func:`run_http` — the same workload posted as NDJSON batches to ``medledger node start``
  running in a subprocess on a loopback port; the server's RSS after every 10 %.
* :func:`run_verify` — ``verify_store`` over a chain built by :func:`run_inprocess`.
* :func:`run_proofs` — a synthetic log written straight into a fresh SQLite store's
  ``log_nodes`` table, then random inclusion and consistency proofs read from it.

Signing is the clients' cost, so transactions are signed before the clock starts; the signing
time is reported separately. The machine may be shared, so each workload also reports how much
CPU other processes used meanwhile (:class:`CpuWatch`).

``verify_store`` starts worker processes with the ``spawn`` method: a script calling
:func:`run_verify` or :func:`run` needs the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from nacl.bindings import crypto_sign_open

from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import MedLedgerError
from medledger.installed import default_registry
from medledger.ledger import merkle
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.tx import decode
from medledger.ledger.verify import verify_store
from medledger.node.node import Node, Receipt
from medledger.workspace import DEFAULT_ORGS, Workspace

Progress = Callable[[str], None]

# The targets (requirements to compare against, not results).
TARGET_INPROCESS_TPS = 10_000
TARGET_HTTP_TPS = 5_000
TARGET_VERIFY_TXS = 1_000_000
TARGET_VERIFY_SECONDS = 60.0
TARGET_PROOF_LEAVES = 10_000_000
TARGET_PROOF_US = 1_000.0
# "Memory bounded, not growing with chain length" made checkable: over the second half of a run of
# at least 100k txs, the RSS trend (Theil–Sen) may rise by at most 5 MiB per 100k txs, i.e.
# ~52 bytes per tx: less than the smallest thing a node could keep per tx (a 32-byte id alone is
# a 65-byte object in CPython, ~90 bytes once in a set), more than allocator noise.
TARGET_MEMORY_KIB_PER_100K = 5 * 1024
MEMORY_MIN_TXS = 100_000

HOSPITALS = [org for org, _, kind in DEFAULT_ORGS if kind == "hospital"]


class BenchError(RuntimeError):
    """A workload that could not run or produced a wrong result."""


def _quiet(_: str) -> None:
    pass


# -- measurement helpers ------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return float(ordered[int(rank) - 1])


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) of a process in KiB, from /proc."""
    return _proc_status_kib(pid, "VmRSS")


def tree_rss_kib(pid: int | str = "self", field_name: str = "VmRSS") -> int:
    """VmRSS (or another /proc status field in KiB) of a process plus that of all its
    descendants (e.g. a node's admission workers)."""
    total = 0
    todo = [str(pid)]
    while todo:
        p = todo.pop()
        try:
            total += _proc_status_kib(p, field_name)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend((task / "children").read_text().split())
        except (OSError, BenchError):
            continue  # exited meanwhile
    return total


def hwm_kib(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process in KiB, from /proc."""
    return _proc_status_kib(pid, "VmHWM")


def _proc_status_kib(pid: int | str, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field_name}")


@dataclass
class LatencyStats:
    count: int
    mean: float
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyStats:
        return cls(
            len(values),
            sum(values) / len(values),
            percentile(values, 50),
            percentile(values, 99),
            max(values),
        )


def slope_per_100k(points: Sequence[tuple[int, int]]) -> float:
    """Theil–Sen slope (median of pairwise slopes) of ``(txs, value)`` points, in value units per
    100,000 txs: one odd sample does not make a trend."""
    slopes = sorted(
        (v2 - v1) / (n2 - n1)
        for i, (n1, v1) in enumerate(points)
        for n2, v2 in points[i + 1 :]
        if n2 != n1
    )
    if not slopes:
        return 0.0
    mid = len(slopes) // 2
    median = slopes[mid] if len(slopes) % 2 else (slopes[mid - 1] + slopes[mid]) / 2
    return median * 100_000


@dataclass
class MemorySamples:
    """Memory after every 10 % of a run: ``samples`` is ``[(txs done, VmRSS KiB), ...]``, the
    RSS of the process and its child processes (``peak_kib``: the sum of their VmHWM).

    For the benchmark's own process it also counts live Python allocations
    (``sys.getallocatedblocks()``), which — unlike RSS — cannot hide growth in memory the allocator
    freed earlier in the run: ``py_blocks`` after every 10 % (these swing by tens of thousands
    with the transactions in flight, so no trend is drawn from them), and ``idle_blocks``
    ``(before, after)``: with nothing in flight just before the first submit and after the last
    receipt, the same signed transactions held both times.
    """

    before_kib: int = 0
    samples: list[tuple[int, int]] = field(default_factory=list)
    py_blocks: list[tuple[int, int]] = field(default_factory=list)
    idle_blocks: tuple[int, int] | None = None
    peak_kib: int = 0

    @property
    def first_kib(self) -> int:
        return self.samples[0][1]

    @property
    def last_kib(self) -> int:
        return self.samples[-1][1]

    def growth_per_100k(self) -> float:
        """KiB of RSS growth per 100,000 txs from the first sample to the last one."""
        (n0, r0), (n1, r1) = self.samples[0], self.samples[-1]
        return 0.0 if n1 == n0 else (r1 - r0) * 100_000 / (n1 - n0)

    def second_half_slope_per_100k(self) -> float:
        """RSS trend (KiB per 100,000 txs) over the second half of the samples."""
        return slope_per_100k(self.samples[len(self.samples) // 2 :])

    def retained_blocks_per_tx(self) -> float | None:
        """Live Python blocks gained per tx between the idle samples (None: not sampled)."""
        if self.idle_blocks is None or not self.samples:
            return None
        before, after = self.idle_blocks
        return (after - before) / self.samples[-1][0]

    def to_doc(self) -> dict[str, Any]:
        return {
            "before_kib": self.before_kib,
            "samples": self.samples,
            "peak_kib": self.peak_kib,
            "first_kib": self.first_kib,
            "last_kib": self.last_kib,
            "growth_kib_per_100k": round(self.growth_per_100k(), 1),
            "second_half_slope_kib_per_100k": round(self.second_half_slope_per_100k(), 1),
            "py_blocks": self.py_blocks,
            "idle_blocks": self.idle_blocks,
            "retained_blocks_per_tx": self.retained_blocks_per_tx(),
        }


class _Sampler:
    """Takes a memory sample each time ``tick(done)`` crosses another tenth of ``total``."""

    def __init__(self, total: int, pid: int | str = "self") -> None:
        self.total, self.pid = total, pid
        self.mem = MemorySamples(before_kib=tree_rss_kib(pid))
        self._next = 1

    def tick(self, done: int) -> bool:
        """Sample if ``done`` crossed another tenth; True if it did."""
        if not (self._next <= 10 and done * 10 >= self.total * self._next):
            return False
        self.mem.samples.append((done, tree_rss_kib(self.pid)))
        if self.pid == "self":
            self.mem.py_blocks.append((done, sys.getallocatedblocks()))
        while self._next <= 10 and done * 10 >= self.total * self._next:
            self._next += 1
        return True

    def finish(self) -> MemorySamples:
        self.mem.peak_kib = tree_rss_kib(self.pid, "VmHWM")
        return self.mem


class CpuWatch:
    """Share of the machine's CPU time used by *other* processes since construction.

    The benchmark shares its machine; this makes contention visible. Busy time comes from
    ``/proc/stat`` (user, nice, system, irq, softirq, steal), our own from ``/proc/PID/stat``.
    """

    def __init__(self, pids: Sequence[int | str] = ("self",)) -> None:
        self.pids = list(pids)
        self._busy0, self._own0, self._t0 = _machine_busy(), self._own(), time.monotonic()

    def _own(self) -> int:
        return sum(_proc_ticks(p) for p in self.pids)

    def other_pct(self) -> float:
        """Percent of all CPUs' time (100 = every CPU) spent in other processes so far."""
        wall = time.monotonic() - self._t0
        other = (_machine_busy() - self._busy0) - (self._own() - self._own0)
        capacity = wall * os.sysconf("SC_CLK_TCK") * len(os.sched_getaffinity(0))
        return round(max(0.0, 100 * other / capacity), 1) if capacity else 0.0


def _machine_busy() -> int:
    parts = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return user + nice + system + irq + softirq + steal


def _proc_ticks(pid: int | str) -> int:
    """utime + stime of ``pid``, plus those of its reaped children (cutime + cstime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 of proc(5)
    return sum(int(x) for x in fields[11:15])


def background_cpu(seconds: float = 2.0) -> float:
    """Percent of all CPUs busy with other processes while this one sleeps ``seconds``."""
    watch = CpuWatch()
    time.sleep(seconds)
    return watch.other_pct()


# -- machine and signature ceiling --------------------------------------------------------


@dataclass
class Machine:
    nproc: int
    cpu_model: str
    python: str
    platform: str
    memory_gib: float
    date_utc: str
    revision: str

    @classmethod
    def detect(cls) -> Machine:
        model = "unknown"
        mem_kib = 0
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        return cls(
            len(os.sched_getaffinity(0)),
            model,
            f"{platform.python_implementation()} {platform.python_version()}",
            platform.platform(),
            round(mem_kib / 2**20, 1),
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            _revision(),
        )


def _revision() -> str:
    """``git describe``-like revision of the source tree this package runs from, if any."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", str(here.parent)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.strip() + (" + uncommitted changes" if dirty.strip() else "")


@dataclass
class SigBaseline:
    """Raw ``crypto_sign_open`` rate (PyNaCl/libsodium) over a real transaction's signed bytes.

    ``two_threads_per_s`` is what a thread pool in one Python process gets (libsodium releases
    the GIL, the PyNaCl wrapper around it does not); ``two_processes_per_s`` needs no GIL.
    """

    verifications: int
    message_bytes: int
    one_thread_per_s: float
    two_threads_per_s: float
    two_processes_per_s: float
    other_cpu_pct: float

    @property
    def ceiling_per_s(self) -> float:
        """The best in-process (threaded) rate: what one node process can verify."""
        return max(self.one_thread_per_s, self.two_threads_per_s)


def _verify_loop(signed: bytes, public_key: bytes, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        crypto_sign_open(signed, public_key)
    return time.perf_counter() - t0


def signature_baseline(
    message: bytes, signature: bytes, public_key: bytes, verifications: int = 20_000
) -> SigBaseline:
    """Verify one (message, signature) ``verifications`` times on 1 thread, 2 threads and 2
    processes (each after an untimed warm-up)."""
    signed = signature + message
    half = verifications // 2
    watch = CpuWatch()
    _verify_loop(signed, public_key, 200)
    one = verifications / _verify_loop(signed, public_key, verifications)
    with ThreadPoolExecutor(2) as threads:
        t0 = time.perf_counter()
        jobs = [
            threads.submit(_verify_loop, signed, public_key, n)
            for n in (half, verifications - half)
        ]
        for f in jobs:
            f.result()
        two = verifications / (time.perf_counter() - t0)
    with ProcessPoolExecutor(2) as procs:
        list(procs.map(_verify_loop, [signed] * 2, [public_key] * 2, [200, 200]))
        t0 = time.perf_counter()
        list(procs.map(_verify_loop, [signed] * 2, [public_key] * 2, [half, verifications - half]))
        two_procs = verifications / (time.perf_counter() - t0)
    return SigBaseline(verifications, len(message), one, two, two_procs, watch.other_pct())


# -- transactions -------------------------------------------------------------------------


def enrol_gateways(node: Node, ws: Workspace) -> list[Client]:
    """Enrol ``<hospital>/gateway`` for every hospital (signed by ``<hospital>/root``)."""
    ring = ws.keyring()
    gateways = []
    for org in HOSPITALS:
        key = SigningKey.generate()
        root = Client(node, node.chain_id, f"{org}/root", ring.signing[f"{org}/root"])
        r = root.call(
            "consortium",
            "enroll",
            {"member": f"{org}/gateway", "role": "gateway", "public_key": b64(key.public)},
        )
        if not r.ok:
            raise BenchError(f"enrolling {org}/gateway failed: {r.code} {r.message}")
        gateways.append(Client(node, node.chain_id, f"{org}/gateway", key))
    return gateways


def build_registrations(
    gateways: Sequence[Client], start: int, count: int, tag: str
) -> list[bytes]:
    """Sign ``count`` ``registry.register`` txs, round-robin over ``gateways``."""
    out = []
    for i in range(start, start + count):
        gw = gateways[i % len(gateways)]
        rid = f"{tag}-{i:09d}"
        args = {
            "record_id": rid,
            "record_type": "Encounter",
            "source_system": "bench-his",
            "content_hash": hashlib.sha256(rid.encode()).hexdigest(),
            "schema_version": "fhir-r4/1",
        }
        out.append(gw.build("registry", "register", args))
    return out


# -- in-process workload ------------------------------------------------------------------


@dataclass
class InProcessResult:
    txs: int
    gateways: int
    chunk: int
    window_chunks: int
    admit_processes: int
    max_block_txs: int
    max_wait_ms: float
    sign_seconds: float
    sign_per_s: float
    seconds: float
    tx_per_s: float
    chunk_latency_ms: LatencyStats
    blocks: int
    receipts_ok: int
    not_ok: dict[str, int]
    memory: MemorySamples
    store_mib: float
    store_path: str
    other_cpu_pct: float
    tenths_tx_per_s: list[float]  # committed tx/s within each 10 % of the run, in order

    def to_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k not in ("memory", "chunk_latency_ms")}
        doc["chunk_latency_ms"] = self.chunk_latency_ms.__dict__
        doc["memory"] = self.memory.to_doc()
        return doc


@dataclass
class _Feed:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    not_ok: dict[str, int] = field(default_factory=dict)


def feed(
    node: Node,
    raws: Sequence[bytes],
    *,
    chunk: int,
    window: int,
    out: _Feed,
    on_done: Callable[[int, float], None],
    timeout: float = 300.0,
) -> None:
    """Submit ``raws`` in chunks from this thread, at most ``window`` chunks awaiting receipts.

    A chunk's latency runs from its ``submit_many`` call to the receipt of its last transaction
    (taken in the commit thread by a done-callback); receipts resolve in log order, so that one
    resolves last, which ``drain`` checks.
    """
    inflight: deque[tuple[list[Future[Receipt]], list[float]]] = deque()
    t0 = time.perf_counter()

    def drain() -> None:
        futs, stamp = inflight.popleft()
        last = -1
        for f in futs:
            try:
                r = f.result(timeout)
            except MedLedgerError as exc:
                out.not_ok[str(exc.code)] = out.not_ok.get(str(exc.code), 0) + 1
                continue
            if r.ok:
                out.ok += 1
            else:
                out.not_ok[r.code] = out.not_ok.get(r.code, 0) + 1
            last = max(last, r.index)
        if futs[-1].exception() is None and futs[-1].result().index != last:
            raise BenchError("receipts of a chunk did not resolve in log order")
        out.latencies.append(stamp[1] - stamp[0])
        on_done(len(futs), out.seconds + time.perf_counter() - t0)

    for i in range(0, len(raws), chunk):
        while len(inflight) >= window:
            drain()
        stamp = [time.perf_counter(), 0.0]
        futs = node.submit_many(raws[i : i + chunk])

        def stamp_last(_: Future[Receipt], stamp: list[float] = stamp) -> None:
            stamp[1] = time.perf_counter()

        futs[-1].add_done_callback(stamp_last)
        inflight.append((futs, stamp))
    while inflight:
        drain()
    out.seconds += time.perf_counter() - t0


def run_inprocess(
    root: Path,
    txs: int,
    *,
    max_block_txs: int = 2000,
    max_wait: float = 0.02,
    chunk: int = 1000,
    window: int = 4,
    sign_round: int = 100_000,
    tag: str = "enc",
    admit_processes: int = 0,
    progress: Progress = _quiet,
) -> InProcessResult:
    """Commit ``txs`` pre-signed registrations through the embedded node (see module doc).

    Transactions are signed in rounds of ``sign_round`` before each round is fed, so a run of
    millions does not hold every signed transaction at once; only feeding is timed.
    ``admit_processes`` is passed to the node (0: its ingress checks run on threads).
    """
    ws = Workspace.init(root, f"bench-{tag}")
    result = _Feed()
    sign_seconds = 0.0
    watch = CpuWatch()
    with ws.node(
        max_block_txs=max_block_txs, max_wait=max_wait, admit_processes=admit_processes
    ) as node:
        gateways = enrol_gateways(node, ws)
        h0 = node.height
        sampler: _Sampler | None = None
        done = 0
        ticks: list[tuple[int, float]] = [(0, 0.0)]  # (txs done, feeding seconds) per sample
        for start in range(0, txs, sign_round):
            n = min(sign_round, txs - start)
            progress(f"signing txs {start:,}..{start + n:,} of {txs:,}")
            t0 = time.perf_counter()
            raws = build_registrations(gateways, start, n, tag)
            sign_seconds += time.perf_counter() - t0
            if sampler is None:
                sampler = _Sampler(txs)
                gc.collect()
                blocks_before = sys.getallocatedblocks()

            def on_done(k: int, clock: float, s: _Sampler = sampler) -> None:
                nonlocal done
                done += k
                if s.tick(done):
                    ticks.append((done, clock))

            progress(f"feeding txs {start:,}..{start + n:,} through submit_many")
            feed(node, raws, chunk=chunk, window=window, out=result, on_done=on_done)
            if start + n < txs:
                del raws
        assert sampler is not None
        gc.collect()
        sampler.mem.idle_blocks = (blocks_before, sys.getallocatedblocks())
        blocks = node.height - h0
        memory = sampler.finish()
    db = root / ws.config["store"]
    return InProcessResult(
        txs=txs,
        gateways=len(gateways),
        chunk=chunk,
        window_chunks=window,
        admit_processes=admit_processes,
        max_block_txs=max_block_txs,
        max_wait_ms=max_wait * 1000,
        sign_seconds=sign_seconds,
        sign_per_s=txs / sign_seconds,
        seconds=result.seconds,
        tx_per_s=txs / result.seconds,
        chunk_latency_ms=LatencyStats.of([x * 1000 for x in result.latencies]),
        blocks=blocks,
        receipts_ok=result.ok,
        not_ok=result.not_ok,
        memory=memory,
        store_mib=round(_db_bytes(db) / 2**20, 1),
        store_path=str(db),
        other_cpu_pct=watch.other_pct(),
        tenths_tx_per_s=[
            (n1 - n0) / (t1 - t0) for (n0, t0), (n1, t1) in itertools.pairwise(ticks) if t1 > t0
        ],
    )


def _db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


# -- HTTP workload ------------------------------------------------------------------------


@dataclass
class HttpResult:
    txs: int
    batch: int
    concurrency: int
    max_block_txs: int
    max_wait_ms: float
    sign_seconds: float
    seconds: float
    tx_per_s: float
    batch_latency_ms: LatencyStats
    receipts_ok: int
    not_ok: dict[str, int]
    server_memory: MemorySamples
    other_cpu_pct: float
    server_exit_code: int | None

    def to_doc(self) -> dict[str, Any]:
        doc = {
            k: v for k, v in self.__dict__.items() if k not in ("server_memory", "batch_latency_ms")
        }
        doc["batch_latency_ms"] = self.batch_latency_ms.__dict__
        doc["server_memory"] = self.server_memory.to_doc()
        return doc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"node exited with {proc.returncode}: {_tail(log)}")
            try:
                if http.get(f"{base}/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise BenchError(f"node not healthy after {timeout} s: {_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (the node commits what is queued and exits), then terminate, then kill."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_http(
    root: Path,
    txs: int,
    *,
    batch: int = 1000,
    concurrency: int = 3,
    max_block_txs: int = 2000,
    max_wait: float = 0.02,
    startup_timeout: float = 60.0,
    progress: Progress = _quiet,
) -> HttpResult:
    """Post ``txs`` pre-signed registrations to ``medledger node start`` (see module doc)."""
    ws = Workspace.init(root, "bench-http")
    with ws.node(max_block_txs=max_block_txs, max_wait=max_wait) as node:
        gateways = enrol_gateways(node, ws)
    progress(f"signing {txs:,} txs for the HTTP run")
    t0 = time.perf_counter()
    raws = build_registrations(gateways, 0, txs, "http")
    sign_seconds = time.perf_counter() - t0
    bodies = [b"\n".join(raws[i : i + batch]) + b"\n" for i in range(0, txs, batch)]
    del raws
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = root / "node.log"
    cmd = [
        sys.executable,
        "-m",
        "medledger.cli.main",
        "node",
        "start",
        "--dir",
        str(root),
        "--port",
        str(port),
        "--max-block-txs",
        str(max_block_txs),
        "--max-wait-ms",
        str(round(max_wait * 1000)),
    ]
    progress(f"starting the node on {base}")
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, base, log, startup_timeout)
        sampler = _Sampler(txs, proc.pid)
        watch = CpuWatch(["self", proc.pid])
        local = threading.local()
        clients: list[httpx.Client] = []
        lock = threading.Lock()

        def post(body: bytes) -> tuple[float, list[dict[str, Any]]]:
            http: httpx.Client | None = getattr(local, "http", None)
            if http is None:
                http = local.http = httpx.Client(base_url=base, timeout=300.0)
                with lock:
                    clients.append(http)
            t = time.perf_counter()
            resp = http.post(
                "/v1/txs",
                params={"wait": "true", "timeout": "60"},
                content=body,
                headers={"content-type": "application/x-ndjson"},
            )
            latency = time.perf_counter() - t
            if resp.status_code != 200:
                raise BenchError(f"POST /v1/txs: HTTP {resp.status_code}: {resp.text[:500]}")
            receipts: list[dict[str, Any]] = resp.json()["receipts"]
            return latency, receipts

        progress(
            f"posting {len(bodies):,} NDJSON batches of {batch:,} on {concurrency} connections"
        )
        ok, not_ok, latencies, done = 0, dict[str, int](), list[float](), 0
        try:
            with ThreadPoolExecutor(concurrency) as pool:
                t0 = time.perf_counter()
                for latency, receipts in pool.map(post, bodies):
                    latencies.append(latency)
                    for r in receipts:
                        code = str(r.get("code", "missing_code"))
                        if code == "ok":
                            ok += 1
                        else:
                            not_ok[code] = not_ok.get(code, 0) + 1
                    done += len(receipts)
                    sampler.tick(done)
                seconds = time.perf_counter() - t0
        finally:
            for c in clients:
                c.close()
        memory = sampler.finish()
        other = watch.other_pct()
    finally:
        progress("stopping the node")
        _stop(proc)
    return HttpResult(
        txs=txs,
        batch=batch,
        concurrency=concurrency,
        max_block_txs=max_block_txs,
        max_wait_ms=max_wait * 1000,
        sign_seconds=sign_seconds,
        seconds=seconds,
        tx_per_s=txs / seconds,
        batch_latency_ms=LatencyStats.of([x * 1000 for x in latencies]),
        receipts_ok=ok,
        not_ok=not_ok,
        server_memory=memory,
        other_cpu_pct=other,
        server_exit_code=proc.returncode,
    )


# -- verify -------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    ok: bool
    blocks: int
    txs: int
    checkpoints: int
    seconds: float
    tx_per_s: float
    findings: list[str]
    peak_rss_mib: float
    other_cpu_pct: float


def run_verify(db: Path) -> VerifyResult:
    """``verify_store`` over the store at ``db`` (its default: one replay process per core for
    large chains)."""
    store = SQLiteStore(db)
    watch = CpuWatch()
    try:
        report = verify_store(store, default_registry())
    finally:
        store.close()
    return VerifyResult(
        ok=report.ok,
        blocks=report.blocks,
        txs=report.txs,
        checkpoints=report.checkpoints,
        seconds=report.seconds,
        tx_per_s=report.txs / report.seconds if report.seconds else 0.0,
        findings=[f"height {f.height}: {f.check}: {f.detail}" for f in report.findings[:5]],
        peak_rss_mib=round(hwm_kib() / 1024, 1),
        other_cpu_pct=watch.other_pct(),
    )


# -- proofs -------------------------------------------------------------------------------


@dataclass
class ProofResult:
    leaves: int
    nodes: int
    build_seconds: float
    store_mib: float
    seed: int
    inclusion_us: LatencyStats
    consistency_us: LatencyStats
    inclusion_hashes_mean: float
    consistency_hashes_mean: float
    verified_inclusion: int
    verified_consistency: int
    other_cpu_pct: float

    def to_doc(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["inclusion_us"] = self.inclusion_us.__dict__
        doc["consistency_us"] = self.consistency_us.__dict__
        return doc


def synthetic_leaf(i: int) -> bytes:
    return b"medledger-bench-leaf:" + i.to_bytes(8, "big")


def build_synthetic_log(
    db: Path, leaves: int, batch: int = 100_000, progress: Progress = _quiet
) -> tuple[bytes, int]:
    """Write the Merkle nodes of ``leaves`` synthetic leaves into a fresh store's ``log_nodes``.

    One transaction per ``batch`` leaves. Returns the root and the number of nodes written.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    SQLiteStore(db).close()  # creates the schema (WAL, as the node uses it)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        log = merkle.CompactRange()
        leaf_hash, append = merkle.leaf_hash, log.append
        nodes = 0
        for start in range(0, leaves, batch):
            rows: list[tuple[int, bytes]] = []
            extend = rows.extend
            for i in range(start, min(start + batch, leaves)):
                extend(append(leaf_hash(synthetic_leaf(i))))
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO log_nodes VALUES (?,?)", rows)
            conn.execute("COMMIT")
            nodes += len(rows)
            if (start // batch) % 10 == 9:
                progress(f"synthetic log: {start + batch:,} of {leaves:,} leaves")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return log.root(), nodes


def run_proofs(
    db: Path,
    leaves: int,
    *,
    proofs: int = 2000,
    verify_every: int = 10,
    seed: int | None = None,
    progress: Progress = _quiet,
) -> ProofResult:
    """Build the synthetic log, then time ``proofs`` random inclusion and consistency proofs.

    Every ``verify_every``-th proof is checked: inclusion against the root the builder computed
    in memory and the recomputed leaf hash, consistency against ``tree_root`` of both sizes.
    """
    if leaves < 2:
        raise BenchError("the proof benchmark needs at least 2 leaves")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    watch = CpuWatch()
    progress(f"building a synthetic log of {leaves:,} leaves in {db}")
    t0 = time.perf_counter()
    root, nodes = build_synthetic_log(db, leaves, progress=progress)
    build_seconds = time.perf_counter() - t0
    store = SQLiteStore(db)
    try:
        if merkle.tree_root(leaves, store) != root:
            raise BenchError("root read back from the store differs from the built one")
        merkle.inclusion_proof(0, leaves, store)  # opens this thread's connection; untimed
        progress(f"timing {proofs:,} inclusion and {proofs:,} consistency proofs")
        inc_us, inc_len, inc_ok = [], 0, 0
        for k in range(proofs):
            index = rng.randrange(leaves)
            t = time.perf_counter_ns()
            proof = merkle.inclusion_proof(index, leaves, store)
            inc_us.append((time.perf_counter_ns() - t) / 1000)
            inc_len += len(proof)
            if k % verify_every == 0:
                merkle.verify_inclusion(
                    merkle.leaf_hash(synthetic_leaf(index)), index, leaves, proof, root
                )
                inc_ok += 1
        con_us, con_len, con_ok = [], 0, 0
        for k in range(proofs):
            new = rng.randint(2, leaves)
            old = rng.randint(1, new - 1)
            t = time.perf_counter_ns()
            proof = merkle.consistency_proof(old, new, store)
            con_us.append((time.perf_counter_ns() - t) / 1000)
            con_len += len(proof)
            if k % verify_every == 0:
                new_root = root if new == leaves else merkle.tree_root(new, store)
                merkle.verify_consistency(old, new, merkle.tree_root(old, store), new_root, proof)
                con_ok += 1
    finally:
        store.close()
    return ProofResult(
        leaves=leaves,
        nodes=nodes,
        build_seconds=build_seconds,
        store_mib=round(_db_bytes(db) / 2**20, 1),
        seed=seed,
        inclusion_us=LatencyStats.of(inc_us),
        consistency_us=LatencyStats.of(con_us),
        inclusion_hashes_mean=inc_len / proofs,
        consistency_hashes_mean=con_len / proofs,
        verified_inclusion=inc_ok,
        verified_consistency=con_ok,
        other_cpu_pct=watch.other_pct(),
    )


# -- the whole benchmark ------------------------------------------------------------------


@dataclass
class Check:
    figure: str
    target: str
    measured: str
    passed: bool | None  # None: this run was too small to judge the figure


@dataclass
class LedgerBench:
    machine: Machine
    baseline: SigBaseline
    inprocess: InProcessResult
    http: HttpResult | None
    verify_build: InProcessResult | None
    verify: VerifyResult
    proofs: ProofResult
    checks: list[Check]
    seconds: float
    background_cpu_before: float
    background_cpu_after: float

    def to_doc(self) -> dict[str, Any]:
        return {
            "machine": self.machine.__dict__,
            "baseline": self.baseline.__dict__,
            "inprocess": self.inprocess.to_doc(),
            "http": None if self.http is None else self.http.to_doc(),
            "verify_build": None if self.verify_build is None else self.verify_build.to_doc(),
            "verify": self.verify.__dict__,
            "proofs": self.proofs.to_doc(),
            "checks": [c.__dict__ for c in self.checks],
            "seconds": self.seconds,
            "background_cpu_before": self.background_cpu_before,
            "background_cpu_after": self.background_cpu_after,
        }


def checks(b: LedgerBench) -> list[Check]:
    """Compare a run's figures with the issue's targets."""
    out = []
    ceiling = b.baseline.ceiling_per_s
    ip = b.inprocess
    out.append(
        Check(
            "in-process commit",
            f">= {TARGET_INPROCESS_TPS:,} tx/s",
            f"{ip.tx_per_s:,.0f} tx/s ({ip.tx_per_s / ceiling:.0%} of the in-process Ed25519 "
            f"ceiling of {ceiling:,.0f}/s"
            + (f"; ingress in {ip.admit_processes} processes)" if ip.admit_processes else ")"),
            ip.tx_per_s >= TARGET_INPROCESS_TPS and ip.receipts_ok == ip.txs,
        )
    )
    if b.http is not None:
        h = b.http
        out.append(
            Check(
                "HTTP batch endpoint",
                f">= {TARGET_HTTP_TPS:,} tx/s",
                f"{h.tx_per_s:,.0f} tx/s",
                h.tx_per_s >= TARGET_HTTP_TPS and h.receipts_ok == h.txs,
            )
        )
    v = b.verify
    projected = TARGET_VERIFY_TXS / v.tx_per_s if v.tx_per_s else float("inf")
    big = v.txs >= TARGET_VERIFY_TXS
    out.append(
        Check(
            "full verify",
            f"{TARGET_VERIFY_TXS:,} txs in <= {TARGET_VERIFY_SECONDS:.0f} s",
            f"{v.txs:,} txs in {v.seconds:.1f} s ({v.tx_per_s:,.0f} tx/s"
            + ("" if big else f"; {projected:.0f} s projected for {TARGET_VERIFY_TXS:,}")
            + ")",
            (v.ok and v.seconds * TARGET_VERIFY_TXS / v.txs <= TARGET_VERIFY_SECONDS)
            if big
            else None,
        )
    )
    p = b.proofs
    full = p.leaves >= TARGET_PROOF_LEAVES
    for name, stats in (
        ("inclusion proof", p.inclusion_us),
        ("consistency proof", p.consistency_us),
    ):
        out.append(
            Check(
                name,
                f"<= {TARGET_PROOF_US:,.0f} µs on {TARGET_PROOF_LEAVES:,} entries",
                f"p50 {stats.p50:.0f} µs, p99 {stats.p99:.0f} µs on {p.leaves:,} entries",
                stats.p99 <= TARGET_PROOF_US if full else None,
            )
        )
    runs: list[tuple[str, MemorySamples, int]] = [
        ("node memory (in-process run)", ip.memory, ip.txs)
    ]
    if b.http is not None:
        runs.append(("node memory (HTTP server)", b.http.server_memory, b.http.txs))
    if b.verify_build is not None:
        runs.append(("node memory (verify-chain build)", b.verify_build.memory, b.verify_build.txs))
    for label, mem, txs in runs:
        slope = mem.second_half_slope_per_100k()
        retained = mem.retained_blocks_per_tx()
        measured = (
            f"{mem.first_kib / 1024:,.0f} → {mem.last_kib / 1024:,.0f} MiB over {txs:,} "
            f"txs; second half {slope / 1024:+.2f} MiB per 100k txs"
            + (
                ""
                if retained is None or mem.idle_blocks is None
                else f"; idle Python blocks {mem.idle_blocks[1] - mem.idle_blocks[0]:+,}"
            )
        )
        out.append(
            Check(
                label,
                f"bounded: second-half RSS trend <= {TARGET_MEMORY_KIB_PER_100K / 1024:g} MiB "
                f"per 100k txs (runs >= {MEMORY_MIN_TXS:,} txs)",
                measured,
                slope <= TARGET_MEMORY_KIB_PER_100K if txs >= MEMORY_MIN_TXS else None,
            )
        )
    return out


def run(
    workdir: Path,
    *,
    txs: int = 100_000,
    http_txs: int = 50_000,
    verify_txs: int = 0,
    proof_leaves: int = 1_000_000,
    max_block_txs: int = 2000,
    max_wait: float = 0.02,
    window: int = 4,
    http_concurrency: int = 3,
    admit_processes: int = 0,
    progress: Progress = _quiet,
) -> LedgerBench:
    """Run every workload in ``workdir`` (which must not hold a previous run)."""
    started = time.perf_counter()
    machine = Machine.detect()
    progress("measuring other processes' CPU use for 3 s")
    idle_before = background_cpu(3.0)
    probe = workdir / "probe"
    ws = Workspace.init(probe, "bench-probe")
    key = ws.keyring().signing["hosp-a/root"]
    sample = decode(
        Client(_NoSubmit(), "bench-probe", "hosp-a/root", key).build(
            "registry",
            "register",
            {
                "record_id": "probe",
                "record_type": "Encounter",
                "source_system": "bench-his",
                "content_hash": "0" * 64,
                "schema_version": "fhir-r4/1",
            },
        )
    )
    progress("measuring the Ed25519 verification ceiling")
    baseline = signature_baseline(sample.signed, sample.sigs[0].sig, key.public)
    progress(f"in-process run: {txs:,} txs")
    inproc = run_inprocess(
        workdir / "inprocess",
        txs,
        max_block_txs=max_block_txs,
        max_wait=max_wait,
        window=window,
        tag="enc",
        admit_processes=admit_processes,
        progress=progress,
    )
    if inproc.receipts_ok != txs:
        raise BenchError(
            f"in-process run: only {inproc.receipts_ok} of {txs} receipts ok: {inproc.not_ok}"
        )
    http = None
    if http_txs:
        progress(f"HTTP run: {http_txs:,} txs")
        http = run_http(
            workdir / "http",
            http_txs,
            concurrency=http_concurrency,
            max_block_txs=max_block_txs,
            max_wait=max_wait,
            progress=progress,
        )
        if http.receipts_ok != http_txs:
            raise BenchError(
                f"HTTP run: only {http.receipts_ok} of {http_txs} receipts ok: {http.not_ok}"
            )
    build = None
    db = Path(inproc.store_path)
    if verify_txs:
        progress(f"building a chain of {verify_txs:,} txs to verify")
        build = run_inprocess(
            workdir / "verify",
            verify_txs,
            max_block_txs=max_block_txs,
            max_wait=max_wait,
            window=window,
            tag="ver",
            admit_processes=admit_processes,
            progress=progress,
        )
        if build.receipts_ok != verify_txs:
            raise BenchError(f"verify chain: only {build.receipts_ok} of {verify_txs} ok")
        db = Path(build.store_path)
    progress(f"verifying {db}")
    verified = run_verify(db)
    if not verified.ok:
        raise BenchError(f"verify found problems: {verified.findings}")
    proofs = run_proofs(workdir / "proofs" / "log.db", proof_leaves, progress=progress)
    seconds = time.perf_counter() - started
    idle_after = background_cpu(3.0)
    bench = LedgerBench(
        machine,
        baseline,
        inproc,
        http,
        build,
        verified,
        proofs,
        [],
        seconds,
        idle_before,
        idle_after,
    )
    bench.checks = checks(bench)
    return bench


class _NoSubmit:
    def submit(self, raw: bytes) -> Future[Any]:
        raise BenchError("this client only builds transactions")
