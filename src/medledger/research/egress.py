"""The allow-list of what may leave a site: declared aggregate shapes, nothing else.

``check(query, message)`` runs on every outbound message, after the disclosure checks. The
message must have exactly the keys of its kind, ``site``/``analysis`` must be the site's name
and the query's analysis, ``policy`` a SHA-256 hex, and every value must be a number or a list of
numbers whose shape is fixed by the query — never by the site's row count:

* crosstab: ``counts`` of shape (len(levels[v]) for v in levels)
* moments: ``total``, ``sum_sq`` scalars
* histogram: ``counts`` of length len(edges) − 1
* glm: ``info`` p·p, ``xwz`` p, ``deviance`` scalar (p = 1 + len(x)); a DP fit (``clip``):
  ``stats`` of length ``dpglm.entries(family, p)``
* km: ``d``, ``at_risk`` of length len(grid) (``binned``: ``events``, ``censored``);
  cox: ``s0`` G, ``s1`` G·p, ``s2`` G·p·p, ``d`` G, ``x_events`` p (G = len(grid), p = len(x));
  a DP fit (``clip``): ``stats`` of length ``dpcox.length(G, p)``
* masked (secure aggregation): ``layout`` equal to the layout above plus ``n``, ``masked`` hex
  ring elements (≤ 32 hex digits each) of the layout's total length
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from medledger.errors import Code
from medledger.research import dpcox, dpglm
from medledger.research.errors import ResearchError

__all__ = ["EgressRefused", "check", "shapes"]

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RING_HEX = re.compile(r"^[0-9a-f]{1,32}$")


class EgressRefused(ResearchError):
    """An outbound message does not match an allowed aggregate shape; it is not sent."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.FORBIDDEN, f"egress refused: {message}")


def shapes(query: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    a, p = query["analysis"], query["params"]
    if a == "crosstab":
        return {"counts": tuple(len(v) for v in p["levels"].values())}
    if a == "moments":
        return {"total": (), "sum_sq": ()}
    if a == "histogram":
        return {"counts": (len(p["edges"]) - 1,)}
    if a == "glm":
        k = len(p["x"]) + 1
        if p.get("clip") is not None:
            return {"stats": (dpglm.entries(p["family"], k),)}
        return {"info": (k * k,), "xwz": (k,), "deviance": ()}
    if a in ("km", "cox"):
        g = len(p["grid"])
        if a == "km" and p.get("binned"):
            return {"events": (g,), "censored": (g,)}
        if a == "km":
            return {"d": (g,), "at_risk": (g,)}
        k = len(p["x"])
        if p.get("clip") is not None:
            return {"stats": (dpcox.length(g, k),)}
        return {"s0": (g,), "s1": (g * k,), "s2": (g * k * k,), "d": (g,), "x_events": (k,)}
    raise EgressRefused(f"unknown analysis {a!r}")


def _numeric(name: str, value: Any, shape: tuple[int, ...]) -> None:
    if isinstance(value, (bool, str)):
        raise EgressRefused(f"{name}: not a number")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.shape != shape:
        raise EgressRefused(f"{name}: shape {arr.shape}, want {shape}")


def check(site: str, query: Mapping[str, Any], msg: Mapping[str, Any]) -> None:
    want = shapes(query)
    head = {"site", "analysis", "policy"}
    if msg.get("site") != site or msg.get("analysis") != query["analysis"]:
        raise EgressRefused("site or analysis field does not match the query")
    if not isinstance(msg.get("policy"), str) or not HEX64.match(msg["policy"]):
        raise EgressRefused("policy is not a SHA-256 hex digest")
    if "masked" in msg:
        if set(msg) != head | {"layout", "masked"}:
            raise EgressRefused(f"keys {sorted(msg)}")
        layout = [[k, list(s)] for k, s in sorted(want.items())] + [["n", []]]
        if msg["layout"] != layout:
            raise EgressRefused("layout differs from the query's shapes")
        total = sum(int(np.prod(s)) if s else 1 for s in want.values()) + 1
        masked = msg["masked"]
        if not isinstance(masked, list) or len(masked) != total or not all(
                isinstance(m, str) and RING_HEX.match(m) for m in masked):
            raise EgressRefused("masked vector has the wrong length or elements")
        return
    if set(msg) != head | {"n", "values"}:
        raise EgressRefused(f"keys {sorted(msg)}")
    if not isinstance(msg["n"], int) or isinstance(msg["n"], bool):
        raise EgressRefused("n is not an integer")
    values = msg["values"]
    if not isinstance(values, dict) or set(values) != set(want):
        raise EgressRefused(f"values {sorted(values) if isinstance(values, dict) else values}")
    for k, shape in want.items():
        _numeric(k, values[k], shape)
