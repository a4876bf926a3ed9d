"""Errors of the research package.

Hierarchy::

    ResearchError (MedLedgerError)   anything refused by the research platform; ``.code``
    └── DisclosureRefused             a site's disclosure check refused a computation;
                                      ``.rule`` names the rule (a stable reason code)
"""

from __future__ import annotations

from medledger.errors import Code, MedLedgerError

__all__ = ["DisclosureRefused", "ResearchError"]


class ResearchError(MedLedgerError):
    """A federated computation could not run (bad input, too few sites, aborted round)."""


class DisclosureRefused(ResearchError):
    """A site refused to release an aggregate; ``rule`` is the reason code, e.g. ``min_cell``."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(Code.FORBIDDEN, f"disclosure rule {rule}: {message}")
        self.rule = rule
