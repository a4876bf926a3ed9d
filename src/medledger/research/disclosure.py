"""Each site's disclosure-control policy and the checks it runs before anything leaves.

Defaults follow DataSHIELD's ``nfilter.*`` settings (``dsBase`` disclosure settings), vantage6's
algorithm guards (minimum rows and organisations) and ACRO's dominance rules
(``AI-SDC/ACRO:acro/default.yaml``). A site sets its own thresholds; a policy may only be
stricter by a study's disclosure terms carried in the query (``Policy.tightened``: terms can
raise a threshold, never lower one). A refusal
raises ``DisclosureRefused`` with one of these reason codes:

==================  ==========================================================================
``min_sites``       fewer participating sites than ``min_sites`` (default 3)
``min_rows``        fewer usable rows at this site than the analysis' minimum
``min_cell``        a table or histogram cell with 0 < count < ``min_cell`` (default 3);
                    zero cells too when ``zeros_disclosive``
``param_ratio``     GLM with more parameters than ``glm_max_param_ratio`` · n (default 0.33)
``binary_level``    a binary y / X column / weight / offset with a level rarer than ``min_cell``
``dominance``       the ``dominance_n`` largest |values| make more than ``dominance_k`` of the
                    total (default n=2, k=0.90)
``p_ratio``         total minus the two largest |values| < ``p_ratio`` · largest (default 0.10)
``column``          a variable not allowed at this site (allow-list or deny-list)
==================  ==========================================================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medledger.crypto import canonical
from medledger.research.errors import DisclosureRefused

__all__ = ["MIN_ROWS_DEFAULT", "RULES", "Policy"]

RULES = ("min_sites", "min_rows", "min_cell", "param_ratio", "binary_level", "dominance",
         "p_ratio", "column")
MIN_ROWS_DEFAULT = {"glm": 10, "crosstab": 5, "moments": 3, "histogram": 5, "survival": 10}


@dataclass(frozen=True)
class Policy:
    """A site's disclosure thresholds. Ratios are given in thousandths in the hash input."""

    min_sites: int = 3
    min_cell: int = 3
    zeros_disclosive: bool = False
    suppress_small_cells: bool = False
    min_rows: dict[str, int] = field(default_factory=lambda: dict(MIN_ROWS_DEFAULT))
    glm_max_param_ratio: float = 0.33
    dominance_n: int = 2
    dominance_k: float = 0.90
    p_ratio: float = 0.10
    allowed_columns: frozenset[str] | None = None
    disallowed_columns: frozenset[str] = frozenset()

    def tightened(self, terms: Mapping[str, Any] | None) -> Policy:
        """This policy made at least as strict as a study's ``terms`` (integers; ratios in
        ppm as in the ``studies`` contract). Terms can raise a threshold, never lower one."""
        if not terms:
            return self
        ppm = 1_000_000
        return replace(
            self,
            min_sites=max(self.min_sites, int(terms.get("min_sites", 0))),
            min_cell=max(self.min_cell, int(terms.get("min_cell", 0))),
            glm_max_param_ratio=min(self.glm_max_param_ratio,
                                    terms.get("glm_max_param_ratio_ppm", ppm) / ppm),
            dominance_k=min(self.dominance_k, terms.get("dominance_k_ppm", ppm) / ppm),
            dominance_n=max(self.dominance_n, int(terms.get("dominance_n", 0))),
            p_ratio=max(self.p_ratio, terms.get("p_ratio_ppm", 0) / ppm))

    def digest(self) -> str:
        """SHA-256 over the canonical JSON of the policy (recorded with every response)."""
        d = asdict(self)
        for k in ("glm_max_param_ratio", "dominance_k", "p_ratio"):
            d[k] = round(d[k] * 1_000_000)
        allowed = self.allowed_columns
        d["allowed_columns"] = None if allowed is None else sorted(allowed)
        d["disallowed_columns"] = sorted(self.disallowed_columns)
        return hashlib.sha256(canonical.encode(d)).hexdigest()

    def check_sites(self, n_sites: int) -> None:
        if n_sites < self.min_sites:
            raise DisclosureRefused("min_sites", f"got {n_sites} sites, want >= {self.min_sites}")

    def check_rows(self, analysis: str, n: int) -> None:
        want = self.min_rows.get(analysis, self.min_cell)
        if n < want:
            raise DisclosureRefused("min_rows", f"{analysis}: got {n} rows, want >= {want}")

    def check_columns(self, columns: Iterable[str]) -> None:
        for c in columns:
            if c in self.disallowed_columns or (
                    self.allowed_columns is not None and c not in self.allowed_columns):
                raise DisclosureRefused("column", f"variable {c!r} is not released by this site")

    def table(self, counts: NDArray[np.int64]) -> NDArray[np.int64]:
        """Check a contingency table or histogram; returns it (small cells zeroed when the
        policy suppresses instead of refusing)."""
        small = (counts > 0) & (counts < self.min_cell)
        if self.zeros_disclosive:
            small |= counts == 0
        if not small.any():
            return counts
        if self.suppress_small_cells and not self.zeros_disclosive:
            out = counts.copy()
            out[small] = 0
            return out
        raise DisclosureRefused("min_cell", f"{int(small.sum())} cell(s) below {self.min_cell}")

    def check_glm(self, p: int, n: int,
                  binaries: Sequence[tuple[str, NDArray[np.float64]]]) -> None:
        """glmDS2 rules: parameters-to-rows ratio and rare levels of binary variables."""
        self.check_rows("glm", n)
        if p > self.glm_max_param_ratio * n:
            raise DisclosureRefused(
                "param_ratio", f"got {p} parameters for {n} rows, want <= "
                f"{self.glm_max_param_ratio} x rows")
        for name, col in binaries:
            levels, counts = np.unique(col, return_counts=True)
            if len(levels) == 2 and counts.min() < self.min_cell:
                raise DisclosureRefused("binary_level", f"{name}: a level has {counts.min()} "
                                        f"rows, want >= {self.min_cell}")

    def check_sum(self, name: str, values: NDArray[np.float64]) -> None:
        """Dominance (n, k) and p-ratio rules on the contributions to a released sum."""
        a = np.sort(np.abs(values))[::-1]
        total = float(a.sum())
        if total == 0.0:
            return
        top = float(a[: self.dominance_n].sum())
        if top > self.dominance_k * total:
            raise DisclosureRefused("dominance", f"{name}: {self.dominance_n} largest values "
                                    f"make {top / total:.3f} of the total, want <= "
                                    f"{self.dominance_k}")
        rest = total - float(a[:2].sum())
        if rest < self.p_ratio * float(a[0]):
            raise DisclosureRefused("p_ratio", f"{name}: the rest of the total is within "
                                    f"{self.p_ratio} of the largest value")
