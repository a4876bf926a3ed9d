"""Witnesses on real nodes: every organisation's witness (persisting in its own SQLite store)
cosigns a node's checkpoints until they are final; a peer that forks the chain with the same key
is caught, and the evidence checks out offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medledger.crypto.keys import SigningKey
from medledger.ledger.checkpoint import split_note
from medledger.ledger.cosignature import attach
from medledger.ledger.equivocation import first_divergent_height, verify_equivocation
from medledger.ledger.finality import ConsortiumKeys, FinalCheckpoint, quorum
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.witness import Witness, WitnessError
from medledger.node.node import checkpoint_origin
from tests.conftest import CHAIN, ORGS, Consortium, Ledger

pytestmark = pytest.mark.integration

WITNESS_KEYS = {org: SigningKey(bytes([i + 1]) * 32) for i, (org, _, _) in enumerate(ORGS)}


def _bodies(ledger: Ledger) -> dict[int, bytes]:
    return {h: split_note(note)[0] for _, h, note in ledger.store.checkpoints()}


def test_witnesses_finalise_checkpoints_and_catch_a_fork(
    make_ledger: Callable[[Consortium], Ledger], consortium: Consortium, tmp_path: Path
) -> None:
    honest, forked = make_ledger(consortium), make_ledger(consortium)  # both run as hosp-a
    origin = checkpoint_origin(CHAIN)
    logs = {origin: consortium.genesis.org_keys()}
    stores = {org: SQLiteStore(tmp_path / f"witness-{org}.db") for org in WITNESS_KEYS}
    witnesses = {org: Witness(org, k, stores[org], logs, clock=lambda: 1_764_259_300)
                 for org, k in WITNESS_KEYS.items()}
    keys = ConsortiumKeys(consortium.genesis.org_keys(),
                          {org: k.public for org, k in WITNESS_KEYS.items()})
    cosigning = list(witnesses)[: quorum(len(witnesses))]  # 4 of 6: just final
    try:
        honest.advance_to(3)
        old = 0
        for size, _height, note in sorted(honest.store.checkpoints()):
            proof = honest.node.consistency_proof(old, size) if 0 < old < size else []
            lines = {org: witnesses[org].add_checkpoint(old, proof, note) for org in cosigning}
            honest.store.add_cosignatures(size, {o: ln.encode() for o, ln in lines.items()})
            final = FinalCheckpoint.verify(
                attach(note, honest.store.cosignatures(size).values()), keys, origin=origin
            )
            assert [c.name for c in final.cosigners] == sorted(cosigning)
            old = size

        # The fork: block 1 holds another transaction, signed with the same peer key, and the
        # forked chain catches up to the height the witnesses last cosigned.
        forked.filler("hosp-b/gw")
        forked.advance_to(3)
        _, height, fork_note = max(forked.store.checkpoints())
        assert height == 3
        stale = sorted(forked.store.checkpoints())[1][2]  # an older forked checkpoint
        with pytest.raises(WitnessError) as e:
            witnesses["cdc"].add_checkpoint(1, [], stale)
        assert e.value.code == "size_conflict"  # refused (never final), but not provable here
        with pytest.raises(WitnessError) as e:
            witnesses["cdc"].add_checkpoint(old, [], fork_note)
        assert e.value.code == "equivocation" and e.value.evidence is not None
        assert witnesses["cdc"].evidence(origin) == e.value.evidence  # kept in its store
        report = verify_equivocation(e.value.evidence.to_json(), keys)
        assert report.signed_both == ("hosp-a",)
        assert first_divergent_height(_bodies(honest), _bodies(forked)) == 1
    finally:
        for s in stores.values():
            s.close()
