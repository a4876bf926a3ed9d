"""Hashes recorded on the ledger for every query, site response and result.

``digest(obj)`` is SHA-256 over RFC 8785-style canonical JSON (``medledger.crypto.canonical``),
after replacing each float by the string ``repr(float)`` (the shortest round-tripping decimal;
the ledger's canonical JSON carries no floats) and each tuple by a list. Two objects hash alike
exactly when their canonical forms are byte-identical, so a one-byte change is detected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

import orjson

from medledger.crypto import canonical

__all__ = ["canonical_bytes", "cross_check", "cross_check_file", "cross_check_log", "digest",
           "jsonable", "verify", "write_bundle"]


def jsonable(obj: Any) -> Any:
    """The float-free JSON form hashed by ``digest``."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return f"f:{obj!r}"
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    raise TypeError(f"cannot hash {type(obj).__name__}")


def canonical_bytes(obj: Any) -> bytes:
    return canonical.encode(jsonable(obj))


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()


def write_bundle(directory: Path, trail: list[dict[str, Any]]) -> None:
    """The coordinator's audit bundle: per query ``<qid>/query.json``, ``response-<site>.json``
    and ``result.json``, each exactly the canonical bytes whose SHA-256 is on the ledger."""
    for entry in trail:
        d = directory / entry["query_id"]
        d.mkdir(parents=True, exist_ok=True)
        art = entry["artifacts"]
        (d / "query.json").write_bytes(canonical_bytes(art["query"]))
        for site, resp in art["responses"].items():
            (d / f"response-{site}.json").write_bytes(canonical_bytes(resp))
        if "result" in art:
            (d / "result.json").write_bytes(canonical_bytes(art["result"]))


class StateReader(Protocol):
    def get_state(self, key: str) -> bytes | None: ...


def _ledger(reader: StateReader, key: str) -> Any:
    raw = reader.get_state(f"studies/{key}")
    return None if raw is None else orjson.loads(raw)


def verify(reader: StateReader, study: str, directory: Path) -> tuple[int, list[str]]:
    """Recompute every hash in the bundle and compare with the ledger's ``studies`` records.
    Returns (files checked, problems); a problem names the file and the got/want hashes."""
    problems: list[str] = []
    checked = 0
    for d in sorted(p for p in directory.iterdir() if p.is_dir()):
        qid = d.name
        pairs = [(d / "query.json", f"query/{study}/{qid}", "query_hash"),
                 (d / "result.json", f"result/{study}/{qid}", "result_hash")]
        pairs += [(f, f"response/{study}/{qid}/{f.stem.removeprefix('response-')}",
                   "response_hash") for f in sorted(d.glob("response-*.json"))]
        for path, key, fld in pairs:
            if not path.exists():
                continue
            checked += 1
            got = hashlib.sha256(path.read_bytes()).hexdigest()
            rec = _ledger(reader, key)
            if rec is None:
                problems.append(f"{path.relative_to(directory)}: no ledger record {key}")
            elif rec.get(fld) != got:
                problems.append(f"{path.relative_to(directory)}: hash {got[:16]}…, ledger has "
                                f"{str(rec.get(fld))[:16]}…")
    return checked, problems


class ScanReader(StateReader, Protocol):
    def scan_state(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]: ...


def cross_check(reader: ScanReader, study: str, site: str,
                site_log: list[dict[str, Any]]) -> list[str]:
    """Compare a site's own audit log with the ledger: every query the site answered for
    ``study`` must be on the ledger with the site's recorded outcome and response hash, and
    every response the ledger attributes to the site must be in its log."""
    by_hash = {}
    for key, raw in reader.scan_state(f"studies/query/{study}/", 1_000_000):
        by_hash[orjson.loads(raw)["query_hash"]] = key.rsplit("/", 1)[1]
    problems = []
    seen = set()
    for e in (e for e in site_log if e.get("study") == study):
        qid = by_hash.get(e["query"])
        if qid is None:
            problems.append(f"{site}: answered a query that is not on the ledger "
                            f"({e['query'][:16]}…)")
            continue
        seen.add(qid)
        rec = _ledger(reader, f"response/{study}/{qid}/{site}")
        if rec is None or rec["outcome"] != e["outcome"] or rec.get("response_hash") != e[
                "response"]:
            problems.append(f"{site}: {qid} differs between the site's log and the ledger")
    for key, _ in reader.scan_state(f"studies/response/{study}/", 1_000_000):
        _, _, _, qid, who = key.split("/")
        if who == site and qid not in seen:
            problems.append(f"{site}: the ledger records {qid} but the site's log does not")
    return problems


def cross_check_file(reader: ScanReader, study: str, site: str, path: Path) -> list[str]:
    """``cross_check`` on a site's log file (``research.sitelog``), after checking its hash
    chain: a broken chain (a one-byte change anywhere) is a problem naming the line, and the
    entries before the break are still compared with the ledger."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [f"{site}: cannot read its log {path} ({type(exc).__name__})"]
    return cross_check_log(reader, study, site, raw, path.name)


def cross_check_log(reader: ScanReader, study: str, site: str, raw: bytes,
                    label: str) -> list[str]:
    """``cross_check_file`` on a log's bytes (e.g. fetched from ``GET /audit-log``)."""
    from medledger.research.sitelog import read_log

    entries, broken, _ = read_log(raw)
    problems = [f"{site}: log {label} {p}" for p in broken]
    return problems + cross_check(reader, study, site, entries)
