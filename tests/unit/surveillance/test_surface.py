"""The package's public surface, the method dispatcher and the CLI's error paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import medledger.surveillance as surveillance
from medledger.cli import surveillance as surveillance_cli
from medledger.surveillance import METHODS, SurveillanceError, WeekRange, WeekSeries, detect
from medledger.surveillance.detect import option_names

EXPORTS = {
    "DEFAULT_SEVERE", "METHODS", "CusumControl", "Detection", "EarsControl",
    "FarringtonControl", "FlexibleControl", "MpmControl", "MpmThresholds", "SingleCaseRule",
    "SurveillanceError", "WeekRange", "WeekSeries", "cusum", "detect", "ears_c", "farrington",
    "farrington_flexible", "mpm", "read_csv", "single_case", "single_case_alerts", "write_csv",
}


def test_public_surface_does_not_drift() -> None:
    assert set(surveillance.__all__) == EXPORTS
    assert all(hasattr(surveillance, name) for name in EXPORTS)


def test_every_cli_option_is_a_control_field() -> None:
    """The CLI spells options as R does; each maps onto some method's control dataclass."""
    root = typer.main.get_command(_app())
    command = root.commands["surveillance"].commands["detect"]  # type: ignore[attr-defined]
    cli_names = {opt.lstrip("-") for p in command.params for opt in p.opts}
    plumbing = {"method", "input", "range", "output", "r-compatible", "help"}
    known = {name for m in METHODS for name in option_names(m)}
    assert cli_names - plumbing <= known
    for m in METHODS:
        assert set(option_names(m)) - {"r_compatible"} <= cli_names


def test_detect_refuses_options_of_other_methods() -> None:
    series = WeekSeries(np.ones(30))
    with pytest.raises(SurveillanceError, match=r"\['noPeriods'\] do not apply to ears-c1"):
        detect("ears-c1", series, WeekRange(10, 30), {"noPeriods": 10})
    with pytest.raises(SurveillanceError, match="unknown"):
        detect("ears-c4", series, WeekRange(10, 30))


def test_r_compatible_is_accepted_where_product_and_r_agree() -> None:
    series = WeekSeries(np.arange(30.0))
    a = detect("ears-c1", series, WeekRange(10, 30), {"r_compatible": True})
    b = detect("ears-c1", series, WeekRange(10, 30))
    assert np.array_equal(a.upperbound, b.upperbound)
    controls = [f.name for f in dataclasses.fields(surveillance.FarringtonControl)]
    assert "r_compatible" not in controls


def _app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(surveillance_cli.app, name="surveillance")
    return root


def test_cli_reports_bad_input_as_bad_args(tmp_path: Path) -> None:
    series = tmp_path / "s.csv"
    series.write_text("week_index,date,observed\n" + "".join(f"{i},,{i % 3}\n"
                                                             for i in range(1, 31)))
    runner = CliRunner()
    base = ["surveillance", "detect", "--input", str(series), "--output",
            str(tmp_path / "o.csv")]
    bad_option = runner.invoke(_app(), [*base, "--method", "cusum", "--range", "10:30",
                                        "--b", "3"])
    assert bad_option.exit_code == 2 and "bad_args" in bad_option.output
    bad_range = runner.invoke(_app(), [*base, "--method", "ears-c1", "--range", "10-30"])
    assert bad_range.exit_code == 2 and "FIRST:LAST" in bad_range.output
    no_file = runner.invoke(_app(), ["surveillance", "detect", "--input", str(tmp_path / "x"),
                                     "--output", "o.csv", "--method", "mpm", "--range", "1:2"])
    assert no_file.exit_code == 2 and "cannot read" in no_file.output
    ok = runner.invoke(_app(), [*base, "--method", "mpm", "--range", "1:30", "--b", "1"])
    assert ok.exit_code == 0, ok.output
    rows = (tmp_path / "o.csv").read_text().splitlines()
    assert rows[0] == "week_index,observed,upperbound,alarm" and len(rows) == 31
    assert rows[1] == "1,1,,"  # no reference week before week 53: undefined


def test_cli_mpm_thresholds_file(tmp_path: Path) -> None:
    y = [(i * 7) % 11 for i in range(1, 161)]
    series = tmp_path / "s.csv"
    series.write_text("week_index,date,observed\n" + "".join(
        f"{i},,{v}\n" for i, v in enumerate(y, start=1)))
    table = tmp_path / "t.csv"
    table.write_text("disease,region,percentile\nA09,,50\nA09,r1,100\n")
    runner = CliRunner()
    outputs = []
    for region in ("r1", "r2"):
        out = tmp_path / f"{region}.csv"
        result = runner.invoke(_app(), ["surveillance", "detect", "--method", "mpm", "--input",
                                        str(series), "--range", "150:160", "--output", str(out),
                                        "--thresholds", str(table), "--disease", "A09",
                                        "--region", region, "--b", "2"])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_text())
    direct = [detect("mpm", WeekSeries(np.array(y, dtype=float)), WeekRange(150, 160),
                     {"b": 2, "percentile": p}) for p in (100.0, 50.0)]
    for text, want in zip(outputs, direct, strict=True):
        bounds = [float(line.split(",")[2]) for line in text.splitlines()[1:]]
        assert bounds == want.upperbound.tolist()


@pytest.mark.parametrize(("method", "options", "message"), [
    ("farrington", {"powertrans": "3/4"}, "powertrans"),
    ("farrington-flexible", {"thresholdMethod": "nb"}, "thresholdMethod"),
    ("cusum", {"trans": "log"}, "trans"),
    ("cusum", {"m": "mean"}, "want one of \\['glm'\\]"),
    ("cusum", {"alpha": 0.0}, "overdispersion"),
    ("ears-c2", {"alpha": 1.5}, "0 < alpha < 1"),
    ("farrington-flexible", {"alpha": 0.0}, "0 < alpha < 1"),
])
def test_option_values_outside_rs_choices_are_refused(method: str, options: dict[str, object],
                                                       message: str) -> None:
    with pytest.raises(SurveillanceError, match=message):
        detect(method, WeekSeries(np.ones(400)), WeekRange(300, 301), options)


def test_package_import_does_not_load_scipy() -> None:
    """Contracts in this package run in every node; importing it must stay cheap."""
    import subprocess
    import sys

    code = ("import sys, medledger.surveillance as s; assert 'scipy' not in sys.modules; "
            "s.mpm; assert callable(s.mpm) and callable(s.detect) and callable(s.cusum); "
            "import medledger.surveillance.farrington; assert callable(s.farrington)")
    subprocess.run([sys.executable, "-c", code], check=True)
