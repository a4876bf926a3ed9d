"""A site's own append-only audit log: one JSON line per query the site answered or refused,
chained by hashes, so the site can show later what it released and a verifier can compare it
with the coordinator's ledger (vantage6#1182: a server-side log alone can be rewritten).

Each line is the canonical JSON (``medledger.crypto.canonical``, RFC 8785 subset) of::

    {"seq": n, "prev": <hash of line n-1, or 64 zeros>, "entry": {...}, "hash": H}

where ``H`` is the SHA-256 of the canonical JSON of ``{"entry", "prev", "seq"}``. A one-byte
change to any line is detected: the line no longer parses as canonical JSON, or its ``hash``
is not the hash of its content, or the next line's ``prev`` no longer names it. Deleting whole
lines at the end is not visible in the chain alone; the ledger cross-check
(``audit.cross_check``) finds responses the ledger holds that the log lacks.

``SiteLog(path)`` reads and checks an existing log before it appends (a broken chain is
refused, not continued), then appends each entry with one ``write`` on a file opened for
appending, flushed and fsync'ed before ``append`` returns. Entries carry hashes, outcomes,
heights — never data (ADR 0039: the consent height and the SHA-256 of the patient set).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medledger.crypto import canonical
from medledger.crypto.canonical import CanonicalError
from medledger.errors import Code
from medledger.research.errors import ResearchError

__all__ = ["GENESIS", "SiteLog", "read_log"]

GENESIS = "0" * 64


def _line_hash(seq: int, prev: str, entry: Mapping[str, Any]) -> str:
    body = canonical.encode({"entry": dict(entry), "prev": prev, "seq": seq})
    return hashlib.sha256(body).hexdigest()


def read_log(raw: bytes) -> tuple[list[dict[str, Any]], list[str], str]:
    """(entries, problems, head hash) of a log's bytes. Problems name the line (1-based) and
    what is wrong; entries stop at the first broken line."""
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    if raw and not raw.endswith(b"\n"):
        return entries, ["last line is incomplete (no newline)"], prev
    for n, line in enumerate(raw.split(b"\n")[:-1] if raw else [], 1):
        try:
            doc = canonical.decode(line)
        except CanonicalError:  # not JSON, bad UTF-8, floats, non-canonical form
            return entries, [f"line {n}: not canonical JSON"], prev
        if not isinstance(doc, dict) or set(doc) != {"entry", "hash", "prev", "seq"} or \
                not isinstance(doc["entry"], dict):
            return entries, [f"line {n}: not a log line"], prev
        if doc["seq"] != n - 1:
            return entries, [f"line {n}: seq {doc['seq']}, want {n - 1}"], prev
        if doc["prev"] != prev:
            return entries, [f"line {n}: prev {str(doc['prev'])[:16]}…, want {prev[:16]}…"], prev
        want = _line_hash(doc["seq"], doc["prev"], doc["entry"])
        if doc["hash"] != want:
            return entries, [f"line {n}: hash {str(doc['hash'])[:16]}…, content hashes to "
                             f"{want[:16]}…"], prev
        entries.append(doc["entry"])
        prev = want
    return entries, [], prev


class SiteLog:
    """The append-only log at ``path`` (created if absent). Raises ``ResearchError``
    (``conflict``) if the existing file is not an unbroken chain."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw = path.read_bytes() if path.exists() else b""
        entries, problems, head = read_log(raw)
        if problems:
            raise ResearchError(Code.CONFLICT, f"site audit log {path} is broken: "
                                f"{problems[0]}; refusing to continue it")
        self.entries = entries
        self.head = head
        self._lock = threading.Lock()

    def append(self, entry: Mapping[str, Any]) -> str:
        """Append one entry (JSON without floats); returns its line hash."""
        with self._lock:
            seq = len(self.entries)
            h = _line_hash(seq, self.head, entry)
            line = canonical.encode({"entry": dict(entry), "hash": h, "prev": self.head,
                                     "seq": seq}) + b"\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.entries.append(dict(entry))
            self.head = h
            return h
