"""Run a command confined as the systemd units in deploy/systemd/ confine the peer, without
systemd: a private mount namespace in which every file system is read-only
(``ProtectSystem=strict``) except the given writable directories (``ReadWritePaths=``) and a
fresh, empty /tmp (``PrivateTmp=true``); then an unprivileged user with no supplementary groups
and ``no_new_privs`` (``User=``, ``Group=``, ``NoNewPrivileges=true``), working directory ``/``.

``confined(...)`` returns the command line (``unshare --mount`` re-running this module as root
in the new namespace, which sets the mounts up and execs ``setpriv``); every step execs, so the
process started from it is the confined command itself and receives its signals. Needs root,
``unshare``, ``setpriv`` and ``mount`` (util-linux). Nothing changes outside the namespace
except the empty directories this creates inside ``scratch``.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

API_FILESYSTEMS = ("/proc", "/sys", "/dev")  # left alone by ProtectSystem=strict too


def confined(command: Sequence[str], *, writable: Sequence[Path], scratch: Path,
             read_only: Sequence[Path] = (), user: str = "nobody", group: str = "nogroup",
             reachable: Sequence[Path] = ()) -> list[str]:
    """The command line running ``command`` confined; ``scratch`` is an empty directory of the
    caller's for mount points; ``read_only`` are directories under /tmp that stand for system
    paths (e.g. /etc/medledger/peer) and so stay visible, read-only; ``reachable`` are paths
    (e.g. the Python installation) whose non-world-searchable ancestors are made traversable
    in the namespace only — a test-host accommodation (this machine's Python lives under
    root's 0700 home), not part of a unit."""
    args = [sys.executable, "-m", "tests.support.confine", "--scratch", str(scratch),
            "--user", user, "--group", group]
    for w in writable:
        args += ["--rw", str(w)]
    for r in read_only:
        args += ["--ro", str(r)]
    for r in reachable:
        args += ["--reach", str(r)]
    return ["unshare", "--mount", "--propagation", "private", "--", *args, "--", *command]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _make_reachable(path: Path, stage: Path) -> None:
    """If an ancestor D of ``path`` is not searchable by others, hide D under a 0755 tmpfs
    holding only D's child on the way to ``path`` (bind-mounted back from the original)."""
    parts = path.resolve().parts
    for i in range(2, len(parts)):
        d = Path(*parts[:i])
        if not d.stat().st_mode & stat.S_IXOTH:
            child = d / parts[i]
            stage.mkdir(parents=True)
            _mount("--bind", str(child), str(stage))
            _mount("-t", "tmpfs", "-o", "mode=0755", "confine-reach", str(d))
            child.mkdir()
            _mount("--move", str(stage), str(child))
            return


def _private_tmp(keep: Sequence[Path], scratch: Path) -> None:
    """A fresh tmpfs on /tmp, with the ``keep`` paths that live under /tmp bind-mounted back at
    their own places (they are the caller's directories, e.g. a test's tmp_path)."""
    fresh = scratch / "tmp"
    fresh.mkdir()
    _mount("-t", "tmpfs", "-o", "mode=1777", "confine-tmp", str(fresh))
    for p in keep:
        if p.is_relative_to("/tmp"):
            inner = fresh / p.relative_to("/tmp")
            inner.mkdir(parents=True)
            _mount("--bind", str(p), str(inner))
    _mount("--rbind", str(fresh), "/tmp")


def _mountpoints() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, options) of every mount in this namespace."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        point = fields[4].replace("\\040", " ")
        out.append((point, right.split()[0], set(fields[5].split(","))))
    return out


def _read_only_except(writable: Sequence[Path]) -> None:
    keep = {str(p) for p in writable} | {"/tmp"}
    seen = set()
    for point, fstype, opts in _mountpoints():
        if (point in seen or point in keep or fstype == "nsfs" or "ro" in opts
                or any(point == a or point.startswith(a + "/") for a in API_FILESYSTEMS)
                or not os.path.lexists(point)):
            continue
        seen.add(point)
        _mount("-o", "remount,bind,ro", point)


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--rw", type=Path, action="append", default=[])
    ap.add_argument("--ro", type=Path, action="append", default=[])
    ap.add_argument("--reach", type=Path, action="append", default=[])
    ap.add_argument("command", nargs="+")
    ns = ap.parse_args(argv)
    for i, r in enumerate(ns.reach):
        _make_reachable(r, ns.scratch / f"reach{i}")
    for w in ns.rw:  # a mount of its own, so it keeps its read-write flag below
        _mount("--bind", str(w), str(w))
    _private_tmp([*ns.rw, *ns.ro], ns.scratch)
    _read_only_except(ns.rw)
    os.chdir("/")
    os.execvp("setpriv", ["setpriv", f"--reuid={ns.user}", f"--regid={ns.group}",
                          "--clear-groups", "--no-new-privs", "--", *ns.command])


if __name__ == "__main__":
    main(sys.argv[1:])
