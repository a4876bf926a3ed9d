"""The light client accepts only proofs that chain up to a checkpoint signed by trusted keys."""

from __future__ import annotations

import orjson
import pytest
from tests.integration.chainbuilder import build_chain

from medledger.client.light import LightClient, LightClientError
from medledger.crypto.keys import SigningKey
from medledger.errors import MedLedgerError
from medledger.ledger.checkpoint import add_signature
from medledger.workspace import Workspace


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_chain(tmp_path_factory.mktemp("light") / "ws", records=12)


def _material(ws: Workspace, pick: int = 5) -> tuple[LightClient, dict[str, object]]:
    store = ws.store()
    size, _, note = store.checkpoint() or (0, 0, b"")
    rec = store.txs_range(pick, pick + 1)[0]
    node = ws.node()
    proof = node.inclusion_proof(rec.index, size)
    genesis = ws.genesis()
    light = LightClient(genesis.chain_id, genesis.org_keys())
    return light, {"raw": rec.raw, "height": rec.height, "result": orjson.loads(rec.result),
                   "index": rec.index, "proof": proof, "note": note, "size": size}


def test_inclusion_verifies(chain: Workspace) -> None:
    light, m = _material(chain)
    cp = light.verify_inclusion(m["raw"], m["height"], m["result"], m["index"], m["proof"],
                                m["note"])  # type: ignore[arg-type]
    assert cp.size == m["size"]


@pytest.mark.parametrize("mutation", ["tx_byte", "result_code", "height", "index", "proof_hash",
                                      "truncated_proof", "note_byte"])
def test_inclusion_rejects_every_mutation(chain: Workspace, mutation: str) -> None:
    light, m = _material(chain)
    raw, result, height, index = m["raw"], dict(m["result"]), m["height"], m["index"]  # type: ignore[call-overload]
    proof, note = list(m["proof"]), bytes(m["note"])  # type: ignore[call-overload]
    if mutation == "tx_byte":
        raw = raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:]
    elif mutation == "result_code":
        result["code"] = "forbidden" if result["code"] == "ok" else "ok"
    elif mutation == "height":
        height += 1
    elif mutation == "index":
        index += 1
    elif mutation == "proof_hash":
        proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    elif mutation == "truncated_proof":
        proof = proof[:-1]
    else:
        note = note.replace(b"\n", b"\n ", 1)
    with pytest.raises(LightClientError):
        light.verify_inclusion(raw, height, result, index, proof, note)


def test_untrusted_signer_and_quorum(chain: Workspace) -> None:
    light, m = _material(chain)
    stranger = LightClient(light.chain_id, {"hosp-a": SigningKey.generate().public})
    with pytest.raises(LightClientError):
        stranger.checkpoint(m["note"])  # type: ignore[arg-type]
    two = LightClient(light.chain_id, light.trusted, quorum=2)
    with pytest.raises(LightClientError, match="at least 2"):
        two.checkpoint(m["note"])  # type: ignore[arg-type]
    ring = chain.keyring()
    cosigned = add_signature(m["note"], "hosp-b", ring.signing["hosp-b/root"].nacl_key())  # type: ignore[arg-type]
    assert two.checkpoint(cosigned).size == m["size"]


def test_wrong_chain_rejected(chain: Workspace) -> None:
    light, m = _material(chain)
    other = LightClient("other-chain", light.trusted)
    with pytest.raises(LightClientError):
        other.checkpoint(m["note"])  # type: ignore[arg-type]


def test_consistency_between_checkpoints(chain: Workspace) -> None:
    store = chain.store()
    cps = store.checkpoints()
    node = chain.node()
    light, _ = _material(chain)
    old, new = cps[3], cps[-1]
    proof = node.consistency_proof(old[0], new[0])
    light.verify_consistency(old[2], new[2], proof)
    with pytest.raises(LightClientError):
        light.verify_consistency(new[2], old[2], proof)
    if proof:
        bad = [bytes([proof[0][0] ^ 0x80]) + proof[0][1:], *proof[1:]]
        with pytest.raises(LightClientError):
            light.verify_consistency(old[2], new[2], bad)
    with pytest.raises(MedLedgerError, match="0 < old"):
        node.consistency_proof(0, new[0])
    with pytest.raises(LightClientError, match="empty log"):
        light.verify_consistency(cps[0][2], new[2], [])
