"""A peer on PostgreSQL beside peers on SQLite: one chain, identical roots, same verify."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from medledger.cluster.natsd import NatsCluster
from medledger.cluster.peer import Peer, PeerOptions
from medledger.installed import default_registry
from medledger.ledger.compare import compare
from medledger.ledger.store.postgres import PostgresStore
from medledger.ledger.verify import verify_store
from tests.cluster.conftest import WallClock, same_chain, wait_height
from tests.conftest import Ledger
from tests.support.services import PG_DSN, require_port

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.postgres]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    require_port("127.0.0.1", 5432, "PostgreSQL")
    schema = f"peer_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_sqlite_and_postgres_peers_agree(nats3: NatsCluster, start_peers, pg_schema: str) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers(("hosp-a", "hosp-b"))
    pg = Peer(PostgresStore(PG_DSN, pg_schema), cons.genesis, default_registry(), org="cdc",
              key=cons.ring.signing["cdc/root"],
              options=PeerOptions(nats3.urls, replicas=3, sequencer=False)).start()
    try:
        led = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
        last = None
        for i in range(40):
            last = led.ok("hosp-a/gw", "registry", "register", {
                "record_id": f"R{i}", "record_type": "Observation", "source_system": "his",
                "content_hash": f"{i:064x}", "schema_version": "1"})
        assert last is not None
        wait_height([*peers, pg], last.height)
        same_chain([*peers, pg])
        assert pg.node.head.state_root == peers[0].node.head.state_root
        assert compare(peers[0].node.store, pg.node.store) is None
        assert verify_store(pg.node.store, default_registry()).ok
    finally:
        pg.stop()
        pg.node.store.close()
