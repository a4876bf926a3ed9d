"""A run recorded on the ``studies`` contract: query before dispatch, responses by the sites,
result; the bundle verifies, and a one-byte change anywhere is detected."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.research.conftest import make_sites
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway

from medledger.contracts.base import ContractError
from medledger.research import audit
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder


def recorded(tmp_path: Path, secure: bool = False) -> tuple[StudyHarness, Federation, Path]:
    h = StudyHarness()
    active(h, "s1", analyses=["glm", "moments"])
    sites = make_sites([300, 400, 900, 1500])
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    fed = Federation(sites, study="s1", secure=secure, recorder=rec)
    fed.moments("bmi")
    fed.glm("binomial", "event", ["age", "smoker"])
    bundle = tmp_path / "bundle"
    audit.write_bundle(bundle, fed.trail)
    return h, fed, bundle


@pytest.mark.parametrize("secure", [False, True])
def test_bundle_verifies_against_the_ledger(tmp_path: Path, secure: bool) -> None:
    h, fed, bundle = recorded(tmp_path, secure)
    checked, problems = audit.verify(h.state, "s1", bundle)
    assert problems == []
    assert checked == len(fed.trail) * (2 + len(SITES))
    assert h.get("response/s1/q1/hosp-c")["policy_hash"] == fed.sites[2].policy.digest()


def test_one_byte_change_is_detected(tmp_path: Path) -> None:
    h, _, bundle = recorded(tmp_path)
    for name in ("q1/query.json", "q2/response-hosp-b.json", "q3/result.json"):
        path = bundle / name
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        _, problems = audit.verify(h.state, "s1", bundle)
        assert len(problems) == 1 and problems[0].startswith(name)
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
    assert audit.verify(h.state, "s1", bundle)[1] == []


def test_query_outside_protocol_refused_before_any_site_is_asked(tmp_path: Path) -> None:
    h = StudyHarness()
    active(h, "s1", analyses=["moments"])
    sites = make_sites([300, 400, 900, 1500])
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a), {})
    with pytest.raises(ContractError):
        Federation(sites, study="s1", recorder=rec).glm("gaussian", "sbp", ["age"])
    assert all(s.audit == [] for s in sites)


def test_site_logs_cross_check_with_the_ledger(tmp_path: Path) -> None:
    h, fed, _ = recorded(tmp_path)
    for site in fed.sites:
        assert audit.cross_check(h.state, "s1", site.name, site.audit) == []  # type: ignore[attr-defined]
    log = [dict(e) for e in fed.sites[1].audit]  # type: ignore[attr-defined]
    log[2]["response"] = "00" * 32  # the site's record disagrees with what the ledger holds
    assert audit.cross_check(h.state, "s1", "hosp-b", log) == ["hosp-b: q3 differs between "
                                                               "the site's log and the ledger"]
    shorter = fed.sites[2].audit[1:]  # type: ignore[attr-defined]
    problems = audit.cross_check(h.state, "s1", "hosp-c", shorter)
    assert problems == ["hosp-c: the ledger records q1 but the site's log does not"]
