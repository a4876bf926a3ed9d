"""A node behind the HTTP API (``medledger.api``), seen through the same interface as ``Node``.

``HttpTransport(base_url, member_id, key)``:

* ``submit(raw) -> Future[HttpReceipt]`` posts one transaction and waits for its receipt on a
  small thread pool, so ``medledger.client.client.Client`` works over HTTP unchanged;
* ``submit_batch(raws)`` posts NDJSON and returns one receipt or problem document per raw;
* ``get(path)`` / ``events(...)`` are reads signed with the member's key
  (``medledger.api.auth``); they need ``member_id`` and ``key``;
* ``final_proof(tx_id, light)`` / ``state_proof(key, light)`` fetch a proof and check it with
  the light client before returning it.

Every problem response (RFC 9457) is raised as :class:`ProblemError`, a ``RejectedError`` whose
``code`` is the problem's code and ``message`` its detail. A node that cannot be reached, or
answers with something that is not a problem, is ``node_unavailable``.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson

from medledger.api.auth import sign_request
from medledger.api.problems import PROBLEM_MEDIA_TYPE
from medledger.client.light import LightClient
from medledger.crypto.keys import SigningKey
from medledger.errors import Code, RejectedError
from medledger.node.node import Receipt

if TYPE_CHECKING:
    from medledger.client.stateproof import StateFact


class ProblemError(RejectedError):
    """A problem response: ``code``/``message`` from the problem, plus HTTP ``status``."""

    def __init__(self, code: Code, message: str, status: int, problem: dict[str, Any]) -> None:
        super().__init__(code, message)
        self.status = status
        self.problem = problem


@dataclass(frozen=True)
class HttpReceipt(Receipt):
    """A receipt with the inclusion ``proof`` and signed ``checkpoint`` note the API adds."""

    proof: dict[str, Any] | None = None
    checkpoint: str | None = None


def receipt_from_doc(doc: dict[str, Any]) -> HttpReceipt:
    """Inverse of ``Receipt.to_doc`` (keeping ``proof``/``checkpoint`` when present)."""
    return HttpReceipt(
        bytes.fromhex(doc["tx_id"]),
        doc["height"],
        doc["index"],
        doc["code"],
        doc["message"],
        doc["value"],
        doc["events"],
        doc.get("proof"),
        doc.get("checkpoint"),
    )


def is_problem(doc: dict[str, Any]) -> bool:
    """True for a problem document in a batch answer (receipts have no ``type``)."""
    return "type" in doc and "status" in doc


def _code(value: Any) -> Code:
    try:
        return Code(value)
    except ValueError:
        return Code.INTERNAL


def raise_for_problem(resp: httpx.Response) -> None:
    """Raise ProblemError for any status >= 400 (``node_unavailable`` if not a problem)."""
    if resp.status_code < 400:
        return
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith(PROBLEM_MEDIA_TYPE):
        try:
            doc = orjson.loads(resp.read())
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            raise ProblemError(
                _code(doc.get("code")), str(doc.get("detail", "")), resp.status_code, doc
            )
    text = resp.read()[:200].decode("utf-8", "replace")
    raise ProblemError(
        Code.NODE_UNAVAILABLE, f"HTTP {resp.status_code}: {text}", resp.status_code, {}
    )


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) per Server-Sent Events message; comments and ids are skipped."""
    name: str = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    if data:
        yield name, "\n".join(data)


def _trust(ca: str | None) -> ssl.SSLContext | bool:
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise RejectedError(Code.BAD_ARGS, f"CA file {ca}: {exc}") from None


class HttpTransport:
    """Talks to one node's HTTP API; thread-safe. Close it (or use ``with``) when done."""

    def __init__(
        self,
        base_url: str,
        member_id: str | None = None,
        key: SigningKey | None = None,
        *,
        wait_timeout: float = 30.0,
        workers: int = 8,
        transport: httpx.BaseTransport | None = None,
        ca: str | None = None,
    ) -> None:
        """``ca``: a PEM file of the CA that signed the node's HTTPS certificate (a consortium
        CA, docs/deployment.md); without it an ``https://`` node is checked against the
        system's trust store."""
        self.member_id, self.key, self.wait_timeout = member_id, key, wait_timeout
        base = base_url.rstrip("/").removesuffix("/v1")  # accept ".../v1" as printed by the CLI
        self._http = httpx.Client(
            base_url=base,
            transport=transport,
            verify=_trust(ca),
            timeout=httpx.Timeout(wait_timeout + 15.0, connect=10.0),
        )
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="http-submit")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise RejectedError(Code.NODE_UNAVAILABLE, f"{request.url}: {exc}") from None

    def _signed(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Request:
        if self.member_id is None or self.key is None:
            raise RejectedError(Code.UNAUTHENTICATED, "reads need a member id and key")
        kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        request = self._http.build_request(method, path, params=params, **kw)
        target = request.url.raw_path.decode("ascii")
        request.headers.update(sign_request(method, target, b"", self.member_id, self.key))
        return request

    # -- transactions ------------------------------------------------------------------

    def submit(self, raw: bytes) -> Future[Receipt]:
        """Post ``raw`` and wait for its receipt in the background (``Node.submit`` shape)."""
        return self._pool.submit(self.submit_one, raw)

    def submit_one(self, raw: bytes, timeout: float | None = None) -> HttpReceipt:
        """Post one transaction, wait for its receipt; raises ProblemError on refusal."""
        t = self.wait_timeout if timeout is None else timeout
        request = self._http.build_request(
            "POST",
            "/v1/tx",
            params={"wait": "true", "timeout": str(t)},
            content=raw,
            headers={"content-type": "application/json"},
        )
        resp = self._send(request)
        raise_for_problem(resp)
        return receipt_from_doc(orjson.loads(resp.content))

    def submit_nowait(self, raw: bytes) -> str:
        """Post one transaction without waiting; its tx id (hex) once it passed ingress."""
        request = self._http.build_request(
            "POST",
            "/v1/tx",
            params={"wait": "false"},
            content=raw,
            headers={"content-type": "application/json"},
        )
        resp = self._send(request)
        raise_for_problem(resp)
        tx_id: str = orjson.loads(resp.content)["tx_id"]
        return tx_id

    def submit_batch(
        self, raws: Sequence[bytes], *, wait: bool = True, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Post ``raws`` as one NDJSON batch: a receipt doc or a problem doc per raw, in order
        (see :func:`is_problem`). Raises ProblemError only if the whole batch is refused."""
        t = self.wait_timeout if timeout is None else timeout
        request = self._http.build_request(
            "POST",
            "/v1/txs",
            params={"wait": "true" if wait else "false", "timeout": str(t)},
            content=b"\n".join(raws) + b"\n",
            headers={"content-type": "application/x-ndjson"},
        )
        resp = self._send(request)
        raise_for_problem(resp)
        receipts: list[dict[str, Any]] = orjson.loads(resp.content)["receipts"]
        return receipts

    # -- reads -------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """Signed GET of ``path`` (e.g. ``/v1/blocks/head``): parsed JSON, or text for a
        non-JSON answer such as a checkpoint note."""
        resp = self._send(self._signed("GET", path, params))
        raise_for_problem(resp)
        if resp.headers.get("content-type", "").startswith("application/json"):
            return orjson.loads(resp.content)
        return resp.text

    def final_proof(self, tx_id: str, light: LightClient, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until a *final* checkpoint covers transaction ``tx_id`` (hex), then return its
        inclusion-proof bundle against that checkpoint, verified by ``light`` — which, built
        with the consortium's ``witnesses``, accepts only quorum-cosigned checkpoints. Raises
        ``timeout`` if none covers it in time, or ``LightClientError`` if the proof fails."""
        index = int(self.get(f"/v1/tx/{tx_id}")["receipt"]["index"])
        final = self.final_checkpoint(lambda cp: int(cp["size"]) > index, timeout,
                                      f"no final checkpoint covers {tx_id} yet")
        bundle: dict[str, Any] = self.get(f"/v1/tx/{tx_id}/proof", {"size": final["size"]})
        light.verify_bundle(bundle)
        return bundle

    def final_checkpoint(self, covers: Callable[[dict[str, Any]], bool], timeout: float,
                         what: str = "no final checkpoint yet") -> dict[str, Any]:
        """The newest final checkpoint (``{"size", "height", "note"}``) once ``covers`` holds
        for it, polling for up to ``timeout`` s; raises ``timeout`` with ``what`` otherwise.
        Not verified here: the caller checks the proof it fetches against it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                final: dict[str, Any] = self.get("/v1/checkpoints/final", {"format": "json"})
                if covers(final):
                    return final
            except ProblemError as exc:
                if exc.code != Code.NOT_FOUND:
                    raise
            if time.monotonic() > deadline:
                raise RejectedError(Code.TIMEOUT, what)
            time.sleep(0.1)

    def final_state_proof(self, key: str, light: LightClient, height: int | None = None, *,
                          timeout: float = 30.0, max_blocks: int | None = None,
                          ) -> tuple[dict[str, Any], StateFact]:
        """``state_proof`` against the newest *final* checkpoint, once one covers ``height``
        (default: at that checkpoint's block); ``light`` should be built with the consortium's
        ``witnesses`` so that it accepts only quorum-cosigned checkpoints."""
        final = self.final_checkpoint(
            lambda cp: height is None or int(cp["height"]) >= height, timeout,
            "no final checkpoint yet" if height is None
            else f"no final checkpoint covers height {height} yet")
        return self.state_proof(key, light, height, size=int(final["size"]),
                                max_blocks=max_blocks)

    def state_proof(
        self,
        key: str,
        light: LightClient,
        height: int | None = None,
        *,
        size: int | None = None,
        max_blocks: int | None = None,
    ) -> tuple[dict[str, Any], StateFact]:
        """The key-history proof of state ``key`` (``<contract>/<key>``) after block ``height``
        (default: the newest checkpointed block), against the checkpoint of log ``size``
        (default: the one signed for that block; pass a final checkpoint's size to a client
        built with ``witnesses``), verified by ``light``: ``(proof document, what it proves)``.
        Raises ``LightClientError`` if it does not verify (or is about another key or height)."""
        params = {k: str(v) for k, v in (("height", height), ("size", size),
                                         ("max_blocks", max_blocks)) if v is not None}
        doc: dict[str, Any] = self.get(f"/v1/proof/state/{quote(key, safe='/')}", params)
        return doc, light.verify_state(doc, key=key, height=height)

    def health(self) -> dict[str, Any]:
        """``/v1/health`` (no authentication needed)."""
        resp = self._send(self._http.build_request("GET", "/v1/health"))
        raise_for_problem(resp)
        doc: dict[str, Any] = orjson.loads(resp.content)
        return doc

    def events(
        self, from_height: int | None = None, until_height: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Event documents ``{"height", "tx_id", "index", "name", "data"}`` from the SSE
        stream; ends after ``until_height`` (never without it, until the caller stops)."""
        params = {
            k: str(v)
            for k, v in (("from_height", from_height), ("until_height", until_height))
            if v is not None
        }
        request = self._signed("GET", "/v1/events", params, timeout=httpx.Timeout(10.0, read=None))
        resp = self._send(request, stream=True)
        try:
            raise_for_problem(resp)
            for _name, data in parse_sse(resp.iter_lines()):
                yield orjson.loads(data)
        finally:
            resp.close()
