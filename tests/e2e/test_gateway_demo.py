"""``medledger demo --gateway`` runs end to end and every check it makes passes; the gateway
CLI works from a shell's point of view (synth → keygen → ingest → evaluate → verify)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.demo import gateway as gateway_demo

pytestmark = pytest.mark.slow


def test_gateway_demo_passes() -> None:
    result = gateway_demo.run(rows=80)
    lines = dict(result.lines)
    assert result.ok, result.lines
    assert "emitted as valid: 0" in lines["injected defects"]
    assert "[REJECTED: encoding]" in lines["hosp-c reconciliation"]
    assert lines["gateway verify vs ledger"].count("OK") == 3


def test_gateway_cli_round_trip(tmp_path: Path) -> None:
    run = CliRunner().invoke
    assert run(app, ["gateway", "synth", str(tmp_path / "syn"), "--rows", "40",
                     "--persons", "30"]).exit_code == 0
    assert run(app, ["gateway", "keygen", str(tmp_path / "pk.json")]).exit_code == 0
    again = run(app, ["gateway", "keygen", str(tmp_path / "pk.json")])
    assert again.exit_code == 2 and "already_exists" in again.output
    assert run(app, ["init", "--dir", str(tmp_path / "ws")]).exit_code == 0
    vaults = []
    for site in ("hosp-a", "hosp-b", "hosp-c"):
        files = sorted(str(p) for p in (tmp_path / "syn" / site).iterdir()
                       if not p.name.endswith(".toml"))
        vault = str(tmp_path / "v" / site)
        vaults += ["--vault", vault]
        out = run(app, ["gateway", "ingest", *files, "--vault", vault, "--pseudonym-key",
                        str(tmp_path / "pk.json"), "--ledger", str(tmp_path / "ws"), "--json"])
        assert out.exit_code == 0, out.output
        doc = json.loads(out.output)
        assert all(f["balanced"] for f in doc["files"])
        ver = run(app, ["gateway", "verify", "--vault", vault, "--ledger", str(tmp_path / "ws")])
        assert ver.exit_code == 0, ver.output
    ev = run(app, ["gateway", "evaluate", "--truth", str(tmp_path / "syn" / "truth.csv"),
                   *vaults, "--json"])
    assert ev.exit_code == 0
    assert json.loads(ev.output)["defects_emitted"] == 0
    bad = run(app, ["gateway", "ingest", str(tmp_path / "syn" / "truth.csv"), "--vault",
                    str(tmp_path / "v" / "x"), "--pseudonym-key", str(tmp_path / "pk.json")])
    assert bad.exit_code == 2 and "cannot read profile" in bad.output


def test_gateway_cli_reading_commands(tmp_path: Path) -> None:
    run = CliRunner().invoke
    syn, vault, key = tmp_path / "syn", str(tmp_path / "v"), str(tmp_path / "pk.json")
    assert run(app, ["gateway", "synth", str(syn), "--rows", "40", "--persons", "30"]
               ).exit_code == 0
    assert run(app, ["gateway", "keygen", key]).exit_code == 0
    files = sorted(str(p) for p in (syn / "hosp-a").iterdir())     # *.toml are skipped
    assert run(app, ["gateway", "ingest", *files, "--vault", vault, "--pseudonym-key", key,
                     "--json"]).exit_code == 0
    report = json.loads(run(app, ["gateway", "report", "--vault", vault, "--json"]).output)
    assert {r["source_name"] for r in report} >= {"hosp-a/labs.csv", "hosp-a/adt-oru.hl7"}
    q = json.loads(run(app, ["gateway", "quarantine", "--vault", vault, "--json"]).output)
    assert q and {"source_name", "position", "reason", "detail"} == set(q[0])
    items = json.loads(run(app, ["gateway", "review", "list", "--vault", vault, "--json"]
                           ).output)
    assert items and items[0]["status"] == "open"
    ign = json.loads(run(app, ["gateway", "ignored", "--vault", vault, "--json"]).output)
    assert ign["by_reason"]
    assert run(app, ["gateway", "export", str(tmp_path / "view.ndjson"), "--vault", vault]
               ).exit_code == 0
    first = json.loads((tmp_path / "view.ndjson").read_text().splitlines()[0])
    proof = json.loads(run(app, ["gateway", "proof", first["record_id"], "--vault", vault]
                           ).output)
    assert proof["fingerprint"] == first["fingerprint"]
    k = run(app, ["gateway", "kanon", "--vault", vault, "--k", "2", "--json"])
    assert k.exit_code in (0, 1) and "levels" in json.loads(k.output)
    pending = run(app, ["gateway", "verify", "--vault", vault, "--json"])
    assert pending.exit_code == 0 and json.loads(pending.output)["pending"] == 1
    fhir = tmp_path / "b.json"
    from medledger.gateway.synth import fhir_export

    fhir_export(fhir)
    out = run(app, ["gateway", "ingest-fhir", str(fhir), "--site", "hosp-a", "--vault", vault,
                    "--pseudonym-key", key, "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["files"][0]["accounted"]
