"""Reporting keys and memberships that expire soon (expired certificates take Fabric networks
down; here they are reported well before)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from medledger.ledger.store.base import Store


@dataclass(frozen=True)
class Expiring:
    member: str
    kid: str | None  # None: the membership itself expires
    not_after: int
    expired: bool


def expiring(store: Store, now_ms: int, within_ms: int) -> list[Expiring]:
    """Keys and members whose validity ends before ``now_ms + within_ms``, soonest first."""
    out = []
    for _, raw in store.scan_state("consortium/member/", limit=1_000_000):
        m = orjson.loads(raw)
        if m["status"] != "active":
            continue
        items = [(None, m["not_after"])] + [
            (k["kid"], k["not_after"]) for k in m["keys"] if k["revoked_at"] is None]
        for kid, not_after in items:
            if not_after is not None and not_after <= now_ms + within_ms:
                if kid is not None and not_after <= now_ms:
                    continue  # an old key past its overlap is simply retired
                out.append(Expiring(m["id"], kid, not_after, not_after <= now_ms))
    return sorted(out, key=lambda e: e.not_after)
