"""Aberration detection on weekly counts: EARS, Farrington, improved Farrington, CUSUM, MPM,
single-case alerts.

Each method is a pure function of a week series, the weeks to test and a control dataclass
named after R ``surveillance``'s control list; see docs/surveillance.md for the formulas and
for where the product's defaults differ from R (``r_compatible=True`` reproduces R).

The names below are loaded on first use (PEP 562): the case-report and signal contracts in
this package run in every node, which must not pay for importing scipy at start-up.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from medledger.surveillance.series import (
        Detection,
        WeekRange,
        WeekSeries,
        read_csv,
        write_csv,
    )

_SOURCES = {
    "alerts": ("DEFAULT_SEVERE", "SingleCaseRule", "single_case", "single_case_alerts"),
    "cusum": ("CusumControl", "cusum"),
    "detect": ("METHODS", "detect"),
    "ears": ("EarsControl", "ears_c"),
    "errors": ("SurveillanceError",),
    "farrington": ("FarringtonControl", "farrington"),
    "flexible": ("FlexibleControl", "farrington_flexible"),
    "mpm": ("MpmControl", "MpmThresholds", "mpm"),
    "series": ("Detection", "WeekRange", "WeekSeries", "read_csv", "write_csv"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

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


class _Package(types.ModuleType):
    """Keeps ``cusum``, ``detect``, ``farrington`` and ``mpm`` the functions: importing a
    submodule of the same name would otherwise rebind the package attribute to the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _MODULE_OF and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
