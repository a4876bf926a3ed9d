"""An ingest run: source rows → standard data elements → FHIR → de-identified → vault →
anchored, with a reconciliation per file (rows in = emitted + quarantined + duplicates + review).

Record identity never depends on row order: a record id is derived from (site, source system,
resource kind, source record key). Re-ingesting a file already ingested under the same profile
adds nothing. A row whose record exists with the same de-identified content is a duplicate; one
whose content changed (a corrected re-delivery) becomes a new version linked to the previous
one (``prev`` = the previous version's fingerprint). Inside one file, the same key with
different content is ``duplicate_conflict``.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from medledger.gateway import envelope
from medledger.gateway.anchor import Anchorer
from medledger.gateway.deid import Pseudonymizer
from medledger.gateway.errors import Reason
from medledger.gateway.prepare import (
    Prepared,
    Preparer,
    canonical,
    record_id,
    worker_block,
    worker_chunk,
)
from medledger.gateway.profile import Profile
from medledger.gateway.sources import (
    BadRow,
    FileRejected,
    SourceRow,
    check_file,
    delimited_blocks,
    read_delimited,
    read_xlsx,
)
from medledger.gateway.vault import Vault
from medledger.ledger.merkle import CompactRange

GATEWAY_VERSION = "medledger-gateway/0.1.0"
SEAL_WHOLE_FILE_MAX = 64 * 1024 * 1024
SCHEMA_VERSION = "fhir-r4b/gw-0.1"
COMMIT_ROWS = 10_000


__all__ = ["GATEWAY_VERSION", "SCHEMA_VERSION", "FileReport", "Gateway", "Hl7Report",
           "canonical", "iter_reports", "record_id"]


@dataclass
class FileReport:
    source_name: str
    file_hash: str
    profile: str
    status: str = "ingested"               # ingested | already_ingested | rejected
    rows_in: int = 0
    emitted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    review: int = 0
    new_versions: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    detail: str = ""

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.emitted + self.quarantined + self.duplicates + self.review

    def to_doc(self) -> dict[str, Any]:
        return {"source_name": self.source_name, "file_hash": self.file_hash,
                "profile": self.profile, "status": self.status, "rows_in": self.rows_in,
                "emitted": self.emitted, "quarantined": self.quarantined,
                "duplicates": self.duplicates, "review": self.review,
                "new_versions": self.new_versions, "reasons": dict(self.reasons),
                "balanced": self.balanced, "detail": self.detail}


@dataclass
class Hl7Report:
    """Every HL7 v2 segment (or FHIR resource) of a file: rows of mapped kinds, each kind
    reconciled, plus the ignored ones with their reasons."""

    source_name: str
    file_hash: str
    messages: int
    segments: int
    files: list[FileReport]
    ignored: dict[str, int]

    @property
    def accounted(self) -> bool:
        rows = sum(f.rows_in for f in self.files if f.status != "rejected")
        rejected = any(f.status == "rejected" for f in self.files)
        return rejected or rows + sum(self.ignored.values()) == self.segments

    def to_doc(self) -> dict[str, Any]:
        return {"source_name": self.source_name, "messages": self.messages,
                "segments": self.segments, "ignored": self.ignored,
                "accounted": self.accounted, "files": [f.to_doc() for f in self.files]}


@dataclass
class _Ctx:
    report: FileReport
    prof: Profile
    prep: Preparer
    file_hash: str
    origin: envelope.Origin


class Gateway:
    """One run. ``ingest`` files, then ``finish`` to anchor the last batch and close the run."""

    def __init__(self, vault: Vault, pseudo: Pseudonymizer, anchorer: Anchorer | None = None,
                 *, full_validation: bool = False, batch_size: int = 20_000,
                 today: date | None = None, run_id: str | None = None,
                 progress: Callable[[int], None] | None = None, workers: int = 0) -> None:
        self.vault, self.pseudo, self.anchorer = vault, pseudo, anchorer
        self.full_validation = full_validation
        self.workers = workers
        self._pool: Any = None
        self.batch_size = batch_size
        self.today = today or date.today()
        self.run_id = run_id or time.strftime("run-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:8]
        self.progress = progress
        self.reports: list[FileReport] = []
        self.batches: list[str] = []
        self._batch = CompactRange()        # the open batch's Merkle tree (root only)
        self._batch_id = self._new_batch_id()
        self._batch_system = ""
        self._pending_heads: dict[str, tuple[int, str, str, str]] = {}
        self._patients: dict[str, str] = {}         # pseudonym → hash of its Patient this run
        self._uncommitted = 0
        self._heads: dict[str, tuple[int, str, str, str]] = {}   # prefetched for one chunk
        self._rec_rows: list[tuple[Any, ...]] = []
        self._out_rows: list[tuple[Any, ...]] = []
        self._q_rows: list[tuple[Any, ...]] = []
        self._r_rows: list[tuple[Any, ...]] = []
        self._decisions = vault.decisions()
        vault.db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, NULL, ?, '', '')",
                         (self.run_id, int(time.time() * 1000), GATEWAY_VERSION))

    def _new_batch_id(self) -> str:
        return f"{self.run_id}-b{len(getattr(self, 'batches', [])):04d}"

    # -- files -----------------------------------------------------------------------------
    def ingest(self, path: Path, prof: Profile, source_name: str | None = None) -> FileReport:
        name = source_name or path.name
        enc = prof.profile.encoding if prof.profile.format != "xlsx" else None
        try:
            file_hash = check_file(path, enc)
        except FileRejected as exc:
            return self._reject_file(path, prof, name, exc)
        report = FileReport(name, file_hash, prof.label)
        if self.vault.file_status(file_hash, prof.label) is not None:
            report.status = "already_ingested"
            self.reports.append(report)
            return report
        self.vault.put_profile(prof.label, prof.model_dump_json())
        ctx = self._ctx(report, prof)
        if prof.profile.format == "xlsx":
            try:
                _, rows = read_xlsx(path)
            except FileRejected as exc:
                return self._reject_file(path, prof, name, exc, rows=1)  # rows unknown
        elif self.workers > 0:      # workers parse the lines too: only text crosses over
            header, blocks = delimited_blocks(path, prof.profile.encoding, prof.delimiter)
            self._run_prepared(ctx, self._parallel(ctx, (
                (worker_block, (ctx.origin, header, prof.profile.encoding, prof.delimiter,
                                start, lines))
                for start, lines in blocks)))
            self._finish_file(report)
            return report
        else:
            _, rows = read_delimited(path, prof.profile.encoding, prof.delimiter)
        self._run_rows(ctx, rows)
        self._finish_file(report)
        return report

    def ingest_hl7(self, path: Path, site: str, source_system: str, encoding: str = "utf-8",
                   source_name: str | None = None) -> Hl7Report:
        """One HL7 v2 file: a reconciliation per mapped kind, plus the ignored segments."""
        from medledger.gateway.hl7v2 import profile_for, read_hl7

        name = source_name or f"{site}/{path.name}"
        try:
            parsed = read_hl7(path, encoding)
        except FileRejected as exc:
            prof = profile_for("diagnosis", site, source_system)
            return Hl7Report(name, "", 0, 0, [self._reject_file(path, prof, name, exc)], {})
        return self._ingest_parsed(name, parsed.file_hash, parsed.messages, parsed.segments,
                                   parsed.rows, parsed.ignored, site, source_system, "hl7",
                                   "hl7v2")

    def ingest_fhir(self, path: Path, site: str, source_system: str,
                    source_name: str | None = None) -> Hl7Report:
        """One FHIR Bundle or NDJSON file; every resource is a mapped row or ignored."""
        from medledger.gateway.fhirsource import read_fhir
        from medledger.gateway.hl7v2 import profile_for

        name = source_name or f"{site}/{path.name}"
        try:
            parsed = read_fhir(path, site)
        except FileRejected as exc:
            prof = profile_for("diagnosis", site, source_system, "fhir", "fhir")
            return Hl7Report(name, "", 0, 0, [self._reject_file(path, prof, name, exc)], {})
        return self._ingest_parsed(name, parsed.file_hash, 1, parsed.resources, parsed.rows,
                                   parsed.ignored, site, source_system, "fhir", "fhir")

    def _ingest_parsed(self, name: str, file_hash: str, messages: int, units: int,
                       rows: dict[str, list[SourceRow | BadRow]],
                       ignored: list[tuple[str, str, str]], site: str, source_system: str,
                       date_format: str, prefix: str) -> Hl7Report:
        from medledger.gateway.hl7v2 import profile_for

        files = [self.ingest_rows(kind_rows, profile_for(kind, site, source_system, date_format,
                                                         prefix), name, file_hash)
                 for kind, kind_rows in sorted(rows.items())]
        self.vault.db.executemany(
            "INSERT OR IGNORE INTO ignored VALUES (?, ?, ?, ?, ?)",
            [(file_hash, name, pos, seg, why) for pos, seg, why in ignored])
        return Hl7Report(name, file_hash, messages, units, files,
                         dict(Counter(why for _, _, why in ignored)))

    def reprocess(self, row: SourceRow, prof: Profile, source_name: str, file_hash: str
                  ) -> FileReport:
        """Run one held row again (after a review decision), outside the file-level
        idempotence check; its outcome replaces the earlier one."""
        report = FileReport(source_name, file_hash, prof.label)
        self._run_rows(self._ctx(report, prof), [row])
        return report

    def ingest_rows(self, rows: Iterable[SourceRow | BadRow], prof: Profile, source_name: str,
                    file_hash: str) -> FileReport:
        """Ingest rows that came from elsewhere (HL7 v2, FHIR, tests); same accounting."""
        report = FileReport(source_name, file_hash, prof.label)
        if self.vault.file_status(file_hash, prof.label) is not None:
            report.status = "already_ingested"
            self.reports.append(report)
            return report
        self.vault.put_profile(prof.label, prof.model_dump_json())
        self._run_rows(self._ctx(report, prof), rows)
        self._finish_file(report)
        return report

    def _ctx(self, report: FileReport, prof: Profile) -> _Ctx:
        origin = envelope.Origin(report.file_hash, prof.label, GATEWAY_VERSION, self.run_id)
        prep = Preparer(prof, self._decisions, self.pseudo.key, self.today, self.vault.sealer,
                        origin, self.full_validation)
        return _Ctx(report, prof, prep, report.file_hash, origin)

    def _run_rows(self, ctx: _Ctx, rows: Iterable[SourceRow | BadRow]) -> None:
        """Prepare rows (inline, or in worker processes) and store them."""
        if self.workers > 0:
            self._run_prepared(ctx, self._parallel(
                ctx, ((worker_chunk, (ctx.origin, chunk)) for chunk in _chunks(rows, 1000))))
        else:
            self._run_prepared(ctx, ([ctx.prep.row(r) for r in chunk]
                                     for chunk in _chunks(rows, 2000)))

    def _run_prepared(self, ctx: _Ctx, prepared: Iterable[list[Prepared]]) -> None:
        """Store prepared rows chunk by chunk; commit every ``COMMIT_ROWS`` rows (random-key
        index pages are written once per commit, so larger transactions write far less)."""
        self.vault.begin()
        for chunk in prepared:
            self._prefetch(chunk)
            for p in chunk:
                self._store(ctx, p)
            ctx.report.rows_in += len(chunk)
            self._flush()
            self._uncommitted += len(chunk)
            if self._uncommitted >= COMMIT_ROWS:
                self.vault.commit()
                self.vault.begin()
                self._uncommitted = 0
            if self.progress:
                self.progress(len(chunk))
        self._flush()
        self.vault.commit()
        self._uncommitted = 0

    def _prefetch(self, chunk: list[Prepared]) -> None:
        """Read the current heads of every record the chunk may touch in one query."""
        rids = [p[7] for p in chunk if p[0] == "e"] + [f"pat-{p[3]}" for p in chunk
                                                        if p[0] == "e"]
        self._heads = {}
        for i in range(0, len(rids), 900):
            part = rids[i:i + 900]
            q = ("SELECT record_id, max(version), resource_hash, file_hash, fingerprint FROM "
                 f"records WHERE record_id IN ({','.join('?' * len(part))}) GROUP BY record_id")
            for rid, *head in self.vault.db.execute(q, part):
                self._heads[rid] = (head[0], head[1], head[2], head[3])

    def _parallel(self, ctx: _Ctx, jobs: Iterable[tuple[Callable[..., list[Prepared]],
                                                       tuple[Any, ...]]]
                  ) -> Iterator[list[Prepared]]:
        """Run ``fn(profile, decisions, *args)`` for every job in the worker processes, at
        most two per worker ahead of the caller; results in job order."""
        import multiprocessing
        from collections import deque
        from concurrent.futures import ProcessPoolExecutor

        from medledger.gateway.prepare import worker_init

        if self._pool is None:
            key = self.pseudo.key
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_init,
                initargs=(key.version, key.secret, self.vault.sealer.key, self.today.isoformat(),
                          self.full_validation))
        prof_json = ctx.prof.model_dump_json().encode()
        decisions = [(k, t, v) for (k, t), v in sorted(self._decisions.items())]
        pending: deque[Any] = deque()
        for fn, args in jobs:
            pending.append(self._pool.submit(fn, prof_json, decisions, *args))
            if len(pending) > 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _reject_file(self, path: Path, prof: Profile, name: str, exc: FileRejected,
                     rows: int | None = None) -> FileReport:
        """Quarantine a whole file; ``rows`` is how many rows it counts for (default: its
        non-blank lines after the header)."""
        from medledger.gateway.sources import sha256_file

        file_hash = sha256_file(path)
        report = FileReport(name, file_hash, prof.label, status="rejected", detail=exc.detail)
        if self.vault.file_status(file_hash, prof.label) is not None:
            report.status = "already_ingested"
            self.reports.append(report)
            return report
        count = _data_lines(path) if rows is None else rows
        report.rows_in = report.quarantined = count
        report.reasons[str(exc.reason)] = count
        size = path.stat().st_size
        if size <= SEAL_WHOLE_FILE_MAX:
            raw: bytes | None = self.vault.sealer.seal(
                path.read_bytes(), f"quarantine|{file_hash}|file".encode())
            detail = exc.detail
        else:       # too large to seal in one value: the source keeps it, the hash names it
            raw, detail = None, f"{exc.detail}; {size} bytes not copied (over " \
                f"{SEAL_WHOLE_FILE_MAX} bytes): the source file with this SHA-256 is the copy"
        self.vault.begin()
        self.vault.db.execute(
            "INSERT OR REPLACE INTO quarantine (file_hash, source_name, position, reason, "
            "detail, raw, run_id) VALUES (?, ?, 'file', ?, ?, ?, ?)",
            (file_hash, name, str(exc.reason), detail, raw, self.run_id))
        self.vault.db.executemany(
            "INSERT INTO outcomes VALUES (?, ?, ?, 'quarantined', NULL, NULL, NULL, "
            "NULL, ?, NULL, NULL)",
            ((name, str(i), file_hash, str(exc.reason)) for i in range(1, count + 1)))
        self.vault.commit()
        self._finish_file(report)
        return report

    def _finish_file(self, r: FileReport) -> None:
        self.vault.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.file_hash, r.profile, r.source_name, self.run_id, r.status, r.rows_in, r.emitted,
             r.quarantined, r.duplicates, r.review, orjson.dumps(dict(r.reasons)).decode(),
             r.detail))
        self.reports.append(r)

    # -- rows ------------------------------------------------------------------------------
    def _store(self, ctx: _Ctx, p: Prepared) -> None:
        tag = p[0]
        if tag == "q":
            self._quarantine(ctx, p[1], p[2], Reason(p[3]), p[4])
        elif tag == "r":
            self._hold_for_review(ctx, p)
        else:
            self._emit(ctx, p)

    def _emit(self, ctx: _Ctx, p: Prepared) -> None:
        (_, position, raw, pseud, pat_text, pat_hash, pat_v1, rid, rtype, res_text, res_hash,
         res_v1, out, partial) = p
        pat_id = f"pat-{pseud}"
        if self._patients.get(pseud) != pat_hash and not (
                partial and (pat_id in self._pending_heads or pat_id in self._heads)):
            self._put(ctx, position, raw, pat_id, "Patient", pseud, pat_text, pat_hash, pat_v1,
                      False)
            if len(self._patients) >= 200_000:
                self._patients.clear()
            self._patients[pseud] = pat_hash
        outcome = self._put(ctx, position, raw, rid, rtype, pseud, res_text, res_hash, res_v1,
                            True)
        if outcome == "conflict":
            return
        self._out_rows.append((ctx.report.source_name, position, ctx.file_hash, outcome,
                               *out, None, pseud, rid))

    def _put(self, ctx: _Ctx, position: str, raw: bytes, rid: str, rtype: str, subject: str,
             res_text: bytes, res_hash: str, v1: envelope.Sealed | None, count: bool) -> str:
        """Store a new record or version; returns mapped | duplicate | conflict. ``v1`` is
        the record sealed as version 1 where the row was prepared, if it was."""
        head = self._pending_heads.get(rid) or self._heads.get(rid)
        if head is not None and head[1] == res_hash:
            if count:
                ctx.report.duplicates += 1
            return "duplicate"
        if count and head is not None and head[2] == ctx.file_hash:
            self._quarantine(ctx, position, raw, Reason.DUPLICATE_CONFLICT,
                             "record key seen earlier in this file with other content")
            return "conflict"
        if head is None:
            version, prev = 1, None
        else:
            version, prev = head[0] + 1, head[3]
        if head is None and v1 is not None:
            fp, sealed, leaf = v1
        else:
            fp, sealed, leaf = envelope.seal(self.vault.sealer, ctx.origin, position, rid,
                                             version, prev, res_text)
        self._rec_rows.append((rid, version, rtype, subject, res_hash, fp, prev, sealed,
                               ctx.file_hash, position, ctx.origin.profile, GATEWAY_VERSION,
                               self.run_id, self._batch_id, self._batch.size))
        self._batch.append(leaf)
        self._batch_system = ctx.prof.profile.source_system
        self._pending_heads[rid] = (version, res_hash, ctx.file_hash, fp)
        if count:
            ctx.report.emitted += 1
            ctx.report.new_versions += version > 1
        if self._batch.size >= self.batch_size:
            self._flush()
            self._close_batch()
        return "mapped"

    def _quarantine(self, ctx: _Ctx, position: str, raw: bytes, reason: Reason,
                    detail: str) -> None:
        ctx.report.quarantined += 1
        ctx.report.reasons[str(reason)] += 1
        sealed = self.vault.sealer.seal(raw, f"quarantine|{ctx.file_hash}|{position}".encode())
        self._q_rows.append((ctx.file_hash, ctx.report.source_name, position, str(reason),
                             detail, sealed, self.run_id))
        self._out_rows.append((ctx.report.source_name, position, ctx.file_hash, "quarantined",
                               None, None, None, None, str(reason), None, None))

    def _hold_for_review(self, ctx: _Ctx, p: Prepared) -> None:
        _, position, values_json, kind, term, reason, cands = p
        ctx.report.review += 1
        sealed = self.vault.sealer.seal(values_json,
                                        f"review|{ctx.file_hash}|{position}".encode())
        self._r_rows.append((ctx.file_hash, ctx.report.source_name, position, ctx.origin.profile,
                             kind, term, reason, cands, sealed, "open", None, None, self.run_id))
        self._out_rows.append((ctx.report.source_name, position, ctx.file_hash, "review",
                               None, None, None, None, reason, None, None))

    # -- persistence and anchoring ---------------------------------------------------------
    def _flush(self) -> None:
        db = self.vault.db
        if self._rec_rows:
            db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                           "?, ?)", self._rec_rows)
        if self._q_rows:
            db.executemany("INSERT OR REPLACE INTO quarantine (file_hash, source_name, position, "
                           "reason, detail, raw, run_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           self._q_rows)
        if self._r_rows:
            # a re-run after an interruption keeps the held row (and any decision on it)
            db.executemany("INSERT OR IGNORE INTO review (file_hash, source_name, position, "
                           "profile, kind, term, reason, candidates, row, status, decision, "
                           "reviewer, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           self._r_rows)
        if self._out_rows:
            db.executemany("INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                           "?, ?)", self._out_rows)
        for buf in (self._rec_rows, self._q_rows, self._r_rows, self._out_rows):
            buf.clear()
        self._heads.update(self._pending_heads)    # still valid for the rest of the chunk
        self._pending_heads.clear()

    def _close_batch(self) -> None:
        """Anchor the open batch (its records are flushed) and record it. The batch's records
        are committed first, so a root on the ledger never names records the vault lost."""
        if not self._batch.size:
            return
        bid, root, count = self._batch_id, self._batch.root().hex(), self._batch.size
        status, tx, height = "pending", None, None
        if self.anchorer is not None:
            if self.vault.db.in_transaction:
                self.vault.commit()
                self.vault.begin()
                self._uncommitted = 0
            got = self.anchorer.anchor(bid, root, count, "FHIR", self._batch_system or
                                       "gateway", SCHEMA_VERSION)
            status, tx, height = "anchored", got["tx_id"], got["height"]
        self.vault.db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (bid, count, root, status, tx, height, self._batch_system))
        self.batches.append(bid)
        self._batch = CompactRange()
        self._batch_id = self._new_batch_id()

    def checkpoint(self) -> None:
        """Flush and anchor what is pending without ending the run (long-lived listeners)."""
        self.vault.begin()
        self._flush()
        self.vault.commit()
        self._close_batch()

    def finish(self) -> list[FileReport]:
        """Flush, anchor the last batch, and record the run's summary."""
        self._flush()
        self._close_batch()
        self.close()
        summary = orjson.dumps([r.to_doc() for r in self.reports]).decode()
        self.vault.db.execute("UPDATE runs SET finished_ms=?, summary=? WHERE run_id=?",
                              (int(time.time() * 1000), summary, self.run_id))
        return self.reports


def iter_reports(vault: Vault) -> Iterator[dict[str, Any]]:
    """Every file's reconciliation as stored in the vault, oldest run first."""
    for r in vault.iter_rows("SELECT * FROM files ORDER BY rowid"):
        doc = dict(r)
        doc["reasons"] = orjson.loads(doc["reason"] or "{}")
        del doc["reason"]
        doc["balanced"] = doc["rows_in"] == (doc["emitted"] + doc["quarantined"] +
                                             doc["duplicates"] + doc["review"])
        yield doc


def _chunks(rows: Iterable[SourceRow | BadRow], size: int) -> Iterator[list[SourceRow | BadRow]]:
    chunk: list[SourceRow | BadRow] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _data_lines(path: Path) -> int:
    """Non-blank lines after the first (the header), counted as a byte stream — the rows a
    refused file would have had (a quoted field spanning lines counts once per line)."""
    n, first = 0, True
    with path.open("rb") as fh:
        for line in fh:
            if first:
                first = False
                continue
            n += bool(line.strip())
    return n
