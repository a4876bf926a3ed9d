"""Run the ``studies`` contract in memory like the executor: args validated, access and
co-signatures checked, writes kept only when the call succeeds."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from tests.unit.surveillance.harness import MemState

from medledger.contracts.base import ContractError
from medledger.contracts.context import Caller, Context
from medledger.errors import Code
from medledger.ledger.state import BlockState
from medledger.research.contract import Studies

RESEARCHER = Caller("rc/dr", "rc", "researcher", "research")
SITES = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]


def admin(org: str) -> Caller:
    return Caller(f"{org}/root", org, "org-admin", "hospital")


def steward(org: str) -> Caller:
    return Caller(f"{org}/dsc", org, "data-steward", "hospital")


def gateway(org: str) -> Caller:
    return Caller(f"{org}/gw", org, "gateway", "hospital")


class StudyHarness:
    def __init__(self) -> None:
        self.contract = Studies()
        self.state = MemState()
        self.height = 1
        self._tx = itertools.count(1)

    def call(self, caller: Caller, method: str, args: dict[str, Any],
             cosigners: tuple[Caller, ...] = ()) -> Any:
        spec = self.contract.methods[method]
        if not spec.access.allows(caller.org_kind, caller.role):
            raise ContractError(Code.FORBIDDEN, f"{caller.role} of {caller.org_kind}")
        parsed = spec.args_model.model_validate(args)
        for need in spec.cosign(parsed) if spec.cosign else []:
            if not any(need.satisfied_by(c.id, c.org, c.role) for c in cosigners):
                raise ContractError(Code.MISSING_COSIGNATURE, need.describe())
        txs = BlockState(self.state).tx()
        ctx = Context(txs, "studies", self.height, 1_764_201_600_000, f"{next(self._tx):064x}",
                      caller, cosigners)
        value = spec.fn(self.contract, ctx, parsed)
        for key, raw in txs.writes.items():
            if raw is None:
                self.state.data.pop(key, None)
            else:
                self.state.data[key] = raw
        self.height += 1
        return value

    def code_of(self, caller: Caller, method: str, args: dict[str, Any],
                cosigners: tuple[Caller, ...] = ()) -> str:
        try:
            self.call(caller, method, args, cosigners)
        except ContractError as exc:
            return str(exc.code)
        raise AssertionError(f"{method} {args} succeeded")

    def get(self, key: str) -> Any:
        raw = self.state.get_state(f"studies/{key}")
        return None if raw is None else orjson.loads(raw)


def terms(study: str = "s1", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "study": study, "protocol": "ab" * 32, "ethics_ref": "IRB-2026-017", "sites": SITES,
        "analyses": ["glm", "crosstab", "moments"],
        "variables": ["age", "sex", "smoker", "bmi", "sbp", "event"],
        "dp_budget_milli_eps": 1000,
        "contribution": {"method": "shapley", "utility": "cd" * 32},
        "revenue_pool": 100_000}
    base.update(kw)
    return base


def active(h: StudyHarness, study: str = "s1", **kw: Any) -> None:
    h.call(RESEARCHER, "register", terms(study, **kw))
    for s in SITES:
        h.call(admin(s), "approve", {"study": study, "site": s, "committee_ref": f"DC-{s}"},
               (steward(s),))
