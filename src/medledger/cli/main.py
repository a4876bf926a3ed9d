"""The ``medledger`` command: wires sub-commands; each lives in its own module."""

from __future__ import annotations

import typer

from medledger.cli import (
    bench,
    cluster,
    consent,
    demo,
    gateway,
    keys,
    ledger_cmds,
    ledger_group,
    node,
    peer,
    research,
    surveillance,
    tx,
)

app = typer.Typer(
    name="medledger",
    help="MedLedger: a consortium ledger for sharing medical facts without sharing patient data.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("init")(ledger_cmds.init)
app.command("verify")(ledger_cmds.verify)
app.command("demo")(demo.demo)
app.add_typer(node.app, name="node")
app.add_typer(tx.app, name="tx")
app.add_typer(ledger_cmds.proof_app, name="proof")
app.add_typer(keys.app, name="keys")
app.add_typer(bench.app, name="bench")
app.add_typer(ledger_group.app, name="ledger")
app.add_typer(peer.app, name="peer")
app.add_typer(cluster.app, name="cluster")
app.add_typer(surveillance.app, name="surveillance")
app.add_typer(gateway.app, name="gateway")
app.add_typer(research.app, name="research")
app.add_typer(consent.app, name="consent")

if __name__ == "__main__":
    app()
