"""The HTTP workload.

:func:`run_http` — the in-process run's workload posted as NDJSON batches to
``medledger node start`` running in a subprocess on a loopback port; the server's RSS after every
10 %. Transactions are signed before the clock starts; the signing time is reported separately.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medledger.bench.common import BenchError, Progress, _quiet
from medledger.bench.machine import CpuWatch, LatencyStats, MemorySamples, _Sampler
from medledger.bench.workload import build_registrations, enrol_gateways
from medledger.workspace import Workspace


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
        "medledger",
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
