"""The only window a contract method has on the world."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from medledger.contracts.base import Event
from medledger.crypto import canonical
from medledger.ledger.state import TxState

JSON = Any


@dataclass(frozen=True)
class Caller:
    """An authenticated member: the signer or a co-signer of the transaction."""

    id: str
    org: str
    role: str
    org_kind: str


@dataclass(slots=True)
class Context:
    """Keyed state namespaced by contract, block time and height, caller, events.

    ``time`` is the block's time in Unix milliseconds: the only clock a contract has.
    """

    state: TxState
    contract: str
    height: int
    time: int
    tx_id: str
    caller: Caller
    cosigners: tuple[Caller, ...] = ()
    events: list[Event] = field(default_factory=list)

    def _key(self, key: str) -> str:
        return f"{self.contract}/{key}"

    def get(self, key: str) -> Any:
        """The decoded value at ``key`` in this contract's namespace, or None."""
        raw = self.state.get(self._key(key))
        return None if raw is None else orjson.loads(raw)

    def exists(self, key: str) -> bool:
        return self.state.get(self._key(key)) is not None

    def put(self, key: str, value: JSON) -> None:
        self.state.put(self._key(key), canonical.encode(value))

    def delete(self, key: str) -> None:
        self.state.put(self._key(key), None)

    def read(self, contract: str, key: str) -> Any:
        """Read another contract's state (read-only)."""
        raw = self.state.get(f"{contract}/{key}")
        return None if raw is None else orjson.loads(raw)

    def emit(self, name: str, data: JSON) -> None:
        canonical.check(data)  # refuse floats early, in the contract's own frame
        self.events.append(Event(name, data))
