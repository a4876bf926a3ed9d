"""Break-glass reviews: the flagged entries an organisation's auditor has to look at.

Every break-glass entry — granted, or a refused attempt — is flagged by the ``access`` contract
under ``access/review/<holder>/<patient>/<height:012d>/<tx>`` with status ``pending`` until the
holder's auditor calls ``access.review(entry, justified|unjustified, note)``. ``flagged``
lists them for one holder, oldest first, each with the access entry it refers to.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from medledger.consent.model import ORG
from medledger.errors import Code, MedLedgerError
from medledger.ledger.store.base import Store


def flagged(store: Store, org: str, *, pending_only: bool = True,
            limit: int = 10_000) -> list[dict[str, Any]]:
    """``[{"key", "status", "review", "entry"}]`` of ``org``'s flagged break-glass entries
    (only those still ``pending`` unless ``pending_only`` is false). ``key`` is the entry's key
    within the ``access`` contract, as ``access.review`` takes it. Raises ``bad_args`` for a
    string that is not an organisation id."""
    if not re.match(ORG, org):
        raise MedLedgerError(Code.BAD_ARGS, f"organisation {org!r} does not match {ORG}")
    out = []
    for _, raw in store.scan_state(f"access/review/{org}/", limit=limit):
        review = orjson.loads(raw)
        if pending_only and review["status"] != "pending":
            continue
        entry = store.get_state(f"access/{review['entry']}")
        out.append({"key": review["entry"], "status": review["status"], "review": review,
                    "entry": None if entry is None else orjson.loads(entry)})
    return out
