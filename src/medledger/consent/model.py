"""Consent vocabulary, state keys and the one consent decision everybody runs.

A consent (modelled on FHIR R4 ``Consent`` with ``provision.type = permit``) lets a recipient —
an organisation, or any member with a role — use a patient's records of some data categories
for one purpose during a period. The patient is named only by the consortium pseudonym
(``<key version>-<32 hex>``, a keyed HMAC; ADR 0017), never by an identifier or plain hash.

State keys under ``consent/``:

* ``p/<patient>``   every consent of the patient: ``{consent_id: summary}`` — one key read answers
                    a check, whatever the number of consents on the ledger
* ``c/<consent_id>`` the full consent: provisions, evidence, who recorded it, grant/revoke txs
* ``agent/<patient>`` the ``patient-agent`` member allowed to sign for the patient

``decide`` is deterministic and pure: the ``access`` contract runs it at block time and the
holder's gateway runs it before releasing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PURPOSES = ("treatment", "referral", "research", "insurance-claim", "public-health")
PATIENT = r"^[a-z0-9]{1,8}-[0-9a-f]{32}$"
CATEGORY = r"^[a-z][a-z0-9-]{0,31}$"
CONSENT_ID = r"^[A-Za-z0-9._:-]{1,64}$"
ORG = r"^[a-z0-9][a-z0-9-]{0,62}$"
ALL = "all"  # the category that covers every other


class Reason(StrEnum):
    """Why an access was granted or refused. Stable strings on the ledger; never rename."""

    CONSENTED = "consented"
    BREAK_GLASS = "break_glass"
    NO_CONSENT = "no_consent"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_NOT_STARTED = "consent_not_started"
    CONSENT_REVOKED = "consent_revoked"
    WRONG_PURPOSE = "wrong_purpose"
    WRONG_RECIPIENT = "wrong_recipient"
    CATEGORY_NOT_CONSENTED = "category_not_consented"
    TAMPERED_RECORD = "tampered_record"
    REPLAYED_REQUEST = "replayed_request"
    STALE_REQUEST = "stale_request"
    BAD_SIGNATURE = "bad_signature"
    KEY_REVOKED = "key_revoked"
    UNKNOWN_REQUESTER = "unknown_requester"
    JUSTIFICATION_REQUIRED = "justification_required"
    BREAK_GLASS_NOT_ALLOWED = "break_glass_not_allowed"
    WRONG_HOLDER = "wrong_holder"
    MALFORMED_REQUEST = "malformed_request"
    NOT_RECORDED = "not_recorded"


GRANTING = frozenset({Reason.CONSENTED, Reason.BREAK_GLASS})


def patient_key(patient: str) -> str:
    return f"p/{patient}"


def consent_key(consent_id: str) -> str:
    return f"c/{consent_id}"


def agent_key(patient: str) -> str:
    return f"agent/{patient}"


@dataclass(frozen=True)
class Decision:
    reason: Reason
    consent_id: str | None = None

    @property
    def granted(self) -> bool:
        return self.reason in GRANTING


def _covers(granted: list[str], wanted: list[str]) -> bool:
    return ALL in granted or set(wanted) <= set(granted)


def _recipient_matches(summary: dict[str, Any], org: str, role: str) -> bool:
    r: dict[str, str] = summary["recipient"]
    return r.get("org") == org if "org" in r else r.get("role") == role


def decide(
    index: dict[str, Any] | None, org: str, role: str, purpose: str, categories: list[str],
    time: int,
) -> Decision:
    """The consent decision for ``org``/``role`` asking ``categories`` for ``purpose`` at
    ``time`` (Unix ms), given the patient's consent index (the value at ``p/<patient>``).

    Granted if some active consent names the recipient (organisation, or role) and the purpose,
    covers every category and holds at ``time`` (``start <= time < end``). Otherwise the most
    specific reason: revoked > expired > not started > categories > wrong purpose > wrong
    recipient > no consent, judged on the consents that match the most.
    """
    if not index:
        return Decision(Reason.NO_CONSENT)
    best: tuple[int, Reason, str] | None = None
    for cid, s in sorted(index.items()):
        rcpt, purp = _recipient_matches(s, org, role), s["purpose"] == purpose
        if rcpt and purp:
            if s["status"] == "revoked":
                cand = (5, Reason.CONSENT_REVOKED)
            elif s["end"] is not None and time >= s["end"]:
                cand = (4, Reason.CONSENT_EXPIRED)
            elif time < s["start"]:
                cand = (3, Reason.CONSENT_NOT_STARTED)
            elif not _covers(s["categories"], categories):
                cand = (2, Reason.CATEGORY_NOT_CONSENTED)
            else:
                return Decision(Reason.CONSENTED, cid)
        elif rcpt:
            cand = (1, Reason.WRONG_PURPOSE)
        elif purp:
            cand = (0, Reason.WRONG_RECIPIENT)
        else:
            continue
        if best is None or cand[0] > best[0]:
            best = (cand[0], cand[1], cid)
    if best is None:
        return Decision(Reason.NO_CONSENT)
    return Decision(best[1], best[2])
