"""Renders ``docs/cli.md`` from the real command tree (``python -m medledger.cli.docgen``).

A test compares the file with this output, so the CLI reference cannot go stale.
"""

from __future__ import annotations

from typing import Any

import typer

HEADER = """# Command-line reference

Generated from the CLI itself by `python -m medledger.cli.docgen > docs/cli.md`; a test fails when
this file and the commands disagree. Every command that takes `--dir` also reads `MEDLEDGER_DIR`.
Errors print `error [code] message` on stderr; exit code 2 for bad input, 1 for a failed check or
a rejected transaction.
"""


def _walk(cmd: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    children = getattr(cmd, "commands", None)
    if children is None:
        return [(path, cmd)]
    out = []
    for name in sorted(children):
        out.extend(_walk(children[name], [*path, name]))
    return out


def _param_row(p: Any) -> str:
    if p.param_type_name == "argument":
        name = f"`{(p.name or '').upper()}`"
        help_text = getattr(p, "help", None) or ""
    else:
        name = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        help_text = p.help or ""
    default = "" if p.default is None or p.required else f"`{p.default}`"
    if getattr(p, "is_flag", False):
        default = ""
    return f"| {name} | {'yes' if p.required else ''} | {default} | {help_text} |"


def render() -> str:
    from medledger.cli.main import app

    root = typer.main.get_command(app)
    parts = [HEADER]
    for path, cmd in _walk(root, ["medledger"]):
        parts.append(f"\n## `{' '.join(path)}`\n")
        parts.append((cmd.help or "").strip().split("\n\n")[0] + "\n")
        params = [p for p in cmd.params if p.name != "help"]
        if params:
            parts.append("\n| parameter | required | default | meaning |\n|---|---|---|---|")
            parts.extend(_param_row(p) for p in params)
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
