"""``medledger peer run DIR``: one organisation's cluster peer with its HTTP API."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from medledger.cli.common import console, fail
from medledger.errors import MedLedgerError

app = typer.Typer(help="Run a cluster peer (one per organisation).", no_args_is_help=True)


@app.command("run")
def run(
    directory: Path = typer.Argument(..., help="Peer directory (peer.json, genesis.json, "
                                     "keyring.json)."),
) -> None:
    """Join the cluster named in DIR/peer.json and serve the HTTP API until SIGTERM/Ctrl-C,
    then stop gracefully (finish the block in flight, hand over the sequencer lease)."""
    import uvicorn

    from medledger.api.app import create_app
    from medledger.cluster.local import PeerConfig
    from medledger.cluster.peer import Peer, PeerOptions
    from medledger.consortium.bootstrap import Keyring
    from medledger.consortium.genesis import Genesis
    from medledger.installed import default_registry
    from medledger.ledger.store.open import open_store, postgres_location

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(logging.WARNING)
    try:
        cfg = PeerConfig.load(directory / "peer.json")
        genesis = Genesis.load((directory / "genesis.json").read_bytes())
        ring = Keyring.load(directory / "keyring.json")
        location = cfg.store if postgres_location(cfg.store) else str(directory / cfg.store)
        store = open_store(location)
        opts = PeerOptions(cfg.servers, replicas=cfg.replicas, sequencer=cfg.sequencer,
                           max_block_txs=cfg.max_block_txs, max_wait=cfg.max_wait_ms / 1000,
                           admit_processes=cfg.admit_processes, witnesses=cfg.witnesses)
        peer = Peer(store, genesis, default_registry(), org=cfg.org,
                    key=ring.signing[f"{cfg.org}/root"], options=opts)
    except MedLedgerError as exc:
        fail(exc)
    with peer:
        console.print(f"peer {cfg.org} of {genesis.chain_id} at height {peer.node.height}; "
                      f"API on http://{cfg.http_host}:{cfg.http_port}/v1")
        uvicorn.run(create_app(peer.node), host=cfg.http_host, port=cfg.http_port,
                    log_level="warning")
    store.close()
    console.print(f"peer {cfg.org} stopped at height {peer.node.height}")
