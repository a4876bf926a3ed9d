"""Run the surveillance contracts in memory, one call at a time, exactly as the executor would:
args validated by the method's model, access checked, writes kept only when the call succeeds.

Fast enough for property tests (a real node per hypothesis example is not).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import orjson

from medledger.contracts.base import Contract, ContractError
from medledger.contracts.context import Caller, Context
from medledger.crypto import canonical
from medledger.crypto.keys import AgreementKey, b64
from medledger.errors import Code
from medledger.ledger.state import BlockState
from medledger.surveillance.reports import CaseReports

DAY_MS = 86_400_000
T_2025_11_27 = 1_764_201_600_000  # 2025-11-27T00:00:00Z

GATEWAY_A = Caller("hosp-a/gw", "hosp-a", "gateway", "hospital")
GATEWAY_B = Caller("hosp-b/gw", "hosp-b", "gateway", "hospital")
PHYSICIAN_A = Caller("hosp-a/dr", "hosp-a", "physician", "hospital")
CDC_EPI = Caller("cdc/epi", "cdc", "physician", "cdc")
CDC_ADMIN = Caller("cdc/root", "cdc", "org-admin", "cdc")
CDC_SERVICE = Caller("cdc/monitor", "cdc", "service", "cdc")
RESEARCHER = Caller("research/dr", "research", "researcher", "research")


class MemState:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get_state(self, key: str) -> bytes | None:
        return self.data.get(key)

    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        return {k: self.data.get(k) for k in keys}

    def scan_state(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))[:limit]


class Harness:
    def __init__(self, contracts: Sequence[Contract] = (CaseReports(),),
                 time_ms: int = T_2025_11_27) -> None:
        self.contracts = {c.name: c for c in contracts}
        self.state = MemState()
        self.cdc_key = AgreementKey.generate()
        self.time = time_ms
        self.height = 1
        self._tx = itertools.count(1)
        self.put("consortium/org/cdc", {"id": "cdc", "kind": "cdc", "status": "active",
                                        "kex_key": b64(self.cdc_key.public)})

    def put(self, key: str, value: Any) -> None:
        self.state.data[key] = canonical.encode(value)

    def get(self, key: str) -> Any:
        raw = self.state.get_state(key)
        return None if raw is None else orjson.loads(raw)

    def scan(self, prefix: str) -> dict[str, Any]:
        return {k: orjson.loads(v) for k, v in self.state.scan_state(prefix, 10**9)}

    def call(self, caller: Caller, contract: str, method: str, args: dict[str, Any]) -> Any:
        c = self.contracts[contract]
        spec = c.methods[method]
        if not spec.access.allows(caller.org_kind, caller.role):
            raise ContractError(Code.FORBIDDEN, f"{caller.role} of {caller.org_kind}")
        parsed = spec.args_model.model_validate(args)
        txs = BlockState(self.state).tx()
        ctx = Context(txs, contract, self.height, self.time, f"{next(self._tx):064x}", caller)
        value = spec.fn(c, ctx, parsed)
        for key, raw in txs.writes.items():
            if raw is None:
                self.state.data.pop(key, None)
            else:
                self.state.data[key] = raw
        self.height += 1
        return value

    def code_of(self, caller: Caller, contract: str, method: str, args: dict[str, Any]) -> str:
        """The reason code a call is refused with (fails the test if it succeeds)."""
        try:
            self.call(caller, contract, method, args)
        except ContractError as exc:
            return str(exc.code)
        raise AssertionError(f"{method} {args} succeeded")
