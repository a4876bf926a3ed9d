"""Names shared by the ledger benchmark's modules: the error type and the progress callback."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


class BenchError(RuntimeError):
    """A workload that could not run or produced a wrong result."""


def _quiet(_: str) -> None:
    pass
