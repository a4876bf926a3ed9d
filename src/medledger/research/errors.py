"""Errors of the research package.

Hierarchy::

    ResearchError (MedLedgerError)   anything refused by the research platform; ``.code``
    ├── DisclosureRefused             a site's disclosure check refused a computation;
                                      ``.rule`` names the rule (a stable reason code)
    └── QueryRefused                  the coordinator's view: ``.refusals`` site → rule
"""

from __future__ import annotations

from medledger.errors import Code, MedLedgerError

__all__ = ["DisclosureRefused", "QueryRefused", "ResearchError"]


class ResearchError(MedLedgerError):
    """A federated computation could not run (bad input, too few sites, aborted round)."""


class DisclosureRefused(ResearchError):
    """A site refused to release an aggregate; ``rule`` is the reason code, e.g. ``min_cell``."""

    def __init__(self, rule: str, message: str, policy: str = "0" * 64) -> None:
        super().__init__(Code.FORBIDDEN, f"disclosure rule {rule}: {message}")
        self.rule = rule
        self.detail = message
        self.policy = policy  # the refusing site's policy hash


class QueryRefused(ResearchError):
    """One or more sites refused a query; ``refusals`` maps site → rule. Nothing is released."""

    def __init__(self, refusals: dict[str, str]) -> None:
        super().__init__(Code.FORBIDDEN, "refused by " + ", ".join(
            f"{s} ({r})" for s, r in sorted(refusals.items())))
        self.refusals = refusals
