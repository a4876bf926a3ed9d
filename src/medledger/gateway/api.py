"""The gateway's local HTTP API: ingest runs, quarantine and the review queue.

Served by ``medledger gateway serve`` at the hospital, beside its vault — not by a ledger node:
the vault never leaves home. Endpoints (JSON; errors are RFC 9457 problems from
``medledger.api.problems``):

======  ====================================  ================================================
POST    /v1/gateway/runs?profile=&filename=   body = the export's bytes; ingest it in one run
GET     /v1/gateway/runs                      runs, newest first, with their files
GET     /v1/gateway/runs/{run_id}             one run; 404 ``not_found``
GET     /v1/gateway/files                     every file's reconciliation
GET     /v1/gateway/quarantine                ``?reason=&limit=&offset=`` (no raw bytes)
GET     /v1/gateway/review                    ``?status=open|decided|no_equivalent|applied``
POST    /v1/gateway/review/{id}/decision      ``{"code"|"no_equivalent", "reviewer"}``
POST    /v1/gateway/review/apply              emit decided rows
======  ====================================  ================================================

Every request needs ``Authorization: Bearer <token>`` (the token the operator configured;
compared in constant time); otherwise 401 ``unauthenticated``. Profiles are the ones loaded at
start, addressed by their id.
"""

from __future__ import annotations

import asyncio
import hmac
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from medledger.api import problems
from medledger.errors import Code, MedLedgerError
from medledger.gateway import review
from medledger.gateway.anchor import Anchorer
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.pipeline import Gateway, iter_reports
from medledger.gateway.profile import Profile
from medledger.gateway.vault import Vault

MAX_UPLOAD = 2 * 1024**3


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str | None = Field(default=None, description="WHO ICD-10 code or analyte key")
    no_equivalent: bool = False
    reviewer: str = Field(min_length=1, max_length=100)


class GatewayState:
    def __init__(self, vault: Vault, key: PseudonymKey, profiles: Mapping[str, Profile],
                 token: str, anchorer: Anchorer | None = None) -> None:
        self.vault, self.key, self.profiles, self.anchorer = vault, key, profiles, anchorer
        self.token = token.encode()
        self.lock = threading.Lock()


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    got = request.headers.get("authorization", "")
    if not got.startswith("Bearer ") or not hmac.compare_digest(got[7:].encode(), state.token):
        raise MedLedgerError(Code.UNAUTHENTICATED, "missing or wrong bearer token")
    return state


StateDep = Annotated[GatewayState, Depends(_state)]
router = APIRouter(prefix="/v1/gateway", tags=["gateway"])


@router.post("/runs", responses=problems.problem_responses(401, 404, 413, 422))
async def post_run(request: Request, state: StateDep,
                   profile: Annotated[str, Query(description="Profile id loaded at start")],
                   filename: Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
                   ) -> Response:
    """Upload one export (raw body) and ingest it; returns the run and the file's
    reconciliation (201)."""
    prof = state.profiles.get(profile)
    if prof is None:
        raise MedLedgerError(Code.NOT_FOUND, f"no profile {profile!r}; loaded: "
                             f"{sorted(state.profiles)}")
    with tempfile.TemporaryDirectory(prefix="medledger-gw-upload-") as tmp:
        path = Path(tmp) / filename
        size = 0
        with path.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise MedLedgerError(Code.TOO_LARGE, f"upload exceeds {MAX_UPLOAD} bytes")
                fh.write(chunk)
        doc = await asyncio.to_thread(_ingest, state, path, prof, filename)
    return _json(doc, 201)


def _ingest(state: GatewayState, path: Path, prof: Profile, filename: str) -> dict[str, Any]:
    """One run for one uploaded file, off the event loop, one run at a time."""
    with state.lock:
        gw = Gateway(state.vault, Pseudonymizer(state.key), state.anchorer)
        rep = gw.ingest(path, prof, f"{prof.profile.site}/{filename}")
        gw.finish()
    return {"run_id": gw.run_id, "files": [rep.to_doc()]}


def _runs(state: GatewayState, run_id: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT run_id, started_ms, finished_ms, gateway_version, summary FROM runs"
    rows = state.vault.rows(sql + (" WHERE run_id=?" if run_id else "") +
                            " ORDER BY started_ms DESC LIMIT 200", (run_id,) if run_id else ())
    return [{"run_id": r[0], "started_ms": r[1], "finished_ms": r[2], "gateway_version": r[3],
             "files": orjson.loads(r[4]) if r[4] else []} for r in rows]


@router.get("/runs", responses=problems.problem_responses(401))
def get_runs(state: StateDep) -> Response:
    with state.lock:
        return _json({"runs": _runs(state)})


@router.get("/runs/{run_id}", responses=problems.problem_responses(401, 404))
def get_run(state: StateDep, run_id: str) -> Response:
    with state.lock:
        got = _runs(state, run_id)
    if not got:
        raise MedLedgerError(Code.NOT_FOUND, f"no run {run_id}")
    return _json(got[0])


@router.get("/files", responses=problems.problem_responses(401))
def get_files(state: StateDep) -> Response:
    with state.lock:
        return _json({"files": list(iter_reports(state.vault))})


@router.get("/quarantine", responses=problems.problem_responses(401, 422))
def get_quarantine(state: StateDep, reason: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    """Quarantined rows: file, position, reason code, detail; the verbatim rows stay sealed."""
    sql = "SELECT id, source_name, position, reason, detail, run_id FROM quarantine"
    params: tuple[Any, ...] = (limit, offset)
    if reason:
        sql += " WHERE reason=?"
        params = (reason, limit, offset)
    with state.lock:
        rows = state.vault.rows(sql + " ORDER BY id LIMIT ? OFFSET ?", params)
    return _json({"items": [dict(r) for r in rows]})


@router.get("/review", responses=problems.problem_responses(401))
def get_review(state: StateDep, status: str = "open",
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    with state.lock:
        got = review.items(state.vault, None if status == "all" else status, limit)
    return _json({"items": [i.to_doc() for i in got]})


@router.post("/review/{item_id}/decision", responses=problems.problem_responses(401, 422))
def post_decision(state: StateDep, item_id: int, body: Decision) -> Response:
    if (body.code is None) == (not body.no_equivalent):
        raise MedLedgerError(Code.BAD_ARGS, "give exactly one of code or no_equivalent")
    target = review.NO_EQUIVALENT if body.no_equivalent else str(body.code)
    with state.lock:
        n = review.decide(state.vault, item_id, target, body.reviewer)
    return _json({"decided": n})


@router.post("/review/apply", responses=problems.problem_responses(401))
def post_apply(state: StateDep) -> Response:
    with state.lock:
        counts = review.apply(state.vault, state.key, state.anchorer)
    return _json(counts)


def create_gateway_app(state: GatewayState) -> FastAPI:
    app = FastAPI(title="MedLedger gateway", version="1",
                  description="Local API of one hospital's gateway: runs, quarantine, review.")
    app.state.gateway = state
    problems.install(app)
    app.include_router(router)
    return app
