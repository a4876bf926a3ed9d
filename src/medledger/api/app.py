"""The HTTP API of one node: ``create_app(node)`` builds a thin FastAPI app over it.

Endpoints (all under ``/v1``, JSON unless noted, hashes in hex):

=======  ================================  =====================================================
POST     /v1/tx                            submit one raw canonical transaction (no auth)
POST     /v1/txs                           submit NDJSON batch; a receipt or problem per line
GET      /v1/tx/{tx_id}                    receipt, transaction and result
GET      /v1/tx/{tx_id}/proof              inclusion proof (``?size=``), checkpoint note
GET      /v1/proof/consistency             consistency proof ``?old=&new=``
GET      /v1/proof/state/{contract}/{key}  state proof: value or absence at ``?height=``
GET      /v1/blocks/head                   head block: header, hash, tx ids
GET      /v1/blocks/{height}               block by height
GET      /v1/checkpoints/latest            newest signed checkpoint (text; ``?format=json``)
GET      /v1/checkpoints/final             newest quorum-cosigned checkpoint (cluster peers)
GET      /v1/checkpoints/evidence          equivocation evidence this node kept
GET      /v1/checkpoints/{size}            checkpoint for a log size
GET      /v1/state/{contract}/{key}        state value (``?height=``)
GET      /v1/events                        Server-Sent Events (``?from_height=&until_height=``)
GET      /v1/consent/...                   consent status and check, a patient's access log
POST     /v1/exchange/request              ask this holder for records (HPKE-sealed reply)
GET      /v1/surveillance/...              case counts, signals, line lists
GET      /v1/health                        chain id, height, log size, cluster status (no auth)
=======  ================================  =====================================================

Reads other than health need the member signature scheme of ``medledger.api.auth``. Every
error is an RFC 9457 problem (``medledger.api.problems``). The app neither starts nor stops the
node: whoever creates both owns their lifecycles.
"""

from __future__ import annotations

from fastapi import FastAPI

from medledger.api import (
    problems,
    routes_events,
    routes_exchange,
    routes_ledger,
    routes_records,
    routes_surveillance,
    routes_tx,
)
from medledger.node.node import Node

DESCRIPTION = """\
MedLedger node API. Transactions are submitted as the exact canonical bytes their signatures
cover. Reads (except `/v1/health`) must be signed by an active consortium member with the
headers `X-MedLedger-Member`, `X-MedLedger-Key`, `X-MedLedger-Time` and `X-MedLedger-Signature`
(Ed25519 over `medledger/http/v1\\nMETHOD\\npath?query\\ntime\\nhex(sha256(body))`).
Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`.
"""


def create_app(node: Node) -> FastAPI:
    """A FastAPI app serving ``node`` (which the caller starts and stops)."""
    app = FastAPI(
        title="MedLedger",
        version="1",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "transactions", "description": "Submit and read transactions"},
            {"name": "proofs", "description": "Merkle log proofs"},
            {"name": "blocks", "description": "Block headers"},
            {"name": "checkpoints", "description": "Signed log checkpoints"},
            {"name": "state", "description": "Contract state"},
            {"name": "events", "description": "Contract event stream"},
            {"name": "node", "description": "Node status"},
        ],
    )
    app.state.node = node
    problems.install(app)
    app.include_router(routes_tx.router)
    app.include_router(routes_ledger.router)
    app.include_router(routes_events.router)
    app.include_router(routes_records.router)
    app.include_router(routes_surveillance.router)
    app.include_router(routes_exchange.router)
    return app
