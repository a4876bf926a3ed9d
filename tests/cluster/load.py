"""A steady client load against peers, retrying refused submissions with the same bytes.

``Load`` drives in-process peers (``Ledger``); wrap a peer process's HTTP API in ``HttpNode``
to drive it the same way: ``Ledger(HttpNode(url, chain), ring, clock)``."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

from medledger.client.http import HttpTransport
from medledger.errors import MedLedgerError
from medledger.node.node import Receipt
from tests.conftest import Ledger


class HttpNode:
    """What ``Ledger.build`` and ``Load`` use of a ``Node`` — its chain id and ``submit_many``
    — for a peer behind its HTTP API (each transaction posted and its receipt awaited on the
    transport's pool; a refusal or an unreachable peer fails that transaction's future)."""

    store = None  # not readable from here: read over HTTP

    def __init__(self, url: str, chain_id: str, *, wait_timeout: float = 10.0) -> None:
        self.chain_id = chain_id
        self.http = HttpTransport(url, wait_timeout=wait_timeout)

    def submit_many(self, raws: Sequence[bytes]) -> list[Future[Receipt]]:
        return [self.http.submit(raw) for raw in raws]

    def close(self) -> None:
        self.http.close()


class Load:
    """``first_nonce``: where this load's nonces (and ``load-<nonce>`` batch ids) start, so
    that several loads on one chain never replay each other's nonces."""

    def __init__(self, leds: Sequence[Ledger], members: Sequence[str], *, batch: int = 10,
                 interval: float = 0.01, first_nonce: int = 1) -> None:
        self.leds, self.members, self.batch, self.interval = list(leds), list(members), batch, \
            interval
        self.acked: dict[bytes, Receipt] = {}
        self.ack_times: list[float] = []
        self.submitted: dict[bytes, bytes] = {}
        self.errors: dict[bytes, str] = {}  # the last refusal of each tx (hash of its bytes)
        self._waiting: set[bytes] = set()  # hashes of the txs with a submission in flight
        self.retries = 0
        self._retry: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._nonce = itertools.count(first_nonce)
        self._rr = itertools.count()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            raws = []
            for _ in range(self.batch):
                n = next(self._nonce)
                led = self.leds[0]
                raws.append(led.build(self.members[n % len(self.members)], "registry",
                                      "anchor_batch", {
                                          "batch_id": f"load-{n}", "root": f"{n:064x}",
                                          "count": 1, "record_type": "Filler",
                                          "source_system": "tests", "schema_version": "1"},
                                      nonce=n))
            with self._lock:
                retry, self._retry = self._retry, []
            self.send(raws + retry)
            i += 1
            time.sleep(self.interval)

    def send(self, raws: list[bytes]) -> None:
        led = self.leds[next(self._rr) % len(self.leds)]
        for raw in raws:
            import hashlib

            self.submitted.setdefault(hashlib.sha256(raw).digest(), raw)
        with self._lock:
            self._waiting.update(hashlib.sha256(raw).digest() for raw in raws)
        try:
            futs = led.node.submit_many(raws)
        except MedLedgerError:
            with self._lock:
                self._retry.extend(raws)
                self.retries += len(raws)
            return
        for raw, fut in zip(raws, futs, strict=True):
            fut.add_done_callback(lambda f, r=raw: self._done(r, f))

    def _done(self, raw: bytes, fut: Future[Receipt]) -> None:
        import hashlib

        exc = fut.exception()
        key = hashlib.sha256(raw).digest()
        with self._lock:
            self._waiting.discard(key)
            if exc is not None:
                self.errors[key] = repr(exc)
            if exc is None:
                r = fut.result()
                self.acked[r.tx_id] = r
                self.ack_times.append(time.monotonic())
            else:
                self._retry.append(raw)
                self.retries += 1

    def stop(self, settle: float = 40.0) -> None:
        """Stop generating; keep resubmitting until everything submitted is acknowledged."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            with self._lock:
                retry, self._retry = self._retry, []
                done = len(self.acked) == len(self.submitted)
            if retry:
                self.send(retry)
            elif done:
                return
            time.sleep(0.05)
        missing = [k for k in self.submitted if k not in self.acked][:5]
        raise AssertionError(
            f"{len(self.submitted) - len(self.acked)} never acknowledged: " + "; ".join(
                f"{k.hex()} " + ("in flight" if k in self._waiting else
                                 f"last refused with {self.errors.get(k)}") for k in missing))

    def max_gap(self, after: float, until: float) -> float:
        """Longest pause between acknowledgements in [after, until] (monotonic)."""
        times = sorted(t for t in self.ack_times if after <= t <= until)
        return max(b - a for a, b in itertools.pairwise([after, *times, until]))
