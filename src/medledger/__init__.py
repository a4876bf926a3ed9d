"""MedLedger: a consortium ledger and data-sharing platform for healthcare."""

__version__ = "0.1.0"
