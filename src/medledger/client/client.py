"""Building, signing and submitting transactions as one member.

``Client`` talks to anything with ``submit(raw) -> Future[Receipt]``: the embedded ``Node``
itself, or ``medledger.client.http.HttpTransport`` for a node behind the HTTP API.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, Protocol

from medledger.crypto.keys import SigningKey
from medledger.ledger import tx as txmod


class Submitter(Protocol):
    def submit(self, raw: bytes) -> Future[Any]: ...


class Client:
    """Signs as ``member_id``. Nonces start at the current time in microseconds and count up,
    so a restarted client never reuses one."""

    def __init__(self, submitter: Submitter, chain_id: str, member_id: str, key: SigningKey):
        self.submitter, self.chain_id, self.member_id, self.key = (
            submitter, chain_id, member_id, key)
        self._nonces = itertools.count(time.time_ns() // 1000)

    def build(
        self,
        contract: str,
        method: str,
        args: dict[str, Any],
        cosigners: Mapping[str, SigningKey] | None = None,
        *,
        nonce: int | None = None,
        time_ms: int | None = None,
    ) -> bytes:
        body = txmod.make_body(
            chain=self.chain_id, contract=contract, method=method, args=args,
            signer=self.member_id, nonce=next(self._nonces) if nonce is None else nonce,
            time=time.time_ns() // 1_000_000 if time_ms is None else time_ms,
            cosigners=sorted(cosigners or {}),
        )
        return txmod.build(body, {self.member_id: self.key, **(cosigners or {})})

    def call(
        self,
        contract: str,
        method: str,
        args: dict[str, Any],
        cosigners: Mapping[str, SigningKey] | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """Submit and wait for the receipt (raises RejectedError on ingress refusal)."""
        return self.submitter.submit(self.build(contract, method, args, cosigners)).result(timeout)
