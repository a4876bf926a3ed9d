"""Single-case ("fixed-value") alerts for severe diseases, as CIDARS runs them for plague,
cholera, H5N1 and other rare severe diseases: any single case is a signal
[Yang et al., WPSAR 2011;2(1):10-15].

Diseases are ICD-10 codes; a listed code covers its subcodes (``A00`` covers ``A00.1``).
``DEFAULT_SEVERE`` is only a starting point; deployments configure their own list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medledger.surveillance.series import Counts, Detection, WeekRange

DEFAULT_SEVERE: frozenset[str] = frozenset({
    "A00",  # cholera
    "A20",  # plague
    "A22",  # anthrax
    "A80",  # acute poliomyelitis
    "J09",  # influenza due to identified zoonotic or pandemic virus (e.g. H5N1)
    "U04",  # SARS
})


@dataclass(frozen=True)
class SingleCaseRule:
    """The diseases for which one case raises an alert."""

    diseases: frozenset[str] = DEFAULT_SEVERE

    def covers(self, icd10: str) -> bool:
        code = icd10.strip().upper()
        return any(code == d or code.startswith(d + ".") or
                   (len(d) == 3 and code.startswith(d) and code[3:4].isdigit())
                   for d in (x.upper() for x in self.diseases))


def single_case(observed: Counts, rng: WeekRange) -> Detection:
    """Alarm in every week of ``rng`` with at least one case; the upper bound is 0."""
    y = np.asarray(observed, dtype=np.float64)
    rng.check(y.size)
    weeks = rng.weeks()
    yk = y[weeks - 1]
    return Detection.from_float_alarm(weeks, yk, np.zeros(weeks.size),
                                      (yk > 0).astype(np.float64))


def single_case_alerts(counts: dict[str, Counts], rng: WeekRange,
                       rule: SingleCaseRule = SingleCaseRule()) -> dict[str, list[int]]:
    """Weeks with an alert, per disease the rule covers (other diseases are left out)."""
    return {disease: single_case(y, rng).alarm_weeks()
            for disease, y in counts.items() if rule.covers(disease)}
