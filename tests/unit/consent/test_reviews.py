"""The break-glass entries flagged for the holder's auditor, pending until reviewed."""

from __future__ import annotations

import pytest
from tests.unit.consent.conftest import PATIENT, Parties

from medledger.consent.errors import ExchangeError
from medledger.consent.reviews import flagged
from medledger.errors import Code, MedLedgerError


def test_flagged_lists_break_glass_entries_until_the_auditor_reviews_them(
        parties: Parties) -> None:
    p = parties
    with pytest.raises(ExchangeError):  # a refused attempt is flagged too
        p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "treatment", " ", 5))
    p.holder.handle(p.requester.request("hosp-a", PATIENT, ["labs"], "treatment",
                                        "unconscious in A&E", 30))
    pending = flagged(p.lg.store, "hosp-a")
    assert [(i["entry"]["outcome"], i["entry"]["reason"]) for i in pending] == [
        ("denied", "justification_required"), ("granted", "break_glass")]
    assert all(i["status"] == "pending" and i["key"].startswith(f"e/{PATIENT}/")
               for i in pending)
    p.lg.ok("hosp-a/auditor", "access", "review", {"entry": pending[1]["key"],
                                                    "decision": "justified", "note": "seen"})
    assert [i["key"] for i in flagged(p.lg.store, "hosp-a")] == [pending[0]["key"]]
    every = flagged(p.lg.store, "hosp-a", pending_only=False)
    assert [i["status"] for i in every] == ["pending", "justified"]
    assert every[1]["review"]["by"] == "hosp-a/auditor"
    assert flagged(p.lg.store, "hosp-b") == []
    with pytest.raises(MedLedgerError) as err:
        flagged(p.lg.store, "Hosp A")
    assert err.value.code is Code.BAD_ARGS
