"""``scipy.stats``, imported on first use: it costs ~2 s, and every ``medledger`` command
(including peers that never run a detection) imports the surveillance CLI."""

from __future__ import annotations

import importlib
from typing import Any


class _LazyStats:
    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module("scipy.stats")
        return getattr(module, name)


stats: Any = _LazyStats()
