"""Consortium governance through a real node: members, keys, and quorum proposals."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import ORGS, Ledger, make_consortium

from medledger.consortium.genesis import GenesisError, validate
from medledger.crypto.keys import AgreementKey, SigningKey, b64
from medledger.errors import Code, RejectedError
from medledger.ledger.block import BlockHeader

ADMIN_OF = {org: f"{org}/root" for org, _, _ in ORGS}


def refused(lg: Ledger, raw: bytes) -> Code:
    with pytest.raises(RejectedError) as info:
        lg.submit(raw)
    return info.value.code


def outcome(lg: Ledger, raw: bytes) -> str:
    """The reason code whether ingress refuses the bytes or a block records them as invalid."""
    try:
        return lg.submit(raw).code
    except RejectedError as exc:
        return str(exc.code)


def enroll(lg: Ledger, admin: str, member: str, role: str, **extra: Any) -> SigningKey:
    key = SigningKey.generate()
    lg.ok(
        admin,
        "consortium",
        "enroll",
        {"member": member, "role": role, "public_key": b64(key.public), **extra},
    )
    lg.ring.signing[member] = key
    return key


def anchor(lg: Ledger, member: str, n: int, **kw: Any) -> bytes:
    return lg.build(
        member,
        "registry",
        "anchor_batch",
        {
            "batch_id": f"b-{member.replace('/', '-')}-{n}",
            "root": f"{n:064x}",
            "count": 1,
            "record_type": "Lab",
            "source_system": "LIS",
            "schema_version": "1",
        },
        **kw,
    )


# -- members ---------------------------------------------------------------------------------------


def test_admin_enrols_a_member_of_its_own_org(ledger: Ledger) -> None:
    key = SigningKey.generate()
    r = ledger.ok(
        "hosp-a/root",
        "consortium",
        "enroll",
        {"member": "hosp-a/gw2", "role": "gateway", "public_key": b64(key.public)},
    )
    assert r.value == {"kid": key.kid}
    assert r.events == [
        {"name": "member_enrolled", "data": {"member": "hosp-a/gw2", "role": "gateway"}}
    ]
    m = ledger.state("consortium/member/hosp-a/gw2")
    assert (m["org"], m["role"], m["status"]) == ("hosp-a", "gateway", "active")
    assert [k["kid"] for k in m["keys"]] == [key.kid]
    ledger.ring.signing["hosp-a/gw2"] = key
    assert ledger.submit(anchor(ledger, "hosp-a/gw2", 1)).ok


def test_only_own_org_admins_enrol_and_revoke(ledger: Ledger) -> None:
    key = b64(SigningKey.generate().public)
    args = {"member": "hosp-a/x", "role": "gateway", "public_key": key}
    assert ledger.call("hosp-b/root", "consortium", "enroll", args).code == Code.FORBIDDEN
    assert ledger.call("hosp-a/gw", "consortium", "enroll", args).code == Code.FORBIDDEN
    assert ledger.call("hosp-a/steward", "consortium", "enroll", args).code == Code.FORBIDDEN
    assert ledger.state("consortium/member/hosp-a/x") is None
    # an enrolled org-admin other than root may enrol for its own organisation
    enroll(ledger, "hosp-a/root", "hosp-a/admin2", "org-admin")
    assert ledger.call("hosp-a/admin2", "consortium", "enroll", args).ok
    for who in ("hosp-b/root", "hosp-a/gw", "cdc/analyst"):
        r = ledger.call(who, "consortium", "revoke_member", {"member": "hosp-a/x"})
        assert r.code == Code.FORBIDDEN
    assert ledger.state("consortium/member/hosp-a/x")["status"] == "active"


def test_enrol_refusals(ledger: Ledger) -> None:
    key = b64(SigningKey.generate().public)
    dup = {"member": "hosp-a/gw", "role": "gateway", "public_key": key}
    assert ledger.call("hosp-a/root", "consortium", "enroll", dup).code == Code.ALREADY_EXISTS
    bad_role = {"member": "hosp-a/y", "role": "wizard", "public_key": key}
    assert ledger.call("hosp-a/root", "consortium", "enroll", bad_role).code == Code.BAD_ARGS
    backwards = {
        "member": "hosp-a/z",
        "role": "nurse",
        "public_key": key,
        "not_before": ledger.clock() + 10,
        "not_after": ledger.clock() + 5,
    }
    assert ledger.call("hosp-a/root", "consortium", "enroll", backwards).code == Code.BAD_ARGS


def test_revoked_member_is_refused_at_ingress(ledger: Ledger) -> None:
    enroll(ledger, "hosp-a/root", "hosp-a/gw2", "gateway")
    assert ledger.submit(anchor(ledger, "hosp-a/gw2", 1)).ok
    r = ledger.ok(
        "hosp-a/root", "consortium", "revoke_member", {"member": "hosp-a/gw2", "reason": "left"}
    )
    m = ledger.state("consortium/member/hosp-a/gw2")
    assert m["status"] == "revoked"
    assert m["revoked_at"] == ledger.node.head.time
    assert r.events[0]["name"] == "member_revoked"
    size = ledger.log_size
    assert refused(ledger, anchor(ledger, "hosp-a/gw2", 2)) == Code.MEMBER_REVOKED
    assert ledger.log_size == size
    again = ledger.call("hosp-a/root", "consortium", "revoke_member", {"member": "hosp-a/gw2"})
    assert again.code == Code.INVALID_STATE
    missing = ledger.call("hosp-a/root", "consortium", "revoke_member", {"member": "hosp-a/nobody"})
    assert missing.code == Code.NOT_FOUND


def test_tx_admitted_before_revocation_is_invalid_in_the_block(ledger: Ledger) -> None:
    enroll(ledger, "hosp-a/root", "hosp-a/gw2", "gateway")
    revoke = ledger.build("hosp-a/root", "consortium", "revoke_member", {"member": "hosp-a/gw2"})
    late = anchor(ledger, "hosp-a/gw2", 1)
    f1, f2 = ledger.node.submit_many([revoke, late])  # both admitted; revocation ordered first
    assert f1.result(10).ok
    r = f2.result(10)
    assert r.code == Code.MEMBER_REVOKED
    assert ledger.state("registry/batch/hosp-a/b-hosp-a-gw2-1") is None


# -- keys ------------------------------------------------------------------------------------------


def test_key_rotation_with_overlap(ledger: Ledger) -> None:
    old = ledger.ring.signing["hosp-a/gw"]
    new = SigningKey.generate()
    ledger.clock.advance(5_000)
    r = ledger.ok(
        "hosp-a/gw",
        "consortium",
        "rotate_key",
        {"member": "hosp-a/gw", "public_key": b64(new.public), "overlap_ms": 60_000},
    )
    rotated_at = ledger.node.head.time
    assert rotated_at == ledger.clock()
    assert r.value == {"kid": new.kid}
    assert r.events[0]["data"]["old_valid_until"] == rotated_at + 60_000
    keys = {k["kid"]: k for k in ledger.state("consortium/member/hosp-a/gw")["keys"]}
    assert keys[old.kid]["not_after"] == rotated_at + 60_000
    assert keys[new.kid]["not_before"] == rotated_at
    # during the overlap both keys work
    ledger.clock.advance(59_999)
    assert ledger.submit(anchor(ledger, "hosp-a/gw", 1, key=old)).ok
    assert ledger.submit(anchor(ledger, "hosp-a/gw", 2, key=new)).ok
    # from the end of the overlap only the new key does
    ledger.clock.advance(1)
    assert refused(ledger, anchor(ledger, "hosp-a/gw", 3, key=old)) == Code.KEY_EXPIRED
    assert ledger.submit(anchor(ledger, "hosp-a/gw", 4, key=new)).ok
    # the same key cannot be added twice
    again = ledger.call(
        "hosp-a/gw",
        "consortium",
        "rotate_key",
        {"member": "hosp-a/gw", "public_key": b64(new.public), "overlap_ms": 0},
        key=new,
    )
    assert again.code == Code.ALREADY_EXISTS


def test_rotation_by_another_member_is_forbidden(ledger: Ledger) -> None:
    args = {"member": "hosp-a/gw", "public_key": b64(SigningKey.generate().public), "overlap_ms": 0}
    assert ledger.call("hosp-a/steward", "consortium", "rotate_key", args).code == Code.FORBIDDEN
    assert ledger.call("hosp-b/root", "consortium", "rotate_key", args).code == Code.FORBIDDEN
    assert ledger.call("hosp-a/root", "consortium", "rotate_key", args).ok  # own org's admin


def test_key_revocation_ends_the_overlap_at_once(ledger: Ledger) -> None:
    old = ledger.ring.signing["hosp-a/gw"]
    new = SigningKey.generate()
    ledger.ok(
        "hosp-a/gw",
        "consortium",
        "rotate_key",
        {"member": "hosp-a/gw", "public_key": b64(new.public), "overlap_ms": 86_400_000},
    )
    assert ledger.submit(anchor(ledger, "hosp-a/gw", 1, key=old)).ok
    ledger.ok("hosp-a/root", "consortium", "revoke_key", {"member": "hosp-a/gw", "kid": old.kid})
    assert refused(ledger, anchor(ledger, "hosp-a/gw", 2, key=old)) == Code.KEY_REVOKED
    assert ledger.submit(anchor(ledger, "hosp-a/gw", 3, key=new)).ok
    again = ledger.call(
        "hosp-a/root", "consortium", "revoke_key", {"member": "hosp-a/gw", "kid": old.kid}
    )
    assert again.code == Code.INVALID_STATE
    unknown = ledger.call(
        "hosp-a/root", "consortium", "revoke_key", {"member": "hosp-a/gw", "kid": "0" * 16}
    )
    assert unknown.code == Code.NOT_FOUND
    other_org = ledger.call(
        "hosp-b/root", "consortium", "revoke_key", {"member": "hosp-a/gw", "kid": new.kid}
    )
    assert other_org.code == Code.FORBIDDEN


def test_expired_membership_refuses_signatures(ledger: Ledger) -> None:
    until = ledger.clock() + 10_000
    enroll(ledger, "hosp-a/root", "hosp-a/temp", "gateway", not_after=until)
    assert ledger.submit(anchor(ledger, "hosp-a/temp", 1)).ok
    ledger.clock.now = until
    assert refused(ledger, anchor(ledger, "hosp-a/temp", 2)) == Code.KEY_EXPIRED


# -- proposals -------------------------------------------------------------------------------------


def new_org_payload(org_id: str = "clinic-x") -> tuple[dict[str, str], SigningKey]:
    root = SigningKey.generate()
    return {
        "id": org_id,
        "name": "Clinic X",
        "kind": "clinic",
        "sign_key": b64(root.public),
        "kex_key": b64(AgreementKey.generate().public),
    }, root


def propose(
    lg: Ledger,
    pid: str,
    action: str,
    payload: dict[str, Any],
    effective: int,
    by: str = "hosp-a/root",
    **extra: Any,
) -> Any:
    return lg.call(
        by,
        "consortium",
        "propose",
        {
            "proposal": pid,
            "action": action,
            "payload": payload,
            "effective_height": effective,
            **extra,
        },
    )


def approve(lg: Ledger, pid: str, org: str) -> Any:
    return lg.call(ADMIN_OF[org], "consortium", "approve", {"proposal": pid})


def test_add_org_needs_four_of_six_and_applies_at_its_height(ledger: Ledger) -> None:
    payload, clinic_root = new_org_payload()
    effective = ledger.node.height + 12
    r = propose(ledger, "add-clinic", "add_org", payload, effective)
    assert r.ok and r.value == {"needed": 4, "status": "open"}  # more than half of 6
    # approvals count once per organisation, whoever of its admins gives them
    assert approve(ledger, "add-clinic", "hosp-a").code == Code.CONFLICT
    enroll(ledger, "hosp-a/root", "hosp-a/admin2", "org-admin")
    second = ledger.call("hosp-a/admin2", "consortium", "approve", {"proposal": "add-clinic"})
    assert second.code == Code.CONFLICT
    not_admin = ledger.call("hosp-b/steward", "consortium", "approve", {"proposal": "add-clinic"})
    assert not_admin.code == Code.FORBIDDEN
    for org, count in (("hosp-b", 2), ("cdc", 3)):
        r = approve(ledger, "add-clinic", org)
        assert r.ok and r.value == {"approvals": count, "needed": 4, "status": "open"}
    assert approve(ledger, "add-clinic", "cdc").code == Code.CONFLICT
    assert ledger.state("consortium/proposal/add-clinic")["approvals"] == [
        "hosp-a",
        "hosp-b",
        "cdc",
    ]
    r = approve(ledger, "add-clinic", "research")
    assert r.value == {"approvals": 4, "needed": 4, "status": "scheduled"}
    assert {
        "name": "governance_scheduled",
        "data": {"proposal": "add-clinic", "height": effective},
    } in r.events
    assert approve(ledger, "add-clinic", "pharmacy").code == Code.INVALID_STATE
    assert ledger.node.height < effective
    ledger.advance_to(effective)
    store = ledger.store
    # not before the scheduled height, exactly at it
    assert store.state_at("consortium/org/clinic-x", effective - 1) is None
    written = store.state_at("consortium/org/clinic-x", effective)
    assert written is not None and written[0] == effective
    assert "clinic-x" not in ledger.state_at("consortium/config", effective - 1)["orgs"]
    assert "clinic-x" in ledger.state_at("consortium/config", effective)["orgs"]
    assert ledger.state_at("consortium/proposal/add-clinic", effective - 1)["status"] == "scheduled"
    assert ledger.state_at("consortium/proposal/add-clinic", effective)["status"] == "applied"
    assert ledger.state("consortium/org/clinic-x")["status"] == "active"
    # the new organisation's root key signs for it
    ledger.ring.signing["clinic-x/root"] = clinic_root
    enroll(ledger, "clinic-x/root", "clinic-x/gw", "gateway")
    # and the next proposal counts seven organisations
    r = propose(ledger, "p-next", "set_policy", {"tx_max_future_ms": 1000}, ledger.node.height + 5)
    assert r.value == {"needed": 4, "status": "open"}
    assert ledger.state("consortium/proposal/p-next")["electorate"] == sorted(
        [o for o, _, _ in ORGS] + ["clinic-x"]
    )


def test_proposal_below_quorum_is_never_applied(ledger: Ledger) -> None:
    payload, _ = new_org_payload()
    effective = ledger.node.height + 3
    assert propose(ledger, "p", "add_org", payload, effective).ok
    assert approve(ledger, "p", "hosp-b").ok
    assert approve(ledger, "p", "cdc").ok
    ledger.advance_to(effective + 3)
    assert ledger.state("consortium/org/clinic-x") is None
    assert ledger.state("consortium/proposal/p")["status"] == "open"
    # a late fourth approval schedules it for the next block (governance_min_delay = 1)
    r = approve(ledger, "p", "insurer")
    assert r.value["status"] == "scheduled"
    approved_at = r.height
    assert ledger.state("consortium/proposal/p")["scheduled_height"] == approved_at + 1
    ledger.advance_to(approved_at + 1)
    assert ledger.store.state_at("consortium/org/clinic-x", approved_at) is None
    assert ledger.state_at("consortium/org/clinic-x", approved_at + 1)["status"] == "active"


def test_remove_org_refuses_its_members(ledger: Ledger) -> None:
    effective = ledger.node.height + 6
    assert propose(ledger, "rm-insurer", "remove_org", {"id": "insurer"}, effective).ok
    for org in ("hosp-b", "cdc", "research"):
        assert approve(ledger, "rm-insurer", org).ok
    enroll(ledger, "insurer/root", "insurer/a", "auditor")
    ledger.advance_to(effective)
    assert ledger.state_at("consortium/org/insurer", effective - 1)["status"] == "active"
    removed = ledger.state_at("consortium/org/insurer", effective)
    block = ledger.store.block(effective)
    assert block is not None
    assert removed["status"] == "removed"
    assert removed["removed_at"] == BlockHeader.decode(block.header).time
    assert "insurer" in ledger.state_at("consortium/config", effective - 1)["orgs"]
    assert "insurer" not in ledger.state_at("consortium/config", effective)["orgs"]
    before = ledger.all_state()
    for member in ("insurer/root", "insurer/a"):
        raw = ledger.build(
            member,
            "consortium",
            "enroll",
            {
                "member": "insurer/b",
                "role": "auditor",
                "public_key": b64(SigningKey.generate().public),
            },
        )
        assert outcome(ledger, raw) == Code.ORG_INACTIVE
    assert ledger.all_state() == before
    # five organisations remain: more than half is three
    r = propose(ledger, "p-after", "set_policy", {"tx_max_future_ms": 1000}, ledger.node.height + 5)
    assert r.value == {"needed": 3, "status": "open"}


def test_set_policy_changes_the_quorum(ledger: Ledger) -> None:
    effective = ledger.node.height + 6
    assert propose(
        ledger, "q", "set_policy", {"governance_quorum": {"num": 2, "den": 3}}, effective
    ).ok
    for org in ("hosp-b", "cdc", "research"):
        assert approve(ledger, "q", org).ok
    ledger.advance_to(effective)
    assert ledger.state_at("consortium/config", effective - 1)["policies"]["governance_quorum"] == {
        "num": 1,
        "den": 2,
    }
    assert ledger.state_at("consortium/config", effective)["policies"]["governance_quorum"] == {
        "num": 2,
        "den": 3,
    }
    r = propose(ledger, "after", "set_policy", {"tx_max_future_ms": 1000}, ledger.node.height + 5)
    assert r.value == {"needed": 5, "status": "open"}  # more than 2/3 of 6


def test_quorum_from_genesis_policy(make_ledger: Any) -> None:
    lg = make_ledger(make_consortium({"governance_quorum": {"num": 2, "den": 3}}))
    payload, _ = new_org_payload()
    effective = lg.node.height + 10
    assert propose(lg, "p", "add_org", payload, effective).value == {"needed": 5, "status": "open"}
    for org in ("hosp-b", "cdc", "research"):
        assert approve(lg, "p", org).value["status"] == "open"
    assert lg.state("consortium/proposal/p")["status"] == "open"
    assert approve(lg, "p", "pharmacy").value == {
        "approvals": 5,
        "needed": 5,
        "status": "scheduled",
    }
    lg.advance_to(effective)
    assert lg.store.state_at("consortium/org/clinic-x", effective - 1) is None
    assert lg.state_at("consortium/org/clinic-x", effective)["kind"] == "clinic"


def test_proposal_refusals(ledger: Ledger) -> None:
    payload, _ = new_org_payload()
    h = ledger.node.height
    # effective height must be in the future
    assert propose(ledger, "p", "add_org", payload, h).code == Code.BAD_ARGS
    assert propose(ledger, "p", "add_org", payload, h + 5).ok
    assert (
        propose(ledger, "p", "add_org", payload, h + 5, by="hosp-b/root").code
        == Code.ALREADY_EXISTS
    )
    assert approve(ledger, "nope", "hosp-b").code == Code.NOT_FOUND
    assert (
        ledger.call(
            "hosp-a/gw",
            "consortium",
            "propose",
            {
                "proposal": "q",
                "action": "remove_org",
                "payload": {"id": "cdc"},
                "effective_height": h + 9,
            },
        ).code
        == Code.FORBIDDEN
    )
    existing = {**new_org_payload("hosp-b")[0]}
    assert propose(ledger, "q1", "add_org", existing, h + 9).code == Code.ALREADY_EXISTS
    assert propose(ledger, "q2", "remove_org", {"id": "nobody"}, h + 9).code == Code.BAD_ARGS
    assert propose(ledger, "q3", "set_policy", {"no_such_policy": 1}, h + 9).code == Code.BAD_ARGS
    assert propose(ledger, "q4", "set_policy", {}, h + 9).code == Code.BAD_ARGS
    assert propose(ledger, "q5", "frobnicate", {}, h + 9).code == Code.BAD_ARGS


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("add_org", {"id": "x", "name": "X", "kind": [], "sign_key": "a", "kex_key": "b"}),
        ("add_org", {"id": "x", "name": "X", "kind": "clinic", "sign_key": 5, "kex_key": "b"}),
        (
            "add_org",
            {"id": "x", "name": "X", "kind": "clinic", "sign_key": "abc=", "kex_key": "abc="},
        ),
        ("set_policy", {"tx_max_age_ms": "one hour"}),
        ("set_policy", {"tx_max_age_ms": -1}),
        ("set_policy", {"governance_min_delay": 0}),
        ("set_policy", {"governance_quorum": {"num": 1, "den": 0}}),
        ("set_policy", {"governance_quorum": {"num": 3, "den": 3}}),
        ("set_policy", {"governance_quorum": {"num": 1}}),
        ("set_policy", {"governance_quorum": {"num": True, "den": 3}}),
    ],
)
def test_malformed_payloads_are_refused_and_the_node_keeps_running(
    ledger: Ledger, action: str, payload: dict[str, Any]
) -> None:
    # regression: these used to raise TypeError/AttributeError inside the block (stopping the
    # node) or be accepted and break every later block once applied
    raw = ledger.build(
        "hosp-a/root",
        "consortium",
        "propose",
        {
            "proposal": "p",
            "action": action,
            "payload": payload,
            "effective_height": ledger.node.height + 3,
        },
    )
    assert outcome(ledger, raw) == Code.BAD_ARGS
    assert ledger.filler().ok


@pytest.mark.parametrize(
    "policies",
    [
        {"tx_max_age_ms": "x"},
        {"governance_quorum": {"num": 1, "den": 1}},
        {"governance_min_delay": 0},
        {"unknown": 1},
    ],
)
def test_genesis_refuses_bad_policies(policies: dict[str, Any]) -> None:
    with pytest.raises(GenesisError):
        make_consortium(policies)


def test_expired_proposal_cannot_be_approved(ledger: Ledger) -> None:
    h = ledger.node.height
    assert propose(
        ledger, "p", "set_policy", {"tx_max_future_ms": 1000}, h + 10, expires_height=h + 2
    ).ok
    assert approve(ledger, "p", "hosp-b").ok  # at h + 2
    assert approve(ledger, "p", "cdc").code == Code.INVALID_STATE


@pytest.mark.parametrize(
    ("field", "value"),
    [("chain_id", "test-1\n"), ("chain_id", "Test"), ("time", -1), ("time", "now")],
)
def test_genesis_refuses_bad_fields(field: str, value: Any) -> None:
    doc = dict(make_consortium().genesis.doc)
    doc[field] = value
    with pytest.raises(GenesisError):
        validate(doc)


def test_genesis_refuses_bad_org_ids() -> None:
    doc = {**make_consortium().genesis.doc, "members": []}
    validate({**doc, "orgs": doc["orgs"][:1]})
    for bad in ("hosp-a\n", "Hosp", "", "-x"):
        doc["orgs"] = [{**doc["orgs"][0], "id": bad}]
        with pytest.raises(GenesisError):
            validate(doc)


def test_second_add_of_the_same_org_fails_when_applied(ledger: Ledger) -> None:
    first, _ = new_org_payload()
    second, _ = new_org_payload()
    assert first["id"] == second["id"] and first["sign_key"] != second["sign_key"]
    effective = ledger.node.height + 12
    for pid in ("add-1", "add-2"):
        assert propose(ledger, pid, "add_org", first if pid == "add-1" else second, effective).ok
        for org in ("hosp-b", "cdc", "research"):
            assert approve(ledger, pid, org).ok
    ledger.advance_to(effective)
    assert ledger.state("consortium/proposal/add-1")["status"] == "applied"
    failed = ledger.state("consortium/proposal/add-2")
    assert failed["status"] == "failed" and failed["failure"].startswith("already_exists")
    assert ledger.state("consortium/org/clinic-x")["sign_key"] == first["sign_key"]
