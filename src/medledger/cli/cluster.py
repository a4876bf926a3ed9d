"""``medledger cluster up|status|down``: a whole consortium on this machine, for development."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from medledger.cli.common import console, fail
from medledger.errors import MedLedgerError

app = typer.Typer(help="A local cluster: 3 NATS servers and one peer per organisation.",
                  no_args_is_help=True)
DirOpt = typer.Option(Path("medledger-cluster"), "--dir", "-d", envvar="MEDLEDGER_CLUSTER",
                      help="Cluster directory.")


@app.command("up")
def up(
    directory: Path = DirOpt,
    orgs: int = typer.Option(0, min=0, help="Use the first N default organisations (0: all)."),
    postgres: str = typer.Option("", help="Keep each peer's ledger in PostgreSQL (a "
                                 "postgresql:// URI): schema <prefix>_<org>, the prefix "
                                 "?schema=PREFIX or ml_<genesis hash>."),
) -> None:
    """Create the cluster (first time) and start whatever of it is not running."""
    from medledger.cluster.local import LocalCluster
    from medledger.workspace import DEFAULT_ORGS

    try:
        if (directory / "cluster.json").exists():
            c = LocalCluster.load(directory)
        else:
            chosen = DEFAULT_ORGS[:orgs] if orgs else DEFAULT_ORGS
            c = LocalCluster.create(directory, chosen, postgres=postgres or None)
        c.start()
    except MedLedgerError as exc:
        fail(exc)
    console.print(f"cluster [bold]{c.chain}[/] up in {directory}: {len(c.peers)} peers, "
                  f"NATS at {', '.join(c.nats.urls)}")
    for org in c.peers:
        console.print(f"  {org:<10} {c.url(org)}/v1")


@app.command("status")
def status(directory: Path = DirOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Each peer's height, roots, finality, lag and sequencer role; NATS servers."""
    from medledger.cluster.local import LocalCluster

    try:
        doc = LocalCluster.load(directory).status()
    except MedLedgerError as exc:
        fail(exc)
    if as_json:
        console.print_json(json.dumps(doc))
        return
    console.print(peer_table(f"cluster {doc['chain']}", doc["peers"]))
    console.print("nats: " + ", ".join(f"{n} {'up' if up else 'DOWN'}"
                                       for n, up in doc["nats"].items()))


@app.command("down")
def down(
    directory: Path = DirOpt,
    purge: bool = typer.Option(False, help="Also delete the cluster directory."),
) -> None:
    """Stop the peers gracefully, then the NATS servers."""
    from medledger.cluster.local import LocalCluster

    try:
        LocalCluster.load(directory).stop()
    except MedLedgerError as exc:
        fail(exc)
    if purge:
        shutil.rmtree(directory)
    console.print(f"cluster in {directory} stopped" + (" and deleted" if purge else ""))


def peer_table(title: str, peers: dict[str, dict[str, Any]]) -> Table:
    """One row per peer from its health's ``cluster`` section (``running``: its process or
    HTTP endpoint answers)."""
    t = Table(title=title)
    for col in ("peer", "up", "height", "final", "lag", "log root", "state root", "seq", "alarms"):
        t.add_column(col)
    for name, p in peers.items():
        t.add_row(name, "yes" if p.get("running") else "no", str(p.get("height", "-")),
                  str(p.get("final_height", "-")), str(p.get("lag", "-")),
                  str(p.get("log_root", "-"))[:12], str(p.get("state_root", "-"))[:12],
                  "*" if p.get("sequencer") else "",
                  ", ".join(_alarm(a) for a in p.get("alarms", [])))
    return t


def _alarm(a: dict[str, Any]) -> str:
    """``org@height`` for a checkpoint disagreement; ``clock ±N s`` for a clock-skew alarm;
    ``txs@height ≠ cut`` for a block whose transactions match no copy; else the kind."""
    kind = a.get("kind")
    if kind == "clock_skew":
        return f"clock {a['skew_ms'] / 1000:+.0f} s"
    if kind == "range_mismatch":
        return f"txs@{a['height']} ≠ cut"
    if kind in (None, "equivocation"):
        return f"{a['org']}@{a['height']}"
    return str(kind)  # a kind this version does not know (a newer peer's)
