"""The ``registry`` contract: provenance of records that stay at home.

A data holder registers a record's fingerprint (never its content): owner organisation, source
system, record type, content hash, schema/mapping version and submitter. Amending adds a version
linked to the previous one; retracting marks the record retracted; nothing is ever erased, so a
record's lineage can always be read back and proven.

Gateways anchoring millions of records use ``anchor_batch``: one transaction carries the RFC 9162
Merkle root over many fingerprints (``medledger.records.batch``), and each record is later proven
with a Merkle inclusion proof into that root.

Record ids are opaque identifiers chosen by the owner (``[A-Za-z0-9._:-]``, at most 128
characters) and must not be derived from patient identity without a consortium key.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from pydantic import Field

from medledger.contracts.base import Access, Args, Contract, ContractError, Cosign, method
from medledger.contracts.context import Context
from medledger.errors import Code

RECORD_ID = r"^[A-Za-z0-9._:-]{1,128}$"
HASH_HEX = r"^[0-9a-f]{64}$"
TEXT = r"^[A-Za-z0-9._:/ -]{1,64}$"
WRITERS = Access(roles=frozenset({"gateway", "data-steward", "org-admin"}))
STEWARDS = frozenset({"data-steward", "org-admin"})


class RegisterArgs(Args):
    record_id: str = Field(pattern=RECORD_ID)
    record_type: str = Field(pattern=TEXT)
    source_system: str = Field(pattern=TEXT)
    content_hash: str = Field(pattern=HASH_HEX)
    schema_version: str = Field(pattern=TEXT)


class AmendArgs(Args):
    record_id: str = Field(pattern=RECORD_ID)
    content_hash: str = Field(pattern=HASH_HEX)
    schema_version: str = Field(pattern=TEXT)
    reason: str = Field(max_length=500)


class RetractArgs(Args):
    record_id: str = Field(pattern=RECORD_ID)
    reason: str = Field(min_length=1, max_length=500)


class TransferArgs(Args):
    record_id: str = Field(pattern=RECORD_ID)
    to_org: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")


class AnchorBatchArgs(Args):
    batch_id: str = Field(pattern=RECORD_ID)
    root: str = Field(pattern=HASH_HEX)
    count: int = Field(ge=1, le=2**40)
    record_type: str = Field(pattern=TEXT)
    source_system: str = Field(pattern=TEXT)
    schema_version: str = Field(pattern=TEXT)


def record_key(owner: str, record_id: str) -> str:
    return f"record/{owner}/{record_id}"


def _version(ctx: Context, content_hash: str, schema: str, note: str = "") -> dict[str, Any]:
    return {"content_hash": content_hash, "schema_version": schema, "submitter": ctx.caller.id,
            "height": ctx.height, "time": ctx.time, "tx": ctx.tx_id, "note": note}


class RecordRegistry(Contract):
    name = "registry"

    @method(RegisterArgs, access=WRITERS,
            reads=lambda a, org: [f"registry/{record_key(org, str(a['record_id']))}"])
    def register(self, ctx: Context, args: RegisterArgs) -> Any:
        """Register a new record fingerprint owned by the caller's organisation."""
        key = record_key(ctx.caller.org, args.record_id)
        if ctx.exists(key):
            raise ContractError(Code.ALREADY_EXISTS, f"record {args.record_id} already registered")
        ctx.put(key, {
            "owner": ctx.caller.org, "record_id": args.record_id,
            "record_type": args.record_type, "source_system": args.source_system,
            "status": "active", "custody": [ctx.caller.org],
            "versions": [_version(ctx, args.content_hash, args.schema_version)],
        })
        ctx.emit("record_registered", {"owner": ctx.caller.org, "record_id": args.record_id,
                                       "version": 1})
        return {"version": 1}

    @method(AmendArgs, access=WRITERS,
            reads=lambda a, org: [f"registry/{record_key(org, str(a['record_id']))}"])
    def amend(self, ctx: Context, args: AmendArgs) -> Any:
        """Add a new version linked to the previous one."""
        key, rec = self._own_active(ctx, args.record_id)
        if rec["versions"][-1]["content_hash"] == args.content_hash:
            raise ContractError(Code.CONFLICT, "content hash equals the current version's")
        rec["versions"].append(_version(ctx, args.content_hash, args.schema_version, args.reason))
        ctx.put(key, rec)
        version = len(rec["versions"])
        ctx.emit("record_amended", {"owner": ctx.caller.org, "record_id": args.record_id,
                                    "version": version})
        return {"version": version}

    @method(RetractArgs, access=WRITERS)
    def retract(self, ctx: Context, args: RetractArgs) -> Any:
        """Mark a record retracted; its history stays."""
        key, rec = self._own_active(ctx, args.record_id)
        rec["status"] = "retracted"
        rec["retracted"] = {"by": ctx.caller.id, "height": ctx.height, "reason": args.reason}
        ctx.put(key, rec)
        ctx.emit("record_retracted", {"owner": ctx.caller.org, "record_id": args.record_id})
        return None

    @method(
        TransferArgs,
        access=Access(roles=STEWARDS),
        cosign=lambda a: [Cosign(org=a.to_org, roles=STEWARDS)],
    )
    def transfer(self, ctx: Context, args: TransferArgs) -> Any:
        """Hand custody of a record to another organisation; both must sign."""
        key, rec = self._own_active(ctx, args.record_id)
        if ctx.read("consortium", f"org/{args.to_org}") is None:
            raise ContractError(Code.NOT_FOUND, f"no organisation {args.to_org}")
        new_key = record_key(args.to_org, args.record_id)
        if ctx.exists(new_key):
            raise ContractError(Code.ALREADY_EXISTS, f"{args.to_org} already holds that id")
        rec["custody"].append(args.to_org)
        rec["owner"] = args.to_org
        ctx.put(new_key, rec)
        ctx.put(key, {"moved_to": args.to_org, "height": ctx.height})
        ctx.emit("record_transferred", {"record_id": args.record_id, "from": ctx.caller.org,
                                        "to": args.to_org})
        return None

    @method(AnchorBatchArgs, access=WRITERS,
            reads=lambda a, org: [f"registry/batch/{org}/{a['batch_id']}"])
    def anchor_batch(self, ctx: Context, args: AnchorBatchArgs) -> Any:
        """Anchor the Merkle root of many record fingerprints at once."""
        key = f"batch/{ctx.caller.org}/{args.batch_id}"
        if ctx.exists(key):
            raise ContractError(Code.ALREADY_EXISTS, f"batch {args.batch_id} already anchored")
        ctx.put(key, {"owner": ctx.caller.org, "root": args.root, "count": args.count,
                      "record_type": args.record_type, "source_system": args.source_system,
                      "schema_version": args.schema_version, "submitter": ctx.caller.id,
                      "height": ctx.height, "time": ctx.time, "tx": ctx.tx_id})
        ctx.emit("batch_anchored", {"owner": ctx.caller.org, "batch_id": args.batch_id,
                                    "count": args.count})
        return None

    def _own_active(self, ctx: Context, record_id: str) -> tuple[str, dict[str, Any]]:
        key = record_key(ctx.caller.org, record_id)
        rec = ctx.get(key)
        if rec is None or "moved_to" in rec:
            raise ContractError(Code.NOT_FOUND, f"{ctx.caller.org} holds no record {record_id}")
        if rec["status"] != "active":
            raise ContractError(Code.INVALID_STATE, f"record {record_id} is {rec['status']}")
        return key, dict(rec)


class StateGetter(Protocol):
    def get_state(self, key: str) -> bytes | None: ...


def lineage(state: StateGetter, owner: str, record_id: str) -> list[dict[str, Any]]:
    """A record's whole history: every custodian's view, oldest first, following transfers.

    Each entry is ``{"owner", "versions", "status", "moved_to"}``; raises KeyError if the record
    was never registered by ``owner``.
    """
    out: list[dict[str, Any]] = []
    org: str | None = owner
    while org is not None:
        raw = state.get_state(f"registry/{record_key(org, record_id)}")
        if raw is None:
            if not out:
                raise KeyError(f"{owner} never registered {record_id}")
            break
        rec = orjson.loads(raw)
        if "moved_to" in rec:
            out.append({"owner": org, "moved_to": rec["moved_to"], "height": rec["height"]})
            org = rec["moved_to"]
            continue
        out.append({"owner": org, "status": rec["status"], "custody": rec["custody"],
                    "versions": rec["versions"], "moved_to": None})
        org = None
    return out
