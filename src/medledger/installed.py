"""The contracts a MedLedger node runs, assembled from the domain packages.

Adding a contract: write it in its domain package, then add one line here.
"""

from __future__ import annotations

from medledger.consent.access import AccessLog
from medledger.consent.contract import Consent
from medledger.consortium.contract import Consortium
from medledger.contracts.base import Registry
from medledger.records.registry import RecordRegistry
from medledger.research.contract import Studies
from medledger.surveillance.reports import CaseReports
from medledger.surveillance.signals import Signals


def default_registry() -> Registry:
    registry = Registry()
    registry.add(Consortium())
    registry.add(RecordRegistry())
    registry.add(CaseReports())
    registry.add(Signals())
    registry.add(Studies())
    registry.add(Consent())
    registry.add(AccessLog())
    return registry
