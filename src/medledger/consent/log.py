"""A patient's access log: every access to their records, each with an inclusion proof.

``patient_log`` reads the ``access`` contract's entries for one pseudonym (oldest first) and
attaches to each the transaction that recorded it and an RFC 9162 inclusion proof of that
transaction in the ledger's log, against the newest signed checkpoint that covers it (or the
head, with ``checkpoint: null``, for entries newer than every checkpoint).

``verify_item`` is what a patient's app runs offline with a ``LightClient`` that trusts the
consortium's organisation keys: the checkpoint is signed, the transaction is in the log, its
result is ``ok`` and its arguments are the entry shown.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import orjson

from medledger.client.light import LightClient
from medledger.consent.model import PATIENT
from medledger.errors import Code, MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.store.base import Store
from medledger.node import views

FIELDS = ("requester", "holder", "patient", "categories", "purpose", "outcome", "reason",
          "consent_id", "break_glass", "claimed_requester")


def patient_log(store: Store, patient: str, *, proofs: bool = True,
                limit: int = 10_000) -> list[dict[str, Any]]:
    """Every access entry of ``patient``, oldest first: ``{"key", "entry", "tx", "height",
    "result", "proof"}``, plus ``"review"`` (the auditor's review record, status ``pending``
    until reviewed; not covered by the proof) for a flagged break-glass entry.

    ``tx`` is the recording transaction's canonical bytes (base64). Raises ``bad_args`` for a
    string that is not a consortium pseudonym.
    """
    if not re.match(PATIENT, patient):
        raise MedLedgerError(Code.BAD_ARGS, f"patient {patient!r} is not a pseudonym "
                             f"({PATIENT})")
    out = []
    for key, raw in store.scan_state(f"access/e/{patient}/", limit=limit):
        entry = orjson.loads(raw)
        item: dict[str, Any] = {"key": key.removeprefix("access/"), "entry": entry}
        if entry.get("flagged"):  # break-glass: where the holder's auditor's review stands
            review = store.get_state(f"access/review/{entry['holder']}/{item['key'][2:]}")
            item["review"] = None if review is None else orjson.loads(review)
        if proofs:
            rec = store.tx(bytes.fromhex(entry["tx"]))
            if rec is None:  # pragma: no cover - state and log are written together
                raise MedLedgerError(Code.STORE_CORRUPT, f"entry {key} names unknown tx")
            item["tx"] = base64.b64encode(rec.raw).decode()
            item["height"] = rec.height
            item["result"] = orjson.loads(rec.result)
            item["proof"] = _proof(store, rec)
        out.append(item)
    return out


def _proof(store: Store, rec: Any) -> dict[str, Any]:
    size, _ = views.proof_size(store)
    if rec.index < size:
        return views.tx_proof(store, rec, None)
    size = views.head_header(store).log_size
    return {"tx_id": rec.tx_id.hex(), "index": rec.index, "size": size,
            "hashes": views.hexes(merkle.inclusion_proof(rec.index, size, store)),
            "root": merkle.tree_root(size, store).hex(), "checkpoint": None}


def verify_item(light: LightClient, item: dict[str, Any]) -> int:
    """Check one log item offline; returns the checkpoint size it is proven in.

    Raises ``MedLedgerError`` (``verify_failed``) if the proof, the checkpoint, the result or the
    arguments do not match the entry, and ``bad_proof_request`` if no checkpoint covers it yet.
    """
    proof = item["proof"]
    if proof["checkpoint"] is None:
        raise MedLedgerError(Code.BAD_PROOF_REQUEST, "no signed checkpoint covers this entry "
                             "yet; fetch the log again later")
    raw = base64.b64decode(item["tx"])
    if hashlib.sha256(raw).hexdigest() != item["entry"]["tx"]:
        raise MedLedgerError(Code.VERIFY_FAILED, "transaction bytes are not the entry's tx")
    cp = light.verify_inclusion(raw, item["height"], item["result"], proof["index"],
                                [bytes.fromhex(h) for h in proof["hashes"]],
                                proof["checkpoint"].encode())
    if item["result"]["code"] != "ok":
        raise MedLedgerError(Code.VERIFY_FAILED, f"the tx failed: {item['result']['code']}")
    body = orjson.loads(raw)["body"]
    args = body["args"]
    if (body["contract"], body["method"]) != ("access", "record"):
        raise MedLedgerError(Code.VERIFY_FAILED, "the tx is not an access.record")
    for f in FIELDS:
        if args.get(f, False if f == "break_glass" else None) != item["entry"].get(f):
            raise MedLedgerError(Code.VERIFY_FAILED, f"entry {f}: got {item['entry'].get(f)!r}, "
                                 f"the ledger says {args.get(f)!r}")
    return cp.size
