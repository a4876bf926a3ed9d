"""``medledger init``, ``verify`` and ``proof …``."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from medledger.cli.common import WorkspaceOpt, console, err_console, error, fail, workspace
from medledger.errors import MedLedgerError
from medledger.installed import default_registry
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader, leaf_data
from medledger.ledger.verify import verify_store
from medledger.workspace import DEFAULT_ORGS, Workspace

proof_app = typer.Typer(help="Print RFC 9162 proofs as JSON (hex hashes).", no_args_is_help=True)


def init(
    directory: Path = WorkspaceOpt,
    chain_id: str = typer.Option("medledger-dev", help="Chain id of the new consortium."),
    orgs: int = typer.Option(len(DEFAULT_ORGS), min=1, max=len(DEFAULT_ORGS),
                             help="Number of organisations (taken from a built-in list)."),
) -> None:
    """Create a new consortium: keys for N organisations, genesis, an empty ledger."""
    try:
        ws = Workspace.init(directory, chain_id, DEFAULT_ORGS[:orgs])
    except MedLedgerError as exc:
        fail(exc)
    genesis = ws.genesis()
    console.print(f"[green]created[/] consortium [bold]{genesis.chain_id}[/] in {directory}")
    for org in genesis.doc["orgs"]:
        console.print(f"  {org['id']:<10} {org['kind']:<10} {org['name']}")
    console.print(f"genesis hash {genesis.hash.hex()}")


def verify(
    directory: Path = WorkspaceOpt,
    threads: int = typer.Option(2, min=1, help="Signature-verification threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Replay the whole chain from genesis and check every signature, hash and root."""
    ws = workspace(directory)
    store = ws.store()
    head = store.head()
    total = head.height if head else 0
    with Progress(TextColumn("verifying"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err_console, transient=True,
                  disable=as_json) as bar:
        task = bar.add_task("verify", total=total)
        report = verify_store(store, default_registry(), threads=threads,
                              progress=lambda h, _t: bar.update(task, completed=h))
    if as_json:
        console.print_json(json.dumps({
            "ok": report.ok, "chain_id": report.chain_id, "blocks": report.blocks,
            "txs": report.txs, "checkpoints": report.checkpoints, "seconds": report.seconds,
            "first_bad_height": report.first_bad_height,
            "findings": [f.__dict__ for f in report.findings]}))
    elif report.ok:
        console.print(f"[green]OK[/] {report.chain_id}: {report.blocks} blocks, {report.txs} "
                      f"transactions, {report.checkpoints} checkpoints verified in "
                      f"{report.seconds:.2f} s")
    else:
        err_console.print(f"[bold red]FAILED[/] first inconsistent height: "
                          f"{report.first_bad_height}")
        for f in report.findings:
            err_console.print(escape(f"  height {f.height}: [{f.check}] {f.detail}"))
    if not report.ok:
        raise typer.Exit(1)


@proof_app.command("inclusion")
def inclusion(
    tx_id: str = typer.Argument(..., help="Transaction id (hex)."),
    size: int = typer.Option(None, help="Log size to prove against (default: latest checkpoint)."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Inclusion proof of a transaction, with the leaf and the signed checkpoint."""
    store = workspace(directory).store()
    try:
        rec = store.tx(bytes.fromhex(tx_id))
    except ValueError:
        rec = None
    if rec is None:
        error("unknown_tx", f"no transaction {tx_id}")
    cp = store.checkpoint(size) if size is not None else store.checkpoint()
    tree = size if size is not None else (cp[0] if cp else 0)
    if not rec.index < tree:
        error("bad_proof_request", f"tx index {rec.index} not below size {tree}")
    leaf = merkle.leaf_hash(leaf_data(rec.tx_id, rec.height, orjson.loads(rec.result)))
    hashes = merkle.inclusion_proof(rec.index, tree, store)
    print(json.dumps({
        "tx_id": rec.tx_id.hex(), "height": rec.height, "index": rec.index, "size": tree,
        "leaf_hash": leaf.hex(), "hashes": [h.hex() for h in hashes],
        "root": merkle.root_from_inclusion(leaf, rec.index, tree, hashes).hex(),
        "checkpoint": cp[2].decode() if cp and cp[0] == tree else None,
    }, indent=1))


@proof_app.command("consistency")
def consistency(
    old_size: int = typer.Argument(..., min=0),
    new_size: int = typer.Argument(..., min=0),
    directory: Path = WorkspaceOpt,
) -> None:
    """Consistency proof between two log sizes, with both roots."""
    store = workspace(directory).store()
    head = store.head()
    log_size = BlockHeader.decode(head.header).log_size if head else 0
    if not old_size <= new_size <= log_size:
        error("bad_proof_request", f"need old {old_size} <= new {new_size} <= log size {log_size}")
    hashes = merkle.consistency_proof(old_size, new_size, store) if old_size else []
    old_cp, new_cp = store.checkpoint(old_size), store.checkpoint(new_size)
    print(json.dumps({
        "old_size": old_size, "new_size": new_size, "hashes": [h.hex() for h in hashes],
        "old_root": merkle.tree_root(old_size, store).hex(),
        "new_root": merkle.tree_root(new_size, store).hex(),
        "old_checkpoint": old_cp[2].decode() if old_cp else None,
        "new_checkpoint": new_cp[2].decode() if new_cp else None,
    }, indent=1))
