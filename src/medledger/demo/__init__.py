"""Scenario drivers for `medledger demo`."""
