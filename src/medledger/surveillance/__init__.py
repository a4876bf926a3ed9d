"""Aberration detection on weekly counts: EARS, Farrington, improved Farrington, CUSUM, MPM,
single-case alerts.

Each method is a pure function of a week series, the weeks to test and a control dataclass
named after R ``surveillance``'s control list; see docs/surveillance.md for the formulas and
for where the product's defaults differ from R (``r_compatible=True`` reproduces R).
"""

from medledger.surveillance.alerts import (
    DEFAULT_SEVERE,
    SingleCaseRule,
    single_case,
    single_case_alerts,
)
from medledger.surveillance.cusum import CusumControl, cusum
from medledger.surveillance.detect import METHODS, detect
from medledger.surveillance.ears import EarsControl, ears_c
from medledger.surveillance.errors import SurveillanceError
from medledger.surveillance.farrington import FarringtonControl, farrington
from medledger.surveillance.flexible import FlexibleControl, farrington_flexible
from medledger.surveillance.mpm import MpmControl, MpmThresholds, mpm
from medledger.surveillance.series import Detection, WeekRange, WeekSeries, read_csv, write_csv

__all__ = [
    "DEFAULT_SEVERE",
    "METHODS",
    "CusumControl",
    "Detection",
    "EarsControl",
    "FarringtonControl",
    "FlexibleControl",
    "MpmControl",
    "MpmThresholds",
    "SingleCaseRule",
    "SurveillanceError",
    "WeekRange",
    "WeekSeries",
    "cusum",
    "detect",
    "ears_c",
    "farrington",
    "farrington_flexible",
    "mpm",
    "read_csv",
    "single_case",
    "single_case_alerts",
    "write_csv",
]
