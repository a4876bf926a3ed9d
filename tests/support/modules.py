"""What a process has imported: a function a spawned worker can run (tests of start-up cost)."""

from __future__ import annotations

import sys


def loaded() -> list[str]:
    """The names in this process's ``sys.modules``."""
    return sorted(sys.modules)
