"""Hashes recorded on the ledger for every query, site response and result.

``digest(obj)`` is SHA-256 over RFC 8785-style canonical JSON (``medledger.crypto.canonical``),
after replacing each float by the string ``repr(float)`` (the shortest round-tripping decimal;
the ledger's canonical JSON carries no floats) and each tuple by a list. Two objects hash alike
exactly when their canonical forms are byte-identical, so a one-byte change is detected.
"""

from __future__ import annotations

import hashlib
from typing import Any

from medledger.crypto import canonical

__all__ = ["canonical_bytes", "digest", "jsonable"]


def jsonable(obj: Any) -> Any:
    """The float-free JSON form hashed by ``digest``."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return f"f:{obj!r}"
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    raise TypeError(f"cannot hash {type(obj).__name__}")


def canonical_bytes(obj: Any) -> bytes:
    return canonical.encode(jsonable(obj))


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()
