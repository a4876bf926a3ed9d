"""Measurement helpers for the ledger benchmark, and the machine it runs on.

Percentiles and latency statistics; memory (VmRSS/VmHWM of a process and its descendants, from
/proc) sampled after every 10 % of a run (:class:`MemorySamples`); and, since the machine may be
shared, how much CPU other processes used meanwhile (:class:`CpuWatch`, :func:`background_cpu`).
:class:`Machine` describes the hardware, Python and source revision a run was measured on.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medledger.bench.common import BenchError

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


# -- machine ------------------------------------------------------------------------------


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
