"""The requester on a node's HTTP API (``consent.remote.HttpLedgerMember``), as ``medledger
consent request`` runs it: state reads and the rejection entry go over a real loopback port, the
delivery is checked and written with its manifest, a doctored one is rejected and recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from medledger.api.app import create_app
from medledger.api.routes_exchange import install_holder
from medledger.client.http import HttpTransport
from medledger.cluster.natsd import free_port
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Requester
from medledger.consent.model import Reason
from medledger.consent.remote import HttpLedgerMember, request_records, write_records
from medledger.consent.sources import MemorySource, SharedRecord
from medledger.errors import Code, RejectedError
from tests.support.serve import served_app
from tests.unit.consent.conftest import (  # noqa: F401 (fixtures)
    PATIENT,
    Parties,
    cons,
    grant,
    lg,
    parties,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def served(parties: Parties) -> Iterator[tuple[Parties, str]]:  # noqa: F811
    app = create_app(parties.lg.node)
    install_holder(app, parties.holder)
    with served_app(app) as url:
        yield parties, url


@dataclasses.dataclass
class Doctored:
    """A holder's source that changes each record's bytes but not its fingerprint."""

    inner: MemorySource

    def records(self, patient: str, categories: Sequence[str]) -> list[SharedRecord]:
        return [dataclasses.replace(r, body=r.body + b" ")
                for r in self.inner.records(patient, categories)]


def _requester(p: Parties, transport: HttpTransport) -> Requester:
    ring = p.lg.ring
    ledger = HttpLedgerMember(transport, p.lg.node.chain_id, "hosp-b/dr",
                              ring.signing["hosp-b/dr"], p.lg.clock)
    return Requester(ledger, ring.agreement["hosp-b"].secret)


def test_requester_over_http_checks_and_writes(served: tuple[Parties, str],
                                               tmp_path: Path) -> None:
    p, url = served
    ring = p.lg.ring
    with HttpTransport(url, "hosp-b/dr", ring.signing["hosp-b/dr"]) as transport, \
            httpx.Client(base_url=url) as http:
        requester = _requester(p, transport)
        ledger = requester.ledger
        assert ledger.chain_id == p.lg.node.chain_id and ledger.org == "hosp-b"
        assert ledger.state("consortium/member/hosp-b/dr")["role"] == "physician"
        assert ledger.state(f"consent/p/{PATIENT}") is None  # absent: None, not an error
        with pytest.raises(ExchangeError) as err:
            request_records(requester, http, "hosp-a", PATIENT, ["labs"], "referral")
        assert err.value.reason is Reason.NO_CONSENT and err.value.entry

        grant(p.lg)
        got = request_records(requester, http, "hosp-a", PATIENT, ["labs", "conditions"],
                              "referral")
        assert sorted(r.record_id for r in got.records) == ["cond-0", "lab-0", "lab-1", "lab-2"]
        manifest = json.loads(write_records(tmp_path / "out", got).read_text())
        assert manifest["entry"] == got.delivery.entry and manifest["patient"] == PATIENT
        for row in manifest["records"]:
            body = (tmp_path / "out" / row["file"]).read_bytes()
            assert hashlib.sha256(body).hexdigest() == row["fingerprint"]

        p.holder.source = Doctored(p.source)  # the served holder now doctors the bytes
        with pytest.raises(ExchangeError) as err:
            request_records(requester, http, "hosp-a", PATIENT, ["labs"], "referral")
        assert err.value.reason is Reason.TAMPERED_RECORD
        assert "bytes do not hash to the fingerprint" in err.value.message
        rejected = p.lg.state(f"access/{err.value.entry}")  # recorded through the HTTP API
        assert (rejected["outcome"], rejected["requester"]) == ("rejected", "hosp-b/dr")


def test_an_unreachable_requester_node_is_node_unavailable(
        served: tuple[Parties, str]) -> None:
    """The holder grants and records; the requester cannot check without its own node."""
    p, url = served
    grant(p.lg)
    ring = p.lg.ring
    with HttpTransport(f"http://127.0.0.1:{free_port()}", "hosp-b/dr",
                       ring.signing["hosp-b/dr"]) as nowhere, httpx.Client(base_url=url) as http, \
            pytest.raises(RejectedError) as err:
        request_records(_requester(p, nowhere), http, "hosp-a", PATIENT, ["labs"], "referral")
    assert err.value.code is Code.NODE_UNAVAILABLE
