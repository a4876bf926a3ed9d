"""A site's own append-only audit log: hash-chained JSON lines that survive a restart, refuse a
broken chain, are served over HTTP, and cross-check with the ledger (one-byte changes too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.unit.research.conftest import make_sites
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway

from medledger.research import audit
from medledger.research.errors import ResearchError
from medledger.research.federation import Federation
from medledger.research.http import site_app
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site
from medledger.research.sitelog import GENESIS, SiteLog, read_log


def logged(tmp_path: Path) -> tuple[StudyHarness, list[Site]]:
    """Four sites with log files; a moments query and a 3-round GLM recorded on the ledger."""
    h = StudyHarness()
    active(h, "s1", analyses=["glm", "moments"])
    sites = [Site(name, s.columns, s.policy, audit_path=tmp_path / f"{name}.log")
             for s, name in zip(make_sites([300, 400, 900, 1500]), SITES, strict=True)]
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    fed = Federation(sites, study="s1", recorder=rec)
    fed.moments("bmi")
    fed.glm("binomial", "event", ["age", "smoker"])
    return h, sites


def test_chain_appends_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "site.log"
    log = SiteLog(path)
    assert log.entries == [] and log.head == GENESIS
    first = log.append({"study": "s1", "query": "aa" * 32, "outcome": "released"})
    again = SiteLog(path)  # a restarted site continues the chain
    assert again.entries == log.entries and again.head == first
    second = again.append({"study": "s1", "query": "bb" * 32, "outcome": "refused:min_rows"})
    entries, problems, head = read_log(path.read_bytes())
    assert problems == [] and head == second and len(entries) == 2
    lines = path.read_bytes().splitlines()
    assert b'"prev":"' + first.encode() + b'"' in lines[1]


def test_site_log_file_holds_what_the_site_answered(tmp_path: Path) -> None:
    h, sites = logged(tmp_path)
    for s in sites:
        entries, problems, _ = read_log((tmp_path / f"{s.name}.log").read_bytes())
        assert problems == [] and entries == s.audit and len(entries) >= 3
        assert audit.cross_check_file(h.state, "s1", s.name, tmp_path / f"{s.name}.log") == []
    # a restarted site reads its log back, then appends to the same chain
    back = Site(sites[0].name, sites[0].columns, audit_path=tmp_path / "hosp-a.log")
    assert back.audit == sites[0].audit


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_byte_change_anywhere_in_the_log_is_detected(tmp_path: Path, where: str) -> None:
    h, _ = logged(tmp_path)
    path = tmp_path / "hosp-b.log"
    raw = bytearray(path.read_bytes())
    lines = bytes(raw).split(b"\n")[:-1]
    line = {"first": 0, "middle": len(lines) // 2, "last": len(lines) - 1}[where]
    start = sum(len(x) + 1 for x in lines[:line])
    for offset in range(len(lines[line])):  # every byte of that line, one at a time
        raw[start + offset] ^= 0x01
        path.write_bytes(bytes(raw))
        problems = audit.cross_check_file(h.state, "s1", "hosp-b", path)
        assert problems and problems[0].startswith(f"hosp-b: log hosp-b.log line {line + 1}"), \
            (offset, problems)
        with pytest.raises(ResearchError, match="broken"):  # the site refuses to continue it
            SiteLog(path)
        raw[start + offset] ^= 0x01
    path.write_bytes(bytes(raw))
    assert audit.cross_check_file(h.state, "s1", "hosp-b", path) == []


def test_log_and_ledger_disagreements(tmp_path: Path) -> None:
    h, sites = logged(tmp_path)
    # a consistently re-chained log that claims a response the ledger does not have
    forged = SiteLog(tmp_path / "forged.log")
    for e in sites[1].audit:
        forged.append(e)
    forged.append({**sites[1].audit[-1], "response": "ee" * 32})
    assert audit.cross_check_file(h.state, "s1", "hosp-b", tmp_path / "forged.log") == [
        f"hosp-b: q{len(sites[1].audit)} differs between the site's log and the ledger"]
    # a log that lost its last entry (truncated at a line boundary): the ledger has more
    short = SiteLog(tmp_path / "short.log")
    for e in sites[2].audit[:-1]:
        short.append(e)
    assert audit.cross_check_file(h.state, "s1", "hosp-c", tmp_path / "short.log") == [
        f"hosp-c: the ledger records q{len(sites[2].audit)} but the site's log does not"]
    # a log entry for a query the ledger never recorded
    ghost = SiteLog(tmp_path / "ghost.log")
    for e in [*sites[0].audit, {**sites[0].audit[0], "query": "99" * 32}]:
        ghost.append(e)
    got = audit.cross_check_file(h.state, "s1", "hosp-a", tmp_path / "ghost.log")
    assert got == ["hosp-a: answered a query that is not on the ledger (9999999999999999…)"]
    # an incomplete last line (a torn write) is a broken log, not silently ignored
    torn = tmp_path / "torn.log"
    torn.write_bytes((tmp_path / "hosp-d.log").read_bytes()[:-5])
    assert "incomplete" in audit.cross_check_file(h.state, "s1", "hosp-d", torn)[0]
    with pytest.raises(ResearchError, match="broken"):
        Site("hosp-d", sites[3].columns, audit_path=torn)


def test_http_site_serves_its_log_file(tmp_path: Path) -> None:
    h, sites = logged(tmp_path)
    with TestClient(site_app(sites[2])) as http:
        r = http.get("/audit-log")
    assert r.status_code == 200 and r.content == (tmp_path / "hosp-c.log").read_bytes()
    fetched = tmp_path / "fetched.log"
    fetched.write_bytes(r.content)
    assert audit.cross_check_file(h.state, "s1", "hosp-c", fetched) == []
