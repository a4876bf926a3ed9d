"""``medledger bench ledger``: the issue-2 performance figures, measured on this machine."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

if TYPE_CHECKING:  # imported when a benchmark runs: it pulls in the whole node and HTTP stack
    from medledger.bench import ledger as bench
from medledger.cli import consent as consent_cli
from medledger.cli import research as research_cli
from medledger.cli.common import console, err_console

app = typer.Typer(
    help="Measure throughput, verify speed, proof latency and memory.", no_args_is_help=True
)


@app.command("ledger")
def ledger(
    txs: int = typer.Option(100_000, min=1, help="Transactions for the in-process run."),
    http_txs: int = typer.Option(50_000, min=0, help="Transactions for the HTTP run (0 skips it)."),
    verify_txs: int = typer.Option(
        0,
        min=0,
        help="Build and verify a chain of this many txs (0: verify the in-process run's chain).",
    ),
    proof_leaves: int = typer.Option(
        1_000_000, min=2, help="Leaves of the synthetic log for the proof timings."
    ),
    max_block_txs: int = typer.Option(2000, min=1, help="Node: cut a block at this many txs."),
    max_wait_ms: int = typer.Option(20, min=0, help="Node: …or this long after its first tx."),
    window: int = typer.Option(
        4, min=1, help="In-process: chunks of 1,000 awaiting receipts at once."
    ),
    http_concurrency: int = typer.Option(3, min=1, help="HTTP: concurrent batch requests."),
    admit_processes: int = typer.Option(
        2,
        min=0,
        help="In-process node: run ingress checks in this many worker processes (0: on "
        "threads). The HTTP run uses `medledger node start`'s default, also 2.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    save: Path | None = typer.Option(None, help="Also write the results as JSON to this file."),
    workdir: Path | None = typer.Option(
        None,
        help="Keep the workspaces and stores here (an empty or new directory); "
        "default: a temporary directory, removed afterwards.",
    ),
) -> None:
    """Run every ledger workload and compare the figures with the issue's targets."""

    from medledger.bench import ledger as bench

    def progress(msg: str) -> None:
        err_console.print(f"[dim]… {msg}[/]")

    def go(root: Path) -> bench.LedgerBench:
        return bench.run(
            root,
            txs=txs,
            http_txs=http_txs,
            verify_txs=verify_txs,
            proof_leaves=proof_leaves,
            max_block_txs=max_block_txs,
            max_wait=max_wait_ms / 1000,
            window=window,
            http_concurrency=http_concurrency,
            admit_processes=admit_processes,
            progress=progress,
        )

    try:
        if workdir is not None:
            if workdir.exists() and any(workdir.iterdir()):
                err_console.print(f"[bold red]error[/] {workdir} is not empty")
                raise typer.Exit(2)
            workdir.mkdir(parents=True, exist_ok=True)
            result = go(workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="medledger-bench-") as tmp:
                result = go(Path(tmp))
    except bench.BenchError as exc:
        err_console.print(f"[bold red]benchmark failed[/] {exc}")
        raise typer.Exit(1) from None
    doc = json.dumps(result.to_doc(), indent=1, default=str)
    if save is not None:
        save.write_text(doc + "\n")
    if as_json:
        print(doc)
    else:
        render(result)


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    t = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    for k, v in rows:
        t.add_row(f"[bold]{k}[/]", v)
    return t


def _mem_rows(mem: bench.MemorySamples, txs: int) -> list[tuple[str, str]]:
    half = len(mem.samples) // 2
    samples = ", ".join(f"{n // 1000:,}k: {r / 1024:,.0f}" for n, r in mem.samples)
    return [
        ("RSS (MiB, with child processes) after each 10 %", samples),
        (
            "RSS first → last sample",
            f"{mem.first_kib / 1024:,.1f} → {mem.last_kib / 1024:,.1f} MiB"
            f" (before the run {mem.before_kib / 1024:,.1f}, peak {mem.peak_kib / 1024:,.1f})",
        ),
        (
            "growth per 100k txs",
            f"{mem.growth_per_100k() / 1024:+,.2f} MiB first → last "
            f"sample; {mem.second_half_slope_per_100k() / 1024:+,.2f} MiB trend over the second "
            f"half ({mem.samples[half][0]:,} → {txs:,} txs)",
        ),
        *_blocks_rows(mem),
    ]


def _blocks_rows(mem: bench.MemorySamples) -> list[tuple[str, str]]:
    retained = mem.retained_blocks_per_tx()
    if mem.idle_blocks is None or retained is None:
        return []
    before, after = mem.idle_blocks
    return [
        (
            "live Python blocks, idle",
            f"{before:,} before the first submit → {after:,} after "
            f"the last receipt ({after - before:+,}, {retained:+.3f} per tx; includes the "
            "node's last block, which it keeps until the next one)",
        )
    ]


def _inproc_rows(r: bench.InProcessResult) -> list[tuple[str, str]]:
    lat = r.chunk_latency_ms
    return [
        (
            "committed",
            f"{r.tx_per_s:,.0f} tx/s ({r.txs:,} txs in {r.seconds:.2f} s, first "
            "submit → last receipt)",
        ),
        ("receipts ok", f"{r.receipts_ok:,} of {r.txs:,}" + (f"; {r.not_ok}" if r.not_ok else "")),
        (
            "blocks cut",
            f"{r.blocks:,} (max_block_txs {r.max_block_txs:,}, max_wait "
            f"{r.max_wait_ms:g} ms; {r.txs / max(r.blocks, 1):,.0f} txs per block)",
        ),
        (
            "feeding",
            f"submit_many chunks of {r.chunk:,} from one thread, at most "
            f"{r.window_chunks} chunks awaiting receipts; {r.gateways} gateways; ingress checks "
            + (f"in {r.admit_processes} worker processes" if r.admit_processes else "on threads"),
        ),
        ("tx/s per 10 % of the run", ", ".join(f"{x:,.0f}" for x in r.tenths_tx_per_s)),
        (
            "chunk submit → receipt",
            f"p50 {lat.p50:,.0f} ms, p99 {lat.p99:,.0f} ms, "
            f"max {lat.max:,.0f} ms ({lat.count:,} chunks)",
        ),
        ("client signing (untimed)", f"{r.sign_seconds:.2f} s ({r.sign_per_s:,.0f} tx/s)"),
        ("store size", f"{r.store_mib:,.1f} MiB"),
        ("other processes' CPU", f"{r.other_cpu_pct:.0f} % of the machine during this run"),
        *_mem_rows(r.memory, r.txs),
    ]


def render(b: bench.LedgerBench) -> None:
    m, s = b.machine, b.baseline
    console.print(
        _table(
            "Machine",
            [
                ("cpu", f"{m.cpu_model}, nproc {m.nproc}, {m.memory_gib} GiB"),
                ("python", m.python),
                ("platform", m.platform),
                ("date", m.date_utc),
                ("revision", m.revision),
                (
                    "other processes' CPU",
                    f"{b.background_cpu_before:.0f} % of the machine before the "
                    f"run, {b.background_cpu_after:.0f} % after (3 s idle samples)",
                ),
            ],
        )
    )
    console.print(
        _table(
            "Ed25519 verification ceiling (PyNaCl crypto_sign_open)",
            [
                ("1 thread", f"{s.one_thread_per_s:,.0f} /s"),
                ("2 threads", f"{s.two_threads_per_s:,.0f} /s"),
                ("2 processes", f"{s.two_processes_per_s:,.0f} /s"),
                ("sample", f"{s.verifications:,} verifications of {s.message_bytes} signed bytes"),
                ("other processes' CPU", f"{s.other_cpu_pct:.0f} % of the machine meanwhile"),
            ],
        )
    )
    console.print(_table("In-process (Node.submit_many)", _inproc_rows(b.inprocess)))
    if b.http is not None:
        h = b.http
        lat = h.batch_latency_ms
        console.print(
            _table(
                "HTTP (POST /v1/txs?wait=true, NDJSON)",
                [
                    ("committed", f"{h.tx_per_s:,.0f} tx/s ({h.txs:,} txs in {h.seconds:.2f} s)"),
                    (
                        "receipts ok",
                        f"{h.receipts_ok:,} of {h.txs:,}" + (f"; {h.not_ok}" if h.not_ok else ""),
                    ),
                    (
                        "requests",
                        f"batches of {h.batch:,} on {h.concurrency} connections; "
                        f"max_block_txs {h.max_block_txs:,}, max_wait {h.max_wait_ms:g} ms",
                    ),
                    ("batch latency", f"p50 {lat.p50:,.0f} ms, p99 {lat.p99:,.0f} ms"),
                    ("server", f"stopped with SIGINT, exit code {h.server_exit_code}"),
                    (
                        "other processes' CPU",
                        f"{h.other_cpu_pct:.0f} % of the machine (bench client "
                        "and server excluded)",
                    ),
                    *[(f"server {k}", v) for k, v in _mem_rows(h.server_memory, h.txs)],
                ],
            )
        )
    if b.verify_build is not None:
        console.print(
            _table(
                "Chain built for verify (same in-process workload)", _inproc_rows(b.verify_build)
            )
        )
    v = b.verify
    console.print(
        _table(
            "Full verify (verify_store, one replay process per core)",
            [
                ("result", "OK" if v.ok else f"FAILED: {v.findings}"),
                (
                    "replayed",
                    f"{v.txs:,} txs in {v.blocks:,} blocks, {v.checkpoints:,} checkpoints",
                ),
                ("time", f"{v.seconds:.2f} s ({v.tx_per_s:,.0f} tx/s)"),
                (
                    "bench process peak RSS",
                    f"{v.peak_rss_mib:,.0f} MiB (VmHWM so far; verify's worker "
                    "processes not included)",
                ),
                ("other processes' CPU", f"{v.other_cpu_pct:.0f} % of the machine"),
            ],
        )
    )
    p = b.proofs
    console.print(
        _table(
            "Proofs on a synthetic log (SQLite log_nodes)",
            [
                ("log", f"{p.leaves:,} leaves, {p.nodes:,} stored nodes, {p.store_mib:,.0f} MiB"),
                ("build", f"{p.build_seconds:.1f} s (CompactRange.append + executemany)"),
                ("inclusion", _lat_us(p.inclusion_us, p.inclusion_hashes_mean)),
                ("consistency", _lat_us(p.consistency_us, p.consistency_hashes_mean)),
                (
                    "verified",
                    f"{p.verified_inclusion} inclusion, {p.verified_consistency} consistency "
                    f"(every 10th); seed {p.seed}",
                ),
                ("other processes' CPU", f"{p.other_cpu_pct:.0f} % of the machine"),
            ],
        )
    )
    t = Table(title="Issue 2 targets", title_justify="left")
    for col in ("figure", "target", "measured", "result"):
        t.add_column(col)
    for c in b.checks:
        verdict = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[yellow]n/a[/]"}[c.passed]
        t.add_row(c.figure, c.target, c.measured, verdict)
    console.print(t)
    console.print(f"total {b.seconds:.0f} s")


def _lat_us(s: bench.LatencyStats, hashes: float) -> str:
    return (
        f"mean {s.mean:,.0f} µs, p50 {s.p50:,.0f} µs, p99 {s.p99:,.0f} µs, max "
        f"{s.max:,.0f} µs ({s.count:,} proofs, {hashes:.1f} hashes each on average)"
    )


@app.command("cluster")
def cluster(
    peers: int = typer.Option(4, min=3, help="Peer processes (one per organisation)."),
    txs: int = typer.Option(30_000, min=300, help="Transactions in the load run."),
    batch: int = typer.Option(500, min=1, help="Transactions per NDJSON request."),
    threads: int = typer.Option(2, min=1, help="Client threads per submitting peer."),
    max_block_txs: int = typer.Option(2000, min=1, help="Sequencer: cut a block at this many."),
    faults: bool = typer.Option(False, "--faults", help="Also inject faults under load: kill "
                                "the NATS stream leader, kill -9 a peer."),
    rate: float = typer.Option(200.0, min=0, help="Paced run: offered tx/s for the latency "
                               "figure (0 skips it)."),
    paced_seconds: float = typer.Option(15.0, min=1, help="Paced run: duration."),
    paced_batch: int = typer.Option(10, min=1, help="Paced run: transactions per request."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """A local cluster (3 NATS servers + peers) under HTTP load: committed tx/s on every peer,
    submit-to-final latency, catch-up replay rate, and with --faults the fault figures."""
    from medledger.bench import cluster as cbench

    def progress(msg: str) -> None:
        err_console.print(f"[dim]… {msg}[/]")

    with tempfile.TemporaryDirectory(prefix="medledger-bench-cluster-") as tmp:
        result = cbench.run(Path(tmp), peers=peers, txs=txs, batch=batch,
                            threads_per_peer=threads, max_block_txs=max_block_txs,
                            faults=faults, rate=rate, paced_seconds=paced_seconds,
                            paced_batch=paced_batch, progress=progress)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
        return
    t = Table(title=f"cluster bench: {peers} peers, 3 NATS servers, {result.txs:,} txs")
    for col in ("figure", "measured", "target"):
        t.add_column(col)
    for row in cbench.summary(result):
        t.add_row(*row)
    console.print(t)


app.command("consent")(consent_cli.bench)
app.command("research")(research_cli.bench)


@app.command("surveillance")
def surveillance(
    districts: int = typer.Option(100, min=1, help="Districts (Farrington run)."),
    diseases: int = typer.Option(40, min=1, help="Diseases (Farrington run)."),
    weeks: int = typer.Option(313, min=270, help="Weeks per series (six years: 313)."),
    ears_series: int = typer.Option(4000, min=1, help="Daily series for the EARS run."),
    ears_days: int = typer.Option(2512, min=20, help="Days per EARS series."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Daily detection run: improved Farrington on districts × diseases weekly series, and
    EARS C1–C3 over ears-series × ears-days series-days (issue 7's targets: 60 s, 10 s)."""
    from medledger.surveillance import benchmark

    far = benchmark.farrington_run(districts, diseases, weeks)
    ears = benchmark.ears_run(ears_series, ears_days)
    if as_json:
        console.print_json(json.dumps({"farrington_flexible": far, "ears": ears}))
        return
    t = Table(title="surveillance bench")
    for col in ("figure", "measured", "target"):
        t.add_column(col)
    t.add_row(f"improved Farrington, {far['series']:,} series × {far['weeks']} weeks, last week",
              f"{far['seconds']} s ({far['series_per_s']} series/s, {far['processes']} proc; "
              f"{far['alarms']} alarms, {far['red']} red; other processes' CPU "
              f"{far['other_cpu_pct']} %)", "≤ 60 s")
    for m in ("C1", "C2", "C3"):
        t.add_row(f"EARS {m}, {ears[m]['tested']:,} series-days", f"{ears[m]['seconds']} s",
                  "≤ 10 s")
    t.add_row("EARS C1+C2+C3 together", f"{ears['all_three_seconds']} s (other processes' "
              f"CPU {ears['other_cpu_pct']} %)", "")
    console.print(t)


@app.command("gateway")
def gateway(
    rows: int = typer.Option(200_000, min=1000, help="Rows in the generated lab export "
                             "(1,000,000 for the bounded-memory figure)."),
    workers: int = typer.Option(2, min=0, help="Worker processes parsing and preparing rows "
                                "(0: inline in the process that owns the vault; see "
                                "BENCHMARKS.md)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    workdir: Path | None = typer.Option(None, help="Keep files here (new or empty directory); "
                                        "default: a temporary directory."),
) -> None:
    """Gateway end to end: CSV → FHIR → de-identified → vault → anchored, then verify."""
    from medledger.bench import gateway as gbench

    def progress(msg: str) -> None:
        err_console.print(f"[dim]… {msg}[/]")

    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        result = gbench.run(workdir, rows=rows, workers=workers, progress=progress)
    else:
        with tempfile.TemporaryDirectory(prefix="medledger-bench-gateway-") as tmp:
            result = gbench.run(Path(tmp), rows=rows, workers=workers, progress=progress)
    if as_json:
        print(json.dumps(result.to_doc(), indent=1))
        return
    m = result.machine
    rss = ", ".join(f"{n // 1000:,}k: {mib:,.0f}" for n, mib in result.rss_mib) or "-"
    console.print(_table("Gateway benchmark", [
        ("machine", f"{m['cpu_model']}, nproc {m['nproc']}, {m['python']}, rev {m['revision']}"),
        ("rows", f"{result.rows:,} (export written in {result.generate_seconds:.1f} s, untimed)"),
        ("throughput", f"{result.rows_per_s:,.0f} rows/s ({result.seconds:.1f} s, "
                       f"{result.workers} worker process(es))"),
        ("emitted / quarantined", f"{result.emitted:,} / {result.quarantined:,}"),
        ("batches anchored", f"{result.batches}"),
        ("verify", f"{'OK' if result.verify_ok else 'FAILED'} in {result.verify_seconds:.1f} s"),
        ("RSS (MiB) per 100k rows", rss),
        ("peak RSS", f"{result.peak_mib:,.0f} MiB (this process, its node and workers)"),
        ("other processes' CPU", f"{result.other_cpu_pct:.0f} % of the machine (load average "
                                 f"{result.load_avg[0]:.2f} → {result.load_avg[1]:.2f})"),
        ("CPU per row", f"{result.cpu_us_per_row:.0f} µs (this process and its workers)"),
        ("target", f"≥ {gbench.TARGET_ROWS_PER_S:,} rows/s: "
                   + ("[green]PASS[/]" if result.passed else "[red]FAIL[/]")),
    ]))
