"""Deterministic execution of one block: authenticate, authorise, validate, run, collect writes.

The same function runs in the node (building blocks) and in ``verify`` (replaying them), so a
peer that replays a chain gets byte-identical results, writes and roots. Inputs are the committed
state, the ordered transactions, the block's height and time, and a signature oracle; nothing
else. An invalid transaction yields a result with its reason code and no writes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from medledger.consortium.model import signing_key
from medledger.contracts.base import Registry
from medledger.contracts.context import Caller, Context
from medledger.crypto import canonical
from medledger.errors import Code, MedLedgerError
from medledger.ledger.block import result_doc
from medledger.ledger.state import BlockState, StateReader, nonce_key
from medledger.ledger.tx import Signature, Transaction

SigOracle = Callable[[Transaction, Signature, bytes], bool]
SYSTEM = Caller("_system/block", "_system", "system", "system")


@dataclass
class Executed:
    results: list[dict[str, Any]]
    writes: dict[str, bytes | None]
    encoded: list[bytes] = field(default_factory=list)  # canonical bytes of each result

    def __post_init__(self) -> None:
        if len(self.encoded) != len(self.results):
            # every part of a result was checked when the contract produced it
            self.encoded = [canonical.encode_checked_parts(r) for r in self.results]


class _Invalid(Exception):
    def __init__(self, code: Code, message: str) -> None:
        self.code, self.message = code, message


class Executor:
    """Runs blocks against a contract registry for one chain."""

    def __init__(self, registry: Registry, chain_id: str) -> None:
        self.registry = registry
        self.chain_id = chain_id
        self._decoded: dict[bytes, Any] = {}  # member/org records by their bytes (read-only)
        # per block: (member record bytes, kid) -> (caller, public key, org record bytes)
        self._auth: dict[tuple[bytes, str], tuple[Caller, bytes, bytes | None]] = {}

    def _load(self, raw: bytes) -> Any:
        value = self._decoded.get(raw)
        if value is None:
            if len(self._decoded) > 4096:
                self._decoded.clear()
            value = self._decoded[raw] = orjson.loads(raw)
        return value

    def execute_block(
        self,
        base: StateReader,
        txs: Sequence[Transaction],
        height: int,
        time: int,
        sig_ok: SigOracle,
    ) -> Executed:
        state = BlockState(base)
        self._auth = {}
        for contract in self.registry.contracts.values():
            tx_state = state.tx()
            contract.begin_block(Context(tx_state, contract.name, height, time, "", SYSTEM))
            tx_state.commit()
        nonces = [nonce_key(tx.signer, tx.nonce) for tx in txs]
        state.prefetch(self._likely_reads(txs, nonces))
        policies = orjson.loads(state.get("consortium/config") or b"{}").get("policies", {})
        run, encode = self._run, canonical.encode_checked_parts
        results: list[dict[str, Any]] = []
        encoded: list[bytes] = []
        for tx, nk in zip(txs, nonces, strict=True):
            result = run(state, tx, nk, height, time, sig_ok, policies)
            results.append(result)
            # encoded at once, while the result is still in the CPU's caches (ADR 0057)
            encoded.append(encode(result))
        return Executed(results, state.writes, encoded)

    def _likely_reads(self, txs: Sequence[Transaction], nonces: list[str]) -> list[str]:
        """State keys the block will probably read: nonces, signers' member and organisation
        records (once each) and what each method's ``reads`` hint names. Prefetched records
        are the same objects for every transaction, which lets ``_authenticate`` reuse its
        per-block verdict (it compares the organisation record by identity)."""
        keys = list(nonces)
        signers = {s.by: None for tx in txs for s in tx.sigs}
        keys.extend(f"consortium/member/{by}" for by in signers)
        # member ids are "org/name"; the record's own org field stays authoritative
        keys.extend({f"consortium/org/{by.split('/')[0]}": None for by in signers})
        contracts = self.registry.contracts
        for tx in txs:
            c = contracts.get(tx.contract)
            spec = c.methods.get(tx.method) if c is not None else None
            if spec is not None and spec.reads is not None:
                # a hint only: malformed args fail properly during execution (no
                # contextlib.suppress: it would build a context manager per transaction)
                try:  # noqa: SIM105
                    keys.extend(spec.reads(tx.args, tx.signer.split("/")[0]))
                except (KeyError, TypeError, ValueError):
                    pass
        return keys

    def _run(
        self,
        state: BlockState,
        tx: Transaction,
        nonce: str,
        height: int,
        time: int,
        sig_ok: SigOracle,
        policies: dict[str, Any],
    ) -> dict[str, Any]:
        """Run one transaction; ``nonce`` is its ``nonce_key``."""
        tx_state = state.tx()
        try:
            self._check_envelope(state, tx, nonce, time, policies)
            sigs = tx.sigs
            if len(sigs) == 1 and sigs[0].by == tx.signer and not tx.cosigners:
                caller = self._authenticate(state, tx, sigs[0], time, sig_ok)
                cosigners: tuple[Caller, ...] = ()
            else:
                callers = [self._authenticate(state, tx, s, time, sig_ok) for s in sigs]
                by_id = {c.id: c for c in callers}
                caller = by_id[tx.signer]
                cosigners = tuple(by_id[c] for c in tx.cosigners)
            contract, spec = self.registry.resolve(tx.contract, tx.method)
            if not spec.access.allows(caller.org_kind, caller.role):
                raise _Invalid(
                    Code.FORBIDDEN,
                    f"{tx.contract}.{tx.method}: caller {caller.id} is {caller.org_kind}/"
                    f"{caller.role}, not allowed",
                )
            try:
                args = spec.args_model.model_validate(tx.args)
            except ValidationError as exc:
                raise _Invalid(Code.BAD_ARGS, _describe(exc)) from None
            if spec.cosign is not None:
                _check_cosign(spec.cosign(args), cosigners)
            ctx = Context(tx_state, contract.name, height, time, tx.tx_id.hex(), caller, cosigners)
            value = spec.fn(contract, ctx, args)
            canonical.check(value)
        except _Invalid as exc:
            return result_doc(exc.code, exc.message)
        except MedLedgerError as exc:
            return result_doc(exc.code, exc.message)
        except Exception as exc:  # a contract bug must not stop the chain; only the type is kept
            return result_doc(Code.INTERNAL, f"contract raised {type(exc).__name__}")
        tx_state.put(nonce, str(height).encode())
        tx_state.commit()
        events = [{"data": e.data, "name": e.name} for e in ctx.events]
        return result_doc("ok", "", value, events)

    def _check_envelope(
        self, state: BlockState, tx: Transaction, nonce: str, time: int, policies: dict[str, Any]
    ) -> None:
        if tx.chain != self.chain_id:
            raise _Invalid(Code.WRONG_CHAIN, f"got chain {tx.chain!r}, want {self.chain_id!r}")
        max_age, max_future = policies["tx_max_age_ms"], policies["tx_max_future_ms"]
        if not time - max_age <= tx.time <= time + max_future:
            raise _Invalid(
                Code.STALE_TIME,
                f"tx time {tx.time} outside [{time - max_age}, {time + max_future}]",
            )
        if state.get(nonce) is not None:
            raise _Invalid(Code.REPLAYED_NONCE, f"{tx.signer} already used nonce {tx.nonce}")

    def _authenticate(
        self, state: BlockState, tx: Transaction, sig: Signature, time: int, sig_ok: SigOracle
    ) -> Caller:
        raw = state.get(f"consortium/member/{sig.by}")
        if raw is None:
            raise _Invalid(Code.UNKNOWN_SIGNER, f"no enrolled member {sig.by}")
        hit = self._auth.get((raw, sig.kid))
        if hit is not None:  # same member record and key, same block time: same verdict
            caller, pub, org_raw = hit
            if state.get(f"consortium/org/{caller.org}") is org_raw:
                if not sig_ok(tx, sig, pub):
                    raise _Invalid(Code.BAD_SIGNATURE,
                                   f"signature by {sig.by} (key {sig.kid}) is invalid")
                return caller
        member = self._load(raw)
        if member["status"] == "revoked" and member["revoked_at"] <= time:
            raise _Invalid(Code.MEMBER_REVOKED, f"member {sig.by} revoked")
        if time < member["not_before"] or (
            member["not_after"] is not None and time >= member["not_after"]
        ):
            raise _Invalid(Code.MEMBER_EXPIRED, f"member {sig.by} not valid at {time}")
        org_raw = state.get(f"consortium/org/{member['org']}")
        org = self._load(org_raw) if org_raw else None
        if org is None or org["status"] != "active":
            raise _Invalid(Code.ORG_INACTIVE, f"organisation {member['org']} is not active")
        try:
            key = signing_key(member, sig.kid, time)
        except MedLedgerError as exc:
            raise _Invalid(exc.code, exc.message) from None
        pub = _pub(key)
        caller = Caller(sig.by, member["org"], member["role"], org["kind"])
        self._auth[(raw, sig.kid)] = (caller, pub, org_raw)
        if not sig_ok(tx, sig, pub):
            raise _Invalid(Code.BAD_SIGNATURE, f"signature by {sig.by} (key {sig.kid}) is invalid")
        return caller


def _pub(key: dict[str, Any]) -> bytes:
    return base64.b64decode(key["pub"])


def _check_cosign(rules: Sequence[Any], cosigners: Sequence[Caller]) -> None:
    free = list(cosigners)
    for rule in rules:
        match = next((c for c in free if rule.satisfied_by(c.id, c.org, c.role)), None)
        if match is None:
            raise _Invalid(Code.MISSING_COSIGNATURE, f"needs a co-signature by {rule.describe()}")
        free.remove(match)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "args"
        parts.append(f"{loc}: {err['type']}")
    return "; ".join(parts)
