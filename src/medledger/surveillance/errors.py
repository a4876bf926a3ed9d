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
