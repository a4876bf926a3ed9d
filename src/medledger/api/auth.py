"""Authenticating HTTP read requests with consortium members' own Ed25519 keys.

Scheme ``medledger/http/v1``. A request carries four headers:

* ``X-MedLedger-Member``: the member id ``<org>/<name>``;
* ``X-MedLedger-Key``: the key id (16 hex digits) of one of the member's signing keys;
* ``X-MedLedger-Time``: the client's clock in Unix milliseconds (decimal, no sign);
* ``X-MedLedger-Signature``: standard base64 of the 64-byte Ed25519 signature over::

      b"medledger/http/v1\\n" + METHOD + b"\\n" + path_with_query + b"\\n" + time + b"\\n"
      + hex(SHA-256(body))

  ``METHOD`` is upper case; ``path_with_query`` is the request target exactly as sent on the
  wire (percent-encoded path, then ``?`` and the query string when there is one); ``time`` is
  the header's text; the body hash is lower-case hex (of the empty string for a GET).

The server accepts the request only when all of these hold, else it answers 401 with the
problem code ``unauthenticated`` and a detail saying which check failed:

1. all four headers are present and well formed;
2. ``time`` is within ±300 s (:data:`MAX_SKEW_MS`) of the server's clock;
3. the member is enrolled, its status is ``active`` and ``now`` lies in its validity period;
4. its organisation is ``active``;
5. the key is the member's and valid at ``now`` (:func:`medledger.consortium.model.active_key`);
6. the signature verifies.

Membership is read from the node's committed state, so a revocation takes effect for reads as
soon as its block commits. A captured request can be replayed for up to the skew window; that
only repeats a read the member was allowed to make, so reads carry no nonce. Transactions do not
use this scheme: their own signatures authenticate them.
"""

from __future__ import annotations

import hashlib
import time as _time
from typing import Annotated

import orjson
from fastapi import Depends, Header, Request

from medledger.api.deps import get_node
from medledger.consortium.model import active_key, key_status
from medledger.crypto.keys import BadKeyError, SigningKey, b64, unb64, verify
from medledger.errors import Code, MedLedgerError
from medledger.ledger.store.base import Store
from medledger.ledger.tx import KID, MEMBER_ID
from medledger.node.node import Node

DOMAIN = b"medledger/http/v1\n"
MAX_SKEW_MS = 300_000
H_MEMBER = "X-MedLedger-Member"
H_KEY = "X-MedLedger-Key"
H_TIME = "X-MedLedger-Time"
H_SIGNATURE = "X-MedLedger-Signature"


class AuthError(MedLedgerError):
    """A request that does not prove it comes from an active member (always ``unauthenticated``)."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.UNAUTHENTICATED, message)


def now_ms() -> int:
    return _time.time_ns() // 1_000_000


def signing_input(method: str, path_with_query: str, time_ms: str, body: bytes) -> bytes:
    """The exact bytes a request signature covers (see the module docstring)."""
    return b"%s%s\n%s\n%s\n%s" % (
        DOMAIN,
        method.upper().encode("ascii"),
        path_with_query.encode("utf-8"),
        time_ms.encode("ascii"),
        hashlib.sha256(body).hexdigest().encode("ascii"),
    )


def sign_request(
    method: str,
    path_with_query: str,
    body: bytes,
    member_id: str,
    key: SigningKey,
    now_ms: int | None = None,
) -> dict[str, str]:
    """The four authentication headers for one request by ``member_id`` signing with ``key``.

    ``path_with_query`` must be the request target exactly as it will be sent (percent-encoded).
    """
    t = str(_time.time_ns() // 1_000_000 if now_ms is None else now_ms)
    sig = key.sign(signing_input(method, path_with_query, t, body))
    return {H_MEMBER: member_id, H_KEY: key.kid, H_TIME: t, H_SIGNATURE: b64(sig)}


def authenticate(
    store: Store,
    method: str,
    path_with_query: str,
    body: bytes,
    member_id: str | None,
    kid: str | None,
    time_text: str | None,
    signature: str | None,
    *,
    now: int | None = None,
) -> str:
    """Check one request's authentication headers; return the member id or raise AuthError."""
    missing = [
        name
        for name, value in (
            (H_MEMBER, member_id),
            (H_KEY, kid),
            (H_TIME, time_text),
            (H_SIGNATURE, signature),
        )
        if not value
    ]
    if missing:
        raise AuthError(f"missing header(s) {', '.join(missing)}")
    assert member_id and kid and time_text and signature
    if not MEMBER_ID.match(member_id):
        raise AuthError(f"{H_MEMBER} {member_id[:80]!r} is not 'org/member'")
    if not KID.match(kid):
        raise AuthError(f"{H_KEY} {kid[:40]!r} is not 16 lower-case hex digits")
    if not (time_text.isascii() and time_text.isdigit() and len(time_text) <= 16):
        raise AuthError(f"{H_TIME} {time_text[:40]!r} is not Unix milliseconds")
    try:
        sig = unb64(signature, length=64)
    except BadKeyError as exc:
        raise AuthError(f"{H_SIGNATURE}: {exc.message}") from None
    now = now_ms() if now is None else now
    skew = int(time_text) - now
    if abs(skew) > MAX_SKEW_MS:
        raise AuthError(
            f"request time {time_text} is {skew} ms from the server's {now}; "
            f"allowed ±{MAX_SKEW_MS} ms"
        )
    raw = store.get_state(f"consortium/member/{member_id}")
    if raw is None:
        raise AuthError(f"no enrolled member {member_id}")
    member = orjson.loads(raw)
    if member["status"] != "active":
        raise AuthError(f"member {member_id} is {member['status']}")
    if now < member["not_before"] or (
        member["not_after"] is not None and now >= member["not_after"]
    ):
        raise AuthError(f"member {member_id} is outside its validity period")
    org_raw = store.get_state(f"consortium/org/{member['org']}")
    org_status = orjson.loads(org_raw)["status"] if org_raw is not None else "unknown"
    if org_status != "active":
        raise AuthError(f"organisation {member['org']} is {org_status}")
    key = active_key(member, kid, now)
    if key is None:
        known = [k for k in member["keys"] if k["kid"] == kid]
        if not known:
            raise AuthError(f"member {member_id} has no key {kid}")
        raise AuthError(f"key {kid} of {member_id} is {key_status(known[0], now)}")
    pub = unb64(key["pub"], length=32)
    if not verify(pub, signing_input(method, path_with_query, time_text, body), sig):
        raise AuthError(
            f"signature by {member_id} (key {kid}) does not verify over "
            f"{method.upper()} {path_with_query}"
        )
    return member_id


def request_target(request: Request) -> str:
    """The request target as the client sent it: raw path plus ``?query`` when present."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else request.url.path
    query = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def require_member(
    request: Request,
    node: Annotated[Node, Depends(get_node)],
    x_member: Annotated[str | None, Header(alias=H_MEMBER, description="Member id")] = None,
    x_key: Annotated[str | None, Header(alias=H_KEY, description="Key id (16 hex)")] = None,
    x_time: Annotated[str | None, Header(alias=H_TIME, description="Unix ms")] = None,
    x_signature: Annotated[
        str | None, Header(alias=H_SIGNATURE, description="base64 Ed25519 signature")
    ] = None,
) -> str:
    """FastAPI dependency: the authenticated member id, or a 401 ``unauthenticated`` problem."""
    body = await request.body()
    return authenticate(
        node.store,
        request.method,
        request_target(request),
        body,
        x_member,
        x_key,
        x_time,
        x_signature,
    )


Member = Annotated[str, Depends(require_member)]
"""Route parameter type for an endpoint that requires an authenticated member."""
