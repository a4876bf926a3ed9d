"""The holder's gateway over HTTP: the requester's side of ``POST /v1/exchange/request``.

``ask_holder(http, signed)`` posts a signed request (``Requester.request``) to the holder's
node — ``http`` is an ``httpx.Client`` whose ``base_url`` is that node (tests pass the app's
``TestClient``, an in-process transport) — and returns the sealed ``Delivery`` for
``Requester.accept`` to open and check. A refusal arrives as an RFC 9457 problem carrying the
consent ``reason`` and the access-log ``entry`` (``api.routes_exchange``) and is raised as the
``ExchangeError`` the holder raised. Any other problem is a ``client.http.ProblemError`` with
its code; a holder that cannot be reached, or answers with something else, is
``node_unavailable``.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from medledger.client.http import ProblemError, raise_for_problem
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Delivery
from medledger.consent.model import Reason
from medledger.errors import Code, MedLedgerError

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
