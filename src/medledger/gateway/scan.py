"""The identifier leak scan: proof that no direct identifier from the input reaches the output.

Two checks (ADR 0017):

* per row, while it is processed: every direct identifier read from the row (resident ID, MRN,
  name, phone, address) of 4+ characters (2+ for Chinese names) is looked for as a substring
  of the serialised resources built from that row (the bytes that are stored and hashed);
* over any output (vault views, ledger transactions): Chinese resident IDs that pass their check
  digit and Chinese mobile numbers, by pattern.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

from medledger.gateway.identifiers import find_mobiles, find_rids
from medledger.gateway.text import has_han


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def row_leaks(identifiers: Iterable[str], outputs: Iterable[bytes]) -> str | None:
    """A description of the first identifier found in the serialised outputs (UTF-8 JSON as
    stored, so keys and values are both searched), or None."""
    idents = _searchable(tuple(identifiers))
    if not idents:
        return None
    for text in outputs:
        for ident in idents:
            if ident in text:
                return f"an input identifier of {len(ident)} bytes"
    return None


@functools.lru_cache(maxsize=65_536)        # a patient's identifiers repeat on every row
def _searchable(identifiers: tuple[str, ...]) -> tuple[bytes, ...]:
    """The identifiers long enough to search for, UTF-8 encoded."""
    return tuple(i.encode() for i in identifiers
                 if len(i) >= 4 or (has_han(i) and len(i) >= 2))


def pattern_leaks(text: str) -> list[str]:
    """Kinds of identifier found by pattern in ``text`` (``cn-rid``, ``cn-mobile``)."""
    found = []
    if find_rids(text):
        found.append("cn-rid")
    if find_mobiles(text):
        found.append("cn-mobile")
    return found
