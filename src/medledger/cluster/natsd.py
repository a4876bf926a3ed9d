"""A NATS JetStream cluster of ``nats-server`` processes on loopback, for development and tests.

Each server gets a config file (``n<i>.conf``), a JetStream store directory and a log under
``root``; ports are chosen free at creation and kept in ``nats.json`` so a cluster can be stopped
and restarted, and a killed server restarted on the same ports with the same data.

A server listens on 127.0.0.1 unless given its own ``host`` address, and may be started under a
``wrap`` command prefix (e.g. ``ip netns exec NS``, to run it in a network namespace: ADR 0058).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medledger.errors import Code, MedLedgerError

CLUSTER_NAME = "medledger"


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768+), so that an outgoing
    connection cannot take it between now and the moment a server binds it. Never the same
    port twice in one process (a cluster asks for several before any server binds them)."""
    for _ in range(200):
        port = random.randint(20_000, 32_000)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise MedLedgerError(Code.NODE_UNAVAILABLE, "no free port in 20000-32000")


def nats_binary() -> str:
    """``$MEDLEDGER_NATS_SERVER``, else ``nats-server`` on PATH."""
    path = os.environ.get("MEDLEDGER_NATS_SERVER") or shutil.which("nats-server")
    if not path:
        raise MedLedgerError(Code.NOT_FOUND, "nats-server not found (Debian package nats-server, "
                             "or set MEDLEDGER_NATS_SERVER)")
    return path


@dataclass
class ServerSpec:
    name: str
    port: int
    cluster_port: int
    http_port: int
    pid: int = 0
    host: str = "127.0.0.1"  # the address every port of this server is bound to
    wrap: list[str] = field(default_factory=list)  # command prefix the server is started under

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"


class NatsCluster:
    """``binary``: the nats-server executable (default: ``nats_binary()`` at start)."""

    def __init__(self, root: Path, specs: list[ServerSpec], binary: str | None = None) -> None:
        self.root, self.specs, self.binary = root, specs, binary
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def create(cls, root: Path, n: int = 3, *, binary: str | None = None,
               hosts: Sequence[str] | None = None,
               wraps: Sequence[Sequence[str]] | None = None) -> NatsCluster:
        """``n`` servers; server ``i`` bound to ``hosts[i]`` (default 127.0.0.1) and started
        under the command prefix ``wraps[i]`` (default none). Precondition: each given list
        has ``n`` entries."""
        if (hosts is not None and len(hosts) != n) or (wraps is not None and len(wraps) != n):
            raise MedLedgerError(Code.BAD_ARGS, f"want {n} hosts and wraps, got "
                                 f"{len(hosts or [])} and {len(wraps or [])}")
        root.mkdir(parents=True, exist_ok=True)
        specs = [ServerSpec(f"n{i + 1}", free_port(), free_port(), free_port(),
                            host=hosts[i] if hosts else "127.0.0.1",
                            wrap=list(wraps[i]) if wraps else [])
                 for i in range(n)]
        c = cls(root, specs, binary)
        c._write()
        return c

    @classmethod
    def load(cls, root: Path) -> NatsCluster:
        doc = json.loads((root / "nats.json").read_text())
        return cls(root, [ServerSpec(**s) for s in doc["servers"]], doc.get("binary"))

    def _write(self) -> None:
        routes = ", ".join(f"nats-route://{s.host}:{s.cluster_port}" for s in self.specs)
        for s in self.specs:
            store = (self.root / "js" / s.name).resolve()
            text = (
                f"server_name: {s.name}\nlisten: {s.host}:{s.port}\n"
                f"http: {s.host}:{s.http_port}\n"
                f'jetstream {{\n  store_dir: "{store}"\n  max_file_store: 4GB\n'
                f"  max_memory_store: 256MB\n}}\n"
            )
            if len(self.specs) > 1:
                # no_advertise: clients use exactly the servers they were given (a peer
                # configured with one server is cut off when that server is)
                text += (f"cluster {{\n  name: {CLUSTER_NAME}\n"
                         f"  listen: {s.host}:{s.cluster_port}\n  no_advertise: true\n"
                         f"  routes: [ {routes} ]\n}}\n")
            (self.root / f"{s.name}.conf").write_text(text)
        self.save()

    def save(self) -> None:
        (self.root / "nats.json").write_text(
            json.dumps({"servers": [asdict(s) for s in self.specs], "binary": self.binary},
                       indent=1))

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.specs]

    def spec(self, name: str) -> ServerSpec:
        return next(s for s in self.specs if s.name == name)

    def start(self, name: str | None = None, *, detach: bool = False) -> None:
        """Start every server (or one); ``detach`` lets them outlive this process."""
        binary = self.binary or nats_binary()
        for s in self.specs if name is None else [self.spec(name)]:
            log = open(self.root / f"{s.name}.log", "ab")  # noqa: SIM115 - the child owns it
            proc = subprocess.Popen(
                [*s.wrap, binary, "-c", str(self.root / f"{s.name}.conf")], stdout=log, stderr=log,
                start_new_session=detach)
            log.close()
            self._procs[s.name] = proc
            s.pid = proc.pid
        self.save()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until every running server accepts connections and JetStream has a meta leader."""
        deadline = time.monotonic() + timeout
        for s in self.specs:
            if not s.pid:
                continue
            while not _port_open(s.host, s.port):
                if time.monotonic() > deadline:
                    raise MedLedgerError(Code.NODE_UNAVAILABLE, f"nats {s.name} did not start")
                time.sleep(0.05)
        while len(self.specs) > 1 and not self._meta_leader():
            if time.monotonic() > deadline:
                raise MedLedgerError(Code.NODE_UNAVAILABLE, "no JetStream meta leader")
            time.sleep(0.1)

    def _meta_leader(self) -> str | None:
        import urllib.request

        for s in self.specs:
            if not s.pid:
                continue
            try:
                with urllib.request.urlopen(f"http://{s.host}:{s.http_port}/jsz",
                                            timeout=1) as r:
                    doc = json.loads(r.read())
                leader = (doc.get("meta_cluster") or {}).get("leader")
                if leader:
                    return str(leader)
            except OSError:
                continue
        return None

    def stream_leader(self, stream: str) -> str | None:
        """The server currently leading ``stream``'s Raft group, from the monitoring port."""
        import urllib.request

        for s in self.specs:
            if not s.pid:
                continue
            try:
                url = f"http://{s.host}:{s.http_port}/jsz?streams=true&accounts=true"
                with urllib.request.urlopen(url, timeout=1) as r:
                    doc = json.loads(r.read())
            except OSError:
                continue
            for acct in doc.get("account_details") or []:
                for st in acct.get("stream_detail") or []:
                    if st.get("name") == stream and st.get("cluster", {}).get("leader"):
                        return str(st["cluster"]["leader"])
        return None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        s = self.spec(name)
        if s.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.pid, sig)
            proc = self._procs.pop(name, None)
            if proc is not None:
                proc.wait(10)
            else:
                _wait_gone(s.pid)
            s.pid = 0
            self.save()

    def stop(self) -> None:
        for s in self.specs:
            self.kill(s.name, signal.SIGTERM)

    def running(self) -> dict[str, bool]:
        return {s.name: bool(s.pid) and _alive(s.pid) for s in self.specs}


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
