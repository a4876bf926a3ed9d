"""A patient's consent status at a height — and, on request, its proof.

The status is the patient's consent index ``consent/p/<patient>`` (ADR 0025) as it was after
block ``height``. ``status_doc(..., prove=True)`` adds the key-history proof of that one key
(``medledger.ledger.stateproof``, ADR 0035): the block that last wrote the index, a
non-membership proof for every later block up to ``height``, and the headers up to a signed
checkpoint. ``verify_status`` is what a patient's app or an auditor runs offline with a
``LightClient`` trusting the consortium's organisation keys; it proves, for example, that a
consent was revoked by that height and that nothing re-granted it in between.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from medledger.client.light import LightClient
from medledger.client.stateproof import StateFact
from medledger.consent.model import PATIENT, patient_key
from medledger.errors import Code, MedLedgerError
from medledger.ledger.stateproof import DEFAULT_MAX_BLOCKS, build_state_proof
from medledger.ledger.store.base import Store


def index_key(patient: str) -> str:
    """The state key of the patient's consent index."""
    return f"consent/{patient_key(patient)}"


def _patient(patient: str) -> str:
    if not re.match(PATIENT, patient):
        raise MedLedgerError(Code.BAD_ARGS, f"patient {patient!r} is not a pseudonym "
                             f"({PATIENT})")
    return patient


def status_doc(store: Store, patient: str, height: int | None = None, *, prove: bool = False,
               size: int | None = None,
               max_blocks: int = DEFAULT_MAX_BLOCKS) -> dict[str, Any]:
    """``{"patient", "height", "consents"}`` after block ``height`` (default: the head, or with
    ``prove`` the newest checkpointed block), plus ``"proof"`` with ``prove`` (against the
    checkpoint of log ``size``, default the one signed for that block)."""
    key = index_key(_patient(patient))
    if prove:
        proof = build_state_proof(store, key, height, size=size, max_blocks=max_blocks)
        value = None if proof["value"] is None else base64.b64decode(proof["value"])
        return {"patient": patient, "height": proof["height"],
                "consents": {} if value is None else orjson.loads(value), "proof": proof}
    head = store.head()
    top = -1 if head is None else head.height
    at = top if height is None else min(height, top)
    found = store.state_at(key, at)
    value = None if found is None else found[1]
    return {"patient": patient, "height": at,
            "consents": {} if value is None else orjson.loads(value)}


def verify_status(light: LightClient, patient: str, proof: dict[str, Any],
                  height: int | None = None) -> tuple[dict[str, Any], StateFact]:
    """Check a status proof offline: it is about this patient's consent index (and ``height``
    when given) and verifies under a checkpoint ``light`` accepts. Returns the proven consent
    index (``{}`` when the patient had none) and what the proof established. Raises
    ``LightClientError`` otherwise."""
    fact = light.verify_state(proof, key=index_key(_patient(patient)), height=height)
    consents = {} if fact.value is None else orjson.loads(fact.value)
    if type(consents) is not dict:
        raise MedLedgerError(Code.VERIFY_FAILED, "the proven consent index is not an object")
    return consents, fact
