"""Child process for test_admission_workers_exit_with_their_node: a node with admission
processes that prints its workers' pids, then waits to be killed."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from medledger.workspace import Workspace

if __name__ == "__main__":
    ws = Workspace.init(Path(sys.argv[1]), "orphan-test")
    node = ws.node(admit_processes=2).start()
    for _ in range(8):  # refused at ingress, but it makes the pool start its workers
        with contextlib.suppress(Exception):  # the refusal is expected
            node.submit(b"not a transaction").result(30)
    procs = node._procs
    assert procs is not None
    print(" ".join(str(p) for p in procs._processes), flush=True)
    print(os.getpid(), flush=True)
    time.sleep(120)
