"""A consortium with a patient app, a second physician, an auditor and an insurer gateway; a
running node; holder (hosp-a) and requester (hosp-b) gateways; one patient's records anchored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import CHAIN, MEMBERS, ORGS, T0, Clock, Consortium, Ledger, _start_node

from medledger.consent.exchange import Holder, LedgerMember, Requester
from medledger.consent.sources import MemorySource
from medledger.consortium.bootstrap import new_consortium

PATIENT = "k1-" + "ab" * 16
OTHER = "k1-" + "cd" * 16
FORM = "f0" * 32
CONSENT_MEMBERS = [*MEMBERS, ("hosp-b/dr", "physician"), ("hosp-b/nurse", "nurse"),
                   ("patients/p1", "patient-agent"), ("hosp-a/auditor", "auditor"),
                   ("insurer/gw", "gateway"), ("hosp-b/clerk", "service")]


@pytest.fixture
def cons() -> Consortium:
    genesis, ring = new_consortium(CHAIN, [*ORGS, ("patients", "Patient App", "patient-app")],
                                   T0, CONSENT_MEMBERS)
    return Consortium(genesis, ring)


@pytest.fixture
def lg(tmp_path: Path, cons: Consortium, clock: Clock) -> Iterator[Ledger]:
    node = _start_node(tmp_path / "ledger.db", cons, clock)
    yield Ledger(node, cons.ring, clock)
    node.stop()
    node.store.close()


@dataclass
class Parties:
    lg: Ledger
    source: MemorySource
    holder: Holder
    requester: Requester
    member: Callable[[str], LedgerMember]


def grant(lg: Ledger, consent_id: str = "c1", member: str = "hosp-a/steward", **kw: object) -> None:
    args: dict[str, object] = {
        "consent_id": consent_id, "patient": PATIENT, "purpose": "referral",
        "categories": ["labs", "conditions"], "recipient_org": "hosp-b", "start": T0,
        "end": T0 + 86_400_000, "evidence": FORM}
    args.update(kw)
    args = {k: v for k, v in args.items() if v is not None}
    lg.ok(member, "consent", "grant", args)


@pytest.fixture
def parties(lg: Ledger, cons: Consortium) -> Parties:
    source = MemorySource("consent-b1")
    for i in range(3):
        source.add(PATIENT, "labs", f"lab-{i}", f'{{"lab":{i}}}'.encode())
    source.add(PATIENT, "conditions", "cond-0", b'{"condition":"J10"}')
    source.add(OTHER, "labs", "lab-x", b'{"lab":"x"}')
    lg.ok("hosp-a/gw", "registry", "anchor_batch", source.anchor_args())

    def member(mid: str) -> LedgerMember:
        return LedgerMember(lg.node, mid, cons.ring.signing[mid], lg.clock)

    holder = Holder(member("hosp-a/gw"), source)
    requester = Requester(member("hosp-b/dr"), cons.ring.agreement["hosp-b"].secret)
    return Parties(lg, source, holder, requester, member)
