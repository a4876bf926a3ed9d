"""Nothing row-level leaves a site: the egress allow-list, an instrumented transport, and a
canary planted in site data that must never appear in a message, result, error or log."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest
from tests.unit.research.conftest import make_sites

from medledger.research import audit, egress
from medledger.research.federation import Federation
from medledger.research.site import Site

CANARY_NAME = "CANARY-Zq81-patient"
CANARY_BMI = 47.1234567891


class Tap:
    """A transport that records every outbound message of a site (and what it raised)."""

    def __init__(self, site: Site, seen: list[str]) -> None:
        self.site, self.name, self.seen = site, site.name, seen

    def answer(self, query: Any) -> dict[str, Any]:
        try:
            msg = self.site.answer(query)
        except Exception as exc:
            self.seen.append(str(exc))
            raise
        self.seen.append(json.dumps(msg))
        n_rows = len(self.site.columns["age"])
        for v in (msg.get("values") or {}).values():
            assert np.asarray(v).size not in (n_rows, int(np.sum(self.site.columns[
                "consent_research"])))
        return msg

    def public_key(self) -> bytes:
        return self.site.public_key()

    def recover(self, *a: Any) -> list[str]:
        out = self.site.recover(*a)
        self.seen.append(json.dumps(out))
        return out


def planted() -> list[Site]:
    sites = make_sites([300, 401, 903, 1507])
    cols = dict(sites[1].columns)
    bmi = np.array(cols["bmi"], dtype=float)
    bmi[0] = CANARY_BMI
    cols["bmi"] = bmi
    cols["name"] = np.array([f"P{i}" for i in range(len(bmi))], dtype=object)
    cols["name"][0] = CANARY_NAME
    cols["consent_research"] = np.array(cols["consent_research"], dtype=bool)
    cols["consent_research"][0] = True
    sites[1].columns = cols
    return sites


@pytest.mark.parametrize("secure", [False, True])
def test_canary_never_leaves(secure: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    sites = planted()
    fed = Federation([Tap(s, seen) for s in sites], secure=secure)  # type: ignore[arg-type]
    results = [fed.moments("bmi"), fed.glm("gaussian", "sbp", ["age", "bmi"]).coef.tolist(),
               fed.quantiles("bmi", [0.0, 18, 22, 26, 30, 34, 80], [0.5]),
               fed.crosstab({"sex": ["F", "M"]}).tolist()]
    for bad in ({"levels": {"name": ["P1", "P2", "P3"]}}, {"variable": "name"}):
        with pytest.raises(Exception):  # noqa: B017 - any refusal; its text is checked below
            fed.run("crosstab" if "levels" in bad else "moments", bad)
    text = "\n".join([*seen, repr(results), json.dumps(audit.jsonable(fed.trail),
                                                        default=str), caplog.text])
    for needle in (CANARY_NAME, repr(CANARY_BMI), "47.12345"):
        assert needle not in text
    assert len(seen) >= 8


def test_allow_list_refuses_other_shapes() -> None:
    q = {"analysis": "moments", "params": {"variable": "x"}}
    ok = {"site": "a", "analysis": "moments", "policy": "0" * 64, "n": 5,
          "values": {"total": 1.0, "sum_sq": 2.0}}
    egress.check("a", q, ok)
    bad = [{**ok, "values": {"total": [1.0, 2.0], "sum_sq": 2.0}},
           {**ok, "values": {"total": "1.0", "sum_sq": 2.0}},
           {**ok, "rows": [1, 2]},
           {**ok, "policy": "not a hash"},
           {**ok, "site": "b"}]
    for msg in bad:
        with pytest.raises(egress.EgressRefused):
            egress.check("a", q, msg)
