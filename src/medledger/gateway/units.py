"""Unit strings as hospitals write them → UCUM codes.

A curated alias table (ADR 0019): the gateway recognises the spellings below and nothing else;
an unknown unit is quarantined (``unknown_unit``), never guessed. Conversions into an analyte's
canonical unit live with the analyte (``medledger.gateway.loinc``) because mass↔molar factors
depend on the molar mass, which no unit library knows.
"""

from __future__ import annotations

_ALIASES: dict[str, tuple[str, ...]] = {
    "mg/dL": ("mg/dl", "mg/100ml", "mg%"),
    "mmol/L": ("mmol/l", "mmol/litre", "mm/l"),
    "umol/L": ("umol/l", "μmol/l", "µmol/l", "micromol/l"),
    "g/dL": ("g/dl",),
    "g/L": ("g/l",),
    "meq/L": ("meq/l",),
    "%": ("%", "percent", "% hb"),
    "mmol/mol": ("mmol/mol",),
    "10*9/L": ("10*9/l", "10^9/l", "x10^9/l", "×10^9/l", "x10e9/l", "10e9/l"),
    "10*3/uL": ("10*3/ul", "10^3/ul", "k/ul", "x10^3/ul", "thou/ul"),
    "/uL": ("/ul", "cells/ul"),
    "U/L": ("u/l", "iu/l"),
}

ALIASES: dict[str, str] = {}
for _code, _spellings in _ALIASES.items():
    ALIASES[_code.lower()] = _code
    for _s in _spellings:
        ALIASES[_s] = _code


def to_ucum(raw: str) -> str | None:
    """UCUM code for a unit as written (case- and space-insensitive), or None if unknown."""
    return ALIASES.get(raw.strip().lower().replace(" ", ""))
