"""An unexpected exception in a contract marks its transaction invalid; the chain goes on."""

from __future__ import annotations

from typing import Any

from medledger.client.client import Client
from medledger.consortium.bootstrap import new_consortium
from medledger.contracts.base import Args, Contract, method
from medledger.contracts.context import Context
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.verify import verify_store
from medledger.node.node import Node


class Faulty(Contract):
    name = "faulty"

    @method(Args)
    def boom(self, ctx: Context, args: Args) -> Any:
        ctx.put("half-written", 1)
        raise ZeroDivisionError("a bug")

    @method(Args)
    def fine(self, ctx: Context, args: Args) -> Any:
        ctx.put("ok", 1)
        return None


def test_unexpected_exception_is_an_internal_result(tmp_path: Any) -> None:
    genesis, ring = new_consortium("faults", [("hosp-a", "A", "hospital")], 1_764_259_200_000)
    registry = default_registry()
    registry.add(Faulty())
    store = SQLiteStore(tmp_path / "l.db")
    with Node.create(store, genesis, registry, signer=("hosp-a", ring.signing["hosp-a/root"])) as n:
        c = Client(n, genesis.chain_id, "hosp-a/root", ring.signing["hosp-a/root"])
        bad = c.call("faulty", "boom", {})
        good = c.call("faulty", "fine", {})
    assert bad.code == "internal" and bad.message == "contract raised ZeroDivisionError"
    assert good.ok and good.height > bad.height
    assert store.get_state("faulty/half-written") is None
    assert verify_store(store, registry).ok
