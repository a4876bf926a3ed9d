"""FHIR R4 Bundle and NDJSON input: mapped, quarantined, reviewed or ignored — every resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.pipeline import Gateway
from medledger.gateway.scan import pattern_leaks
from medledger.gateway.synth import fhir_export
from medledger.gateway.vault import Vault

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("ndjson", [False, True])
def test_fhir_export_is_accounted_for(tmp_path: Path, ndjson: bool) -> None:
    path = tmp_path / ("export.ndjson" if ndjson else "bundle.json")
    want = fhir_export(path, ndjson=ndjson)
    with Vault(tmp_path / "v") as v:
        gw = Gateway(v, Pseudonymizer(PseudonymKey("k1", b"\x04" * 32)))
        rep = gw.ingest_fhir(path, "hosp-a", "FHIR API")
        gw.finish()
        assert rep.accounted and rep.segments == want["resources"]
        emitted = sum(f.emitted for f in rep.files)
        assert emitted == want["mapped"]
        assert sum(f.review for f in rep.files) == want["review"]
        assert sum(f.quarantined for f in rep.files) == want["quarantined"]
        assert sum(rep.ignored.values()) == want["ignored"]
        reasons = {r[0] for r in v.rows("SELECT reason FROM quarantine")}
        assert "missing_key" in reasons and "parse" in reasons
        # the text-only 慢阻肺 (entry/line 3n+1) was mapped by the consortium synonyms
        text_only = str(3 * 20 + 1)
        got = v.rows("SELECT outcome, code FROM outcomes WHERE position=?", (text_only,))
        assert [tuple(r) for r in got] == [("mapped", "J44.9")]
        held = v.rows("SELECT term, reason FROM review")
        assert [tuple(r) for r in held] == [("消渴病", "no_standard_equivalent")]
        patients = v.rows("SELECT body, version, record_id FROM records WHERE "
                          "resource_type='Patient'")
        text = b"".join(v.record_body(r[2], r[1], r[0]) for r in patients).decode()
        assert len(patients) == 20
        assert not pattern_leaks(text) and "telecom" not in text and '"name"' not in text
