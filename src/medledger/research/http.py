"""Sites as separate HTTP processes: a small FastAPI app per site and the coordinator's client.

Routes (JSON): ``POST /answer`` (a query → the site's answer), ``GET /public-key`` (the site's
X25519 key for secure aggregation, hex), ``POST /recover`` (masks shared with dropped sites),
``GET /study-spec/<study>`` (the study's researcher, consent filter and privacy unit as the
site reads them on its ledger), ``GET /audit-log`` (the site's own hash-chained log, JSON
lines: the file's bytes with ``--audit-log``, else the in-memory entries — hashes and outcomes
only, no data).
A refusal is a 403 problem document ``{"type", "title", "status", "code", "rule", "detail",
"policy"}`` (RFC 9457 shape); other research errors are 422 with ``code``. ``HttpSite`` turns
those back into ``DisclosureRefused`` / ``ResearchError``, and a transport failure into
``SiteUnavailable`` (a dropout).

Run one site on synthetic data (``synth.site_tables``)::

    python -m medledger.research.http --name hosp-a --rows 400 --seed 11 --port P

or on its gateway vault, filtered by the consents on its node's ledger (``research.vault``;
also ``medledger research site``)::

    python -m medledger.research.http --name hosp-a --vault VAULT_DIR --ledger WS_DIR --port P
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from medledger.errors import Code
from medledger.research.disclosure import Policy
from medledger.research.errors import DisclosureRefused, ResearchError
from medledger.research.federation import SiteUnavailable
from medledger.research.site import Site

__all__ = ["HttpSite", "site_app"]


def site_app(site: Site) -> FastAPI:
    app = FastAPI(title=f"research site {site.name}")

    @app.exception_handler(ResearchError)
    async def refused(_: Request, exc: ResearchError) -> JSONResponse:
        body: dict[str, Any] = {"type": "about:blank", "title": "refused",
                                "code": str(exc.code), "detail": exc.message}
        if isinstance(exc, DisclosureRefused):
            body.update(status=403, rule=exc.rule, detail=exc.detail, policy=exc.policy)
            return JSONResponse(body, status_code=403,
                                media_type="application/problem+json")
        body["status"] = 422
        return JSONResponse(body, status_code=422, media_type="application/problem+json")

    @app.post("/answer")
    def answer(query: dict[str, Any]) -> dict[str, Any]:
        return site.answer(query)

    @app.get("/public-key")
    def public_key() -> dict[str, str]:
        return {"site": site.name, "key": site.public_key().hex()}

    @app.post("/recover")
    def recover(body: dict[str, Any]) -> dict[str, Any]:
        return {"masks": site.recover(body["round"], body["peers"], body["dropped"],
                                      int(body["length"]))}

    @app.get("/study-spec/{study}")
    def study_spec(study: str) -> dict[str, Any]:
        return site.study_spec(study)

    @app.get("/audit-log")
    def audit_log() -> Response:
        if site.audit_path is not None and Path(site.audit_path).exists():
            raw = Path(site.audit_path).read_bytes()
        else:
            raw = b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in site.audit)
        return Response(raw, media_type="application/x-ndjson")

    return app


class HttpSite:
    """The coordinator's view of a site process."""

    def __init__(self, name: str, base_url: str, timeout: float = 30.0) -> None:
        self.name = name
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise SiteUnavailable(self.name, type(exc).__name__) from None
        if r.status_code == 403:
            p = r.json()
            raise DisclosureRefused(p["rule"], p["detail"], p.get("policy", "0" * 64))
        if r.status_code != 200:
            detail = ""
            if r.headers.get("content-type", "").startswith("application/problem+json"):
                detail = f": {r.json().get('detail', '')}"  # data-free by construction
            raise ResearchError(Code.BAD_ARGS, f"site {self.name}: HTTP {r.status_code}{detail}")
        return r.json()

    def answer(self, query: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._call("POST", "/answer", dict(query))
        return out

    def public_key(self) -> bytes:
        return bytes.fromhex(self._call("GET", "/public-key")["key"])

    def recover(self, round_id: str, peers: dict[str, str], dropped: list[str],
                length: int) -> list[str]:
        out: list[str] = self._call("POST", "/recover", {
            "round": round_id, "peers": peers, "dropped": dropped, "length": length})["masks"]
        return out

    def study_spec(self, study: str) -> dict[str, Any]:
        """The study's researcher, consent filter and privacy unit as the site reads them."""
        out: dict[str, Any] = self._call("GET", f"/study-spec/{study}")
        return out

    def audit_log(self) -> bytes:
        """The site's own audit log (``GET /audit-log``): with ``--audit-log``, the file's
        bytes, which ``audit.cross_check_file`` checks."""
        try:
            r = self._http.get("/audit-log")
        except httpx.TransportError as exc:
            raise SiteUnavailable(self.name, type(exc).__name__) from None
        if r.status_code != 200:
            raise ResearchError(Code.BAD_ARGS, f"site {self.name}: HTTP {r.status_code}")
        return r.content

    def close(self) -> None:
        self._http.close()


def serve(site: Site, port: int, host: str = "127.0.0.1") -> None:
    import uvicorn

    uvicorn.run(site_app(site), host=host, port=port, log_level="warning")


def open_vault_site(name: str, vault_dir: Path, ledger: str, *, vault_key: Path | None = None,
                    variables: Path | None = None, policy: Path | None = None,
                    audit_log: Path | None = None, ledger_wait: float = 5.0) -> Site:
    """A vault-backed site as the command line describes it (``research.vault``).
    ``ledger_wait``: how long a query recorded at a height this site's ledger has not reached
    yet waits for it (a peer that lags behind the recorder's) before it is refused."""
    from medledger.gateway.vault import Vault
    from medledger.research.variables import DEFAULT_MAP, load_map
    from medledger.research.vault import open_ledger, vault_site

    if not (vault_dir / "vault.db").is_file():
        raise ResearchError(Code.NOT_FOUND, f"no gateway vault in {vault_dir}")
    if not (vault_key or vault_dir / "vault.key").is_file():  # never create a key here
        raise ResearchError(Code.NOT_FOUND, f"no vault key {vault_key or vault_dir / 'vault.key'}")
    return vault_site(name, Vault(vault_dir, vault_key), open_ledger(ledger),
                      mapping=load_map(variables) if variables else DEFAULT_MAP,
                      policy=load_policy(policy) if policy else None, audit_path=audit_log,
                      wait=ledger_wait)


def load_policy(path: Path) -> Policy:
    """A site's disclosure thresholds from a JSON object of ``Policy`` fields."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        for k in ("allowed_columns", "disallowed_columns"):
            if doc.get(k) is not None:
                doc[k] = frozenset(doc[k])
        return Policy(**doc)
    except (OSError, ValueError, TypeError) as exc:
        raise ResearchError(Code.BAD_ARGS, f"policy {path}: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    from medledger.research.synth import site_tables

    ap = argparse.ArgumentParser(description="Run one research site over HTTP.")
    ap.add_argument("--name", required=True)
    ap.add_argument("--rows", type=int, default=400, help="synthetic rows (without --vault)")
    ap.add_argument("--seed", type=int, default=0, help="synthetic seed (without --vault)")
    ap.add_argument("--vault", type=Path, help="the site's gateway vault directory")
    ap.add_argument("--vault-key", type=Path, help="vault key (default VAULT/vault.key)")
    ap.add_argument("--ledger", help="workspace directory or store location (with --vault)")
    ap.add_argument("--variables", type=Path, help="variable map TOML (default: built in)")
    ap.add_argument("--policy", type=Path, help="disclosure policy JSON (default: defaults)")
    ap.add_argument("--audit-log", type=Path, help="the site's append-only audit log (JSON "
                    "lines, hash-chained; continued if it exists)")
    ap.add_argument("--ledger-wait", type=float, default=5.0, help="seconds a query recorded "
                    "beyond this site's ledger head waits for it (with --vault)")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args(argv)
    if a.ledger_wait < 0:
        ap.error("--ledger-wait must be >= 0")
    if a.vault is not None:
        if a.ledger is None:
            ap.error("--vault needs --ledger (consent is read from the ledger)")
        site = open_vault_site(a.name, a.vault, a.ledger, vault_key=a.vault_key,
                               variables=a.variables, policy=a.policy, audit_log=a.audit_log,
                               ledger_wait=a.ledger_wait)
    else:
        site = Site(a.name, site_tables([a.rows], seed=a.seed)[0],
                    load_policy(a.policy) if a.policy else Policy(), audit_path=a.audit_log)
    serve(site, a.port)


if __name__ == "__main__":
    main()
