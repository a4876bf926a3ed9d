"""The contract framework: deterministic state machines registered by name.

A contract is a class with a ``name`` and methods decorated with ``@method``. Each method declares

* an argument model (pydantic, strict, no extra fields) — the schema its ``args`` must pass;
* ``access``: which organisation kinds and member roles may call it;
* ``cosign``: a function of the validated args returning the co-signatures it needs.

A method reads and writes keyed state only through its ``Context`` (keys are namespaced by the
contract's name), may read other contracts' state, emits events, and gets time and height from the
block. It must not touch the clock, randomness, files or the network: every peer runs it on the
same inputs and must get the same writes. Raising ``ContractError`` marks the transaction invalid
with that reason code and discards its writes.

Adding a contract: subclass ``Contract``, decorate its methods, and list it in
``medledger.contracts.registry.default_registry``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from medledger.errors import Code, MedLedgerError

JSON = Any


class ContractError(MedLedgerError):
    """Raised by contract code: the transaction is invalid for ``code``; nothing is written."""


class Args(BaseModel):
    """Base for argument models: strict types, unknown fields refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


@dataclass(frozen=True)
class Access:
    """Who may call a method. ``None`` means anyone who is an active member."""

    kinds: frozenset[str] | None = None
    roles: frozenset[str] | None = None

    def allows(self, org_kind: str, role: str) -> bool:
        return (self.kinds is None or org_kind in self.kinds) and (
            self.roles is None or role in self.roles
        )


@dataclass(frozen=True)
class Cosign:
    """A co-signature a transaction needs: by ``member``, or by any member of ``org`` whose
    role is in ``roles`` (``None`` = any role)."""

    member: str | None = None
    org: str | None = None
    roles: frozenset[str] | None = None

    def satisfied_by(self, member_id: str, org: str, role: str) -> bool:
        if self.member is not None:
            return member_id == self.member
        return (self.org is None or org == self.org) and (self.roles is None or role in self.roles)

    def describe(self) -> str:
        if self.member:
            return f"member {self.member}"
        roles = "/".join(sorted(self.roles)) if self.roles else "any role"
        return f"a member of {self.org or 'any organisation'} ({roles})"


A = TypeVar("A", bound=Args)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable[[Any, Any, Any], JSON]
    args_model: type[Args]
    access: Access
    cosign: Callable[[Any], list[Cosign]] | None = None
    doc: str = ""
    reads: Callable[[dict[str, Any], str], list[str]] | None = None


def method(
    args: type[A],
    *,
    access: Access | None = None,
    cosign: Callable[[A], list[Cosign]] | None = None,
    reads: Callable[[dict[str, Any], str], list[str]] | None = None,
) -> Callable[[Callable[[Any, Any, A], JSON]], Callable[[Any, Any, A], JSON]]:
    """Declare a contract method: its argument model, who may call it, co-signatures needed.

    ``reads(raw_args, caller_org)`` may name the full state keys the method is likely to read;
    the executor fetches them for the whole block in one round trip. It is only a hint.
    """

    def wrap(fn: Callable[[Any, Any, A], JSON]) -> Callable[[Any, Any, A], JSON]:
        fn.__contract_method__ = MethodSpec(  # type: ignore[attr-defined]
            fn.__name__, fn, args, access or Access(), cosign, (fn.__doc__ or "").strip(), reads
        )
        return fn

    return wrap


class Contract:
    """Base class. Subclasses set ``name`` and decorate methods with ``@method``."""

    name: ClassVar[str] = ""
    methods: ClassVar[dict[str, MethodSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.methods = {
            spec.name: spec
            for attr in vars(cls).values()
            if (spec := getattr(attr, "__contract_method__", None)) is not None
        }

    def begin_block(self, ctx: Any) -> None:
        """Runs before the block's transactions (for changes scheduled at this height)."""


@dataclass
class Event:
    name: str
    data: JSON


@dataclass
class Registry:
    """Contracts by name."""

    contracts: dict[str, Contract] = field(default_factory=dict)

    def add(self, contract: Contract) -> None:
        if contract.name in self.contracts:
            raise ValueError(f"contract {contract.name!r} registered twice")
        self.contracts[contract.name] = contract

    def resolve(self, contract: str, method_name: str) -> tuple[Contract, MethodSpec]:
        c = self.contracts.get(contract)
        if c is None:
            raise ContractError(Code.UNKNOWN_CONTRACT, f"no contract {contract!r}")
        spec = c.methods.get(method_name)
        if spec is None:
            raise ContractError(
                Code.UNKNOWN_METHOD,
                f"contract {contract!r} has no method {method_name!r}; has {sorted(c.methods)}",
            )
        return c, spec
