"""Catch-up replay rate of one peer without NATS, for set-ups compared in the same sitting.

A cluster peer that is behind receives whole blocks of other organisations' transactions. It
decodes them and pre-checks their signatures (``Node.prepare_stream``, up to 4 blocks ahead, as
``ClusterOrderer`` does), then executes and commits them in order. This script times that
pipeline alone on one chain, for several set-ups, run by run in rotation so that a machine
whose speed drifts affects them all alike (``--config LABEL:PROCS[:SRC]``, repeatable):

* ``PROCS`` = 0 — decoding and the signature calls on the admission threads;
* ``PROCS`` > 0 — a peer catching up with that many admission processes: batches of
  ``PREPARE_IN_PROCESSES`` or more are checked there (ADR 0062);
* ``SRC`` — another checkout's ``src`` directory (a baseline revision), put on ``PYTHONPATH``.

The chain is built first by an embedded node (``registry.register`` transactions from three
gateways, blocks of 2,000) and is not timed. Each run is a process of its own: it replays the
chain into a fresh SQLite store, checks that the replayed head equals the source's, and times
the blocks after the first data block. The node starts its worker processes when it starts;
the run waits ``REPLAY_SETTLE`` seconds (environment, default 2) before replaying, so that a
long catch-up is measured (0: the workers' start falls inside the replay, as in a short one).
Reported: tx/s per run, each set-up's median, and the paired ratios to the first set-up.

    .venv/bin/python bench/replay.py [--txs 30000] [--reps 4] [--config threads:0 ...] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medledger.bench.workload import build_registrations, enrol_gateways
from medledger.installed import default_registry
from medledger.ledger.block import BlockHeader
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.node.admit import Admitted
from medledger.node.node import Node
from medledger.ordering.solo import Batch
from medledger.workspace import Workspace

DEPTH = 4  # blocks prepared at once, as ClusterOrderer.prepare_depth


class ReplayOrderer:
    """Hands the node a chain's blocks, each prepared by ``node.prepare_stream`` on a thread,
    up to ``DEPTH`` ahead and delivered in order (the shape of ``ClusterOrderer._feed``)."""

    def __init__(self, node: Node, blocks: list[tuple[int, int, list[bytes]]],
                 behind: bool) -> None:
        self.node, self.blocks, self.behind = node, blocks, behind
        self._ready: collections.deque[Batch[Admitted]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._go = threading.Event()
        self._pool = ThreadPoolExecutor(DEPTH, thread_name_prefix="prepare")
        threading.Thread(target=self._feed, name="feed", daemon=True).start()

    def start(self) -> None:
        self._go.set()

    def _feed(self) -> None:
        self._go.wait()
        preparing: collections.deque[tuple[int, int, Future[list[Admitted]]]] = \
            collections.deque()
        for height, block_time, raws in self.blocks:
            preparing.append((height, block_time, self._pool.submit(self._prepare, raws)))
            while preparing and (preparing[0][2].done() or len(preparing) >= DEPTH):
                self._hand(*preparing.popleft())
        while preparing:
            self._hand(*preparing.popleft())

    def _prepare(self, raws: list[bytes]) -> list[Admitted]:
        if self.behind:  # as ClusterOrderer's prepare_behind (a peer catching up)
            return self.node.prepare_stream(raws, processes=True)
        return self.node.prepare_stream(raws)

    def _hand(self, height: int, block_time: int, job: Future[list[Admitted]]) -> None:
        batch = Batch(job.result(), block_time, height)
        with self._cond:
            self._ready.append(batch)
            self._cond.notify_all()

    # -- the Orderer protocol --
    def free(self) -> int:
        return 0  # nothing is submitted during a replay

    def put(self, items: Any) -> None:
        raise RuntimeError("replay takes no submissions")

    def next_batch(self, timeout: float | None = None) -> Batch[Admitted] | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._closed, timeout):
                return None
            return self._ready.popleft() if self._ready else None

    def committed(self, n: int) -> None:
        pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)


def build_chain(root: Path, txs: int) -> Workspace:
    ws = Workspace.init(root, "bench-replay")
    with ws.node(max_block_txs=2000, max_wait=0.05) as node:
        gateways = enrol_gateways(node, ws)
        raws = build_registrations(gateways, 0, txs, "replay")
        for i in range(0, txs, 2000):
            for fut in node.submit_many(raws[i : i + 2000]):
                fut.result(120)
    return ws


def source_blocks(ws: Workspace) -> tuple[list[tuple[int, int, list[bytes]]], bytes]:
    store = ws.store()
    head = store.head()
    assert head is not None
    blocks = []
    for b in store.blocks(1, head.height + 1):
        raws = [t.raw for t in store.txs_range(b.first_index, b.first_index + b.tx_count)]
        blocks.append((b.height, BlockHeader.decode(b.header).time, raws))
    store.close()
    return blocks, head.hash


def replay(ws: Workspace, blocks: list[tuple[int, int, list[bytes]]], head_hash: bytes,
           procs: int, where: Path) -> float:
    """Replay ``blocks`` into a fresh store; the rate over the blocks after the first data
    block (the enrolment blocks and one data block run first, untimed: they warm the worker
    processes, which the node spawns when it starts)."""
    ring, org = ws.keyring(), ws.config["org"]
    orderers: list[ReplayOrderer] = []

    def make(node: Node) -> ReplayOrderer:
        orderers.append(ReplayOrderer(node, blocks, procs > 0))
        return orderers[0]

    warm = next(i for i, b in enumerate(blocks) if len(b[2]) >= 1000) + 1
    done = {h: threading.Event() for h in (blocks[warm - 1][0], blocks[-1][0])}
    marks: dict[int, float] = {}
    node = Node.create(SQLiteStore(where / "replay.db"), ws.genesis(), default_registry(),
                       signer=(org, ring.signing[f"{org}/root"]), admit_processes=procs,
                       orderer=make)

    def on_durable(h: BlockHeader) -> None:
        if h.height in done:
            marks[h.height] = time.perf_counter()
            done[h.height].set()

    node.on_durable.append(on_durable)
    node.start()
    time.sleep(float(os.environ.get("REPLAY_SETTLE", "2.0")))  # workers spawned and importing
    orderers[0].start()
    for ev in done.values():
        if not ev.wait(600):
            raise RuntimeError("replay stalled")
    node.stop()
    got = node.store.head()
    node.store.close()
    if got is None or got.hash != head_hash:
        raise RuntimeError("replayed head differs from the source chain's")
    timed = sum(len(b[2]) for b in blocks[warm:])
    return timed / (marks[blocks[-1][0]] - marks[blocks[warm - 1][0]])


def _one_run(chain: Path, procs: int, where: Path) -> float:
    ws = Workspace(chain)
    blocks, head_hash = source_blocks(ws)
    return replay(ws, blocks, head_hash, procs, where)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--txs", type=int, default=30_000)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--config", action="append", metavar="LABEL:PROCS[:SRC]",
                    help="a set-up to time: admission processes, and optionally another "
                         "checkout's src directory (a baseline); default threads:0 and procs:2")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--run", nargs=3, metavar=("CHAIN", "PROCS", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:  # one timed replay, in a process of its own
        print(json.dumps(_one_run(Path(args.run[0]), int(args.run[1]), Path(args.run[2]))))
        return
    configs = [c.split(":", 2) for c in (args.config or ["threads:0", "procs:2"])]
    runs: dict[str, list[float]] = {c[0]: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="medledger-replay-") as tmp:
        chain = Path(tmp) / "source"
        build_chain(chain, args.txs)
        for rep in range(args.reps):
            shift = rep % len(configs)  # each set-up goes first in turn
            for label, procs, *src in configs[shift:] + configs[:shift]:
                where = Path(tmp) / f"{label}-{rep}"
                where.mkdir()
                env = dict(os.environ)
                if src:
                    env["PYTHONPATH"] = src[0]
                out = subprocess.run([sys.executable, __file__, "--run", str(chain), procs,
                                      str(where)], env=env, check=True, capture_output=True,
                                     text=True).stdout
                rate = float(out.strip().splitlines()[-1])
                runs[label].append(rate)
                shutil.rmtree(where)
                if not args.json:
                    print(f"rep {rep + 1} {label:12s} {rate:8,.0f} tx/s", flush=True)
    first = configs[0][0]
    result: dict[str, Any] = {"txs": args.txs, "configs": [":".join(c) for c in configs],
                              "runs": runs,
                              "median": {k: statistics.median(v) for k, v in runs.items()}}
    result["ratio_to_" + first] = {
        k: sorted(a / b for a, b in zip(v, runs[first], strict=True))
        for k, v in runs.items() if k != first}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for k, v in runs.items():
        line = f"{k:12s} median {statistics.median(v):8,.0f} tx/s"
        if k != first:
            r = result["ratio_to_" + first][k]
            line += (f"; paired ratio to {first}: median {statistics.median(r):.2f} "
                     f"(range {r[0]:.2f}-{r[-1]:.2f})")
        print(line)


if __name__ == "__main__":
    main()
