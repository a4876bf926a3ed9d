"""Sites as separate HTTP processes: a small FastAPI app per site and the coordinator's client.

Routes (JSON): ``POST /answer`` (a query → the site's answer), ``GET /public-key`` (the site's
X25519 key for secure aggregation, hex), ``POST /recover`` (masks shared with dropped sites).
A refusal is a 403 problem document ``{"type", "title", "status", "code", "rule", "detail",
"policy"}`` (RFC 9457 shape); other research errors are 422 with ``code``. ``HttpSite`` turns
those back into ``DisclosureRefused`` / ``ResearchError``, and a transport failure into
``SiteUnavailable`` (a dropout).

Run one site: ``python -m medledger.research.http --name hosp-a --rows 400 --seed 11 --port P``
(synthetic data from ``synth.site_tables``; a real site would load its vault's research view).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from medledger.errors import Code
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
            raise ResearchError(Code.BAD_ARGS, f"site {self.name}: HTTP {r.status_code}")
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

    def close(self) -> None:
        self._http.close()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from medledger.research.synth import site_tables

    ap = argparse.ArgumentParser(description="Run one research site over HTTP.")
    ap.add_argument("--name", required=True)
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args(argv)
    site = Site(a.name, site_tables([a.rows], seed=a.seed)[0])
    uvicorn.run(site_app(site), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
