"""Reading exports as a stream of rows, each with its source position and verbatim bytes.

Before any row is produced, :func:`check_file` reads the whole file once in 1 MiB chunks to
compute its SHA-256 and to decode it strictly in the *declared* encoding (never detected:
charset detection mislabels short GBK files). A file that does not decode is refused whole
(``encoding``), so nothing half-garbled is ever emitted. A UTF-8 byte-order mark is skipped,
as is a GB18030 one.

CSV/TSV rows are parsed with the standard ``csv`` module; positions are 1-based data rows
(header excluded); blank lines are not rows. ``.xlsx`` files are read with openpyxl in
read-only (streaming) mode from the first sheet.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

from medledger.gateway.errors import Reason

CHUNK = 1 << 20
_BOMS = {"utf-8": codecs.BOM_UTF8, "gb18030": b"\x84\x31\x95\x33"}


class FileRejected(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SourceRow:
    position: str                  # "12" (CSV data row) or "3:5" (HL7 message:segment)
    values: dict[str, Any]
    raw: bytes                     # the row exactly as read (re-encoded in the file's encoding)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path, encoding: str | None) -> str:
    """SHA-256 of the file; with ``encoding``, also decode it strictly or raise FileRejected."""
    h = hashlib.sha256()
    dec = codecs.getincrementaldecoder(encoding)("strict") if encoding else None
    offset = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if dec is not None:
                try:
                    dec.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise FileRejected(Reason.ENCODING, f"byte {offset + exc.start} does not "
                                       f"decode as {encoding}: {exc.reason}") from None
            offset += len(chunk)
        if dec is not None:
            try:
                dec.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise FileRejected(Reason.ENCODING, f"file ends inside a {encoding} "
                                   f"character: {exc.reason}") from None
    return h.hexdigest()


def _skip_bom(f: Any, encoding: str) -> None:
    bom = _BOMS.get(codecs.lookup(encoding).name)
    if bom and f.buffer.peek(len(bom))[: len(bom)] == bom:
        f.buffer.read(len(bom))


class _LineTap:
    """Feeds lines to ``csv.reader`` and remembers those that made up the current record."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.taken.append(line)
        return line


@dataclass(frozen=True)
class BadRow:
    """A row that could not be parsed (quarantined as ``parse``); picklable for workers."""

    position: str
    raw: bytes
    detail: str


def read_delimited(path: Path, encoding: str, delimiter: str
                   ) -> tuple[list[str], Iterator[SourceRow | BadRow]]:
    """(header, rows). A row whose field count differs from the header's is a ``BadRow``."""
    f, tap, reader, header = _open_delimited(path, encoding, delimiter)
    if header is None:
        return [], iter(())

    def rows() -> Iterator[SourceRow | BadRow]:
        with f:
            yield from _records(reader, tap, header, encoding, 0)

    return header, rows()


def delimited_blocks(path: Path, encoding: str, delimiter: str, size: int = 1000
                     ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, blocks): the data lines of the file cut into blocks of about ``size`` lines,
    each ``(rows before it, its lines)`` and each ending where a CSV record ends, so
    :func:`parse_block` turns every block into exactly the rows :func:`read_delimited` gives
    for those lines. A block without the quote character (``"``, the csv module's) ends at its
    last line: outside quotes every line is one record. A block holding one is parsed here to
    find its last complete record, taking further lines while a quoted field runs on."""
    f, _, _, header = _open_delimited(path, encoding, delimiter)
    if header is None:
        return [], iter(())

    def blocks() -> Iterator[tuple[int, list[str]]]:
        n = 0
        with f:
            lines = iter(f)
            while block := list(islice(lines, size)):
                if any('"' in line for line in block):
                    block, count = _complete(block, lines, delimiter)
                else:
                    count = len(block) - sum(line in _BLANK for line in block)
                yield n, block
                n += count

    return header, blocks()


def parse_block(lines: list[str], start: int, header: list[str], encoding: str,
                delimiter: str) -> list[SourceRow | BadRow]:
    """The rows of one block of :func:`delimited_blocks`, numbered from ``start + 1``."""
    tap = _LineTap(iter(lines))
    return list(_records(csv.reader(tap, delimiter=delimiter), tap, header, encoding, start))


_BLANK = frozenset({"\n", "\r\n", "\r"})   # lines csv reads as no record at all


def _complete(block: list[str], more: Iterator[str], delimiter: str
              ) -> tuple[list[str], int]:
    """``block`` extended with lines of ``more`` until a record ends at its end; and how many
    rows (records and parse errors; blank lines are none) it holds."""
    extra = _LineTap(more)
    reader = csv.reader(chain(block, extra), delimiter=delimiter)
    count = 0
    while reader.line_num < len(block):
        try:
            count += bool(next(reader))
        except StopIteration:
            break
        except csv.Error:
            count += 1
    return block + extra.taken, count


def _open_delimited(path: Path, encoding: str, delimiter: str
                    ) -> tuple[Any, _LineTap, Any, list[str] | None]:
    f = open(path, encoding=encoding, errors="strict", newline="")  # noqa: SIM115
    _skip_bom(f, encoding)
    tap = _LineTap(iter(f))
    reader = csv.reader(tap, delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        f.close()
        return f, tap, reader, None
    tap.taken.clear()
    return f, tap, reader, header


def _records(reader: Any, tap: _LineTap, header: list[str], encoding: str, n: int
             ) -> Iterator[SourceRow | BadRow]:
    """Rows from ``reader`` (fed by ``tap``), numbered from ``n + 1``."""
    width = len(header)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:        # e.g. a field over csv.field_size_limit()
            n += 1
            raw = "".join(tap.taken).encode(encoding)
            tap.taken.clear()
            yield BadRow(str(n), raw, f"CSV: {exc}")
            continue
        raw = "".join(tap.taken).encode(encoding)
        tap.taken.clear()
        if not fields:
            continue
        n += 1
        if len(fields) != width:
            yield BadRow(str(n), raw, f"{len(fields)} fields; header has {width}")
            continue
        yield SourceRow(str(n), dict(zip(header, fields, strict=True)), raw)


def read_xlsx(path: Path) -> tuple[list[str], Iterator[SourceRow | BadRow]]:
    """(header, rows) of the first sheet, streamed (openpyxl read-only mode)."""
    import openpyxl
    import orjson

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        it = wb.worksheets[0].iter_rows(values_only=True)
    except Exception as exc:  # zipfile/XML/openpyxl errors: the file is not a workbook
        raise FileRejected(Reason.PARSE, f"not a readable .xlsx workbook: {exc}") from None
    try:
        header = ["" if h is None else str(h).strip() for h in next(it)]
    except StopIteration:
        wb.close()
        return [], iter(())

    def rows() -> Iterator[SourceRow | BadRow]:
        n = 0
        try:
            for cells in it:
                if all(c is None for c in cells):
                    continue
                n += 1
                vals = ["" if c is None else c for c in cells]
                raw = orjson.dumps([str(c) for c in vals])
                if len(vals) > len(header) and any(v != "" for v in vals[len(header):]):
                    yield BadRow(str(n), raw, f"{len(vals)} cells; header has {len(header)}")
                    continue
                vals += [""] * (len(header) - len(vals))
                yield SourceRow(str(n), dict(zip(header, vals[: len(header)], strict=True)), raw)
        finally:
            wb.close()

    return header, rows()
