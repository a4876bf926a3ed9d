"""All published HL7 v2 test messages in ../shared/vectors/hl7v2 go through the gateway
without a crash: every segment is mapped (then emitted, quarantined, duplicate or sent to
review) or listed as ignored with a reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.pipeline import Gateway
from medledger.gateway.vault import Vault

pytestmark = [pytest.mark.integration, pytest.mark.vectors]
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "hl7v2"


def test_every_vector_is_accounted_for(tmp_path: Path) -> None:
    files = sorted(VECTORS.glob("*.hl7"))
    assert len(files) == 139
    with Vault(tmp_path / "v") as vault:
        gw = Gateway(vault, Pseudonymizer(PseudonymKey("k1", b"\x05" * 32)))
        totals: Counter[str] = Counter()
        for f in files:
            rep = gw.ingest_hl7(f, "hosp-a", "HL7 feed")
            assert rep.accounted, rep.to_doc()
            assert rep.messages >= 1
            for fr in rep.files:
                assert fr.balanced, fr.to_doc()
                totals.update({"rows": fr.rows_in, "emitted": fr.emitted,
                               "quarantined": fr.quarantined, "review": fr.review})
            totals["ignored"] += sum(rep.ignored.values())
            totals["segments"] += rep.segments
        gw.finish()
        assert totals["rows"] + totals["ignored"] == totals["segments"]
        assert totals["emitted"] > 0 and totals["review"] > 0
        kinds = {r[0] for r in vault.rows("SELECT DISTINCT resource_type FROM records")}
        assert {"Patient", "Observation", "MedicationRequest", "MedicationDispense"} <= kinds
        ignored = vault.rows("SELECT count(*) FROM ignored")[0][0]
        assert ignored == totals["ignored"]
        reasons = {r[0] for r in vault.rows("SELECT DISTINCT reason FROM ignored")}
        assert "SIU messages are not mapped" in reasons


def test_bom_and_line_endings(tmp_path: Path) -> None:
    src = (VECTORS / "ORU-R01-01.hl7").read_bytes().lstrip(b"\xef\xbb\xbf")
    variants = {"bom.hl7": b"\xef\xbb\xbf" + src, "crlf.hl7": src.replace(b"\n", b"\r\n"),
                "cr.hl7": src.replace(b"\n", b"\r")}
    with Vault(tmp_path / "v") as vault:
        gw = Gateway(vault, Pseudonymizer(PseudonymKey("k1", b"\x05" * 32)))
        segs = set()
        for name, data in variants.items():
            (tmp_path / name).write_bytes(data)
            rep = gw.ingest_hl7(tmp_path / name, "hosp-a", "HL7 feed")
            assert rep.accounted
            segs.add(rep.segments)
        assert len(segs) == 1


def test_undecodable_hl7_is_quarantined_whole(tmp_path: Path) -> None:
    p = tmp_path / "bad.hl7"
    p.write_bytes("MSH|^~\\&|A|B\rPID|1||1^^^X||王^伟\r".encode("gbk"))
    with Vault(tmp_path / "v") as vault:
        gw = Gateway(vault, Pseudonymizer(PseudonymKey("k1", b"\x05" * 32)))
        rep = gw.ingest_hl7(p, "hosp-a", "HL7 feed")
        assert rep.files[0].status == "rejected"
        assert dict(rep.files[0].reasons) == {"encoding": rep.files[0].rows_in}
