"""The genesis document: who is in the consortium at height 0, with which keys and policies.

A genesis document is canonical JSON::

    {"chain_id": "demo-1", "time": 1764259200000, "policies": {...},
     "orgs": [{"id": "hosp-a", "name": "...", "kind": "hospital",
               "sign_key": "<base64 Ed25519>", "kex_key": "<base64 X25519>"}, ...],
     "members": [{"id": "hosp-a/gw", "role": "gateway", "key": "<base64>",
                  "not_after": null}, ...]}

Its SHA-256 is in block 0's header; every peer starts from the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from medledger.consortium.model import (
    ADMIN,
    DEFAULT_POLICIES,
    ORG_KINDS,
    ROLES,
    ROOT_MEMBER,
    member_key,
    org_key,
    policy_problem,
)
from medledger.crypto import canonical
from medledger.crypto.keys import key_id, unb64
from medledger.errors import Code, MedLedgerError

ORG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")  # \Z: "$" accepts a trailing newline
CHAIN_ID = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}\Z")


class GenesisError(MedLedgerError):
    """A genesis document that cannot start a chain."""


@dataclass(frozen=True)
class Genesis:
    doc: dict[str, Any]

    @property
    def chain_id(self) -> str:
        return str(self.doc["chain_id"])

    @property
    def time(self) -> int:
        return int(self.doc["time"])

    @property
    def encoded(self) -> bytes:
        """The canonical bytes of the document."""
        return canonical.encode(self.doc)

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.encoded).digest()

    def org_keys(self) -> dict[str, bytes]:
        """Organisation id → root Ed25519 public key (the light client's trust anchors)."""
        return {o["id"]: unb64(o["sign_key"], length=32) for o in self.doc["orgs"]}

    @classmethod
    def load(cls, data: bytes) -> Genesis:
        try:
            doc = canonical.decode(data)
        except MedLedgerError as exc:
            raise GenesisError(exc.code, f"genesis: {exc.message}") from None
        validate(doc)
        return cls(doc)


def validate(doc: Any) -> None:
    """Raise GenesisError unless ``doc`` is a usable genesis document."""
    try:
        _validate(doc)
    except GenesisError:
        raise
    except MedLedgerError as exc:
        raise GenesisError(exc.code, f"genesis: {exc.message}") from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise GenesisError(Code.BAD_ENVELOPE, f"genesis: malformed ({exc!r})") from None


def _validate(doc: Any) -> None:
    def bad(msg: str) -> GenesisError:
        return GenesisError(Code.BAD_ENVELOPE, f"genesis: {msg}")

    if type(doc) is not dict or not {"chain_id", "time", "orgs", "policies"} <= set(doc):
        raise bad("needs chain_id, time, orgs, policies")
    if type(doc["time"]) is not int or doc["time"] < 0:
        raise bad("time must be a non-negative integer (Unix ms)")
    if type(doc["chain_id"]) is not str or not CHAIN_ID.match(doc["chain_id"]):
        raise bad(f"chain_id {doc['chain_id']!r} must match {CHAIN_ID.pattern}")
    if not doc["orgs"]:
        raise bad("at least one organisation")
    seen: set[str] = set()
    for org in doc["orgs"]:
        if not ORG_ID.match(str(org.get("id", ""))) or org["id"] in seen:
            raise bad(f"organisation id {org.get('id')!r} is invalid or repeated")
        if org.get("kind") not in ORG_KINDS:
            raise bad(f"organisation {org['id']}: kind {org.get('kind')!r} unknown")
        unb64(org["sign_key"], length=32)
        unb64(org["kex_key"], length=32)
        seen.add(org["id"])
    for m in doc.get("members", []):
        org = str(m.get("id", "")).split("/")[0]
        if org not in seen or m.get("role") not in ROLES:
            raise bad(f"member {m.get('id')!r}: unknown organisation or role")
        unb64(m["key"], length=32)
    if type(doc["policies"]) is not dict:
        raise bad("policies must be an object")
    for name, value in doc["policies"].items():
        problem = policy_problem(name, value)
        if problem is not None:
            raise bad(problem)


def policies(doc: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_POLICIES, **doc["policies"]}


def genesis_writes(genesis: Genesis) -> dict[str, bytes | None]:
    """The state writes of block 0, as keys of the ``consortium`` contract."""
    doc, t = genesis.doc, genesis.time
    out: dict[str, Any] = {
        "config": {
            "chain_id": genesis.chain_id,
            "genesis": genesis.hash.hex(),
            "orgs": sorted(o["id"] for o in doc["orgs"]),
            "policies": policies(doc),
        }
    }
    for org in doc["orgs"]:
        out[org_key(org["id"])] = {
            "id": org["id"], "name": org.get("name", org["id"]), "kind": org["kind"],
            "sign_key": org["sign_key"], "kex_key": org["kex_key"],
            "status": "active", "since": t,
        }
        root = f"{org['id']}/{ROOT_MEMBER}"
        out[member_key(root)] = new_member(root, ADMIN, org["sign_key"], t, None)
    for m in doc.get("members", []):
        out[member_key(m["id"])] = new_member(m["id"], m["role"], m["key"], t, m.get("not_after"))
    return {f"consortium/{k}": canonical.encode(v) for k, v in out.items()}


def new_member(
    member_id: str, role: str, public_key: str, not_before: int, not_after: int | None
) -> dict[str, Any]:
    """A member record with one key valid over the member's validity period."""
    kid = key_id(unb64(public_key, length=32))
    return {
        "id": member_id, "org": member_id.split("/")[0], "role": role,
        "not_before": not_before, "not_after": not_after,
        "status": "active", "revoked_at": None,
        "keys": [{"kid": kid, "pub": public_key, "not_before": not_before,
                  "not_after": not_after, "revoked_at": None}],
    }
