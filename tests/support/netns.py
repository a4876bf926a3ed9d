"""A small network lab on one kernel: named "hosts" (Linux network namespaces) on one bridge.

``network(["n1", "hosp-a", ...])`` (or ``Lab.create``) makes, for this run only — every name
carries a random token, so parallel runs and the leftovers of a killed run never collide:

* a bridge ``mlb<token>`` in the root namespace holding the gateway address ``.1`` of a private
  10.x.y.0/24 (x, y random, clear of every address and route this machine already has), so the
  test process itself reaches every host without entering a namespace;
* per host a namespace ``ml-<token>-<name>`` with ``lo`` up and a veth pair: the inner end
  ``eth0`` holds the host's address (.10, .11, ... in creation order), the outer end
  ``v<token><i>`` is a port of the bridge.

Partitions (no latency or loss emulation: this kernel has no ``netem`` qdisc):

* ``cut(host)`` sets the host's bridge port down: every packet to or from the host is silently
  lost, as when a machine's cable is pulled (no RST, no ICMP — the others notice by timeouts);
  ``heal(host)`` sets it up again and waits until the bridge forwards on it;
* ``cut_between(a, b)`` adds blackhole routes both ways: only a↔b traffic is lost (the kernel
  refuses new sends between them with EINVAL); ``heal_between(a, b)`` removes them.

``close()`` kills what still runs in the namespaces (only what the test started there), then
deletes them and the bridge; it is safe after a partial ``create`` and leaves nothing named
with the token (``leftovers()``). Needs root and the ``ip`` binary (``require_netns``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.services import require_netns

FORWARDING = "3"  # /sys/class/net/<port>/brport/state of a forwarding bridge port


@dataclass(frozen=True)
class Host:
    name: str
    ns: str  # network namespace
    addr: str  # IPv4 address of its eth0
    port: str  # its veth end on the bridge (root namespace)


class Lab:
    """Hosts on one bridge; see the module docstring."""

    def __init__(self, ip: str, net: ipaddress.IPv4Network) -> None:
        self.ip, self.net = ip, net
        self.token = secrets.token_hex(3)
        self.bridge = f"mlb{self.token}"
        self.gateway = str(net[1])
        self.hosts: dict[str, Host] = {}
        self._cut: set[str] = set()
        self._blackholes: set[tuple[str, str]] = set()
        self._bridge_made = False

    @classmethod
    def create(cls, ip: str, names: Sequence[str]) -> Lab:
        lab = cls(ip, free_subnet(ip))
        try:
            lab._ip("link", "add", lab.bridge, "type", "bridge")
            lab._bridge_made = True
            lab._ip("addr", "add", f"{lab.gateway}/{lab.net.prefixlen}", "dev", lab.bridge)
            lab._ip("link", "set", lab.bridge, "up")
            for name in names:
                lab.add(name)
        except BaseException:
            lab.close()
            raise
        return lab

    def add(self, name: str) -> Host:
        """A new host on the bridge, reachable once this returns."""
        i = len(self.hosts)
        host = Host(name, f"ml-{self.token}-{name}", str(self.net[10 + i]),
                    f"v{self.token}{i:02d}")
        self._ip("netns", "add", host.ns)
        self.hosts[name] = host  # from here on close() removes it
        self._ip("link", "add", host.port, "type", "veth", "peer", "name", "eth0",
                 "netns", host.ns)
        self._ip("link", "set", host.port, "master", self.bridge, "up")
        self._ip("-n", host.ns, "addr", "add", f"{host.addr}/{self.net.prefixlen}",
                 "dev", "eth0")
        self._ip("-n", host.ns, "link", "set", "eth0", "up")
        self._ip("-n", host.ns, "link", "set", "lo", "up")
        self._wait_forwarding(host)
        return host

    # -- use ----------------------------------------------------------------------------

    def addr(self, name: str) -> str:
        return self.hosts[name].addr

    def wrap(self, name: str) -> list[str]:
        """The command prefix that runs a command on host ``name``."""
        return [self.ip, "netns", "exec", self.hosts[name].ns]

    def run(self, name: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` of ``argv`` on host ``name``."""
        return subprocess.run([*self.wrap(name), *argv], **kw)

    def popen(self, name: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen([*self.wrap(name), *argv], **kw)

    # -- partitions ---------------------------------------------------------------------

    def cut(self, name: str) -> None:
        """Isolate host ``name`` from every other host (and from the test process)."""
        self._ip("link", "set", self.hosts[name].port, "down")
        self._cut.add(name)

    def heal(self, name: str) -> None:
        self._ip("link", "set", self.hosts[name].port, "up")
        self._cut.discard(name)
        self._wait_forwarding(self.hosts[name])

    def cut_between(self, a: str, b: str) -> None:
        """Lose the traffic between hosts ``a`` and ``b`` only (blackhole routes both ways)."""
        for x, y in ((a, b), (b, a)):
            self._ip("-n", self.hosts[x].ns, "route", "add", "blackhole",
                     f"{self.hosts[y].addr}/32")
            self._blackholes.add((x, y))

    def heal_between(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            if (x, y) in self._blackholes:
                self._ip("-n", self.hosts[x].ns, "route", "del", "blackhole",
                         f"{self.hosts[y].addr}/32")
                self._blackholes.discard((x, y))

    def heal_all(self) -> None:
        for name in sorted(self._cut):
            self.heal(name)
        for a, b in sorted(self._blackholes):
            self.heal_between(a, b)

    @property
    def partitioned(self) -> bool:
        return bool(self._cut or self._blackholes)

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Kill what runs in the hosts, delete them and the bridge (errors do not stop it)."""
        for host in self.hosts.values():
            self._kill_all(host)
            # the pair goes with its root end at once (a namespace's own links are removed
            # by the kernel some time after the namespace)
            self._ip("link", "del", host.port, check=False)
            self._ip("netns", "del", host.ns, check=False)
        if self._bridge_made:
            self._ip("link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this lab that still exist (none after ``close``)."""
        names = subprocess.run([self.ip, "netns", "list"], capture_output=True, text=True,
                               check=True).stdout
        links = subprocess.run([self.ip, "-o", "link", "show"], capture_output=True, text=True,
                               check=True).stdout
        found = [ln.split()[0] for ln in names.splitlines() if self.token in ln]
        found += [ln.split(":")[1].strip().split("@")[0] for ln in links.splitlines()
                  if self.token in ln]
        return found

    def _kill_all(self, host: Host) -> None:
        """SIGKILL every process left in ``host``'s namespace (all started by this run: the
        namespace is this run's own), and wait until they are gone."""
        out = self._ip("netns", "pids", host.ns, check=False).stdout
        pids = [int(p) for p in out.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:  # reap those that were this process's own children
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    def _wait_forwarding(self, host: Host, timeout: float = 5.0) -> None:
        state = Path(f"/sys/class/net/{host.port}/brport/state")
        deadline = time.monotonic() + timeout
        while state.read_text().strip() != FORWARDING:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridge port {host.port} of {host.name} does not forward")
            time.sleep(0.02)

    def _ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.ip, *args], capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
        return done


def _running(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def free_subnet(ip: str) -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 overlapping no address or route this machine has now."""
    seen = subprocess.run([ip, "-4", "route", "show", "table", "all"], capture_output=True,
                          text=True, check=True).stdout
    seen += subprocess.run([ip, "-4", "-o", "addr", "show"], capture_output=True, text=True,
                           check=True).stdout
    taken = [ipaddress.ip_network(m, strict=False)
             for m in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?\b", seen)]
    taken = [n for n in taken if n.prefixlen > 0]  # a default route takes nothing
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free 10.x.y.0/24")


@contextlib.contextmanager
def network(names: Sequence[str]) -> Iterator[Lab]:
    """A lab of hosts ``names`` (``missing`` without root or ``ip``), closed on exit even
    when the body fails."""
    lab = Lab.create(require_netns(), names)
    try:
        yield lab
    finally:
        lab.close()
