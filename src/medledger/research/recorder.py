"""Writes each federated run to the ``studies`` contract, in order: the query hash before any
site is asked (so a query outside the protocol or the DP budget is refused before data are
touched), then every site's own response record, then the result hash with the credits for
the research output (contributors and their roles)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medledger.research.federation import variables_of

__all__ = ["CONTRACT_ANALYSIS", "Call", "LedgerRecorder"]

CONTRACT_ANALYSIS = {"km": "survival", "cox": "survival"}
"""A federation's analysis name → the ``studies`` contract's (its protocol allows
``survival``, which covers Kaplan–Meier and Cox); the others are the same."""

Call = Callable[[str, dict[str, Any]], Any]
"""``call(method, args)`` on the ``studies`` contract as one member; raises when refused."""


@dataclass
class LedgerRecorder:
    study: str
    researcher: Call
    sites: Mapping[str, Call]
    dp_milli_eps: int = 0
    algorithms: Mapping[str, str] | None = None  # analysis → reviewed implementation digest
    credits: Sequence[Mapping[str, str]] = ()  # {"member", "role"}: recorded with each result

    def query(self, query_id: str, query: dict[str, Any], query_hash: str) -> int | None:
        dp = query.get("dp", {})
        args = {"study": self.study, "query_id": query_id, "query_hash": query_hash,
                "analysis": CONTRACT_ANALYSIS.get(query["analysis"], query["analysis"]),
                "sites": list(query["sites"]),
                "variables": variables_of(query["analysis"], query["params"]),
                "dp_milli_eps": int(dp.get("milli_eps", self.dp_milli_eps))}
        if dp:  # the contract checks them against the study's unit and sensitivity
            args.update(privacy_unit=dp.get("unit"), dp_sensitivity=dp.get("sensitivity"))
        if dp.get("of"):  # a later round of a DP fit, paid for by its first query
            args["dp_round_of"] = dp["of"]
        elif int(dp.get("rounds", 1)) > 1:
            args["dp_rounds"] = int(dp["rounds"])
        if query.get("researcher") is not None:
            args["researcher"] = query["researcher"]
        digest = (query.get("algorithm") or {}).get("digest")
        if digest is None and self.algorithms is not None:
            digest = self.algorithms[query["analysis"]]
        if digest is not None:
            args["algorithm"] = digest
        receipt = self.researcher("query", args)
        height = getattr(receipt, "height", None)
        return height if isinstance(height, int) else None

    def response(self, query_id: str, site: str, outcome: str, response_hash: str | None,
                 policy_hash: str) -> None:
        self.sites[site]("respond", {
            "study": self.study, "query_id": query_id, "response_hash": response_hash,
            "outcome": outcome, "policy_hash": policy_hash})

    def result(self, query_id: str, result_hash: str, dropped: list[str]) -> None:
        self.researcher("result", {"study": self.study, "query_id": query_id,
                                   "result_hash": result_hash, "dropped": dropped,
                                   "credits": [dict(c) for c in self.credits]})
