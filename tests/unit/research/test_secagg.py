"""Pairwise masking: sums are right, uploads are masked, < 3 refused, dropouts recover or abort."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.research.conftest import make_sites

from medledger.research import secagg
from medledger.research.errors import ResearchError
from medledger.research.federation import Federation, SiteUnavailable
from medledger.research.secagg import Masker, Round
from medledger.research.site import Site


def setup(k: int) -> tuple[list[Masker], dict[str, bytes]]:
    ms = [Masker(f"s{i}") for i in range(k)]
    return ms, {m.name: m.public for m in ms}


def test_sum_is_exact_to_fixed_point_and_uploads_are_masked() -> None:
    ms, peers = setup(5)
    rng = random.Random(1)
    vals = [[rng.uniform(-1e6, 1e6) for _ in range(8)] for _ in ms]
    rnd = Round("r", peers, 8)
    for m, v in zip(ms, vals, strict=True):
        up = m.mask("r", peers, v)
        assert up != secagg.encode(v)
        rnd.upload(m.name, up)
    got = rnd.total()
    want = np.sum(vals, axis=0)
    assert np.max(np.abs(np.asarray(got) - want)) <= 5 * 2.0 ** -secagg.SCALE_BITS * 1e6


def test_upload_reveals_nothing_obvious() -> None:
    ms, peers = setup(3)
    up = ms[0].mask("r", peers, [1.0, 1.0, 1.0])
    # three equal inputs become three unrelated ring elements, none near the encoded value
    assert len(set(up)) == 3 and all(abs(u - secagg.SCALE) > 2**100 for u in up)


def test_fewer_than_three_contributors_refused() -> None:
    ms, peers = setup(2)
    with pytest.raises(ResearchError, match="want >= 3"):
        ms[0].mask("r", peers, [1.0])
    with pytest.raises(ResearchError, match="want >= 3"):
        Round("r", peers, 1)


def test_dropout_recovers_with_survivors_masks() -> None:
    ms, peers = setup(5)
    rnd = Round("r", peers, 2)
    for m in ms[:4]:
        rnd.upload(m.name, m.mask("r", peers, [1.5, -2.0]))
    rec = {m.name: m.recovery("r", peers, ["s4"], 2) for m in ms[:4]}
    assert rnd.total(rec) == pytest.approx([6.0, -8.0], abs=1e-12)
    with pytest.raises(ResearchError):
        rnd.upload("s4", ms[4].mask("r", peers, [9.0, 9.0]))  # late upload refused


def test_dropout_without_recovery_aborts() -> None:
    ms, peers = setup(4)
    rnd = Round("r", peers, 1)
    for m in ms[:3]:
        rnd.upload(m.name, m.mask("r", peers, [1.0]))
    with pytest.raises(ResearchError, match="aborted"):
        rnd.total()


def test_too_few_survivors_abort_even_with_recovery() -> None:
    ms, peers = setup(3)
    rnd = Round("r", peers, 1)
    for m in ms[:2]:
        rnd.upload(m.name, m.mask("r", peers, [1.0]))
    rec = {m.name: m.recovery("r", peers, ["s2"], 1) for m in ms[:2]}
    with pytest.raises(ResearchError, match="2 survivors"):
        rnd.total(rec)


def test_recovery_answered_once_per_round() -> None:
    ms, peers = setup(3)
    ms[0].recovery("r", peers, ["s2"], 1)
    with pytest.raises(ResearchError):
        ms[0].recovery("r", peers, ["s1"], 1)


class Flaky:
    """A site that answers ``ok`` queries, then drops out (a transport failure)."""

    def __init__(self, site: Site, ok: int) -> None:
        self.site, self.name, self.ok = site, site.name, ok

    def answer(self, query: Any) -> dict[str, Any]:
        if self.ok <= 0:
            raise SiteUnavailable(self.name, "connection reset")
        self.ok -= 1
        return self.site.answer(query)

    def public_key(self) -> bytes:
        return self.site.public_key()

    def recover(self, *a: Any) -> list[str]:
        return self.site.recover(*a)


def test_federation_dropout_mid_round_recovers() -> None:
    sites = make_sites([300, 400, 900, 1500])
    full = Federation(sites, secure=True).moments("bmi")
    flaky = [*sites[:3], Flaky(sites[3], ok=0)]
    fed = Federation(flaky, secure=True, on_dropout="recover")  # type: ignore[arg-type]
    m = fed.moments("bmi")
    three = Federation(sites[:3]).moments("bmi")
    assert m.n == three.n < full.n
    assert m.total == pytest.approx(three.total, rel=1e-12)
    assert fed.trail[-1]["dropped"] == ["hosp-d"]


def test_federation_dropout_mid_round_aborts() -> None:
    sites = make_sites([300, 400, 900, 1500])
    flaky = [*sites[:3], Flaky(sites[3], ok=0)]
    with pytest.raises(ResearchError, match="aborted"):
        Federation(flaky, secure=True, on_dropout="abort").moments("bmi")  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=3, max_value=6),
       st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1,
                max_size=6),
       st.data())
def test_masked_sum_equals_plain_sum(k: int, first: list[float], data: st.DataObject) -> None:
    ms, peers = setup(k)
    vals = [first] + [data.draw(st.lists(st.floats(min_value=-1e9, max_value=1e9,
                                                   allow_nan=False),
                                         min_size=len(first), max_size=len(first)))
                      for _ in range(k - 1)]
    rnd = Round("p", peers, len(first))
    for m, v in zip(ms, vals, strict=True):
        rnd.upload(m.name, m.mask("p", peers, v))
    got = rnd.total()
    want = np.sum(np.asarray(vals), axis=0)
    # each value is rounded once (≤ 2^-49); the float sum of up to 6 values near 1e9 adds ulps
    assert np.max(np.abs(np.asarray(got) - want)) <= k * 2.0 ** -secagg.SCALE_BITS + 1e-5
