"""Reason codes shared by every layer, and the catalog that maps each to an HTTP status.

Hierarchy::

    MedLedgerError            every error this package raises on purpose; has ``.code``
    ├── RejectedError          input refused before it could reach a block (ingress checks)
    └── (domain errors)        e.g. ``ContractError`` raised inside contracts, ``StoreError``

A code is data: it crosses process and HTTP boundaries as a stable string. ``CATALOG`` gives each
code its HTTP status and a short title for RFC 9457 problem details; a unit test checks that the
catalog covers the enum.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Stable reason codes. Never rename one; add new ones at the end of their group."""

    # envelope and encoding
    MALFORMED_JSON = "malformed_json"
    NON_CANONICAL = "non_canonical"
    FLOAT_NOT_ALLOWED = "float_not_allowed"
    TOO_LARGE = "too_large"
    BAD_ENVELOPE = "bad_envelope"
    WRONG_CHAIN = "wrong_chain"
    # authentication
    BAD_SIGNATURE = "bad_signature"
    MISSING_SIGNATURE = "missing_signature"
    UNKNOWN_SIGNER = "unknown_signer"
    KEY_REVOKED = "key_revoked"
    KEY_EXPIRED = "key_expired"
    MEMBER_REVOKED = "member_revoked"
    MEMBER_EXPIRED = "member_expired"
    ORG_INACTIVE = "org_inactive"
    REPLAYED_NONCE = "replayed_nonce"
    DUPLICATE_TX = "duplicate_tx"
    STALE_TIME = "stale_time"
    # dispatch and authorisation
    UNKNOWN_CONTRACT = "unknown_contract"
    UNKNOWN_METHOD = "unknown_method"
    BAD_ARGS = "bad_args"
    FORBIDDEN = "forbidden"
    MISSING_COSIGNATURE = "missing_cosignature"
    # contract outcomes
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    CONFLICT = "conflict"
    INVALID_STATE = "invalid_state"
    # ledger reads, proofs, storage
    UNKNOWN_TX = "unknown_tx"
    UNKNOWN_BLOCK = "unknown_block"
    BAD_PROOF_REQUEST = "bad_proof_request"
    UNAUTHENTICATED = "unauthenticated"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NODE_UNAVAILABLE = "node_unavailable"
    TIMEOUT = "timeout"
    STORE_CORRUPT = "store_corrupt"
    VERIFY_FAILED = "verify_failed"
    INTERNAL = "internal"
    ORDERING_FAULT = "ordering_fault"
    FENCED = "fenced"


CATALOG: dict[Code, tuple[int, str]] = {
    Code.MALFORMED_JSON: (400, "Body is not valid JSON"),
    Code.NON_CANONICAL: (400, "Transaction bytes are not in canonical form"),
    Code.FLOAT_NOT_ALLOWED: (400, "Floating-point numbers are not allowed"),
    Code.TOO_LARGE: (413, "Transaction exceeds the size cap"),
    Code.BAD_ENVELOPE: (400, "Transaction envelope is malformed"),
    Code.WRONG_CHAIN: (400, "Transaction is for another chain"),
    Code.BAD_SIGNATURE: (401, "Signature does not verify"),
    Code.MISSING_SIGNATURE: (401, "A required signature is missing"),
    Code.UNKNOWN_SIGNER: (401, "Signer is not an enrolled member"),
    Code.KEY_REVOKED: (401, "Signing key was revoked"),
    Code.KEY_EXPIRED: (401, "Signing key is outside its validity period"),
    Code.MEMBER_REVOKED: (403, "Member was revoked"),
    Code.MEMBER_EXPIRED: (403, "Member is outside its validity period"),
    Code.ORG_INACTIVE: (403, "Member's organisation is not active"),
    Code.REPLAYED_NONCE: (409, "Nonce was already used by this signer"),
    Code.DUPLICATE_TX: (409, "Transaction was already submitted"),
    Code.STALE_TIME: (400, "Transaction time is too far from the ledger's time"),
    Code.UNKNOWN_CONTRACT: (404, "No such contract"),
    Code.UNKNOWN_METHOD: (404, "No such contract method"),
    Code.BAD_ARGS: (422, "Arguments fail the method's schema"),
    Code.FORBIDDEN: (403, "Caller's organisation kind or role may not call this"),
    Code.MISSING_COSIGNATURE: (403, "A required co-signature is missing"),
    Code.NOT_FOUND: (404, "Referenced item does not exist"),
    Code.ALREADY_EXISTS: (409, "Item already exists"),
    Code.CONFLICT: (409, "Request conflicts with the current state"),
    Code.INVALID_STATE: (409, "Item is not in a state that allows this"),
    Code.UNKNOWN_TX: (404, "No such transaction"),
    Code.UNKNOWN_BLOCK: (404, "No such block"),
    Code.BAD_PROOF_REQUEST: (400, "Proof parameters are out of range"),
    Code.UNAUTHENTICATED: (401, "Request is not signed by an active member"),
    Code.METHOD_NOT_ALLOWED: (405, "Method not allowed on this resource"),
    Code.NODE_UNAVAILABLE: (503, "Node is not accepting transactions"),
    Code.TIMEOUT: (504, "Timed out waiting for the receipt"),
    Code.STORE_CORRUPT: (500, "Stored ledger data is inconsistent"),
    Code.VERIFY_FAILED: (500, "Ledger verification failed"),
    Code.INTERNAL: (500, "Internal error"),
    Code.ORDERING_FAULT: (502, "The ordering service delivered something malformed"),
    Code.FENCED: (409, "This sequencer lost its position; another one appended"),
}


class MedLedgerError(Exception):
    """Base error: carries a stable ``code`` and a human-readable message (got/want style)."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RejectedError(MedLedgerError):
    """Input refused at ingress; nothing was ordered and no state changed."""
