"""k-anonymity levels computed by hand on a small extract."""

from __future__ import annotations

import pytest

from medledger.gateway.errors import GatewayError
from medledger.gateway.kanon import levels

QIS = ("birth_year", "gender")


def test_levels_count_patients_not_records() -> None:
    rows = [((1980, "male"), "p1")] * 6 + [((1981, "male"), "p2"), ((1982, "male"), "p3"),
                                           ((1983, "male"), "p4"), ((1984, "male"), "p5"),
                                           ((1990, "female"), "p6")]
    by_band = {lv.band: lv for lv in levels(rows, QIS, k=5)}
    # exact years: every class has one patient → all 11 rows suppressed
    assert (by_band[1].classes, by_band[1].smallest, by_band[1].suppressed) == (6, 1, 11)
    # 5-year bands: 1980-84 holds p1..p5 (5 patients, 10 rows); 1990 holds p6 alone
    assert (by_band[5].classes, by_band[5].smallest, by_band[5].suppressed) == (2, 1, 1)
    # 20-year bands: 1980 band male (5 patients) and 1980 band female (1 patient)
    assert by_band[20].classes == 2 and by_band[20].suppressed == 1


def test_unknown_quasi_identifier_is_refused() -> None:
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from medledger.gateway.kanon import report
    from medledger.gateway.vault import Vault

    with TemporaryDirectory() as tmp, Vault(Path(tmp)) as v:
        with pytest.raises(GatewayError, match="unknown quasi-identifiers"):
            report(v, ("zip",))
        with pytest.raises(GatewayError, match="k is 1"):
            report(v, k=1)
        assert report(v)["rows"] == 0
