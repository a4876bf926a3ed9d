"""Clock skew between organisations' hosts, with real processes whose wall clock is skewed.

Three ``medledger peer run`` processes on a 3-server Debian nats-server cluster:

* ``hosp-a`` runs 10 minutes AHEAD (libfaketime, tests/support/faketime.py) and is started
  first, so it holds the sequencer lease: block times are its clock;
* ``hosp-b`` has the true clock and competes for the lease;
* ``cdc`` runs 10 minutes BEHIND and never sequences.

The NATS servers (Go static binaries) cannot be skewed by libfaketime: only the peers are.
docs/adr/0059-clock-skew.md says what depends on which clock.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from medledger.client.client import Client
from medledger.client.http import HttpTransport, ProblemError, is_problem
from medledger.cluster.local import PeerConfig
from medledger.cluster.natsd import NatsCluster
from medledger.consortium.bootstrap import Keyring, new_consortium
from medledger.consortium.genesis import Genesis
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import Code
from medledger.ledger.block import BlockHeader
from medledger.ledger.cosignature import attach, check_cosignatures
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ordering.solo import wall_ms
from tests.cluster.natsutil import drop_chain, unique_chain
from tests.conftest import MEMBERS, ORGS, T0
from tests.support.faketime import probe, require_faketime, skewed_env, write_shim
from tests.support.services import free_port
from tests.support.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.nats]

SKEW_S = 600
SKEW_MS = SKEW_S * 1000
SLACK_MS = 5_000  # delivery, execution and HTTP round trips on a busy 2-core machine
ORG_IDS = ("hosp-a", "hosp-b", "cdc")
CLOCKS = {"hosp-a": SKEW_S, "hosp-b": 0, "cdc": -SKEW_S}  # seconds off the true clock


@dataclass
class PeerProc:
    org: str
    dir: Path
    port: int
    skew_s: int
    proc: subprocess.Popen[bytes] | None = None
    _store: SQLiteStore | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.url + "/v1/health", timeout=2) as r:
                doc: dict[str, Any] = json.loads(r.read())["cluster"]
                return doc
        except OSError:
            return None

    def status(self) -> dict[str, Any]:
        doc = self.health()
        assert doc is not None, f"{self.org} does not answer"
        return doc

    @property
    def store(self) -> SQLiteStore:  # read beside the running peer (WAL)
        if self._store is None:
            self._store = SQLiteStore(self.dir / "ledger.db")
        return self._store

    def block_time(self, height: int) -> int:
        b = self.store.block(height)
        assert b is not None, (self.org, height)
        return BlockHeader.decode(b.header).time


@dataclass
class Skewed:
    genesis: Genesis
    ring: Keyring
    peers: dict[str, PeerProc]

    def client(self, org: str, member: str, key: SigningKey | None = None) -> tuple[
            HttpTransport, Client]:
        http = HttpTransport(self.peers[org].url)
        return http, Client(http, self.genesis.chain_id, member,
                            key or self.ring.signing[member])


def poll(what: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    """``what()`` once it is truthy; fails with the last value after ``timeout`` seconds."""
    return until(what, timeout=timeout, every=every)


def register(client: Client, tag: str, n: int) -> list[bytes]:
    return [client.build("registry", "register", {
        "record_id": f"{tag}-{k}", "record_type": "Encounter", "source_system": "HIS",
        "schema_version": "1", "content_hash": hashlib.sha256(f"{tag}/{k}".encode()).hexdigest()})
        for k in range(n)]


def commit(http: HttpTransport, raws: list[bytes]) -> list[dict[str, Any]]:
    docs = http.submit_batch(raws, timeout=20)
    assert all(not is_problem(d) and d["code"] == "ok" for d in docs), docs
    return docs


def settled(peers: list[PeerProc], height: int) -> bool:
    """Every peer at ``height`` with the same roots, and that block final everywhere."""
    docs = [p.health() for p in peers]
    if any(d is None for d in docs):
        return False
    heads = {(d["height"], d["log_root"], d["state_root"], d["block_hash"])
             for d in docs if d is not None}
    return len(heads) == 1 and all(d is not None and d["height"] >= height
                                   and d["final_height"] >= height for d in docs)


def measured(p: PeerProc, height: int) -> dict[str, Any] | None:
    """``p``'s health once its clock-skew estimate includes a block at ``height`` or later."""
    doc = p.status()
    return doc if doc["clock_skew_height"] >= height else None


def clock_alarms(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in doc["alarms"] if a.get("kind") == "clock_skew"]


def stop(p: PeerProc, sig: int = signal.SIGTERM) -> None:
    if p.proc is not None and p.proc.poll() is None:
        p.proc.send_signal(sig)
        try:
            p.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(timeout=10)
    if p._store is not None:
        p._store.close()
        p._store = None


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory, nats3: NatsCluster) -> Iterator[Skewed]:
    lib = require_faketime()
    root = tmp_path_factory.mktemp("skew")
    shim = write_shim(root / "shim")
    chain = unique_chain("skew")
    members = [m for m in MEMBERS if m[0].split("/")[0] in ORG_IDS]
    genesis, ring = new_consortium(chain, [o for o in ORGS if o[0] in ORG_IDS], T0, members)
    peers: dict[str, PeerProc] = {}
    for org in ORG_IDS:
        pdir = root / org
        pdir.mkdir()
        (pdir / "genesis.json").write_bytes(genesis.encoded)
        Keyring({k: v for k, v in ring.signing.items() if k.split("/")[0] == org},
                {org: ring.agreement[org]}).save(pdir / "keyring.json")
        cfg = PeerConfig(org, "ledger.db", nats3.urls, free_port(), witnesses=list(ORG_IDS),
                         sequencer=org != "cdc", admit_processes=0, max_wait_ms=10)
        cfg.save(pdir / "peer.json")
        peers[org] = PeerProc(org, pdir, cfg.http_port, CLOCKS[org])

    def launch(p: PeerProc) -> None:
        log = open(p.dir / "peer.log", "ab")  # noqa: SIM115 - the child owns it
        p.proc = subprocess.Popen(
            [sys.executable, "-m", "medledger.cli.main", "peer", "run", str(p.dir)],
            stdout=log, stderr=log, start_new_session=True,
            env=skewed_env(lib, p.skew_s, shim))
        log.close()

    def up(p: PeerProc) -> dict[str, Any] | None:
        assert p.proc is not None and p.proc.poll() is None, \
            (p.dir / "peer.log").read_text(errors="replace")[-2000:]
        return p.health()

    try:
        launch(peers["hosp-a"])  # first, so the clock that is ahead takes the lease
        poll(lambda: (up(peers["hosp-a"]) or {}).get("sequencer"), timeout=40)
        launch(peers["hosp-b"])
        launch(peers["cdc"])
        poll(lambda: up(peers["hosp-b"]) and up(peers["cdc"]), timeout=40)
        yield Skewed(genesis, ring, peers)
    finally:
        for p in peers.values():
            stop(p)
        drop_chain(nats3.urls, chain)


def test_libfaketime_skews_the_wall_clock_but_not_monotonic(tmp_path: Path) -> None:
    """The harness itself: in a process started like the peers, time.time_ns(), time.time()
    and datetime.now() are SKEW_S ahead or behind; time.monotonic() is the machine's (the
    same clock as this process's); sleeps and timed waits last what they should."""
    lib = require_faketime()
    shim = write_shim(tmp_path / "shim")
    for seconds in (SKEW_S, -SKEW_S):
        before, mono_before = wall_ms(), time.monotonic()
        got = probe(skewed_env(lib, seconds, shim))
        after, mono_after = wall_ms(), time.monotonic()
        for k in ("time_ns_ms", "time_ms", "datetime_ms"):
            assert before + seconds * 1000 - 1000 <= got[k] <= after + seconds * 1000 + 1000, \
                (seconds, k, got[k] - before)
        assert mono_before <= got["monotonic"] <= mono_after, (mono_before, got, mono_after)
        assert 0.4 <= got["waited"] < 2.0, got


def test_a_sequencer_ahead_and_a_follower_behind_neither_fork_nor_stall(skewed: Skewed) -> None:
    a, b, c = (skewed.peers[o] for o in ORG_IDS)
    assert a.status()["sequencer"] and not b.status()["sequencer"]
    heights: list[int] = []
    before = wall_ms()
    for i, via in enumerate(("hosp-b", "cdc", "hosp-b", "hosp-a", "hosp-b", "cdc")):
        http, client = skewed.client(via, "hosp-b/gw")
        with http:  # through the true, the behind and the ahead peer alike
            heights += [d["height"] for d in commit(http, register(client, f"s{i}", 5))]
    after = wall_ms()
    top = max(heights)
    poll(lambda: settled([a, b, c], top))

    # every peer holds the same blocks; block times are hosp-a's clock, 10 minutes ahead
    for h in range(1, top + 1):
        assert len({p.store.block(h).hash for p in (a, b, c)}) == 1, h  # type: ignore[union-attr]
    times = [a.block_time(h) for h in range(1, top + 1)]
    assert times == sorted(times)
    for h in set(heights):
        assert before + SKEW_MS - SLACK_MS <= a.block_time(h) <= after + SKEW_MS + SLACK_MS, \
            (h, a.block_time(h) - before)

    # the follower 10 minutes behind cosigned every block (hosp-b holds its cosignatures)
    keys = skewed.genesis.org_keys()
    sizes = sorted({BlockHeader.decode(b.store.block(h).header).log_size  # type: ignore[union-attr]
                    for h in range(1, top + 1)})
    poll(lambda: all("cdc" in b.store.cosignatures(s) for s in sizes))
    # cosignature timestamps are each witness's own clock (they decide nothing here)
    size = sizes[-1]
    note = b.store.checkpoint(size)
    assert note is not None
    lines = b.store.cosignatures(size)
    valid = check_cosignatures(attach(note[2], [v.decode() for v in lines.values()]), keys).valid
    stamps = {v.name: v.timestamp for v in valid}
    assert set(stamps) == set(ORG_IDS), stamps
    now_s = wall_ms() // 1000
    for org, off in CLOCKS.items():
        assert abs(stamps[org] - (now_s + off)) < 60, (org, stamps[org] - now_s)

    # observable: the peers that follow the skewed sequencer see block time ahead of their
    # clock and alarm; the sequencer sees its own clock
    docs = {p.org: poll(partial(measured, p, top - 3)) for p in (a, b, c)}
    assert abs(docs["hosp-a"]["clock_skew_ms"]) < SLACK_MS and not clock_alarms(docs["hosp-a"])
    for org, want in (("hosp-b", SKEW_MS), ("cdc", 2 * SKEW_MS)):
        assert abs(docs[org]["clock_skew_ms"] - want) < SLACK_MS, (org, docs[org])
        assert clock_alarms(docs[org]) == [{"kind": "clock_skew", "threshold_ms": 30_000,
                                            "skew_ms": docs[org]["clock_skew_ms"]}]
    assert all(x.get("kind") != "equivocation" for d in docs.values() for x in d["alarms"])

    # signed reads are checked against the serving peer's own clock (±300 s): a client with the
    # true clock reads from hosp-b but not from the skewed peers
    for p in (a, b, c):
        with HttpTransport(p.url, "hosp-b/gw", skewed.ring.signing["hosp-b/gw"]) as http:
            if p is b:
                assert http.get("/v1/blocks/head")["header"]["height"] >= top
                continue
            with pytest.raises(ProblemError) as refused:
                http.get("/v1/blocks/head")
            assert refused.value.code == Code.UNAUTHENTICATED and "server's" in str(
                refused.value), refused.value


def test_key_validity_near_the_boundary_is_decided_by_block_time_on_every_peer(
        skewed: Skewed) -> None:
    """A member whose validity ends 5 minutes from now (true time): block time is already 10
    minutes ahead, so its transactions are invalid (member_expired) on every peer, whatever the
    peer's own clock says; a member valid for an hour is fine everywhere. Ingress is a local
    pre-check: hosp-a (ahead) refuses the expiring key at once, the others let it through to
    the same on-chain verdict."""
    peers = list(skewed.peers.values())
    now = wall_ms()
    ending, lasting = SigningKey.generate(), SigningKey.generate()
    http, admin = skewed.client("hosp-b", "hosp-b/root")
    with http:
        commit(http, [admin.build("consortium", "enroll", {
            "member": member, "role": "gateway", "public_key": b64(key.public),
            "not_before": now - 3_600_000, "not_after": now + valid_ms})
            for member, key, valid_ms in (("hosp-b/ending", ending, 300_000),
                                          ("hosp-b/lasting", lasting, 3_600_000))])
    tx_ids: dict[str, tuple[str, str]] = {}  # tx id -> (signer, peer it went through)
    for via in ("hosp-b", "cdc", "hosp-a"):
        for member, key in (("hosp-b/ending", ending), ("hosp-b/lasting", lasting)):
            http, client = skewed.client(via, member, key)
            with http:
                raws = register(client, f"{via}-{member.replace('/', '-')}", 1)
                doc = http.submit_batch(raws, timeout=20)[0]
            if via == "hosp-a" and member == "hosp-b/ending":
                assert is_problem(doc) and doc["code"] == "key_expired", doc  # its own clock
                continue
            assert not is_problem(doc), doc
            assert doc["code"] == ("member_expired" if member == "hosp-b/ending" else "ok"), doc
            tx_ids[doc["tx_id"]] = (member, via)
    top = max(p.status()["height"] for p in peers)
    poll(lambda: settled(peers, top))
    for tx_id, (member, via) in tx_ids.items():
        codes = set()
        for p in peers:
            rec = p.store.tx(bytes.fromhex(tx_id))
            assert rec is not None, (p.org, member, via)
            codes.add(json.loads(rec.result)["code"])
        assert codes == {"member_expired" if member == "hosp-b/ending" else "ok"}, (member, via)


def test_handover_to_a_true_clock_holds_block_time_until_real_time_catches_up(
        skewed: Skewed) -> None:
    a, b, c = (skewed.peers[o] for o in ORG_IDS)
    http, client = skewed.client("hosp-b", "hosp-b/gw")
    with http:
        commit(http, register(client, "pre", 3))
        top = b.status()["height"]
        poll(lambda: settled([a, b, c], top))
        handover = top
        held = a.block_time(top)  # the newest block hosp-a cut: its clock, 10 minutes ahead
        assert held > wall_ms() + SKEW_MS - SLACK_MS

        stop(a)  # gracefully: it finishes its block and hands the lease over
        assert a.proc is not None and a.proc.returncode == 0
        poll(lambda: b.status()["sequencer"], timeout=15)
        skews = []
        for i in range(3):
            docs = commit(http, register(client, f"post{i}", 3))  # commits continue
            top = max(d["height"] for d in docs)
            poll(partial(settled, [b, c], top))  # and finality: 2 of 3 cosign
            skews.append(poll(partial(measured, b, top))["clock_skew_ms"])
            if i < 2:
                time.sleep(1.0)  # let real time pass: the held block time gets closer
        now = wall_ms()
    # block time never goes backwards: hosp-b's clock is behind the held time, so every block
    # it cut carries exactly that time
    times = [b.block_time(h) for h in range(1, top + 1)]
    assert times == sorted(times)
    new = times[handover:]
    assert len(new) >= 3 and new == [held] * len(new), [t - held for t in new]
    # so the true-clock peers see block time ahead by a shrinking amount, and still alarm
    assert all(abs(s - (held - now)) < SLACK_MS + 3_000 for s in skews), (skews, held - now)
    assert skews[0] > skews[1] > skews[2], skews
    assert clock_alarms(b.status()) and clock_alarms(c.status())
    assert abs(c.status()["clock_skew_ms"] - (held - now + SKEW_MS)) < SLACK_MS + 3_000
