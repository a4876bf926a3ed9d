"""The exchange's one error: a refusal with a consent reason and, when recorded, its entry."""

from __future__ import annotations

from medledger.consent.model import Reason
from medledger.errors import Code, MedLedgerError

# The HTTP-facing code of each refusal (``medledger.errors.CATALOG`` gives its status).
REASON_CODES: dict[Reason, Code] = {
    Reason.NO_CONSENT: Code.FORBIDDEN,
    Reason.CONSENT_EXPIRED: Code.FORBIDDEN,
    Reason.CONSENT_NOT_STARTED: Code.FORBIDDEN,
    Reason.CONSENT_REVOKED: Code.FORBIDDEN,
    Reason.WRONG_PURPOSE: Code.FORBIDDEN,
    Reason.WRONG_RECIPIENT: Code.FORBIDDEN,
    Reason.CATEGORY_NOT_CONSENTED: Code.FORBIDDEN,
    Reason.TAMPERED_RECORD: Code.VERIFY_FAILED,
    Reason.REPLAYED_REQUEST: Code.REPLAYED_NONCE,
    Reason.STALE_REQUEST: Code.STALE_TIME,
    Reason.BAD_SIGNATURE: Code.BAD_SIGNATURE,
    Reason.KEY_REVOKED: Code.KEY_REVOKED,
    Reason.UNKNOWN_REQUESTER: Code.UNKNOWN_SIGNER,
    Reason.JUSTIFICATION_REQUIRED: Code.BAD_ARGS,
    Reason.BREAK_GLASS_NOT_ALLOWED: Code.FORBIDDEN,
    Reason.WRONG_HOLDER: Code.BAD_ARGS,
    Reason.MALFORMED_REQUEST: Code.BAD_ARGS,
    Reason.NOT_RECORDED: Code.CONFLICT,
}


class ExchangeError(MedLedgerError):
    """An exchange refused for ``reason``; ``entry`` is its access-log key when recorded."""

    def __init__(self, reason: Reason, message: str, entry: str | None = None) -> None:
        super().__init__(REASON_CODES[reason], f"{reason}: {message}")
        self.reason = reason
        self.entry = entry
