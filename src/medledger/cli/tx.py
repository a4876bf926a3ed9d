"""``medledger tx submit``: sign a transaction as a member and submit it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medledger.cli.common import WorkspaceOpt, console, error, signing_material, workspace
from medledger.client.client import Client
from medledger.errors import RejectedError

app = typer.Typer(help="Build, sign and submit transactions.", no_args_is_help=True)


@app.command("submit")
def submit(
    contract: str = typer.Argument(..., help="Contract name, e.g. registry."),
    method: str = typer.Argument(..., help="Method name, e.g. register."),
    args: str = typer.Argument("{}", help="Arguments as a JSON object."),
    member: str = typer.Option(..., "--as", help="Signing member id (org/name) in the keyring."),
    url: str = typer.Option(None, help="Submit to a running node's or peer's API instead of "
                            "in-process; then DIR need only hold genesis.json and keyring.json "
                            "(a cluster's or a peer's directory will do)."),
    ca: Path = typer.Option(None, "--ca", help="PEM of the CA that signed the node's HTTPS "
                            "certificate (default: the system's trust store)."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Sign ARGS as MEMBER, submit, and print the receipt."""
    if url:
        ring, genesis = signing_material(directory)
    else:
        ws = workspace(directory)
        ring, genesis = ws.keyring(), ws.genesis()
    if member not in ring.signing:
        error("unknown_signer", f"no key for {member} in the keyring")
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        error("malformed_json", f"ARGS: {exc}")
    chain = genesis.chain_id
    try:
        if url:
            from medledger.client.http import HttpTransport

            with HttpTransport(url, ca=None if ca is None else str(ca)) as transport:
                receipt = Client(transport, chain, member, ring.signing[member]).call(
                    contract, method, parsed)
        else:
            with ws.node() as node:
                receipt = Client(node, chain, member, ring.signing[member]).call(
                    contract, method, parsed)
    except RejectedError as exc:
        error(str(exc.code), exc.message, exit_code=1, label="rejected")
    doc = receipt.to_doc() if hasattr(receipt, "to_doc") else receipt
    console.print_json(json.dumps(doc))
    if doc["code"] != "ok":
        raise typer.Exit(1)
