"""The interpreter's cyclic garbage collector, set up once for a node's workload (ADR 0043).

A node keeps tens of thousands of short-lived container objects in flight (admitted
transactions, their bodies, receipt futures, a block's results). With CPython's default
thresholds (700, 10, 10) the young generation fills every few hundred transactions, the in-flight
objects survive into the old generation, and full collections then re-walk every object in the
process — the modules, the registry, the genesis — while holding the interpreter lock that the
commit thread needs: about 15 % of the node process's CPU time per transaction in a measured run
(BENCHMARKS.md, "Commit-path pass").

:func:`tune_for_node`, called when the first node starts, collects once, freezes what is alive
then (it lives as long as the process anyway, and is no longer re-walked) and raises the
young-generation threshold — unless the application has already set its own thresholds.
Reference counting frees almost every object as before; the collector still finds cycles, only
less often.
"""

from __future__ import annotations

import gc
import threading

DEFAULT_THRESHOLD0 = 700  # CPython's default: the application has not tuned the collector
NODE_THRESHOLD0 = 10_000

_lock = threading.Lock()
_tuned = False


def tune_for_node() -> bool:
    """Tune the collector once per process; returns True if this call did it."""
    global _tuned
    with _lock:
        if _tuned:
            return False
        _tuned = True
        gc.collect()
        gc.freeze()
        threshold0, threshold1, threshold2 = gc.get_threshold()
        if threshold0 == DEFAULT_THRESHOLD0:
            gc.set_threshold(NODE_THRESHOLD0, threshold1, threshold2)
        return True
