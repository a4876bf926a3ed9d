"""``python -m medledger``: the ``medledger`` command.

The command's modules are imported inside :func:`main`, not at the top of this file, because
worker processes started with ``spawn`` (a peer's admission processes) re-run the parent's main
module unless it is a package's ``__main__``; with this entry they import only what their own
work needs (ADR 0063).
"""

from __future__ import annotations


def main() -> None:
    from medledger.cli.main import app

    app()


if __name__ == "__main__":
    main()
