"""``medledger peer run DIR``: one organisation's cluster peer with its HTTP API."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from medledger.cli.common import console, fail, serving_until_sigterm, store_of
from medledger.cli.holder import (
    HolderMemberOpt,
    HolderVaultKeyOpt,
    HolderVaultOpt,
    serve_holder,
)
from medledger.errors import MedLedgerError

app = typer.Typer(help="Run a cluster peer (one per organisation).", no_args_is_help=True)


@app.command("run")
def run(
    directory: Path = typer.Argument(..., help="Peer directory (peer.json, genesis.json, "
                                     "keyring.json)."),
    holder_vault: Path | None = HolderVaultOpt,
    holder_vault_key: Path | None = HolderVaultKeyOpt,
    holder_member: str | None = HolderMemberOpt,
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
    from medledger.ordering.jetstream import tls_context

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(logging.WARNING)
    try:
        cfg = PeerConfig.load(directory / "peer.json")
        genesis = Genesis.load((directory / "genesis.json").read_bytes())
        ring = Keyring.load(directory / "keyring.json")
        store = store_of(directory, create=True)
        def path(p: str | None) -> str | None:
            return None if p is None else str(directory / p)

        tls = None if cfg.nats_tls_ca is None else tls_context(
            str(path(cfg.nats_tls_ca)), path(cfg.nats_tls_cert), path(cfg.nats_tls_key))
        opts = PeerOptions(cfg.servers, replicas=cfg.replicas, sequencer=cfg.sequencer,
                           max_block_txs=cfg.max_block_txs, max_wait=cfg.max_wait_ms / 1000,
                           admit_processes=cfg.admit_processes, witnesses=cfg.witnesses,
                           tls=tls, clock_skew_alarm_ms=cfg.clock_skew_alarm_ms,
                           connect_within=cfg.nats_connect_within_s)
        peer = Peer(store, genesis, default_registry(), org=cfg.org,
                    key=ring.signing[f"{cfg.org}/root"], options=opts)
    except MedLedgerError as exc:
        fail(exc)
    with peer, ExitStack() as stack:
        api = create_app(peer.node)
        if holder_vault is not None:
            serve_holder(stack, api, peer.node, ring, cfg.org, holder_vault, holder_vault_key,
                         holder_member)
        console.print(f"peer {cfg.org} of {genesis.chain_id} at height {peer.node.height}; "
                      f"API on http://{cfg.http_host}:{cfg.http_port}/v1")
        with serving_until_sigterm():
            uvicorn.run(api, host=cfg.http_host, port=cfg.http_port,
                        log_level="warning", ssl_certfile=path(cfg.http_tls_cert),
                        ssl_keyfile=path(cfg.http_tls_key))
    store.close()
    console.print(f"peer {cfg.org} stopped at height {peer.node.height}")


@app.command("snapshot")
def snapshot(
    directory: Path = typer.Argument(..., help="Peer directory whose store to export."),
    out: Path = typer.Argument(..., help="Snapshot file to write (SQLite)."),
) -> None:
    """Export this peer's ledger with the cosignatures it collected, for another peer to join
    from (the receiver verifies everything; see `peer join`)."""
    from medledger.cluster.snapshot import export_snapshot

    try:
        store = store_of(directory)
        try:
            height = export_snapshot(store, out)
        finally:
            store.close()
    except MedLedgerError as exc:
        fail(exc)
    console.print(f"snapshot of height {height} written to {out}")


@app.command("join")
def join(
    directory: Path = typer.Argument(..., help="Peer directory with an empty store."),
    snapshot: Path = typer.Option(..., "--snapshot", help="Snapshot file from `peer snapshot`."),
) -> None:
    """Fill this peer's empty store from a snapshot after verifying it in full and checking
    its newest final (quorum-cosigned) checkpoint; then `peer run` continues from there."""
    from medledger.cluster.local import PeerConfig
    from medledger.cluster.snapshot import join_from_snapshot
    from medledger.consortium.genesis import Genesis
    from medledger.installed import default_registry

    try:
        cfg = PeerConfig.load(directory / "peer.json")
        genesis = Genesis.load((directory / "genesis.json").read_bytes())
        keys = genesis.org_keys()
        witnesses = {o: keys[o] for o in cfg.witnesses} if cfg.witnesses else None
        store = store_of(directory, create=True)
        try:
            height = join_from_snapshot(snapshot, store, genesis, default_registry(),
                                        witnesses=witnesses)
        finally:
            store.close()
    except MedLedgerError as exc:
        fail(exc)
    console.print(f"joined from the snapshot at final height {height}; start with `peer run`")


@app.command("status")
def status(
    urls: list[str] = typer.Argument(..., help="Peers' API URLs (as `cluster up` prints them)."),
    ca: Path = typer.Option(None, "--ca", help="PEM of the CA that signed the peers' HTTPS "
                            "certificates."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Each peer's height, finality, lag, roots, sequencer role and alarms, from its
    /v1/health (no key needed): for peers on other machines. Exit 1 if a peer does not answer
    or raises an alarm."""
    from medledger.cli.cluster import peer_table
    from medledger.client.http import HttpTransport

    peers: dict[str, dict[str, Any]] = {}
    chains: set[str] = set()
    for url in urls:
        try:
            with HttpTransport(url, ca=None if ca is None else str(ca), wait_timeout=5) as h:
                health = h.health()
        except (MedLedgerError, OSError) as exc:
            peers[url] = {"running": False, "error": str(exc)}
            continue
        chains.add(str(health.get("chain_id")))
        cluster = health.get("cluster") or {}
        peers[str(cluster.get("org", url))] = {"running": True, "url": url, **cluster}
    if as_json:
        print(json.dumps({"chains": sorted(chains), "peers": peers}, indent=1))
    else:
        console.print(peer_table(f"chain {', '.join(sorted(chains)) or '?'}", peers))
        for name, p in peers.items():
            if "error" in p:
                console.print(f"{name}: {p['error']}")
    if any(not p["running"] or p.get("alarms") for p in peers.values()) or len(chains) > 1:
        raise typer.Exit(1)
