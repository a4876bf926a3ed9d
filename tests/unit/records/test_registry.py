"""The record registry through a real node: lineage, custody and batch anchors."""

from __future__ import annotations

from typing import Any

import orjson
from tests.conftest import Ledger

from medledger.errors import Code
from medledger.ledger.block import BlockHeader
from medledger.node.node import Receipt

H1, H2, H3 = "11" * 32, "22" * 32, "33" * 32


def register(
    lg: Ledger,
    record_id: str = "enc-1",
    member: str = "hosp-a/gw",
    content_hash: str = H1,
    **kw: Any,
) -> Receipt:
    return lg.call(
        member,
        "registry",
        "register",
        {
            "record_id": record_id,
            "record_type": "Encounter",
            "source_system": "HIS",
            "content_hash": content_hash,
            "schema_version": "fhir-r4:1",
        },
        **kw,
    )


def amend(
    lg: Ledger, content_hash: str, record_id: str = "enc-1", member: str = "hosp-a/gw"
) -> Receipt:
    return lg.call(
        member,
        "registry",
        "amend",
        {
            "record_id": record_id,
            "content_hash": content_hash,
            "schema_version": "fhir-r4:2",
            "reason": "corrected dose",
        },
    )


def record(lg: Ledger, owner: str, record_id: str = "enc-1") -> Any:
    return lg.state(f"registry/record/{owner}/{record_id}")


def test_register(ledger: Ledger) -> None:
    r = register(ledger)
    assert r.ok and r.value == {"version": 1}
    assert r.events == [
        {
            "name": "record_registered",
            "data": {"owner": "hosp-a", "record_id": "enc-1", "version": 1},
        }
    ]
    rec = record(ledger, "hosp-a")
    assert rec["owner"] == "hosp-a" and rec["status"] == "active"
    assert rec["custody"] == ["hosp-a"]
    assert (rec["record_type"], rec["source_system"]) == ("Encounter", "HIS")
    [v] = rec["versions"]
    assert v["content_hash"] == H1 and v["schema_version"] == "fhir-r4:1"
    assert v["submitter"] == "hosp-a/gw"
    assert v["height"] == r.height and v["tx"] == r.tx_id.hex()
    assert v["time"] == ledger.node.head.time


def test_duplicate_register_is_already_exists(ledger: Ledger) -> None:
    assert register(ledger).ok
    before = ledger.all_state()
    dup = register(ledger, content_hash=H2)
    assert dup.code == Code.ALREADY_EXISTS
    assert ledger.all_state() == before
    # record ids are per owner: another organisation may use the same id
    assert register(ledger, member="hosp-b/gw").ok
    assert record(ledger, "hosp-b")["owner"] == "hosp-b"


def test_amend_builds_a_version_chain(ledger: Ledger) -> None:
    first = register(ledger)
    second = amend(ledger, H2)
    assert second.ok and second.value == {"version": 2}
    third = amend(ledger, H3)
    assert third.value == {"version": 3}
    versions = record(ledger, "hosp-a")["versions"]
    assert [v["content_hash"] for v in versions] == [H1, H2, H3]
    assert [v["tx"] for v in versions] == [r.tx_id.hex() for r in (first, second, third)]
    assert [v["note"] for v in versions] == ["", "corrected dose", "corrected dose"]
    heights = [v["height"] for v in versions]
    assert heights == sorted(heights) and len(set(heights)) == 3
    # each version is provable at its height: the stored history holds every state
    for v, want in zip(versions, (1, 2, 3), strict=True):
        assert len(ledger.state_at("registry/record/hosp-a/enc-1", v["height"])["versions"]) == want
    # the same content again is a conflict, not a new version
    assert amend(ledger, H3).code == Code.CONFLICT
    assert len(record(ledger, "hosp-a")["versions"]) == 3


def test_only_the_owner_amends(ledger: Ledger) -> None:
    assert register(ledger).ok
    assert amend(ledger, H2, member="hosp-b/gw").code == Code.NOT_FOUND
    assert amend(ledger, H2, record_id="nope").code == Code.NOT_FOUND


def test_retract_keeps_history_and_stops_amendments(ledger: Ledger) -> None:
    assert register(ledger).ok
    assert amend(ledger, H2).ok
    r = ledger.call(
        "hosp-a/steward", "registry", "retract", {"record_id": "enc-1", "reason": "wrong patient"}
    )
    assert r.ok and r.events[0]["name"] == "record_retracted"
    rec = record(ledger, "hosp-a")
    assert rec["status"] == "retracted"
    assert rec["retracted"] == {
        "by": "hosp-a/steward",
        "height": r.height,
        "reason": "wrong patient",
    }
    assert [v["content_hash"] for v in rec["versions"]] == [H1, H2]
    before = ledger.all_state()
    assert amend(ledger, H3).code == Code.INVALID_STATE
    again = ledger.call(
        "hosp-a/steward", "registry", "retract", {"record_id": "enc-1", "reason": "again"}
    )
    assert again.code == Code.INVALID_STATE
    assert ledger.all_state() == before
    assert register(ledger).code == Code.ALREADY_EXISTS  # the id stays taken


def test_writers_only(ledger: Ledger) -> None:
    assert register(ledger, member="hosp-a/dr").code == Code.FORBIDDEN  # a physician
    assert register(ledger, member="cdc/analyst").code == Code.FORBIDDEN
    assert register(ledger, member="hosp-a/steward").ok
    assert register(ledger, "enc-2", member="hosp-a/root").ok


def test_transfer_needs_the_recipients_cosignature(ledger: Ledger) -> None:
    assert register(ledger).ok
    args = {"record_id": "enc-1", "to_org": "hosp-b"}
    before = ledger.all_state()
    alone = ledger.call("hosp-a/steward", "registry", "transfer", args)
    assert alone.code == Code.MISSING_COSIGNATURE
    # a co-signature from the wrong organisation or the wrong role does not count
    wrong_org = ledger.call(
        "hosp-a/steward", "registry", "transfer", args, cosigners=["cdc/analyst"]
    )
    assert wrong_org.code == Code.MISSING_COSIGNATURE
    wrong_role = ledger.call(
        "hosp-a/steward", "registry", "transfer", args, cosigners=["hosp-b/gw"]
    )
    assert wrong_role.code == Code.MISSING_COSIGNATURE
    assert ledger.all_state() == before
    # a gateway may not hand records over even with the co-signature
    gw = ledger.call("hosp-a/gw", "registry", "transfer", args, cosigners=["hosp-b/steward"])
    assert gw.code == Code.FORBIDDEN
    r = ledger.call("hosp-a/steward", "registry", "transfer", args, cosigners=["hosp-b/steward"])
    assert r.ok, r
    assert r.events == [
        {
            "name": "record_transferred",
            "data": {"record_id": "enc-1", "from": "hosp-a", "to": "hosp-b"},
        }
    ]
    moved = record(ledger, "hosp-b")
    assert moved["owner"] == "hosp-b" and moved["custody"] == ["hosp-a", "hosp-b"]
    assert [v["content_hash"] for v in moved["versions"]] == [H1]
    assert record(ledger, "hosp-a") == {"moved_to": "hosp-b", "height": r.height}
    # the new owner amends; the old one no longer can
    assert amend(ledger, H2, member="hosp-b/gw").ok
    assert amend(ledger, H3, member="hosp-a/gw").code == Code.NOT_FOUND


def test_transfer_refusals(ledger: Ledger) -> None:
    assert register(ledger).ok
    assert register(ledger, member="hosp-b/gw").ok  # hosp-b already holds an enc-1
    taken = ledger.call(
        "hosp-a/steward",
        "registry",
        "transfer",
        {"record_id": "enc-1", "to_org": "hosp-b"},
        cosigners=["hosp-b/steward"],
    )
    assert taken.code == Code.ALREADY_EXISTS
    missing = ledger.call(
        "hosp-a/steward",
        "registry",
        "transfer",
        {"record_id": "nope", "to_org": "hosp-b"},
        cosigners=["hosp-b/steward"],
    )
    assert missing.code == Code.NOT_FOUND


def test_anchor_batch(ledger: Ledger) -> None:
    args = {
        "batch_id": "2025-11-27",
        "root": "ab" * 32,
        "count": 250_000,
        "record_type": "Observation",
        "source_system": "LIS",
        "schema_version": "1",
    }
    r = ledger.call("hosp-a/gw", "registry", "anchor_batch", args)
    assert r.ok and r.value is None
    assert r.events == [
        {
            "name": "batch_anchored",
            "data": {"owner": "hosp-a", "batch_id": "2025-11-27", "count": 250_000},
        }
    ]
    batch = ledger.state("registry/batch/hosp-a/2025-11-27")
    assert (batch["root"], batch["count"], batch["submitter"], batch["tx"]) == (
        "ab" * 32,
        250_000,
        "hosp-a/gw",
        r.tx_id.hex(),
    )
    assert ledger.call("hosp-a/gw", "registry", "anchor_batch", args).code == Code.ALREADY_EXISTS
    assert ledger.call("hosp-b/gw", "registry", "anchor_batch", args).ok  # per owner
    for bad in ({"count": 0}, {"root": "AB" * 32}, {"root": "ab"}, {"batch_id": "a b"}):
        assert (
            ledger.call(
                "hosp-a/gw", "registry", "anchor_batch", {**args, "batch_id": "other", **bad}
            ).code
            == Code.BAD_ARGS
        )


def test_invalid_transactions_stay_in_their_block_and_change_nothing(ledger: Ledger) -> None:
    assert register(ledger).ok
    before = ledger.all_state()
    raws = [
        ledger.build(
            "hosp-a/gw",
            "registry",
            "register",
            {
                "record_id": "enc-1",
                "record_type": "Encounter",
                "source_system": "HIS",
                "content_hash": H2,
                "schema_version": "1",
            },
        ),  # already_exists
        ledger.build(
            "hosp-a/gw",
            "registry",
            "amend",
            {"record_id": "enc-1", "content_hash": H1, "schema_version": "1", "reason": ""},
        ),  # conflict: same hash
        ledger.build(
            "hosp-a/dr",
            "registry",
            "register",
            {
                "record_id": "enc-9",
                "record_type": "Encounter",
                "source_system": "HIS",
                "content_hash": H2,
                "schema_version": "1",
            },
        ),  # forbidden
    ]
    receipts = [f.result(10) for f in ledger.node.submit_many(raws)]
    assert [r.code for r in receipts] == [Code.ALREADY_EXISTS, Code.CONFLICT, Code.FORBIDDEN]
    assert ledger.all_state() == before  # not even a nonce is consumed
    for raw, r in zip(raws, receipts, strict=True):
        rec = ledger.store.tx(r.tx_id)
        assert rec is not None and rec.raw == raw
        assert orjson.loads(rec.result)["code"] == r.code
        assert r.value is None and r.events == [] and r.message
        block = ledger.store.block(r.height)
        assert block is not None
        assert block.first_index <= r.index < block.first_index + block.tx_count
        assert BlockHeader.decode(block.header).txs == block.tx_count
        assert ledger.node.receipt(r.tx_id) == r


def test_lineage_follows_versions_and_transfers(ledger: Any) -> None:
    from medledger.records.registry import lineage

    reg = {"record_id": "lin-1", "record_type": "Encounter", "source_system": "HIS",
           "content_hash": "11" * 32, "schema_version": "1"}
    assert ledger.ok("hosp-a/gw", "registry", "register", reg)
    assert ledger.ok("hosp-a/gw", "registry", "amend", {
        "record_id": "lin-1", "content_hash": "22" * 32, "schema_version": "2", "reason": "fix"})
    assert ledger.ok("hosp-a/steward", "registry", "transfer",
                     {"record_id": "lin-1", "to_org": "hosp-b"}, cosigners=["hosp-b/steward"])
    history = lineage(ledger.store, "hosp-a", "lin-1")
    assert [h["owner"] for h in history] == ["hosp-a", "hosp-b"]
    assert history[0]["moved_to"] == "hosp-b"
    assert [v["content_hash"] for v in history[1]["versions"]] == ["11" * 32, "22" * 32]
    assert history[1]["custody"] == ["hosp-a", "hosp-b"]
    import pytest

    with pytest.raises(KeyError):
        lineage(ledger.store, "hosp-b", "never")
