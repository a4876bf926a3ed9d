"""``medledger ledger …``: commands on ledger stores given by location (file or URI)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import typer
from rich.markup import escape

from medledger.cli.common import (
    WorkspaceOpt,
    console,
    err_console,
    error,
    fail,
    reader_key,
    store_of,
)
from medledger.errors import Code, MedLedgerError
from medledger.ledger.compare import Divergence, compare, head_height
from medledger.ledger.store.base import Store
from medledger.ledger.store.open import open_store, postgres_location

app = typer.Typer(help="Inspect ledger stores (SQLite files or PostgreSQL URIs).",
                  no_args_is_help=True)

LOCATION_HELP = ("a SQLite file, postgresql://… (?schema=NAME or #NAME for a schema), "
                 "or a workspace or peer directory")


@app.command("compare")
def compare_cmd(
    a: str = typer.Argument(..., help=f"Store A: {LOCATION_HELP}."),
    b: str = typer.Argument(..., help="Store B, given as A."),
    headers_only: bool = typer.Option(
        False, "--headers-only", help="Compare genesis and blocks only, not transactions and "
        "state writes."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """First height at which two stores of one chain diverge (exit 1 if they do).

    A shorter store is not a divergence; both heights are reported."""
    with ExitStack() as stack:
        try:
            sa, sb = (stack.enter_context(_opened(loc)) for loc in (a, b))
            ha, hb = head_height(sa), head_height(sb)
            found = compare(sa, sb, contents=not headers_only)
        except MedLedgerError as exc:
            fail(exc)
        except (psycopg.Error, sqlite3.Error) as exc:
            error("store_error", str(exc).strip())
    top = None if ha is None or hb is None else min(ha, hb)
    if as_json:
        print(json.dumps({
            "diverged": found is not None, "contents": not headers_only, "compared_up_to": top,
            "a": {"store": _shown(a), "height": ha}, "b": {"store": _shown(b), "height": hb},
            "divergence": None if found is None else found.to_doc()}, indent=1))
    else:
        for name, loc, h in (("A", a, ha), ("B", b, hb)):
            console.print(escape(f"{name}  {_shown(loc)}  height {'-' if h is None else h}"),
                          soft_wrap=True)
        _print_outcome(found, ha, hb, headers_only)
    if found is not None:
        raise typer.Exit(1)


def _print_outcome(found: Divergence | None, ha: int | None, hb: int | None,
                   headers_only: bool) -> None:
    if found is not None:
        fields = f" ({', '.join(found.fields)})" if found.fields else ""
        err_console.print(f"[bold red]DIVERGED[/] at height {found.height}: "
                          + escape(f"[{found.part}]{fields} {found.detail}"), soft_wrap=True)
    elif ha is None or hb is None:
        console.print("nothing to compare: a store is empty")
    else:
        what = "blocks" if headers_only else "blocks, transactions and state"
        behind = "" if ha == hb else f"; {'B' if hb < ha else 'A'} is {abs(ha - hb)} behind"
        console.print(f"[green]no divergence[/] in {what} up to height {min(ha, hb)}{behind}",
                      soft_wrap=True)


class _opened:
    """Context manager opening a store location that must hold a store: a missing SQLite file
    or PostgreSQL schema is an error rather than a new empty store."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.store: Store | None = None

    def __enter__(self) -> Store:
        where = Path(self.location)
        self.store = store_of(where) if where.is_dir() else open_store(self.location,
                                                                         create=False)
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self.store is not None:
            self.store.close()


def _shown(location: str) -> str:
    """The location without a password, for printing."""
    parts = urlsplit(location)
    if postgres_location(location) is None or parts.password is None:
        return location
    return location.replace(f":{parts.password}@", ":***@", 1)


evidence_app = typer.Typer(help="Equivocation evidence: export what a peer kept, check it "
                                "anywhere with the genesis alone.", no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("export")
def evidence_export(
    location: str = typer.Argument(None, help=f"The peer's store: {LOCATION_HELP}."),
    out: Path = typer.Option(None, "--out", help="Write here instead of standard output."),
    url: str = typer.Option(None, "--url", help="Ask this peer's API instead "
                            "(GET /v1/checkpoints/evidence); then --as and --dir."),
    member: str = typer.Option(None, "--as", help="With --url: the member whose key signs the "
                               "read request."),
    ca: Path = typer.Option(None, "--ca", help="With --url: PEM of the CA that signed the peer's "
                            "HTTPS certificate."),
    directory: Path = WorkspaceOpt,
) -> None:
    """The equivocation evidence a peer kept (one canonical JSON document per line: the two
    conflicting signed checkpoints), for a regulator or another organisation to check."""
    if (location is None) == (url is None):
        error("bad_args", "give the peer's store (LOCATION) or its API (--url), one of them")
    kept = _evidence_from_store(location) if url is None else \
        _evidence_from_peer(url, member, ca, directory)
    lines = "".join(ev + "\n" for ev in kept.values())
    if out is None:
        print(lines, end="")
    else:
        out.write_text(lines, encoding="utf-8")
    err_console.print(f"{len(kept)} piece(s) of evidence"
                      + (f" (against {', '.join(kept)})" if kept else ""))


def _evidence_from_store(location: str) -> dict[str, str]:
    from medledger.consortium.genesis import Genesis
    from medledger.ledger.equivocation import kept_evidence
    from medledger.node.node import checkpoint_origin

    try:
        with _opened(location) as store:
            raw = store.genesis()
            if raw is None:
                raise MedLedgerError(Code.NOT_FOUND, "the store holds no chain")
            genesis = Genesis.load(raw)
            kept = kept_evidence(store, genesis.org_keys(), checkpoint_origin(genesis.chain_id))
    except MedLedgerError as exc:
        fail(exc)
    except (psycopg.Error, sqlite3.Error) as exc:
        error("store_error", str(exc).strip())
    return {k: v.decode() for k, v in kept.items()}


def _evidence_from_peer(url: str, member: str | None, ca: Path | None,
                        directory: Path) -> dict[str, str]:
    from medledger.client.http import HttpTransport

    key, _ = reader_key(directory, member)
    try:
        with HttpTransport(url, member, key, ca=None if ca is None else str(ca)) as peer:
            docs = peer.get("/v1/checkpoints/evidence")
    except MedLedgerError as exc:
        fail(exc)
    return {str(d["against"]): str(d["evidence"]) for d in docs}


@evidence_app.command("verify")
def evidence_verify(
    file: Path = typer.Argument(..., help="Evidence from `evidence export` (one per line)."),
    genesis: Path = typer.Option(..., "--genesis", help="The consortium's genesis.json: its "
                                 "organisation keys are the only keys trusted."),
) -> None:
    """Check each piece independently: the two notes really conflict and each carries a valid
    signature or cosignature by a consortium key. Prints who signed each side; exit 1 if any
    piece proves nothing."""
    from medledger.consortium.genesis import Genesis
    from medledger.ledger.checkpoint import CheckpointError
    from medledger.ledger.equivocation import Equivocation, report_doc, verify_equivocation
    from medledger.ledger.finality import ConsortiumKeys

    try:
        keys = Genesis.load(genesis.read_bytes()).org_keys()
        lines = [ln for ln in file.read_bytes().splitlines() if ln.strip()]
    except OSError as exc:
        error("not_found", str(exc))
    except MedLedgerError as exc:
        fail(exc)
    if not lines:
        error("bad_evidence", f"{file} holds no evidence")
    trusted = ConsortiumKeys(log=keys, witnesses=keys)
    docs, bad = [], 0
    for n, line in enumerate(lines, 1):
        try:
            ev = Equivocation.from_json(line)
            docs.append({"line": n, "proven": True, **report_doc(
                verify_equivocation(ev, trusted), ev)})
        except CheckpointError as exc:
            bad += 1
            docs.append({"line": n, "proven": False, "code": str(exc.code),
                         "reason": exc.message})
    print(json.dumps(docs, indent=1))
    if bad:
        raise typer.Exit(1)
