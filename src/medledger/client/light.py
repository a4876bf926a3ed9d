"""The light client: checks ledger facts offline, trusting only organisations' public keys.

Given a transaction's bytes, its result, its height, an RFC 9162 inclusion proof and a signed
checkpoint (C2SP signed note), ``verify_inclusion`` proves that the transaction was ordered into
the log at that position with that result, under a checkpoint signed by at least ``quorum``
trusted organisations. ``verify_consistency`` proves that a newer checkpoint extends an older one
(the log was only appended to). ``verify_state`` checks a key-history proof: that a key had a
value — or none — after a given block (``medledger.client.stateproof``, ADR 0035). Nothing here
talks to a node.

Proof bundles are plain JSON with hex hashes so that any RFC 9162 implementation can check them::

    {"tx_id": hex, "index": 5, "size": 12, "leaf_hash": hex, "hashes": [hex, ...], "root": hex,
     "checkpoint": "<signed note text>"}
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medledger.errors import Code, MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.block import leaf_data
from medledger.ledger.checkpoint import Checkpoint, CheckpointError, verify_checkpoint
from medledger.ledger.checkpoint import key_id as note_key_id

if TYPE_CHECKING:
    from medledger.client.stateproof import StateFact


class LightClientError(MedLedgerError):
    """A proof, checkpoint or bundle that does not verify."""


@dataclass(frozen=True)
class LightClient:
    chain_id: str
    trusted: Mapping[str, bytes]  # note signer name (organisation id) -> Ed25519 public key
    quorum: int = 1
    # cosigning organisations of a cluster: when set, only final checkpoints are accepted —
    # signed by a trusted log key and cosigned (C2SP tlog-cosignature) by ``needed`` (default
    # ⌈2n/3⌉) of these witnesses
    witnesses: Mapping[str, bytes] | None = None
    needed: int | None = None

    @property
    def origin(self) -> str:
        return f"medledger/{self.chain_id}"

    def checkpoint(self, note: bytes) -> Checkpoint:
        """Open a checkpoint note; requires ``quorum`` distinct trusted signers, and with
        ``witnesses`` a final checkpoint (a quorum of cosignatures)."""
        if self.witnesses is not None:
            from medledger.ledger.finality import ConsortiumKeys, FinalCheckpoint

            try:
                return FinalCheckpoint.verify(
                    note, ConsortiumKeys(log=self.trusted, witnesses=self.witnesses),
                    origin=self.origin, needed=self.needed).checkpoint
            except CheckpointError as exc:
                raise LightClientError(Code.VERIFY_FAILED, f"checkpoint: {exc}") from None
        verifiers = {(n, note_key_id(n, pk)): pk for n, pk in self.trusted.items()}
        try:
            cp, names = verify_checkpoint(note, verifiers, origin=self.origin)
        except CheckpointError as exc:
            raise LightClientError(Code.VERIFY_FAILED, f"checkpoint: {exc}") from None
        if len(set(names)) < self.quorum:
            raise LightClientError(
                Code.VERIFY_FAILED, f"checkpoint signed by {sorted(set(names))}, "
                f"want at least {self.quorum} trusted signers")
        return cp

    def verify_inclusion(
        self,
        tx_raw: bytes,
        height: int,
        result: dict[str, Any],
        index: int,
        proof: Sequence[bytes],
        note: bytes,
    ) -> Checkpoint:
        """Prove ``tx_raw`` with ``result`` is leaf ``index`` of the checkpointed log."""
        cp = self.checkpoint(note)
        leaf = merkle.leaf_hash(leaf_data(hashlib.sha256(tx_raw).digest(), height, result))
        try:
            merkle.verify_inclusion(leaf, index, cp.size, proof, cp.root)
        except merkle.ProofError as exc:
            raise LightClientError(Code.VERIFY_FAILED, f"inclusion: {exc}") from None
        return cp

    def verify_consistency(self, old_note: bytes, new_note: bytes, proof: Sequence[bytes]) -> None:
        """Prove the log in ``new_note`` extends the log in ``old_note``."""
        old, new = self.checkpoint(old_note), self.checkpoint(new_note)
        if old.size == 0:
            raise LightClientError(
                Code.BAD_PROOF_REQUEST, "consistency from an empty log is undefined "
                "(RFC 9162 §2.1.4); check the newer checkpoint on its own")
        try:
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except merkle.ProofError as exc:
            raise LightClientError(Code.VERIFY_FAILED, f"consistency: {exc}") from None

    def verify_bundle(self, bundle: Mapping[str, Any]) -> Checkpoint:
        """Check a JSON inclusion bundle (leaf hash given) against its checkpoint."""
        try:
            leaf = bytes.fromhex(bundle["leaf_hash"])
            hashes = [bytes.fromhex(h) for h in bundle["hashes"]]
            note = str(bundle["checkpoint"]).encode()
            index = int(bundle["index"])
        except (KeyError, ValueError, TypeError) as exc:
            raise LightClientError(Code.BAD_PROOF_REQUEST, f"bundle: {exc}") from None
        cp = self.checkpoint(note)
        try:
            merkle.verify_inclusion(leaf, index, cp.size, hashes, cp.root)
        except merkle.ProofError as exc:
            raise LightClientError(Code.VERIFY_FAILED, f"inclusion: {exc}") from None
        return cp

    def verify_state(
        self, proof: Mapping[str, Any], *, key: str | None = None, height: int | None = None
    ) -> StateFact:
        """Check a state proof document (``medledger.ledger.stateproof``): the key's value, or
        its absence, after block ``height``, under a checkpoint this client accepts. With
        ``key``/``height`` it must be about that key at that height."""
        from medledger.client.stateproof import verify_state_proof

        return verify_state_proof(proof, self, key=key, height=height)
