"""``medledger init``, ``verify`` and ``proof …``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from medledger.cli.common import (
    WorkspaceOpt,
    console,
    err_console,
    error,
    fail,
    reader_key,
    store_of,
    workspace,
)
from medledger.errors import Code, MedLedgerError
from medledger.installed import default_registry
from medledger.ledger.stateproof import DEFAULT_MAX_BLOCKS, build_state_proof
from medledger.ledger.verify import verify_store
from medledger.node import views
from medledger.workspace import DEFAULT_ORGS, Workspace

if TYPE_CHECKING:
    from medledger.client.http import HttpTransport
    from medledger.client.light import LightClient

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
    location: str = typer.Option(None, "--store", help="Verify this store (a SQLite file or "
                                 "postgresql://… with ?schema=NAME) instead of DIR's."),
    workers: int = typer.Option(
        0, min=0, help="Replay processes (0: one per core for large chains, else one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Replay the whole chain from genesis and check every signature, hash and root.

    DIR is a workspace or a cluster peer's directory; the store is only read."""
    try:
        store = store_of(directory, location)
    except MedLedgerError as exc:
        fail(exc)
    head = store.head()
    total = head.height if head else 0
    with Progress(TextColumn("verifying"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err_console, transient=True,
                  disable=as_json) as bar:
        task = bar.add_task("verify", total=total)
        report = verify_store(store, default_registry(), workers=workers or None,
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


# ``proof inclusion|state --url``: ask a cluster peer, accept only final checkpoints
UrlOpt = typer.Option(None, "--url", help="Ask this cluster peer instead of the local store, and "
                      "accept the proof only against a final (quorum-cosigned) checkpoint; DIR "
                      "then need only hold genesis.json and keyring.json.")
AsOpt = typer.Option(None, "--as", help="With --url: the member whose key signs the read "
                     "requests.")
WitnessesOpt = typer.Option(None, "--witnesses", help="With --url: the organisations whose "
                            "cosignatures count, comma-separated (default: DIR's peer.json, "
                            "else every organisation of the genesis).")
CaOpt = typer.Option(None, "--ca", help="With --url: PEM of the CA that signed the peer's HTTPS "
                     "certificate.")
TimeoutOpt = typer.Option(30.0, "--timeout", min=0.0, help="With --url: seconds to wait for a "
                          "final checkpoint that covers what is to be proven.")


@proof_app.command("inclusion")
def inclusion(
    tx_id: str = typer.Argument(..., help="Transaction id (hex)."),
    size: int = typer.Option(None, help="Log size to prove against (default: latest checkpoint)."),
    url: str = UrlOpt,
    member: str = AsOpt,
    witnesses: str = WitnessesOpt,
    ca: Path = CaOpt,
    timeout: float = TimeoutOpt,
    directory: Path = WorkspaceOpt,
) -> None:
    """Inclusion proof of a transaction, with the leaf hash, root and signed checkpoint."""
    if url:
        _final_inclusion(tx_id, url, member, witnesses, ca, timeout, directory, size)
        return
    store = workspace(directory).store()
    try:
        rec = store.tx(bytes.fromhex(tx_id))
    except ValueError:
        rec = None
    if rec is None:
        error("unknown_tx", f"no transaction {tx_id}")
    try:
        doc = views.tx_proof(store, rec, size)
    except MedLedgerError as exc:
        fail(exc)
    print(json.dumps({"height": rec.height, **doc}, indent=1))


def _remote(url: str, member: str | None, witnesses: str | None, ca: Path | None,
            timeout: float, directory: Path, size: int | None,
            ) -> tuple[HttpTransport, LightClient, list[str]]:
    """For ``proof … --url``: a transport signing reads as ``member`` and a light client that
    accepts only checkpoints cosigned by a quorum of ``witnesses`` (names sorted)."""
    from medledger.client.http import HttpTransport
    from medledger.client.light import LightClient

    if size is not None:
        error("bad_args", "with --url the proof is against the newest final checkpoint; "
                          "--size is for the local store")

    key, genesis = reader_key(directory, member)
    keys = genesis.org_keys()
    names = _witness_names(witnesses, directory) or sorted(keys)
    unknown = [n for n in names if n not in keys]
    if unknown:
        error("bad_args", f"--witnesses: {', '.join(unknown)} not organisations of the genesis")
    light = LightClient(genesis.chain_id, keys, witnesses={n: keys[n] for n in names})
    peer = HttpTransport(url, member, key, ca=None if ca is None else str(ca),
                         wait_timeout=timeout)
    return peer, light, names


def _final(size: int, witnesses: list[str]) -> dict[str, Any]:
    """What made the proof's checkpoint final for this client."""
    from medledger.ledger.finality import quorum

    return {"size": size, "witnesses": witnesses, "needed": quorum(len(witnesses))}


def _refused(exc: MedLedgerError) -> NoReturn:
    """Exit 1 when the proof was refused or no final checkpoint came in time, else 2."""
    fail(exc, exit_code=1 if exc.code in (Code.TIMEOUT, Code.VERIFY_FAILED) else 2)


def _final_inclusion(tx_id: str, url: str, member: str | None, witnesses: str | None,
                     ca: Path | None, timeout: float, directory: Path, size: int | None) -> None:
    """``proof inclusion --url``: the peer's proof against the newest final checkpoint that
    covers the transaction (``HttpTransport.final_proof``)."""
    peer, light, names = _remote(url, member, witnesses, ca, timeout, directory, size)
    try:
        with peer:
            bundle = peer.final_proof(tx_id, light, timeout=timeout)
    except MedLedgerError as exc:
        _refused(exc)
    bundle["final"] = _final(int(bundle["size"]), names)  # final_proof verified the bundle
    print(json.dumps(bundle, indent=1))


def _final_state(key: str, height: int | None, max_blocks: int, url: str, member: str | None,
                 witnesses: str | None, ca: Path | None, timeout: float, directory: Path,
                 size: int | None) -> None:
    """``proof state --url``: the peer's state proof against the newest final checkpoint
    that covers ``height`` (``HttpTransport.final_state_proof``)."""
    peer, light, names = _remote(url, member, witnesses, ca, timeout, directory, size)
    try:
        with peer:
            doc, fact = peer.final_state_proof(key, light, height, timeout=timeout,
                                               max_blocks=max_blocks)
    except MedLedgerError as exc:
        _refused(exc)
    doc["final"] = _final(fact.checkpoint.size, names)
    doc["verified"] = {"height": fact.height, "written": fact.written,
                       "present": fact.value is not None, "blocks": fact.blocks}
    print(json.dumps(doc, indent=1))


def _witness_names(option: str | None, directory: Path) -> list[str] | None:
    """The witnesses named by ``--witnesses``, else by a peer directory's ``peer.json``."""
    if option is not None:
        return sorted({n.strip() for n in option.split(",") if n.strip()})
    cfg = directory / "peer.json"
    if cfg.is_file():
        from medledger.cluster.local import PeerConfig

        configured = PeerConfig.load(cfg).witnesses
        return None if configured is None else sorted(configured)
    return None


@proof_app.command("consistency")
def consistency(
    old_size: int = typer.Argument(..., min=1),
    new_size: int = typer.Argument(..., min=1),
    directory: Path = WorkspaceOpt,
) -> None:
    """Consistency proof between two log sizes, with both roots and stored checkpoints."""
    store = workspace(directory).store()
    try:
        doc = views.consistency(store, old_size, new_size)
    except MedLedgerError as exc:
        fail(exc)
    old_cp, new_cp = store.checkpoint(old_size), store.checkpoint(new_size)
    doc["old_checkpoint"] = old_cp[2].decode() if old_cp else None
    doc["new_checkpoint"] = new_cp[2].decode() if new_cp else None
    print(json.dumps(doc, indent=1))


@proof_app.command("state")
def state(
    key: str = typer.Argument(..., help="Full state key, e.g. consent/p/<patient>."),
    height: int = typer.Option(None, "--height", min=0, help="Prove the value after this "
                               "block (default: the newest checkpoint's block)."),
    size: int = typer.Option(None, "--size", min=0, help="Log size of the checkpoint to prove "
                             "against (default: the one signed for that block)."),
    max_blocks: int = typer.Option(DEFAULT_MAX_BLOCKS, "--max-blocks", min=1,
                                   help="Refuse a proof of more block headers than this."),
    url: str = UrlOpt,
    member: str = AsOpt,
    witnesses: str = WitnessesOpt,
    ca: Path = CaOpt,
    timeout: float = TimeoutOpt,
    directory: Path = WorkspaceOpt,
) -> None:
    """Key-history proof of a state key at a height: its value (base64) or absence, the headers
    since its last write up to a signed checkpoint, the write's inclusion proof and a
    non-membership proof for every later block (ADR 0035)."""
    if url:
        _final_state(key, height, max_blocks, url, member, witnesses, ca, timeout, directory,
                     size)
        return
    store = workspace(directory).store()
    try:
        doc = build_state_proof(store, key, height, size=size, max_blocks=max_blocks)
    except MedLedgerError as exc:
        fail(exc)
    print(json.dumps(doc, indent=1))
