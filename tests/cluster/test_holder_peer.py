"""A hospital in a cluster serves its holder gateway from its peer (``peer run --holder-vault``
uses the same ``cli.holder.serve_holder`` as ``node start``): hosp-a's peer releases its vault's
records to hosp-b, which checks them against the anchors on *its own* peer's copy of the chain,
ordered through JetStream; a revocation is then denied and logged on both peers."""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from medledger.api.app import create_app
from medledger.cli.holder import serve_holder
from medledger.cluster.peer import Peer, PeerOptions
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import LedgerMember, Requester
from medledger.consent.model import Reason
from medledger.consent.remote import ask_holder
from medledger.consent.vault_source import VaultSource
from medledger.demo.consent import MEMBERS, ORGS, REFERRAL, ingest, now_ms, pick_patient
from medledger.gateway.deid import PseudonymKey
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.workspace import Workspace
from tests.cluster.natsutil import drop_chain, shared_server, unique_chain

with warnings.catch_warnings():  # starlette's notice about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.slow]
DAY = 86_400_000


@pytest.fixture
def two_peers(tmp_path: Path) -> Iterator[tuple[Workspace, dict[str, Peer]]]:
    server = shared_server()
    ws = Workspace.init(tmp_path / "ws", unique_chain("h"), ORGS, MEMBERS)
    ring = ws.keyring()
    peers: dict[str, Peer] = {}
    try:
        for org in ("hosp-a", "hosp-b"):
            peers[org] = Peer(SQLiteStore(tmp_path / f"{org}.db"), ws.genesis(),
                              default_registry(), org=org, key=ring.signing[f"{org}/root"],
                              options=PeerOptions([server], max_wait=0.005)).start()
        yield ws, peers
    finally:
        for p in peers.values():
            p.stop()
            p.node.store.close()
        drop_chain([server], ws.genesis().chain_id)


def _wait(peer: Peer, height: int) -> None:
    deadline = time.monotonic() + 20
    while peer.node.height < height:
        assert time.monotonic() < deadline, (peer.node.height, height)
        time.sleep(0.01)


def test_a_peer_serves_its_vault_as_holder(two_peers: tuple[Workspace, dict[str, Peer]],
                                           tmp_path: Path) -> None:
    ws, peers = two_peers
    a, b = peers["hosp-a"].node, peers["hosp-b"].node
    ring = ws.keyring()
    key = PseudonymKey("k1", secrets.token_bytes(32))
    vault, _ = ingest(ws, a, tmp_path, key)  # anchored through the cluster
    with vault:
        _, patient, records = pick_patient(VaultSource(vault), key)
    app = create_app(a)
    with ExitStack() as stack:
        serve_holder(stack, app, a, ring, "hosp-a", vault.root, None, "hosp-a/gw")
        client = TestClient(app, base_url="http://hosp-a.test")
        agent = LedgerMember(b, "patients/agent-0001", ring.signing["patients/agent-0001"],
                             now_ms)
        steward = LedgerMember(b, "hosp-a/steward", ring.signing["hosp-a/steward"], now_ms)
        assert steward.call("consent", "link_agent",
                            {"patient": patient, "member": "patients/agent-0001"}).ok
        t = now_ms()
        assert agent.call("consent", "grant", {
            "consent_id": "c1", "patient": patient, "purpose": "referral",
            "categories": REFERRAL, "recipient_org": "hosp-b", "start": t - 1000,
            "end": t + 30 * DAY}).ok
        _wait(peers["hosp-a"], b.height)  # the holder decides on its own peer's chain
        dr = Requester(LedgerMember(b, "hosp-b/dr-wu", ring.signing["hosp-b/dr-wu"], now_ms),
                       ring.agreement["hosp-b"].secret)
        signed = dr.request("hosp-a", patient, REFERRAL, "referral")
        delivery = ask_holder(client, signed)
        _wait(peers["hosp-b"], a.height)  # the grant entry reaches the requester's peer
        got = dr.accept(signed, delivery)  # fingerprints vs hosp-b's copy of the anchors
        assert sorted((r.record_id, r.version) for r in got) == sorted(
            (r.record_id, r.version) for r in records)
        assert agent.call("consent", "revoke", {"consent_id": "c1", "reason": "done"}).ok
        _wait(peers["hosp-a"], b.height)
        with pytest.raises(ExchangeError) as denied:
            ask_holder(client, dr.request("hosp-a", patient, REFERRAL, "referral"))
        assert denied.value.reason is Reason.CONSENT_REVOKED
        _wait(peers["hosp-b"], a.height)
        entry = b.store.get_state(f"access/{denied.value.entry}")
        assert entry is not None and b"consent_revoked" in entry  # on the other peer too
    assert a.store.block(a.height).hash == b.store.block(a.height).hash  # type: ignore[union-attr]
