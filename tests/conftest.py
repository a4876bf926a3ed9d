"""Shared fixtures: a six-organisation consortium, a controllable clock, and a running node.

* ``consortium`` — genesis + keyring for hosp-a, hosp-b, cdc, research, pharmacy, insurer, each
  with its ``<org>/root`` admin, plus a few genesis members (see ``MEMBERS``).
* ``clock`` — a settable Unix-ms clock; the node's orderer stamps block times with it and ingress
  checks key validity against it, so tests control time exactly.
* ``node`` — a started ``Node`` on a temp-file ``SQLiteStore`` (stopped and closed afterwards).
* ``ledger`` — the node wrapped with helpers to build, sign and submit transactions.
* ``make_ledger`` — the same for a custom genesis (e.g. other policies).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from medledger.consortium.bootstrap import Keyring, new_consortium
from medledger.consortium.genesis import Genesis
from medledger.crypto.keys import SigningKey
from medledger.installed import default_registry
from medledger.ledger import tx as txmod
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.node.node import Node, Receipt

T0 = 1_764_259_200_000  # genesis time, Unix ms (2025-11-27T16:00:00Z)
CHAIN = "test-1"
ORGS: list[tuple[str, str, str]] = [
    ("hosp-a", "Hospital A", "hospital"),
    ("hosp-b", "Hospital B", "hospital"),
    ("cdc", "Disease Control", "cdc"),
    ("research", "Research Centre", "research"),
    ("pharmacy", "Pharmacy", "pharmacy"),
    ("insurer", "Insurer", "insurer"),
]
MEMBERS: list[tuple[str, str]] = [
    ("hosp-a/gw", "gateway"),
    ("hosp-a/steward", "data-steward"),
    ("hosp-a/dr", "physician"),
    ("hosp-b/gw", "gateway"),
    ("hosp-b/steward", "data-steward"),
    ("cdc/analyst", "researcher"),
]
TIMEOUT = 10.0


@dataclass
class Consortium:
    genesis: Genesis
    ring: Keyring


def make_consortium(policies: dict[str, object] | None = None) -> Consortium:
    genesis, ring = new_consortium(CHAIN, ORGS, T0, MEMBERS, policies)
    return Consortium(genesis, ring)


class Clock:
    """A Unix-ms clock that only moves when a test moves it."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


class Ledger:
    """A running node plus the keys to act as any member."""

    def __init__(self, node: Node, ring: Keyring, clock: Clock) -> None:
        self.node, self.ring, self.clock = node, ring, clock
        self.store = node.store
        self._nonces = itertools.count(1)

    def build(
        self,
        member: str,
        contract: str,
        method: str,
        args: dict[str, Any],
        *,
        cosigners: Sequence[str] = (),
        nonce: int | None = None,
        time: int | None = None,
        chain: str | None = None,
        key: SigningKey | None = None,
        cosigner_keys: dict[str, SigningKey] | None = None,
    ) -> bytes:
        """Signed wire bytes; ``key`` overrides the signer's key from the keyring."""
        body = txmod.make_body(
            chain=self.node.chain_id if chain is None else chain,
            contract=contract,
            method=method,
            args=args,
            signer=member,
            nonce=next(self._nonces) if nonce is None else nonce,
            time=self.clock() if time is None else time,
            cosigners=cosigners,
        )
        keys = {member: key or self.ring.signing[member]}
        for c in cosigners:
            keys[c] = (cosigner_keys or {}).get(c) or self.ring.signing[c]
        return txmod.build(body, keys)

    def submit(self, raw: bytes) -> Receipt:
        """Submit and wait; raises RejectedError when ingress refuses the bytes."""
        return self.node.submit(raw).result(TIMEOUT)

    def call(
        self, member: str, contract: str, method: str, args: dict[str, Any], **kw: Any
    ) -> Receipt:
        return self.submit(self.build(member, contract, method, args, **kw))

    def ok(
        self, member: str, contract: str, method: str, args: dict[str, Any], **kw: Any
    ) -> Receipt:
        r = self.call(member, contract, method, args, **kw)
        assert r.ok, r
        return r

    def state(self, key: str) -> Any:
        raw = self.store.get_state(key)
        return None if raw is None else orjson.loads(raw)

    def state_at(self, key: str, height: int) -> Any:
        found = self.store.state_at(key, height)
        return None if found is None or found[1] is None else orjson.loads(found[1])

    def all_state(self) -> dict[str, bytes]:
        return dict(self.store.scan_state("", limit=1_000_000))

    @property
    def log_size(self) -> int:
        return self.node.head.log_size

    def filler(self, member: str = "hosp-a/gw") -> Receipt:
        """A valid transaction that only adds one block (to move the height on)."""
        n = next(self._nonces)
        return self.ok(
            member,
            "registry",
            "anchor_batch",
            {
                "batch_id": f"filler-{n}",
                "root": f"{n:064x}",
                "count": 1,
                "record_type": "Filler",
                "source_system": "tests",
                "schema_version": "1",
            },
        )

    def advance_to(self, height: int) -> None:
        """Add filler blocks until the head is at ``height``."""
        while self.node.height < height:
            self.filler()


@pytest.fixture
def consortium() -> Consortium:
    return make_consortium()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 1_000)


def _start_node(path: Path, cons: Consortium, clock: Clock) -> Node:
    store = SQLiteStore(path)
    node = Node.create(
        store,
        cons.genesis,
        default_registry(),
        signer=("hosp-a", cons.ring.signing["hosp-a/root"]),
        max_wait=0.001,
        clock=clock,
    )
    return node.start()


@pytest.fixture
def node(tmp_path: Path, consortium: Consortium, clock: Clock) -> Iterator[Node]:
    n = _start_node(tmp_path / "ledger.db", consortium, clock)
    yield n
    n.stop()
    n.store.close()


@pytest.fixture
def ledger(node: Node, consortium: Consortium, clock: Clock) -> Ledger:
    return Ledger(node, consortium.ring, clock)


@pytest.fixture
def make_ledger(tmp_path: Path, clock: Clock) -> Iterator[Callable[[Consortium], Ledger]]:
    nodes: list[Node] = []

    def make(cons: Consortium) -> Ledger:
        n = _start_node(tmp_path / f"ledger-{len(nodes)}.db", cons, clock)
        nodes.append(n)
        return Ledger(n, cons.ring, clock)

    yield make
    for n in nodes:
        n.stop()
        n.store.close()
