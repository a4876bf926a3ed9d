"""A study's revenue split under its declared contribution rule, in integers only.

Shared by the ``studies`` contract (which recomputes the split of every contribution record and
refuses one off the rule) and by the coordinator's side that builds the record, so both get the
same integers. No floats, no numpy: contract code must be deterministic (ADR 0049).

**Rule** (fixed at registration, ``ContributionRule``): with N = Σ n_j rows used and
Φ = Σ max(φ_j, 0) (Shapley values in micro-units of the utility, ``PHI_SCALE``), site i's
exact share of a total T is

    T · ((10⁶ − λ) · n_i / N + λ · max(φ_i, 0) / Φ) / 10⁶

with λ = 0 for ``count``, 10⁶ for ``shapley`` and ``shapley_weight_ppm`` for ``blend``. A
negative φ_i counts as 0 (the signed value stays on the ledger); when N = 0 or Φ = 0 that part
is split equally. The exact shares are rationals with the common denominator 10⁶ · N · Φ.

**Apportionment**: largest remainder (Hamilton's method): each site gets the floor of its exact
share; the units left over go one each to the largest remainders, ties to the lower site id.
The parts sum to T exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

__all__ = ["PHI_SCALE", "PPM", "largest_remainder", "recheck", "recheck_ledger", "rule_weight",
           "split", "split_problems"]

PHI_SCALE = 1_000_000
"""Shapley values, standard errors and leave-one-out values are recorded as integers in
micro-units of the utility (U in units of mean validation loss × 10⁶)."""
PPM = 1_000_000


def rule_weight(rule: Mapping[str, Any]) -> int:
    """λ in ppm: the Shapley part of the declared rule."""
    method = rule["method"]
    if method == "count":
        return 0
    if method == "shapley":
        return PPM
    if method == "blend":
        return int(rule.get("shapley_weight_ppm", PPM))
    raise ValueError(f"contribution rule {method!r}; want count, shapley or blend")


def largest_remainder(total: int, numerators: Sequence[int], denominator: int,
                      keys: Sequence[str]) -> list[int]:
    """Apportion ``total`` units in proportion to ``numerators[i] / denominator`` (which must
    sum to 1: Σ numerators = denominator > 0); leftover units go to the largest remainders of
    ``total · numerators[i] / denominator``, ties to the lower key."""
    if denominator <= 0 or sum(numerators) != denominator or min(numerators, default=0) < 0:
        raise ValueError("numerators must be non-negative and sum to the denominator")
    parts = [total * x // denominator for x in numerators]
    rems = [total * x % denominator for x in numerators]
    order = sorted(range(len(parts)), key=lambda i: (-rems[i], keys[i]))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _numerators(rule: Mapping[str, Any], n: Sequence[int],
                phi: Sequence[int]) -> tuple[list[int], int]:
    lam = rule_weight(rule)
    counts = list(n) if sum(n) > 0 else [1] * len(n)
    pos = [max(p, 0) for p in phi]
    if sum(pos) == 0:
        pos = [1] * len(phi)
    big_n, big_phi = sum(counts), sum(pos)
    nums = [(PPM - lam) * c * big_phi + lam * p * big_n for c, p in zip(counts, pos, strict=True)]
    return nums, PPM * big_n * big_phi


def split(rule: Mapping[str, Any], total: int, sites: Sequence[str], n: Sequence[int],
          phi: Sequence[int]) -> list[int]:
    """``total`` units split by the declared ``rule`` from rows used ``n`` and Shapley values
    ``phi`` (micro-units), one part per site in the order given."""
    nums, den = _numerators(rule, n, phi)
    return largest_remainder(total, nums, den, sites)


def split_problems(rule: Mapping[str, Any], pool: int,
                   shares: Sequence[Mapping[str, Any]]) -> list[str]:
    """How a recorded per-site split (``site``, ``n``, ``phi_micro``, ``share_ppm``,
    ``revenue``) departs from the rule; empty when it follows it."""
    sites = [s["site"] for s in shares]
    n = [int(s["n"]) for s in shares]
    phi = [int(s["phi_micro"]) for s in shares]
    problems = []
    for fld, total in (("share_ppm", PPM), ("revenue", pool)):
        want = split(rule, total, sites, n, phi)
        for s, w in zip(shares, want, strict=True):
            if int(s[fld]) != w:
                problems.append(f"{s['site']} {fld} {s[fld]}, the rule gives {w}")
    return problems


def recheck(terms: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """Recheck a ``contribution/<study>`` ledger record against the study's terms: the whole
    pool, every site once, the declared utility, and share and revenue by the declared rule.
    A record written before φ was on the ledger (no ``phi_micro``) is rechecked under a
    ``count`` rule (which needs only n) and reported as not checkable under the others."""
    shares = list(record["shares"])
    rule = terms["contribution"]
    problems = []
    if sorted(s["site"] for s in shares) != sorted(terms["sites"]):
        return ["contribution: the split does not name every study site once"]
    paid = sum(int(s["revenue"]) for s in shares)
    if paid != terms["revenue_pool"]:
        problems.append(f"contribution: revenue sums to {paid}, pool {terms['revenue_pool']}")
    if "phi_micro" not in shares[0]:
        if rule["method"] != "count":
            return [*problems, f"contribution: recorded without φ, so the {rule['method']} "
                    "split cannot be rechecked"]
        shares = [{**s, "phi_micro": 0} for s in shares]
    elif record.get("utility") != rule["utility"]:
        problems.append("contribution: utility hash differs from the study's declared one")
    return problems + [f"contribution: {p}" for p in split_problems(
        rule, int(terms["revenue_pool"]), shares)]


class StateReader(Protocol):
    def get_state(self, key: str) -> bytes | None: ...


def recheck_ledger(reader: StateReader, study: str) -> list[str] | None:
    """``recheck`` on the study's ledger records; None when no contribution is recorded."""
    terms, record = (reader.get_state(f"studies/{k}/{study}") for k in ("study", "contribution"))
    if record is None:
        return None
    if terms is None:
        return [f"contribution: no study {study} on the ledger"]
    return recheck(orjson.loads(terms), orjson.loads(record))
