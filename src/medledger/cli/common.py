"""Shared CLI bits: the workspace option, error rendering, the console."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from medledger.consortium.bootstrap import Keyring
from medledger.consortium.genesis import Genesis
from medledger.crypto.keys import SigningKey
from medledger.errors import MedLedgerError
from medledger.ledger.store.base import Store
from medledger.workspace import Workspace

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

WorkspaceOpt = typer.Option(
    Path("medledger-data"), "--dir", "-d", envvar="MEDLEDGER_DIR",
    help="Workspace directory (genesis, keys, store).",
)


def workspace(path: Path) -> Workspace:
    ws = Workspace(path)
    try:
        ws.config  # noqa: B018 - raises a clear error when the directory is not a workspace
    except MedLedgerError as exc:
        fail(exc)
    return ws


def error(code: str, message: str, exit_code: int = 2, label: str = "error") -> NoReturn:
    """Print ``label [code] message`` on stderr and exit with ``exit_code``."""
    err_console.print(f"[bold red]{label}[/] " + escape(f"[{code}] {message}"))
    raise typer.Exit(exit_code)


def fail(exc: MedLedgerError, exit_code: int = 2) -> NoReturn:
    error(str(exc.code), exc.message, exit_code)


@contextmanager
def serving_until_sigterm() -> Iterator[None]:
    """Run a ``uvicorn.run`` inside: SIGTERM (systemd's stop, ``kill``) ends it as Ctrl-C does
    and returns normally, so the caller's clean-up runs and the process exits 0. Without this,
    uvicorn re-raises the SIGTERM it caught once it has shut down, and the default action kills
    the process (status -15) before the node or peer is stopped."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with suppress(KeyboardInterrupt):  # uvicorn shut down on it, then re-raised it
            yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def signing_material(directory: Path) -> tuple[Keyring, Genesis]:
    """The keyring and genesis in ``directory``: all a client needs to sign for a remote node."""
    missing = [n for n in ("genesis.json", "keyring.json") if not (directory / n).is_file()]
    if missing:
        error("not_found", f"{directory} holds no {' or '.join(missing)} (a workspace, a "
                           "cluster's directory or a peer's directory has both)")
    try:
        genesis = Genesis.load((directory / "genesis.json").read_bytes())
    except MedLedgerError as exc:
        fail(exc)
    try:
        return Keyring.load(directory / "keyring.json"), genesis
    except (MedLedgerError, ValueError, KeyError, TypeError) as exc:  # bad JSON, keys or shape
        error("malformed_json", f"{directory / 'keyring.json'} is not a keyring: {exc}")


def reader_key(directory: Path, member: str | None) -> tuple[SigningKey, Genesis]:
    """For a command that reads from a remote node (``--url``): ``member``'s signing key from
    ``directory``'s keyring (reads are signed) and the genesis beside it."""
    if member is None:
        error("bad_args", "--url needs --as MEMBER: reads are signed with a member's key")
    ring, genesis = signing_material(directory)
    if member not in ring.signing:
        error("unknown_signer", f"no key for {member} in the keyring")
    return ring.signing[member], genesis


def store_of(directory: Path, location: str | None = None, *, create: bool = False) -> Store:
    """The ledger store a command works on: ``location`` (a SQLite file or a
    ``postgresql://`` URI) if given, else ``directory``'s: a cluster peer's (``peer.json``,
    its store relative to the directory unless a URI) or a workspace's (``node.json``).
    Only a peer that fills its store passes ``create=True``; readers never create one."""
    from medledger.cluster.local import PeerConfig
    from medledger.ledger.store.open import open_store, postgres_location

    if location is None:
        if (directory / "peer.json").is_file():
            store = PeerConfig.load(directory / "peer.json").store
        elif (directory / "node.json").is_file():
            store = str(workspace(directory).config["store"])
        else:
            error("not_found", f"{directory} is neither a workspace (node.json) nor a peer "
                               "directory (peer.json); or give a store location")
        location = store if postgres_location(store) else str(directory / store)
    return open_store(location, create=create)
