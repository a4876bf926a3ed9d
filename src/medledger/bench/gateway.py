"""``medledger bench gateway``: end-to-end gateway throughput and memory (issue 4 targets).

Workload: one generated lab export in hosp-a's dialect (US units converted to SI, US dates,
resident IDs; ten results per patient on average) → standardised → FHIR R4B (checked) →
pseudonymised and date-shifted → sealed into a fresh vault → anchored on an embedded node in
Merkle batches of 20,000 → then ``gateway verify`` against the ledger. Rows/s is input rows
over the ingest's wall time (worker start and file read to the last batch's receipt); the
machine may be shared, so other processes' CPU share, the load average and the CPU time spent
per row are reported beside it. Memory: the RSS of this process
and its worker processes is sampled every 100,000 rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medledger.bench.machine import CpuWatch, Machine, tree_rss_kib
from medledger.gateway import service
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.pipeline import Gateway
from medledger.gateway.profile import load_profile
from medledger.gateway.synth import bench_file
from medledger.gateway.vault import Vault
from medledger.gateway.verify import verify

TARGET_ROWS_PER_S = 5000


@dataclass
class GatewayBench:
    rows: int
    workers: int
    seconds: float
    rows_per_s: float
    emitted: int
    quarantined: int
    batches: int
    verify_ok: bool
    verify_seconds: float
    rss_mib: list[tuple[int, float]] = field(default_factory=list)
    peak_mib: float = 0.0
    other_cpu_pct: float = 0.0
    cpu_us_per_row: float = 0.0        # CPU of this process and its workers, per input row
    load_avg: tuple[float, float] = (0.0, 0.0)     # 1-minute load average at start and end
    generate_seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.rows_per_s >= TARGET_ROWS_PER_S and self.verify_ok

    def to_doc(self) -> dict[str, Any]:
        return {**asdict(self), "target_rows_per_s": TARGET_ROWS_PER_S, "passed": self.passed}


def run(root: Path, rows: int = 200_000, workers: int = 2,
        progress: Callable[[str], None] = lambda _: None) -> GatewayBench:
    from medledger.workspace import Workspace

    t = time.perf_counter()
    progress(f"writing a {rows:,}-row lab export")
    prof = load_profile(bench_file(root / "labs.csv", rows, persons=max(rows // 10, 100)))
    gen = time.perf_counter() - t
    ws = Workspace.init(root / "ws", "bench-gateway")
    key = PseudonymKey("k1", b"\x42" * 32)
    samples: list[tuple[int, float]] = []
    done = [0]

    def tick(n: int) -> None:
        before = done[0]
        done[0] += n
        if done[0] // 100_000 != before // 100_000:
            samples.append((done[0], round(tree_rss_kib() / 1024, 1)))
        if done[0] % 20_000 < n:
            progress(f"{done[0]:,} rows")

    with ws.node(max_block_txs=100, max_wait=0.005) as node, \
            service.ledger(ws.root, "hosp-a", node=node) as anchorer, \
            Vault(root / "vault") as vault:
        progress(f"ingesting with {workers} worker process(es)")
        watch = CpuWatch()
        load0, cpu0 = os.getloadavg()[0], _cpu_seconds()
        t = time.perf_counter()
        gw = Gateway(vault, Pseudonymizer(key), anchorer, workers=workers, progress=tick)
        rep = gw.ingest(root / "labs.csv", prof)
        gw.finish()             # workers are joined here, so their CPU is counted below
        seconds = time.perf_counter() - t
        other = watch.other_pct()
        cpu = _cpu_seconds() - cpu0
        load = (round(load0, 2), round(os.getloadavg()[0], 2))
        # workers have exited by now: the peak is the larger of the samples and our own HWM
        peak = max([round(tree_rss_kib(field_name="VmHWM") / 1024, 1),
                    *(mib for _, mib in samples)])
        progress("verifying every record against the ledger")
        t = time.perf_counter()
        vrep = verify(vault, anchorer)
        vsec = time.perf_counter() - t
    return GatewayBench(rows, workers, round(seconds, 2), round(rows / seconds, 1),
                        rep.emitted, rep.quarantined, len(gw.batches), vrep.ok, round(vsec, 2),
                        samples, peak, other, round(1e6 * cpu / rows, 1), load, round(gen, 2),
                        asdict(Machine.detect()))


def _cpu_seconds() -> float:
    """User + system CPU of this process and its joined children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
