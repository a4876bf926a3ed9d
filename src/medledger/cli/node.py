"""``medledger node start``: serve a workspace's node over HTTP."""

from __future__ import annotations

from pathlib import Path

import typer

from medledger.cli.common import WorkspaceOpt, console, workspace

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
) -> None:
    """Start the embedded node and its HTTP API (Ctrl-C stops it cleanly)."""
    import uvicorn

    from medledger.api.app import create_app

    ws = workspace(directory)
    node = ws.node(max_block_txs=max_block_txs, max_wait=max_wait_ms / 1000,
                   admit_processes=admit_processes)
    with node:
        console.print(f"node for [bold]{node.chain_id}[/] at height {node.height}; "
                      f"API on http://{host}:{port}/v1 (docs at /docs)")
        uvicorn.run(create_app(node), host=host, port=port, log_level="warning")
    console.print(f"stopped at height {node.height}")
