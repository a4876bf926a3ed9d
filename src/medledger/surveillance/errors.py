"""The one error type of the surveillance package.

Hierarchy::

    MedLedgerError            (medledger.errors)
    └── SurveillanceError      bad series, range or option; code ``bad_args``

Messages say what was given and what was wanted.
"""

from __future__ import annotations

from medledger.errors import Code, MedLedgerError


class SurveillanceError(MedLedgerError):
    """A series, range or option that a detection method cannot use."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.BAD_ARGS, message)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Refuse an option value outside ``allowed`` (R's ``match.arg``, without abbreviations)."""
    if value not in allowed:
        raise SurveillanceError(f"{name} is {value!r}; want one of {list(allowed)}")


def check_alpha(alpha: float | None) -> None:
    if alpha is not None and not 0.0 < alpha < 1.0:
        raise SurveillanceError(f"alpha is {alpha}; want 0 < alpha < 1")
