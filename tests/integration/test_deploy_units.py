"""The deployment files in deploy/: both systemd units pass ``systemd-analyze verify`` with no
warning, their ExecStart lines parse with our CLI, the peer unit's confinement is emulated
without systemd around a real ``medledger peer run`` (tests/support/confine.py), and the
compose file is checked against the peer unit (no container runtime here: it is not run, but
its command's last step runs as PID 1 of a PID namespace, as in a container)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from medledger.cli.main import app
from medledger.client.client import Client
from medledger.client.http import HttpTransport
from medledger.cluster.local import LocalCluster, PeerConfig
from medledger.ledger.store.open import open_store
from medledger.workspace import DEFAULT_ORGS, Workspace
from tests.cluster.natsutil import drop_chain, shared_server, unique_chain
from tests.support.confine import confined
from tests.support.services import free_port, missing, require_binary

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNITS = ("medledger-peer.service", "medledger-node.service")
INSTALLED = "/opt/medledger/.venv/bin/medledger"  # ExecStart's binary in the units
MEDLEDGER = str(Path(sys.executable).parent / "medledger")  # this venv's
# what systemd gives a service of User=nobody (no inherited environment)
SERVICE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/nonexistent", "USER": "nobody", "LOGNAME": "nobody",
               "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


def unit(name: str, text: str | None = None) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections: key -> every value it was given (systemd keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    for line in (text or (DEPLOY / "systemd" / name).read_text()).splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            section.setdefault(key.strip(), []).append(value.strip())
    return out


def service(name: str) -> dict[str, str]:
    return {k: v[-1] for k, v in unit(name)["Service"].items()}


def verify(tmp_path: Path, name: str, text: str) -> tuple[int, list[str]]:
    """``systemd-analyze verify`` of ``text`` as unit ``name`` with ExecStart's binary this
    venv's: its exit status and every output line about the unit."""
    analyze = require_binary("systemd-analyze")
    path = tmp_path / name
    path.write_text(text.replace(INSTALLED, MEDLEDGER))
    done = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True,
                          text=True, timeout=30)
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, [ln for ln in lines if name in ln]


# -- a. systemd-analyze verify -------------------------------------------------------------


@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies_without_warnings(tmp_path: Path, name: str) -> None:
    status, about = verify(tmp_path, name, (DEPLOY / "systemd" / name).read_text())
    assert (status, about) == (0, [])


def test_verify_reports_a_typo_and_a_bad_value(tmp_path: Path) -> None:
    """The check above can fail: systemd-analyze exits 0 on these, only its warnings tell."""
    text = (DEPLOY / "systemd" / UNITS[0]).read_text()
    bad = text.replace("KillSignal=", "KilSignal=").replace("TimeoutStopSec=30",
                                                           "TimeoutStopSec=30x")
    assert bad.count("KilSignal=") == 1 and "30x" in bad
    _status, about = verify(tmp_path, UNITS[0], bad)
    assert any("Unknown key 'KilSignal'" in ln for ln in about), about
    assert any("Failed to parse" in ln and "30x" in ln for ln in about), about


# -- b. ExecStart parses with our CLI ------------------------------------------------------


def parse(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The subcommand path and parameter values ``argv`` (after the program) selects, parsed
    and converted by the real CLI without running it. Unknown commands raise LookupError;
    unknown options, missing arguments and bad values click's usage errors (exit code 2).
    Precondition: no group-level options before the subcommand (true of the units' lines)."""
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("medledger", [], resilient_parsing=True)
    path, args = [], list(argv)
    while hasattr(cmd, "get_command"):  # a group: the next word names its subcommand
        sub = cmd.get_command(ctx, args[0]) if args else None
        if sub is None:
            raise LookupError(f"no command {' '.join([*path, *args[:1]])!r}")
        path.append(args.pop(0))
        cmd, group = sub, hasattr(sub, "get_command")
        ctx = cmd.make_context(path[-1], [] if group else args, parent=ctx,
                               resilient_parsing=group)
    return path, ctx.params


def exec_start(name: str) -> list[str]:
    argv = shlex.split(service(name)["ExecStart"])
    assert argv[0] == INSTALLED
    return argv[1:]


def test_exec_start_lines_parse_with_the_cli() -> None:
    path, params = parse(exec_start("medledger-peer.service"))
    assert path == ["peer", "run"]
    assert params["directory"] == Path("/etc/medledger/peer")
    path, params = parse(exec_start("medledger-node.service"))
    assert path == ["node", "start"]
    assert (params["directory"], params["host"], params["port"]) == (
        Path("/var/lib/medledger/node"), "127.0.0.1", 8400)
    # and the check can fail: a renamed option, a missing argument, a bad value, a command
    for argv in (["node", "start", "--dirr", "/x"], ["peer", "run"],
                 ["node", "start", "--port", "http"]):
        with pytest.raises(Exception) as refused:  # typer's own (vendored) click's error
            parse(argv)
        assert getattr(refused.value, "exit_code", None) == 2, argv
    with pytest.raises(LookupError):
        parse(["peer", "start", "/etc/medledger/peer"])


# -- c. the peer unit's confinement, emulated ----------------------------------------------


@dataclass
class Host:
    """One organisation's peer laid out as the unit expects: ``conf`` stands for
    /etc/medledger/peer, ``state`` for /var/lib/medledger (both owned by the service user)."""

    conf: Path
    state: Path
    scratch: Path
    cluster: LocalCluster
    server: str

    @property
    def places(self) -> dict[str, Path]:
        return {"/etc/medledger/peer": self.conf, "/var/lib/medledger": self.state}

    def argv(self, name: str = "medledger-peer.service") -> list[str]:
        """The unit's ExecStart with this venv's binary and the paths above."""
        return [MEDLEDGER, *(str(self.places.get(a, a)) for a in exec_start(name))]


def require_root_tools() -> None:
    for tool in ("unshare", "setpriv", "mount"):
        require_binary(tool)
    if os.geteuid() != 0:
        missing("mount namespaces and setpriv need root")


@contextmanager
def peer_host(tmp_path: Path, store: str = "/var/lib/medledger/ledger.db") -> Iterator[Host]:
    """A one-organisation chain on the shared NATS server (R1); ``store`` as peer.json says."""
    server = shared_server()
    chain = unique_chain("deploy")
    c = LocalCluster.create(tmp_path / "cluster", [("hosp-a", "Hospital A", "hospital")],
                            chain=chain, nats_servers=1)
    host = Host(tmp_path / "etc-medledger-peer", tmp_path / "var-lib-medledger",
                tmp_path / "ns", c, server)
    shutil.copytree(c.root / "peers" / "hosp-a", host.conf)
    host.state.mkdir()
    host.scratch.mkdir()
    cfg = PeerConfig.load(host.conf / "peer.json")
    cfg.servers, cfg.replicas, cfg.witnesses = [server], 1, ["hosp-a"]
    for real, here in host.places.items():
        store = store.replace(real, str(here))
    cfg.store = store
    cfg.save(host.conf / "peer.json")
    (host.conf / "keyring.json").chmod(0o600)
    for p in (host.conf, *host.conf.iterdir(), host.state):  # writable by permissions: only
        shutil.chown(p, "nobody", "nogroup")                 # the read-only mount stops it
    try:
        yield host
    finally:
        drop_chain([server], chain)


def start_confined(host: Host, log: Path) -> subprocess.Popen[bytes]:
    svc = service("medledger-peer.service")
    assert (svc["ProtectSystem"], svc["PrivateTmp"], svc["NoNewPrivileges"]) == (
        "strict", "true", "true")  # what confine.py emulates
    writable = [host.places[p] for p in svc["ReadWritePaths"].split()]
    with log.open("wb") as out:
        return subprocess.Popen(
            confined(host.argv(), writable=writable, read_only=[host.conf],
                     scratch=host.scratch, reachable=[Path(sys.executable)]),
            cwd=REPO, env=SERVICE_ENV, stdout=out, stderr=subprocess.STDOUT)


def exit_status(proc: subprocess.Popen[bytes], within: float = 30.0) -> int:
    """The status a peer that should not start exits with (killed if still running)."""
    try:
        return proc.wait(timeout=within)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_healthy(host: Host, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while host.cluster.health("hosp-a") is None:
        assert proc.poll() is None, log.read_text()[-1500:]
        assert time.monotonic() < deadline, log.read_text()[-1500:]
        time.sleep(0.1)


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b""
            for p in sorted(directory.rglob("*"))}


@pytest.mark.nats
def test_peer_runs_confined_as_the_unit_says(tmp_path: Path) -> None:
    """Unprivileged, configuration read-only, only ReadWritePaths writable, private /tmp: the
    peer starts, commits a transaction, and on SIGTERM exits 0 within TimeoutStopSec — having
    written nothing into its configuration directory."""
    require_root_tools()
    log = tmp_path / "peer.log"
    with peer_host(tmp_path) as host:
        before = files(host.conf)
        proc = start_confined(host, log)
        try:
            wait_healthy(host, proc, log)
            ring = host.cluster.keyring()
            with HttpTransport(host.cluster.url("hosp-a")) as http:
                client = Client(http, host.cluster.chain, "hosp-a/gw", ring.signing["hosp-a/gw"])
                receipt = client.call("registry", "register", {
                    "record_id": "deploy-1", "record_type": "Encounter", "source_system": "HIS",
                    "schema_version": "1", "content_hash": "ab" * 32})
            assert receipt.ok, receipt
            proc.send_signal(signal.SIGTERM)
            stop_within = float(service("medledger-peer.service")["TimeoutStopSec"])
            assert proc.wait(timeout=stop_within) == 0, log.read_text()[-1500:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "peer hosp-a stopped at height" in text, text[-1500:]
    assert files(host.conf) == before
    db = host.state / "ledger.db"
    assert db.stat().st_uid != 0  # written by the unprivileged user
    store = open_store(str(db))
    try:
        head = store.head()
        assert head is not None and head.height >= receipt.height
    finally:
        store.close()


@pytest.mark.nats  # peer_host lays the chain out on the shared server
def test_confinement_stops_a_peer_writing_into_its_configuration(tmp_path: Path) -> None:
    """The check above can fail: with its store inside the (read-only) peer directory — the
    local cluster's layout — the confined peer cannot start, and exits non-zero."""
    require_root_tools()
    log = tmp_path / "peer.log"
    with peer_host(tmp_path, store="ledger.db") as host:
        before = files(host.conf)
        status = exit_status(start_confined(host, log))
    text = log.read_text()
    assert status == 2, text[-1500:]  # a clear refusal, not a traceback
    assert "[forbidden]" in text and f"{host.conf} is not writable" in text, text[-1500:]
    assert files(host.conf) == before


@pytest.mark.nats  # peer_host lays the chain out on the shared server
def test_a_peer_that_cannot_reach_nats_exits_non_zero_for_restart_on_failure(
    tmp_path: Path,
) -> None:
    """The unit's Restart=on-failure relies on this: with no NATS server answering, the peer
    gives up after peer.json's nats_connect_within_s (default 60 s; 2 s here) with
    node_unavailable naming the servers, and exits 2 — confined as the unit runs it."""
    require_root_tools()
    log = tmp_path / "peer.log"
    with peer_host(tmp_path) as host:
        cfg = PeerConfig.load(host.conf / "peer.json")
        dead = f"nats://127.0.0.1:{free_port()}"
        cfg.servers, cfg.nats_connect_within_s = [dead], 2.0
        cfg.save(host.conf / "peer.json")
        shutil.chown(host.conf / "peer.json", "nobody", "nogroup")
        status = exit_status(start_confined(host, log))
    text = log.read_text()
    assert status == 2, text[-1500:]
    assert "[node_unavailable]" in text and dead in text, text[-1500:]
    assert "Task was destroyed" not in text and "Traceback" not in text, text[-1500:]


def test_node_runs_confined_as_its_unit_says(tmp_path: Path) -> None:
    """The node unit the same way: its workspace under ReadWritePaths (here on a free port
    instead of the unit's 8400), it serves /v1/health and exits 0 on SIGTERM."""
    require_root_tools()
    svc = service("medledger-node.service")
    assert (svc["ProtectSystem"], svc["PrivateTmp"], svc["NoNewPrivileges"]) == (
        "strict", "true", "true")
    state = tmp_path / "var-lib-medledger"
    Workspace.init(state / "node", unique_chain("deploy-node"), DEFAULT_ORGS[:1])
    for p in (state, *state.rglob("*")):
        shutil.chown(p, "nobody", "nogroup")
    argv = [MEDLEDGER, *(a.replace("/var/lib/medledger", str(state))
                         for a in exec_start("medledger-node.service"))]
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    (tmp_path / "ns").mkdir()
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            confined(argv, writable=[Path(p.replace("/var/lib/medledger", str(state)))
                                     for p in svc["ReadWritePaths"].split()],
                     scratch=tmp_path / "ns", reachable=[Path(sys.executable)]),
            cwd=REPO, env=SERVICE_ENV, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, log.read_text()[-1500:]
                assert time.monotonic() < deadline, log.read_text()[-1500:]
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=float(svc["TimeoutStopSec"])) == 0, log.read_text()[-1500:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped at height" in log.read_text()


# -- compose.yaml ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    try:
        import yaml  # PyYAML, a dev dependency
    except ImportError:
        missing("PyYAML not installed (pip install -e '.[dev]')")
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def compose_steps() -> list[list[str]]:
    """The peer service's command: ``sh -c "step && step && ..."``, each step split."""
    argv = shlex.split(compose()["services"]["peer"]["command"])
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3, argv
    return [shlex.split(step) for step in argv[2].split("&&")]


def test_compose_matches_the_peer_unit() -> None:
    doc = compose()
    assert set(doc) == {"services", "volumes"} and set(doc["services"]) == {"peer"}
    peer = doc["services"]["peer"]
    svc = service("medledger-peer.service")
    last = compose_steps()[-1]
    assert last == ["exec", "medledger", *exec_start("medledger-peer.service")]
    mounts = {v.split(":")[1]: v.split(":")[2:] for v in peer["volumes"]}
    assert mounts["/etc/medledger/peer"] == ["ro"]  # ProtectSystem=strict
    for path in svc["ReadWritePaths"].split():
        assert mounts[path] == []  # writable, and a named volume kept across restarts
        assert next(v for v in peer["volumes"] if v.split(":")[1] == path).split(":")[0] in \
            doc["volumes"]
    assert peer["stop_signal"] == svc["KillSignal"]
    assert peer["stop_grace_period"] == f"{svc['TimeoutStopSec']}s"
    assert peer["restart"] == svc["Restart"]


def run_as_pid1(script: str, host: Host, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``sh -c script`` as PID 1 of a new PID namespace (as a container's command is); returns
    the ``unshare`` process and the host's pid of that PID 1."""
    with log.open("wb") as out:
        proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--",
                                 "sh", "-c", script], env=SERVICE_ENV, stdout=out,
                                stderr=subprocess.STDOUT)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 10
    while not children.exists() or not children.read_text().split():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc, int(children.read_text().split()[0])


@pytest.mark.nats
@pytest.mark.slow
def test_compose_command_stops_on_the_containers_sigterm(tmp_path: Path) -> None:
    """``docker stop`` sends SIGTERM to the container's PID 1. The compose command's last step
    (``exec medledger peer run …``; the install steps before it cannot run here) as PID 1 of
    a PID namespace stops gracefully on it; without ``exec`` a shell stays PID 1 and ignores
    SIGTERM (PID 1 gets no default signal actions), so the peer would be SIGKILLed."""
    require_root_tools()
    steps = compose_steps()
    log = tmp_path / "peer.log"
    with peer_host(tmp_path) as host:
        last = [MEDLEDGER if a == "medledger" else str(host.places.get(a, a))
                for a in steps[-1]]
        plain = shlex.join(last[1:])  # the same step without `exec`
        for script, exits in ((f"true && {shlex.join(last)}", True), (f"true && {plain}", False)):
            proc, pid1 = run_as_pid1(script, host, log)
            try:
                wait_healthy(host, proc, log)
                os.kill(pid1, signal.SIGTERM)
                if exits:
                    assert proc.wait(timeout=30) == 0, log.read_text()[-1500:]
                else:
                    time.sleep(2.0)
                    assert proc.poll() is None  # the shell ignored it; the peer runs on
                    assert host.cluster.health("hosp-a") is not None
            finally:
                if proc.poll() is None:
                    os.kill(pid1, signal.SIGKILL)  # PID 1 dies: the kernel kills the rest
                    proc.wait(timeout=30)
