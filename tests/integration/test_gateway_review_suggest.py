"""The review queue (decide once, reuse, apply) and profile suggestion on the synthetic
hospitals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from medledger.gateway import review, service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.errors import GatewayError
from medledger.gateway.pipeline import iter_reports
from medledger.gateway.profile import Profile
from medledger.gateway.suggest import suggest
from medledger.gateway.synth import generate
from medledger.gateway.vault import Vault
from medledger.gateway.verify import verify

pytestmark = pytest.mark.integration
KEY = PseudonymKey("k1", b"\x09" * 32)


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    generate(root, seed=5, persons=80, rows=120)
    return root


def _ingest(vault: Vault, files: list[Path]) -> None:
    service.ingest_files(vault, KEY, service.load_profiles(files, None))


def test_decide_apply_and_reuse(syn: Path, tmp_path: Path) -> None:
    with Vault(tmp_path / "v") as v:
        _ingest(v, [syn / "hosp-a" / "diagnoses.csv"])
        items = review.items(v)
        assert items and all(i.candidates for i in items if i.reason == "no_exact_match")
        typo = next(i for i in items if i.term == "hypertensoin")
        assert typo.candidates[0]["target"] == "I10"
        with pytest.raises(GatewayError, match="not a WHO"):
            review.decide(v, typo.id, "I99.99", "steward")
        same = [i for i in items if i.term == "hypertensoin"]
        assert review.decide(v, typo.id, "I10", "steward") == len(same)
        before = next(iter_reports(v))
        counts = review.apply(v, KEY)
        assert counts == {"applied": len(same), "quarantined": 0}
        after = next(iter_reports(v))
        assert after["emitted"] == before["emitted"] + len(same)
        assert after["review"] == before["review"] - len(same) and after["balanced"]
        got = v.rows("SELECT outcome, code FROM outcomes WHERE position=? ORDER BY rowid DESC",
                     (typo.position,))
        assert tuple(got[0]) == ("mapped", "I10")
        assert verify(v).ok
        # a later file reuses the decision: the typo no longer goes to review
        _ingest(v, [syn / "hosp-c" / "diagnoses.csv"])
        later = v.rows("SELECT count(*) FROM review WHERE term='hypertensoin' AND "
                       "source_name='hosp-c/diagnoses.csv'")[0][0]
        assert later == 0


def test_tcm_cannot_be_coded(syn: Path, tmp_path: Path) -> None:
    with Vault(tmp_path / "v") as v:
        _ingest(v, [syn / "hosp-b" / "diagnoses.tsv"])
        tcm = [i for i in review.items(v, limit=500) if i.reason == "no_standard_equivalent"]
        assert tcm and all(not i.candidates for i in tcm)
        with pytest.raises(GatewayError, match="no standard equivalent"):
            review.decide(v, tcm[0].id, "E11.9", "steward")
        assert review.decide(v, tcm[0].id, review.NO_EQUIVALENT, "steward") >= 1
        assert review.apply(v, KEY) == {"applied": 0, "quarantined": 0}


def test_suggest_drafts_a_loadable_profile(syn: Path, tmp_path: Path) -> None:
    s = suggest(syn / "hosp-b" / "labs.tsv", encoding="gbk", site="hosp-e")
    elements = {c.element: c.header for c in s.columns if c.element}
    assert elements["patient_id"] == "身份证号" and elements["value"] == "结果"
    assert s.kind == "lab"
    top = {c.header: c.top for c in s.columns}
    assert all(n == "<5" or int(n) >= 5 for _, n in top["身份证号"])   # small counts hidden
    assert any(t["term"] == "Ferritin" and not t["accepted"] for t in s.terms)
    assert all(t["accepted"] == (t["method"] != "review") for t in s.terms)
    doc = tomllib.loads(s.draft.replace('source_system = "TODO"', 'source_system = "LIS"'))
    prof = Profile.model_validate(doc)
    assert prof.profile.date_formats == ["zh"] and prof.profile.encoding == "gbk"
    with pytest.raises(GatewayError, match="encoding"):
        suggest(syn / "hosp-b" / "labs.tsv", encoding="utf-8")
    c = suggest(syn / "hosp-c" / "diagnoses.csv", site="hosp-d")
    assert '[values.sex]' in c.draft and '# "1" = "TODO"' in c.draft   # never guessed
    assert Profile.model_validate(tomllib.loads(c.draft)).values == {"sex": {}}


def test_unseen_spellings_go_to_review_never_to_a_wrong_code(tmp_path: Path) -> None:
    from medledger.gateway.evaluate import evaluate

    root = tmp_path / "syn"
    names = generate(root, seed=8, persons=60, rows=150, unseen=0.3)
    vaults = []
    for site in ("hosp-a", "hosp-b", "hosp-c"):
        v = Vault(tmp_path / site)
        service.ingest_export_dir(v, KEY, [root / n for n in names if n.startswith(site)], site)
        vaults.append(v)
    doc = evaluate(vaults, root / "truth.csv").to_doc()
    for v in vaults:
        v.close()
    assert doc["wrong_auto_accepted"] == 0 and doc["defects_emitted"] == 0
    missed = [e for e in doc["first_errors"] if e["category"] == "diagnosis"]
    assert missed and all(e["got"].startswith("review") for e in missed)
    assert 0.7 < doc["categories"]["diagnosis"]["rate"] < 1.0
