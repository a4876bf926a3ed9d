"""Four synthetic sites (unequal sizes, own case mix) and their pooled consented rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medledger.research.disclosure import Policy
from medledger.research.site import Site
from medledger.research.synth import site_tables

SIZES = [60, 400, 900, 1500]


def make_sites(sizes: list[int] = SIZES, seed: int = 11, **policy: Any) -> list[Site]:
    return [Site(f"hosp-{chr(97 + j)}", t, Policy(**policy))
            for j, t in enumerate(site_tables(sizes, seed=seed))]


def pooled(sites: list[Site]) -> dict[str, np.ndarray[Any, Any]]:
    """The reference: every site's consented rows in one table (tests only)."""
    keep = [np.asarray(s.columns["consent_research"]) for s in sites]
    pairs = list(zip(sites, keep, strict=True))
    return {k: np.concatenate([np.asarray(s.columns[k])[m] for s, m in pairs])
            for k in sites[0].columns}


@pytest.fixture
def sites() -> list[Site]:
    return make_sites()
