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

from medledger.cli.common import console, err_console, error, fail, store_of
from medledger.errors import MedLedgerError
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
