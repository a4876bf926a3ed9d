"""``medledger node start``: serve a workspace's node over HTTP (optionally with the hospital's
holder gateway for consented exchange, ``consent.serving``)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import typer

from medledger.cli.common import WorkspaceOpt, console, serving_until_sigterm, workspace
from medledger.cli.holder import (
    HolderMemberOpt,
    HolderVaultKeyOpt,
    HolderVaultOpt,
    serve_holder,
)

app = typer.Typer(help="Run a node.", no_args_is_help=True)


@app.command("start")
def start(
    directory: Path = WorkspaceOpt,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8400, help="HTTP port."),
    max_block_txs: int = typer.Option(2000, min=1, help="Cut a block at this many txs."),
    max_wait_ms: int = typer.Option(20, min=0, help="…or this long after its first tx."),
    admit_processes: int = typer.Option(
        2, min=0, help="Run ingress checks in this many worker processes (0: threads)."),
    holder_vault: Path | None = HolderVaultOpt,
    holder_vault_key: Path | None = HolderVaultKeyOpt,
    holder_member: str | None = HolderMemberOpt,
) -> None:
    """Start the embedded node and its HTTP API (Ctrl-C or SIGTERM stops it cleanly)."""
    import uvicorn

    from medledger.api.app import create_app

    ws = workspace(directory)
    node = ws.node(max_block_txs=max_block_txs, max_wait=max_wait_ms / 1000,
                   admit_processes=admit_processes)
    with node, ExitStack() as stack:
        api = create_app(node)
        if holder_vault is not None:
            serve_holder(stack, api, node, ws.keyring(), ws.config["org"], holder_vault,
                         holder_vault_key, holder_member)
        console.print(f"node for [bold]{node.chain_id}[/] at height {node.height}; "
                      f"API on http://{host}:{port}/v1 (docs at /docs)")
        with serving_until_sigterm():
            uvicorn.run(api, host=host, port=port, log_level="warning")
    console.print(f"stopped at height {node.height}")
