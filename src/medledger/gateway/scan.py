"""The identifier leak scan: proof that no direct identifier from the input reaches the output.

Two checks (ADR 0017):

* per row, while it is processed: every direct identifier read from the row (resident ID, MRN,
  name, phone, address) is looked for in every string of the resources built from that row —
  as a whole string and as a substring for identifiers of 4+ characters (2+ for CJK names);
* over any output (vault views, ledger transactions): Chinese resident IDs that pass their check
  digit and Chinese mobile numbers, by pattern.
"""

from __future__ import annotations

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


def row_leaks(identifiers: Iterable[str], resources: Iterable[Any]) -> str | None:
    """A description of the first identifier found in the resources, or None."""
    idents = [i for i in identifiers if len(i) >= 4 or (has_han(i) and len(i) >= 2)]
    if not idents:
        return None
    for res in resources:
        for s in strings(res):
            for ident in idents:
                if ident in s:
                    return f"an input identifier of {len(ident)} characters"
    return None


def pattern_leaks(text: str) -> list[str]:
    """Kinds of identifier found by pattern in ``text`` (``cn-rid``, ``cn-mobile``)."""
    found = []
    if find_rids(text):
        found.append("cn-rid")
    if find_mobiles(text):
        found.append("cn-mobile")
    return found
