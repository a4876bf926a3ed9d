"""RFC 9457 problem details: the one shape every error response of the HTTP API takes.

Every error body is ``application/problem+json``::

    {"type": "https://medledger.dev/problems/<code>", "title": "<CATALOG title>",
     "status": <HTTP status>, "detail": "<what went wrong, got/want>", "code": "<code>",
     "instance": "<request path>"}

``code`` is a :class:`medledger.errors.Code` value, ``status`` and ``title`` come from
:data:`medledger.errors.CATALOG`. Two kinds of error have no code of their own and borrow one:

* a path that matches no route is ``not_found`` (404); a known path with the wrong method keeps
  its 405 status and ``Allow`` header, with code ``method_not_allowed``;
* request parameters that fail validation are ``bad_args`` (422).

Any other exception is ``internal`` (500) with a fixed detail: the traceback is logged, never
sent. A 401 ``unauthenticated`` problem also carries ``WWW-Authenticate`` (RFC 9110 §11.6.1).

Problems may carry extension members (RFC 9457 §3.2), e.g. ``tx_id`` in a batch response.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from medledger.errors import CATALOG, Code, MedLedgerError

log = logging.getLogger("medledger.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://medledger.dev/problems/"
AUTH_CHALLENGE = 'MedLedger-Ed25519 realm="medledger"'
INTERNAL_DETAIL = "the server failed to handle the request; see the node's log"

# HTTP statuses raised by the framework itself, and the code each is reported under.
_STATUS_CODES: dict[int, Code] = {
    400: Code.BAD_ARGS,
    401: Code.UNAUTHENTICATED,
    403: Code.FORBIDDEN,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    409: Code.CONFLICT,
    413: Code.TOO_LARGE,
    422: Code.BAD_ARGS,
    503: Code.NODE_UNAVAILABLE,
    504: Code.TIMEOUT,
}


def problem_doc(
    code: Code,
    detail: str,
    instance: str,
    *,
    status: int | None = None,
    title: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """The problem document for ``code``; ``status``/``title`` default to the catalog's."""
    cat_status, cat_title = CATALOG[code]
    doc: dict[str, Any] = {
        "type": TYPE_BASE + code.value,
        "title": cat_title if title is None else title,
        "status": cat_status if status is None else status,
        "detail": detail,
        "code": code.value,
        "instance": instance,
    }
    doc.update(extensions)
    return doc


def problem_response(
    code: Code,
    detail: str,
    instance: str,
    *,
    status: int | None = None,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A ``Response`` carrying :func:`problem_doc` with the problem media type."""
    doc = problem_doc(code, detail, instance, status=status, title=title)
    all_headers = dict(headers or {})
    if code is Code.UNAUTHENTICATED:
        all_headers.setdefault("WWW-Authenticate", AUTH_CHALLENGE)
    return Response(
        orjson.dumps(doc),
        status_code=doc["status"],
        headers=all_headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def error_doc(exc: MedLedgerError, instance: str, **extensions: Any) -> dict[str, Any]:
    """The problem document for a MedLedgerError (status and title from the catalog)."""
    return problem_doc(_code(exc.code), exc.message, instance, **extensions)


def _code(value: Any) -> Code:
    try:
        return Code(value)
    except ValueError:
        return Code.INTERNAL


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "request parameters are invalid"


async def _on_medledger_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MedLedgerError)
    return problem_response(_code(exc.code), exc.message, request.url.path)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(Code.BAD_ARGS, _describe_validation(exc), request.url.path)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _STATUS_CODES.get(status, Code.INTERNAL if status >= 500 else Code.BAD_ARGS)
    path = request.url.path
    if status == 404:
        detail = f"no route {request.method} {path}" if exc.detail == "Not Found" else exc.detail
    elif status == 405:
        detail = f"{path} does not accept {request.method}"
    else:
        detail = str(exc.detail)
    title = None if CATALOG[code][0] == status else _phrase(status)
    return problem_response(code, detail, path, status=status, title=title, headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(Code.INTERNAL, INTERNAL_DETAIL, request.url.path)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error raised under ``app`` into a problem."""
    app.add_exception_handler(MedLedgerError, _on_medledger_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": [c.value for c in Code]},
        "instance": {"type": "string"},
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem bodies for ``statuses``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        codes = sorted(c.value for c, (s, _) in CATALOG.items() if s == status)
        out[status] = {
            "description": f"Problem ({', '.join(codes) or _phrase(status)})",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
    return out
