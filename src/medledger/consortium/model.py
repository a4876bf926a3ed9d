"""Organisations, members, roles and keys as they are kept in the consortium contract's state.

State keys (under the ``consortium/`` namespace):

* ``config``                   chain id, genesis hash, policies
* ``org/<org>``                id, name, kind, sign_key, kex_key, status, since
* ``member/<org>/<name>``      id, org, role, validity, status, keys[]
* ``proposal/<id>``            governance proposals and their approvals
* ``scheduled/<height>``       proposal ids that take effect at that height
"""

from __future__ import annotations

from typing import Any

from medledger.errors import Code, MedLedgerError

ORG_KINDS = frozenset(
    {
        "hospital", "cdc", "research", "pharmacy", "insurer", "regulator",
        "manufacturer", "clinic", "patient-app",
    }
)
ROLES = frozenset(
    {
        "org-admin", "physician", "nurse", "pharmacist", "researcher", "auditor",
        "data-steward", "gateway", "device", "patient-agent", "peer", "service",
    }
)
ADMIN = "org-admin"
ROOT_MEMBER = "root"  # the member "<org>/root" holds the organisation's root signing key

DEFAULT_POLICIES: dict[str, Any] = {
    # a change needs approvals from MORE than num/den of active organisations
    "governance_quorum": {"num": 1, "den": 2},
    # a governance change takes effect at least this many blocks after it is approved
    "governance_min_delay": 1,
    # transaction time must lie within [block time - max_age, block time + max_future]
    "tx_max_age_ms": 3_600_000,
    "tx_max_future_ms": 300_000,
    # keys expiring within this window are reported
    "key_expiry_warning_ms": 30 * 86_400_000,
}


def policy_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the policy ``name``, or None if it can.

    Every peer's block execution reads these values, so a bad one (a string where a number is
    due, a zero denominator, a delay that schedules changes in the past) must never be accepted.
    """
    if name not in DEFAULT_POLICIES:
        return f"unknown policy {name!r}"
    if name == "governance_quorum":
        if (type(value) is dict and set(value) == {"num", "den"}
                and type(value["num"]) is int and type(value["den"]) is int
                and 0 <= value["num"] < value["den"]):
            return None
        return "governance_quorum must be {num, den}, integers with 0 <= num < den"
    low = 1 if name == "governance_min_delay" else 0
    if type(value) is not int or value < low:
        return f"{name} must be an integer >= {low}, got {value!r}"
    return None


def quorum_needed(active_orgs: int, policy: dict[str, int]) -> int:
    """Smallest approval count strictly greater than num/den of ``active_orgs``."""
    return active_orgs * policy["num"] // policy["den"] + 1


def member_key(member_id: str) -> str:
    return f"member/{member_id}"


def org_key(org_id: str) -> str:
    return f"org/{org_id}"


def active_key(member: dict[str, Any], kid: str, time: int) -> dict[str, Any] | None:
    """The member's key ``kid`` if valid at ``time`` (ms), else None."""
    for k in member["keys"]:
        if k["kid"] == kid:
            return k if key_status(k, time) == "ok" else None
    return None


def signing_key(member: dict[str, Any], kid: str, time: int) -> dict[str, Any]:
    """The member's key ``kid`` valid at ``time``; raises MedLedgerError with ``unknown_signer``
    (no such key), ``key_revoked`` or ``key_expired``."""
    key = active_key(member, kid, time)
    if key is not None:
        return key
    known = [k for k in member["keys"] if k["kid"] == kid]
    if not known:
        raise MedLedgerError(Code.UNKNOWN_SIGNER, f"member {member['id']} has no key {kid}")
    status = key_status(known[0], time)
    code = Code.KEY_REVOKED if status == "revoked" else Code.KEY_EXPIRED
    raise MedLedgerError(code, f"key {kid} of {member['id']} is {status} at {time}")


def key_status(key: dict[str, Any], time: int) -> str:
    """``ok``, ``revoked`` or ``expired`` for one key record at ``time``."""
    if key.get("revoked_at") is not None and key["revoked_at"] <= time:
        return "revoked"
    if time < key["not_before"] or (key["not_after"] is not None and time >= key["not_after"]):
        return "expired"
    return "ok"
