"""The ``consortium`` contract: membership, keys, policies and quorum governance.

* Organisation admins (``<org>/root`` and any member with role ``org-admin``) enrol, revoke and
  re-key members of their own organisation.
* Adding or removing an organisation, or changing a policy, is a *proposal* that organisation
  admins approve, one approval per organisation. When approvals exceed the quorum fraction of the
  organisations active at proposal time, the change is scheduled for the proposal's
  ``effective_height`` (or the next height allowed by ``governance_min_delay``) and applied by
  ``begin_block`` at that height: every peer applies it at the same place in the chain.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medledger.consortium.genesis import ORG_ID, new_member
from medledger.consortium.model import (
    ADMIN,
    ORG_KINDS,
    ROLES,
    member_key,
    org_key,
    policy_problem,
    quorum_needed,
)
from medledger.contracts.base import Access, Args, Contract, ContractError, method
from medledger.contracts.context import Context
from medledger.crypto.keys import BadKeyError, key_id, unb64
from medledger.errors import Code

ADMINS = Access(roles=frozenset({ADMIN}))
MEMBER_ID = r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,62}$"
B64_KEY = r"^[A-Za-z0-9+/]{43}=$"


class EnrollArgs(Args):
    member: str = Field(pattern=MEMBER_ID)
    role: str
    public_key: str = Field(pattern=B64_KEY)
    not_before: int | None = Field(default=None, ge=0)
    not_after: int | None = Field(default=None, ge=0)


class MemberArgs(Args):
    member: str = Field(pattern=MEMBER_ID)
    reason: str = Field(default="", max_length=500)


class RotateArgs(Args):
    member: str = Field(pattern=MEMBER_ID)
    public_key: str = Field(pattern=B64_KEY)
    overlap_ms: int = Field(ge=0, le=90 * 86_400_000)
    not_after: int | None = Field(default=None, ge=0)


class RevokeKeyArgs(Args):
    member: str = Field(pattern=MEMBER_ID)
    kid: str = Field(pattern=r"^[0-9a-f]{16}$")


class ProposeArgs(Args):
    proposal: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    action: Literal["add_org", "remove_org", "set_policy"]
    payload: dict[str, Any]
    effective_height: int = Field(ge=1)
    expires_height: int | None = Field(default=None, ge=1)


class ApproveArgs(Args):
    proposal: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _load_member(ctx: Context, member_id: str) -> dict[str, Any]:
    m = ctx.get(member_key(member_id))
    if m is None:
        raise ContractError(Code.NOT_FOUND, f"no member {member_id}")
    return dict(m)


def _require_same_org_admin(ctx: Context, member_id: str, *, self_allowed: bool = False) -> None:
    org = member_id.split("/")[0]
    if self_allowed and ctx.caller.id == member_id:
        return
    if ctx.caller.role != ADMIN or ctx.caller.org != org:
        raise ContractError(
            Code.FORBIDDEN,
            f"got caller {ctx.caller.id} ({ctx.caller.role}), want an admin of {org}",
        )


class Consortium(Contract):
    name = "consortium"

    @method(EnrollArgs, access=ADMINS)
    def enroll(self, ctx: Context, args: EnrollArgs) -> Any:
        """Enrol a member of the caller's organisation with a role, key and validity period."""
        _require_same_org_admin(ctx, args.member)
        if args.role not in ROLES:
            raise ContractError(Code.BAD_ARGS, f"role {args.role!r} not in {sorted(ROLES)}")
        if ctx.exists(member_key(args.member)):
            raise ContractError(Code.ALREADY_EXISTS, f"member {args.member} already enrolled")
        start = ctx.time if args.not_before is None else args.not_before
        if args.not_after is not None and args.not_after <= start:
            raise ContractError(Code.BAD_ARGS, "not_after must be later than not_before")
        record = new_member(args.member, args.role, args.public_key, start, args.not_after)
        ctx.put(member_key(args.member), record)
        ctx.emit("member_enrolled", {"member": args.member, "role": args.role})
        return {"kid": record["keys"][0]["kid"]}

    @method(MemberArgs, access=ADMINS)
    def revoke_member(self, ctx: Context, args: MemberArgs) -> Any:
        """Revoke a member from this block on; its signatures are refused afterwards."""
        _require_same_org_admin(ctx, args.member)
        m = _load_member(ctx, args.member)
        if m["status"] == "revoked":
            raise ContractError(Code.INVALID_STATE, f"member {args.member} already revoked")
        m["status"], m["revoked_at"] = "revoked", ctx.time
        ctx.put(member_key(args.member), m)
        ctx.emit("member_revoked", {"member": args.member, "reason": args.reason})
        return None

    @method(RotateArgs)
    def rotate_key(self, ctx: Context, args: RotateArgs) -> Any:
        """Add a new key; the member's current keys stay valid for ``overlap_ms`` more."""
        _require_same_org_admin(ctx, args.member, self_allowed=True)
        m = _load_member(ctx, args.member)
        try:
            kid = key_id(unb64(args.public_key, length=32))
        except BadKeyError as exc:
            raise ContractError(Code.BAD_ARGS, exc.message) from None
        if any(k["kid"] == kid for k in m["keys"]):
            raise ContractError(Code.ALREADY_EXISTS, f"key {kid} already registered")
        cutoff = ctx.time + args.overlap_ms
        for k in m["keys"]:
            if k["not_after"] is None or k["not_after"] > cutoff:
                k["not_after"] = cutoff
        not_after = args.not_after if args.not_after is not None else m["not_after"]
        m["keys"].append({"kid": kid, "pub": args.public_key, "not_before": ctx.time,
                          "not_after": not_after, "revoked_at": None})
        ctx.put(member_key(args.member), m)
        ctx.emit("key_rotated", {"member": args.member, "kid": kid, "old_valid_until": cutoff})
        return {"kid": kid}

    @method(RevokeKeyArgs)
    def revoke_key(self, ctx: Context, args: RevokeKeyArgs) -> Any:
        """Revoke one key at once (a compromised key)."""
        _require_same_org_admin(ctx, args.member, self_allowed=True)
        m = _load_member(ctx, args.member)
        for k in m["keys"]:
            if k["kid"] == args.kid:
                if k["revoked_at"] is not None:
                    raise ContractError(Code.INVALID_STATE, f"key {args.kid} already revoked")
                k["revoked_at"] = ctx.time
                ctx.put(member_key(args.member), m)
                ctx.emit("key_revoked", {"member": args.member, "kid": args.kid})
                return None
        raise ContractError(Code.NOT_FOUND, f"member {args.member} has no key {args.kid}")

    @method(ProposeArgs, access=ADMINS)
    def propose(self, ctx: Context, args: ProposeArgs) -> Any:
        """Propose a governance change; the proposer's organisation approves it implicitly."""
        key = f"proposal/{args.proposal}"
        if ctx.exists(key):
            raise ContractError(Code.ALREADY_EXISTS, f"proposal {args.proposal} exists")
        self._check_payload(ctx, args.action, args.payload)
        if args.effective_height <= ctx.height:
            raise ContractError(
                Code.BAD_ARGS, f"effective_height {args.effective_height} is not after {ctx.height}"
            )
        active = self._active_orgs(ctx)
        proposal = {
            "id": args.proposal, "action": args.action, "payload": args.payload,
            "proposer": ctx.caller.id, "effective_height": args.effective_height,
            "expires_height": args.expires_height, "created_height": ctx.height,
            "needed": quorum_needed(len(active), self._policy(ctx)["governance_quorum"]),
            "electorate": sorted(active), "approvals": [], "status": "open",
            "scheduled_height": None,
        }
        self._approve(ctx, proposal)
        return {"needed": proposal["needed"], "status": proposal["status"]}

    @method(ApproveArgs, access=ADMINS)
    def approve(self, ctx: Context, args: ApproveArgs) -> Any:
        """Approve an open proposal on behalf of the caller's organisation."""
        proposal = ctx.get(f"proposal/{args.proposal}")
        if proposal is None:
            raise ContractError(Code.NOT_FOUND, f"no proposal {args.proposal}")
        if proposal["status"] != "open":
            raise ContractError(Code.INVALID_STATE, f"proposal is {proposal['status']}")
        if proposal["expires_height"] is not None and ctx.height > proposal["expires_height"]:
            raise ContractError(Code.INVALID_STATE, "proposal expired")
        self._approve(ctx, proposal)
        return {"approvals": len(proposal["approvals"]), "needed": proposal["needed"],
                "status": proposal["status"]}

    def begin_block(self, ctx: Context) -> None:
        """Apply the governance changes scheduled for this height."""
        ids = ctx.get(f"scheduled/{ctx.height}")
        if not ids:
            return
        for pid in ids:
            proposal = ctx.get(f"proposal/{pid}")
            try:  # re-check: an earlier change may have made this one impossible
                self._check_payload(ctx, proposal["action"], proposal["payload"])
            except ContractError as exc:
                proposal["status"], proposal["failure"] = "failed", f"{exc.code}: {exc.message}"
            else:
                self._apply(ctx, proposal)
                proposal["status"] = "applied"
            ctx.put(f"proposal/{pid}", proposal)
        ctx.delete(f"scheduled/{ctx.height}")

    # -- helpers --------------------------------------------------------------------------

    def _policy(self, ctx: Context) -> dict[str, Any]:
        return dict(ctx.get("config")["policies"])

    def _active_orgs(self, ctx: Context) -> list[str]:
        return list(ctx.get("config")["orgs"])

    def _approve(self, ctx: Context, proposal: dict[str, Any]) -> None:
        org = ctx.caller.org
        if org not in proposal["electorate"]:
            raise ContractError(Code.FORBIDDEN, f"organisation {org} may not vote on this")
        if org in proposal["approvals"]:
            raise ContractError(Code.CONFLICT, f"organisation {org} already approved")
        proposal["approvals"].append(org)
        ctx.emit("governance_approved", {"proposal": proposal["id"], "org": org})
        if len(proposal["approvals"]) >= proposal["needed"]:
            earliest = ctx.height + int(self._policy(ctx)["governance_min_delay"])
            at = max(proposal["effective_height"], earliest)
            proposal["status"], proposal["scheduled_height"] = "scheduled", at
            queue = list(ctx.get(f"scheduled/{at}") or [])
            ctx.put(f"scheduled/{at}", [*queue, proposal["id"]])
            ctx.emit("governance_scheduled", {"proposal": proposal["id"], "height": at})
        ctx.put(f"proposal/{proposal['id']}", proposal)

    def _check_payload(self, ctx: Context, action: str, payload: dict[str, Any]) -> None:
        if action == "add_org":
            need = {"id", "name", "kind", "sign_key", "kex_key"}
            if set(payload) != need:
                raise ContractError(Code.BAD_ARGS, f"add_org payload needs exactly {sorted(need)}")
            if any(type(v) is not str for v in payload.values()):
                raise ContractError(Code.BAD_ARGS, "add_org payload values must be strings")
            if not ORG_ID.match(str(payload["id"])) or payload["kind"] not in ORG_KINDS:
                raise ContractError(Code.BAD_ARGS, "add_org: bad id or kind")
            try:
                unb64(payload["sign_key"], length=32)
                unb64(payload["kex_key"], length=32)
            except BadKeyError as exc:
                raise ContractError(Code.BAD_ARGS, f"add_org: {exc.message}") from None
            if ctx.exists(org_key(payload["id"])):
                raise ContractError(Code.ALREADY_EXISTS, f"organisation {payload['id']} exists")
        elif action == "remove_org":
            if set(payload) != {"id"} or payload["id"] not in self._active_orgs(ctx):
                raise ContractError(Code.BAD_ARGS, "remove_org payload is {id} of an active org")
        else:
            if not payload:
                raise ContractError(Code.BAD_ARGS, "set_policy payload names no policy")
            for name, value in payload.items():
                problem = policy_problem(name, value)
                if problem is not None:
                    raise ContractError(Code.BAD_ARGS, f"set_policy: {problem}")

    def _apply(self, ctx: Context, proposal: dict[str, Any]) -> None:
        action, payload = proposal["action"], proposal["payload"]
        config = dict(ctx.get("config"))
        if action == "add_org":
            ctx.put(org_key(payload["id"]), {**payload, "status": "active", "since": ctx.time})
            root = f"{payload['id']}/root"
            ctx.put(member_key(root), new_member(root, ADMIN, payload["sign_key"], ctx.time, None))
            config["orgs"] = sorted({*config["orgs"], payload["id"]})
        elif action == "remove_org":
            org = dict(ctx.get(org_key(payload["id"])))
            org["status"], org["removed_at"] = "removed", ctx.time
            ctx.put(org_key(payload["id"]), org)
            config["orgs"] = [o for o in config["orgs"] if o != payload["id"]]
        else:
            config["policies"] = {**config["policies"], **payload}
        ctx.put("config", config)
