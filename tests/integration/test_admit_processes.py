"""Ingress checks in worker processes give the same verdicts as the in-thread checks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from medledger.client.client import Client
from medledger.consortium.bootstrap import Keyring
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import RejectedError
from medledger.ledger.tx import decode
from medledger.node.admit import Admitted
from medledger.node.node import PREPARE_IN_PROCESSES, Node
from medledger.workspace import DEFAULT_ORGS, Workspace

pytestmark = pytest.mark.integration


def _gateway(node: Node, ring: Keyring) -> tuple[Client, SigningKey]:
    """``hosp-a/gw`` enrolled by hosp-a's root: a client signing as it, and its key."""
    root = Client(node, node.chain_id, "hosp-a/root", ring.signing["hosp-a/root"])
    key = SigningKey.generate()
    assert root.call("consortium", "enroll", {
        "member": "hosp-a/gw", "role": "gateway", "public_key": b64(key.public)}).ok
    return Client(node, node.chain_id, "hosp-a/gw", key), key


@contextmanager
def _node(tmp_path: Path, procs: int) -> Iterator[tuple[Node, Client, SigningKey]]:
    """A running embedded node with ``procs`` admission processes and ``_gateway``'s client."""
    ws = Workspace.init(tmp_path / "ws", "procs", DEFAULT_ORGS[:3])
    with ws.node(admit_processes=procs) as node:
        gw, key = _gateway(node, ws.keyring())
        yield node, gw, key


def _registers(gw: Client, prefix: str, n: int) -> list[bytes]:
    """``n`` signed ``registry.register`` transactions of ``gw``, record ids ``prefix0``..."""
    return [gw.build("registry", "register", {
        "record_id": f"{prefix}{i}", "record_type": "Encounter", "source_system": "HIS",
        "content_hash": f"{i:064x}", "schema_version": "1"}) for i in range(n)]


def test_worker_processes_admit_and_refuse(tmp_path: Path) -> None:
    with _node(tmp_path, 2) as (node, gw, _):
        assert node._procs is not None
        good = _registers(gw, "p", 300)
        forged = good[5].replace(b'"p5"', b'"p5x"')
        stranger = Client(node, node.chain_id, "hosp-a/nobody", SigningKey.generate()).build(
            "registry", "register", {"record_id": "x", "record_type": "E", "source_system": "H",
                                     "content_hash": "00" * 32, "schema_version": "1"})
        futures = node.submit_many([*good, forged, stranger, b"{not json"])
        receipts = [f.result(30) for f in futures[:300]]
        assert all(r.ok for r in receipts)
        codes = []
        for f in futures[300:]:
            with pytest.raises(RejectedError) as info:
                f.result(30)
            codes.append(str(info.value.code))
        assert codes == ["bad_signature", "unknown_signer", "malformed_json"]
        again = node.submit(good[0]).result(30)  # idempotent through the workers too
        assert again == receipts[0]
        later = _registers(gw, "q", 200)
        chunks = [node.submit_many(later[i : i + 50], wait_admission=False)
                  for i in range(0, 200, 50)]
        indexes = [f.result(30).index for c in chunks for f in c]
        assert indexes == sorted(indexes) and len(set(indexes)) == 200


def test_stream_pre_check_in_worker_processes_and_without_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A cluster peer's stream batch (ADR 0062): checked in the admission processes, it gives
    what the threads give (order kept, undecodable bytes dropped, only good signatures
    pre-verified); with the workers killed the node checks it itself, with a warning."""
    with _node(tmp_path, 2) as (node, gw, key):
        assert node._procs is not None
        good = _registers(gw, "s", 400)
        forged = good[7].replace(b'"s7"', b'"s7x"')
        raws = [*good[:200], forged, b"{not json", *good[200:], good[0]]
        want = [*good[:200], forged, *good[200:], good[0]]
        assert len(raws) >= PREPARE_IN_PROCESSES

        def check(out: list[Admitted]) -> None:
            assert [a.tx.raw for a in out] == want
            assert [a.keys for a in out] == [(key.public,)] * 200 + [()] + [(key.public,)] * 201
            assert all(a.tx == decode(a.tx.raw) for a in out)

        caplog.set_level(logging.WARNING, logger="medledger.node")
        check(node.prepare_stream(raws, processes=True))
        assert not caplog.records  # the workers did it
        workers = list(node._procs._processes.values())  # type: ignore[attr-defined]
        assert workers
        for w in workers:
            w.kill()
            w.join(10)
        check(node.prepare_stream(raws, processes=True))
        assert any("worker process" in r.getMessage() for r in caplog.records)


def test_one_worker_leaves_the_stream_pre_check_on_the_threads(tmp_path: Path) -> None:
    """One admission process verifies less in parallel than the node's two admission threads
    (a slower replay, BENCHMARKS.md "Run T"): the stream pre-check stays on the threads."""
    with _node(tmp_path, 1) as (node, gw, key):
        raws = _registers(gw, "o", 300)
        procs = node._procs
        assert procs is not None
        sent: list[object] = []
        real = procs.submit

        def counting(fn: Any, *a: Any, **kw: Any) -> Any:
            sent.append(fn)
            return real(fn, *a, **kw)

        procs.submit = counting  # type: ignore[method-assign]
        out = node.prepare_stream(raws, processes=True)
        assert [a.tx.raw for a in out] == raws and all(a.keys == (key.public,) for a in out)
        assert sent == []


def test_a_dead_admission_worker_is_replaced_and_ingress_goes_on(tmp_path: Path) -> None:
    """Admission workers can die (the OOM killer, an operator's kill). The transactions a dead
    worker was checking are refused as retryable (node_unavailable); the node then starts new
    workers, and every later submission is admitted as before. Regression: once the pool was
    broken, each submission failed to hand its checks over after taking its place in the
    admission order, so every later caller waited forever for its turn."""
    with _node(tmp_path, 2) as (node, gw, _):
        raws = _registers(gw, "d", 40)
        assert all(f.result(30).ok for f in node.submit_many(raws[:10]))
        first = node._procs
        assert first is not None
        for w in list(first._processes.values()):  # type: ignore[attr-defined]
            w.kill()
            w.join(10)
        outcomes: list[str] = []

        def submit(chunk: list[bytes]) -> None:
            for f in node.submit_many(chunk):
                try:
                    outcomes.append("ok" if f.result(30).ok else "not ok")
                except RejectedError as exc:
                    outcomes.append(str(exc.code))

        for chunk in (raws[10:20], raws[20:30], raws[30:40]):
            t = threading.Thread(target=submit, args=(chunk,), daemon=True)
            t.start()
            t.join(60)
            assert not t.is_alive(), "submit_many never returned after the workers died"
        # the first chunk may meet the pool before it is known to be broken: refused, retryable
        assert set(outcomes[:10]) <= {"ok", "node_unavailable"}
        assert outcomes[10:] == ["ok"] * 20
        assert node._procs is not None and node._procs is not first
        alive = list(node._procs._processes.values())  # type: ignore[attr-defined]
        assert alive and all(w.is_alive() for w in alive)
        retried = [r for r, o in zip(raws[10:20], outcomes[:10], strict=True) if o != "ok"]
        assert all(f.result(30).ok for f in node.submit_many(retried))


def test_admission_workers_exit_with_their_node(tmp_path: Path) -> None:
    """A node killed with SIGKILL leaves no admission worker running (they watch their
    parent), so a crashed peer does not leak CPU-consuming orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = Path(__file__).with_name("orphan_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "w")],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers
    assert all(Path(f"/proc/{w}").exists() for w in workers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers):
        assert time.monotonic() < deadline, "admission workers outlived their node"
        time.sleep(0.1)
