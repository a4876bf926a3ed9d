"""Anchoring record fingerprints on the ledger in Merkle batches.

Reuses the ledger's pieces: ``medledger.records.batch.Batch`` builds the RFC 9162 tree over
``(leaf id, fingerprint)`` entries and hands out proofs; the ``registry.anchor_batch`` contract
method records the root, count, record type, source system and schema version, signed by the
hospital's gateway member. A leaf id is ``<record id>.v<version>`` so every version of a record
is its own leaf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import orjson

from medledger.client.client import Client
from medledger.errors import Code
from medledger.gateway.envelope import leaf_id
from medledger.gateway.errors import GatewayError

if TYPE_CHECKING:
    from medledger.client.http import HttpTransport

__all__ = ["Anchorer", "LedgerAnchorer", "PeerState", "StateReader", "leaf_id"]


class Anchorer(Protocol):
    """Where batch roots go. ``anchor`` returns ``{"tx_id", "height"}``."""

    org: str

    def anchor(self, batch_id: str, root: str, count: int, record_type: str,
               source_system: str, schema_version: str) -> dict[str, Any]: ...

    def anchored_root(self, batch_id: str) -> str | None: ...


class StateReader(Protocol):
    def get_state(self, key: str) -> bytes | None: ...


class LedgerAnchorer:
    """Anchors through a ``Client`` (embedded node or HTTP) and reads roots from state."""

    def __init__(self, client: Client, state: StateReader) -> None:
        self.client, self.state = client, state
        self.org = client.member_id.split("/")[0]

    def anchor(self, batch_id: str, root: str, count: int, record_type: str,
               source_system: str, schema_version: str) -> dict[str, Any]:
        receipt = self.client.call("registry", "anchor_batch", {
            "batch_id": batch_id, "root": root, "count": count, "record_type": record_type,
            "source_system": source_system, "schema_version": schema_version})
        if not receipt.ok and receipt.code != "already_exists":
            raise GatewayError(f"anchoring batch {batch_id} failed: {receipt.code} "
                               f"{receipt.message}")
        return {"tx_id": receipt.tx_id.hex(), "height": receipt.height}

    def anchored_root(self, batch_id: str) -> str | None:
        raw = self.state.get_state(f"registry/batch/{self.org}/{batch_id}")
        return None if raw is None else str(orjson.loads(raw)["root"])


class PeerState:
    """A ``StateReader`` over a node's HTTP API (signed ``GET /v1/state/<contract>/<key>``):
    a gateway whose ledger is its organisation's cluster peer reads anchored roots there."""

    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    def get_state(self, key: str) -> bytes | None:
        from medledger.client.http import ProblemError

        contract, _, rest = key.partition("/")
        try:
            doc = self.http.get(f"/v1/state/{contract}/{quote(rest, safe='/')}")
        except ProblemError as exc:
            if exc.code == Code.NOT_FOUND:
                return None
            raise
        return orjson.dumps(doc["value"])
