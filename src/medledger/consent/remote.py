"""The exchange over HTTP: the requester's side of ``POST /v1/exchange/request``, and a
member's ledger seen through a node's HTTP API.

``ask_holder(http, signed)`` posts a signed request (``Requester.request``) to the holder's
node — ``http`` is an ``httpx.Client`` whose ``base_url`` is that node (tests pass the app's
``TestClient``, an in-process transport) — and returns the sealed ``Delivery`` for
``Requester.accept`` to open and check. A refusal arrives as an RFC 9457 problem carrying the
consent ``reason`` and the access-log ``entry`` (``api.routes_exchange``) and is raised as the
``ExchangeError`` the holder raised. Any other problem is a ``client.http.ProblemError`` with
its code; a holder that cannot be reached, or answers with something else, is
``node_unavailable``.

``HttpLedgerMember`` is the ``exchange.Ledger`` of a member whose organisation's node runs in
another process (``medledger node start``, ``medledger peer run``): state reads are signed
``GET /v1/state/...``, transactions go through ``POST /v1/tx`` and wait for their receipt. It
is what ``medledger consent request`` hands to ``Requester``, so the requester checks the
delivery against its own node's ledger, never against what the holder says.

``request_records`` is that command's whole flow: sign, ask, open and check (waiting a little
for the holder's grant entry to reach the requester's node); ``write_records`` saves what was
accepted with a manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from medledger.client.client import Client
from medledger.client.http import HttpTransport, ProblemError, raise_for_problem
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Clock, Delivery, Received, Requester
from medledger.consent.model import Reason
from medledger.crypto.keys import SigningKey
from medledger.errors import Code, MedLedgerError
from medledger.node.node import Receipt

PATH = "/v1/exchange/request"


def ask_holder(http: httpx.Client, signed: dict[str, Any]) -> Delivery:
    """The holder's delivery for ``signed``; raises ``ExchangeError`` for a refusal."""
    try:
        resp = http.post(PATH, content=orjson.dumps(signed),
                         headers={"content-type": "application/json"})
    except httpx.TransportError as exc:
        raise MedLedgerError(Code.NODE_UNAVAILABLE, f"holder at {http.base_url}: {exc}") \
            from None
    try:
        raise_for_problem(resp)
    except ProblemError as exc:
        raise _refusal(exc) from None
    try:
        return Delivery.from_doc(orjson.loads(resp.content))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MedLedgerError(Code.NODE_UNAVAILABLE, f"holder answered {resp.status_code} with "
                             f"no delivery: {exc}") from None


def _refusal(exc: ProblemError) -> MedLedgerError:
    """The holder's ``ExchangeError`` back from its problem document, else ``exc`` itself."""
    try:
        reason = Reason(exc.problem["reason"])
    except (KeyError, ValueError):
        return exc
    message = exc.message.removeprefix(f"{reason.value}: ")
    entry = exc.problem.get("entry")
    return ExchangeError(reason, message, entry if isinstance(entry, str) else None)


class HttpLedgerMember:
    """``exchange.Ledger`` over a node's HTTP API: signs reads and transactions as
    ``member_id`` with ``key``; ``clock`` (Unix ms) stamps the transactions. The caller owns
    ``transport`` (``HttpTransport(url, member_id, key)``) and closes it."""

    def __init__(self, transport: HttpTransport, chain_id: str, member_id: str,
                 key: SigningKey, clock: Clock) -> None:
        self.transport, self._chain_id = transport, chain_id
        self.member_id, self.key, self.clock = member_id, key, clock
        self.org = member_id.split("/")[0]
        self._client = Client(transport, chain_id, member_id, key)

    @property
    def chain_id(self) -> str:
        return self._chain_id

    def state(self, key: str) -> Any:
        """The value of ``key`` (``<contract>/<key>``) at the node's head; None when absent."""
        try:
            doc = self.transport.get(f"/v1/state/{quote(key, safe='/')}")
        except ProblemError as exc:
            if exc.code is Code.NOT_FOUND:
                return None
            raise
        return doc["value"]

    def call(self, contract: str, method: str, args: dict[str, Any]) -> Receipt:
        raw = self._client.build(contract, method, args, time_ms=self.clock())
        return self.transport.submit_one(raw)


@dataclass(frozen=True)
class Fetched:
    """An accepted delivery: the signed request, what the holder sent, the checked records."""

    signed: dict[str, Any]
    delivery: Delivery
    records: list[Received]


def request_records(requester: Requester, http: httpx.Client, holder: str, patient: str,
                    categories: list[str], purpose: str, *, justification: str | None = None,
                    minutes: int = 60, wait: float = 10.0) -> Fetched:
    """Ask ``holder`` (its node at ``http.base_url``) for ``patient``'s records, open the
    delivery and check every record and the whole against the requester's ledger. A grant
    entry not yet on the requester's node (another peer, a block behind) is waited for up to
    ``wait`` seconds. Raises ``ExchangeError`` for the holder's refusal (its reason and entry)
    or the requester's rejection (``tampered_record``, with the rejected entry)."""
    signed = requester.request(holder, patient, categories, purpose, justification, minutes)
    delivery = ask_holder(http, signed)
    deadline = time.monotonic() + wait
    while True:
        try:
            return Fetched(signed, delivery, requester.accept(signed, delivery))
        except ExchangeError as exc:
            if exc.reason is not Reason.NOT_RECORDED or time.monotonic() >= deadline:
                raise
        time.sleep(0.1)


def _file_name(i: int, r: Received) -> str:
    return f"{i:04d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', r.record_id)[:80]}.v{r.version}.json"


def write_records(out: Path, fetched: Fetched) -> Path:
    """Write each record's bytes (the vault's envelope, as anchored) to ``out/records/`` and a
    ``manifest.json`` naming the request, the holder's entry and each record's fingerprint;
    returns the manifest's path. ``out`` may exist; files of the same names are replaced."""
    (out / "records").mkdir(parents=True, exist_ok=True)
    body = fetched.signed["body"]
    rows = []
    for i, r in enumerate(fetched.records):
        name = _file_name(i, r)
        (out / "records" / name).write_bytes(r.body)
        rows.append({"record_id": r.record_id, "version": r.version, "category": r.category,
                     "fingerprint": hashlib.sha256(r.body).hexdigest(),
                     "file": f"records/{name}"})
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps({
        "request_id": fetched.delivery.request_id, "entry": fetched.delivery.entry,
        "holder": fetched.delivery.holder, "requester": body["requester"],
        "patient": body["patient"], "purpose": body["purpose"],
        "categories": body["categories"], "records": rows}, indent=1) + "\n")
    return manifest
