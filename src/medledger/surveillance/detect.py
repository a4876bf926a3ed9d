"""One entry point for every method by name, with options named as in R (used by the CLI)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from medledger.surveillance.cusum import CusumControl, cusum
from medledger.surveillance.ears import EarsControl, ears_c
from medledger.surveillance.errors import SurveillanceError
from medledger.surveillance.farrington import FarringtonControl, farrington
from medledger.surveillance.flexible import FlexibleControl, farrington_flexible
from medledger.surveillance.mpm import MpmControl, MpmThresholds, mpm
from medledger.surveillance.series import Detection, WeekRange, WeekSeries

METHODS = ("ears-c1", "ears-c2", "ears-c3", "farrington", "farrington-flexible", "cusum", "mpm")

_CONTROL: dict[str, type] = {
    "ears-c1": EarsControl, "ears-c2": EarsControl, "ears-c3": EarsControl,
    "farrington": FarringtonControl, "farrington-flexible": FlexibleControl,
    "cusum": CusumControl, "mpm": MpmControl,
}
_MPM_EXTRA = ("thresholds", "disease", "region")


def option_names(method: str) -> list[str]:
    """The options ``method`` takes (R's control names, plus ``r_compatible``)."""
    names = [f.name for f in dataclasses.fields(_CONTROL[method]) if f.name != "method"]
    return names + list(_MPM_EXTRA) if method == "mpm" else names


def _control(method: str, options: Mapping[str, Any]) -> Any:
    unknown = sorted(set(options) - set(option_names(method)) - {"r_compatible"})
    if unknown:
        raise SurveillanceError(
            f"options {unknown} do not apply to {method}; it takes {option_names(method)}")
    kwargs = dict(options)
    if "r_compatible" not in option_names(method):
        kwargs.pop("r_compatible", None)  # the product and R agree for this method
    if method == "mpm":
        thresholds = kwargs.pop("thresholds", None)
        disease, region = kwargs.pop("disease", None), kwargs.pop("region", None)
        if thresholds is not None:
            assert isinstance(thresholds, MpmThresholds)
            kwargs["percentile"] = thresholds.percentile(disease, region)
    if method.startswith("ears-"):
        kwargs["method"] = method[-2:].upper()
    return _CONTROL[method](**kwargs)


def detect(method: str, series: WeekSeries, rng: WeekRange,
           options: Mapping[str, Any] | None = None) -> Detection:
    """Run ``method`` (one of ``METHODS``) with ``options`` given as R names them."""
    if method not in METHODS:
        raise SurveillanceError(f"method {method!r} is unknown; want one of {list(METHODS)}")
    control = _control(method, options or {})
    runners: dict[str, Callable[[], Detection]] = {
        "ears": lambda: ears_c(series.observed, rng, control),
        "farrington": lambda: farrington(series, rng, control),
        "farrington-flexible": lambda: farrington_flexible(series, rng, control),
        "cusum": lambda: cusum(series.observed, rng, control),
        "mpm": lambda: mpm(series, rng, control),
    }
    return runners["ears" if method.startswith("ears-") else method]()
