"""HL7 v2 messages (python-hl7) → gateway rows, with every segment accounted for.

Mapped (each such segment is one row, position ``MESSAGE:SEGMENT``, both 1-based):

* ADT ``DG1`` → diagnosis (DG1-3 code^text^system; DG1-4 description; date DG1-5, else
  EVN-2 / MSH-7);
* ORU/OUL ``OBX`` with a numeric value (value type NM or SN) → lab result (OBX-3 code^name^
  system, OBX-5 value, OBX-6 unit; date OBX-14, else OBR-7 / MSH-7);
* RDE ``RXE`` → medication request (RXE-2 give code); RDS ``RXD`` → dispense (RXD-2, date
  RXD-3).

Every other segment — and every segment of other message types — is *listed as ignored* with
a reason, so nothing disappears silently (the research notes cite converters that drop
unmapped segments without a word). The patient comes from PID-3 (first identifier, namespaced
by its assigning authority) — a keyed pseudonym within the sending site; PID-7 birth date,
PID-8 sex. A file is decoded strictly in its declared encoding after a UTF-8 BOM is removed;
segments may end in CR, LF or CRLF.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hl7

from medledger.gateway.errors import Reason
from medledger.gateway.profile import Profile
from medledger.gateway.sources import BadRow, FileRejected, SourceRow

_SEG_SPLIT = re.compile(r"\r\n|\r|\n")
KIND_OF = {"DG1": "diagnosis", "OBX": "lab", "RXE": "medication_request",
           "RXD": "medication_dispense"}
MESSAGES_FOR = {"DG1": ("ADT",), "OBX": ("ORU", "OUL"), "RXE": ("RDE",), "RXD": ("RDS",)}
NUMERIC = ("NM", "SN")
CONTEXT = {"PID": "PID: identity of the mapped segments (pseudonymised, never copied)",
           "MSH": "MSH: message ids and dates for the mapped segments",
           "EVN": "EVN: event date for the mapped segments",
           "OBR": "OBR: order id and observation date for the mapped OBX segments"}


def profile_for(kind: str, site: str, source_system: str, date_format: str = "hl7",
                prefix: str = "hl7v2") -> Profile:
    """The fixed profile HL7 (or FHIR) rows are read with (``<prefix>-<kind>@1``)."""
    cols: dict[str, str] = {"record_key": "key", "mrn": "mrn", "patient_id": "rid",
                            "birth_date": "birth", "sex": "sex", "date": "date"}
    cols.update({"diagnosis": {"dx_code": "code", "dx_term": "term"},
                 "lab": {"test_code": "code", "test_name": "term", "value": "value",
                         "unit": "unit"},
                 "medication_request": {"med_code": "code", "med_name": "term",
                                        "med_system": "system"},
                 "medication_dispense": {"med_code": "code", "med_name": "term",
                                         "med_system": "system"}}[kind])
    return Profile.model_validate({
        "profile": {"id": f"{prefix}-{kind.replace('_', '-')}", "version": "1", "site": site,
                    "source_system": source_system, "kind": kind, "format": "csv",
                    "date_formats": [date_format]},
        "columns": cols,
        "values": {"sex": {"M": "male", "F": "female", "O": "other", "U": "unknown",
                           "A": "other", "N": "unknown", "male": "male", "female": "female",
                           "other": "other", "unknown": "unknown"}},
    })


@dataclass
class Hl7File:
    """What one file held: rows per kind, ignored segments, and message-level problems."""

    file_hash: str
    messages: int = 0
    segments: int = 0
    rows: dict[str, list[SourceRow | BadRow]] = field(default_factory=dict)
    ignored: list[tuple[str, str, str]] = field(default_factory=list)   # (position, seg, why)
    message_types: Counter[str] = field(default_factory=Counter)

    def ignored_reasons(self) -> Counter[str]:
        return Counter(why for _, _, why in self.ignored)


_ESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
_ESCAPE_RE = re.compile(r"\\([FSTRE])\\")


def unescape(text: str) -> str:
    """HL7 v2 escape sequences for the delimiters (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\)
    back to the characters; other escapes (formatting, hex) are left as they are."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(1)], text) if "\\" in text else text


def _comp(field_text: str, comp: int = 1, rep: int = 0) -> str:
    """Component ``comp`` (1-based) of repetition ``rep`` of a field, unescaped."""
    reps = field_text.split("~")
    if rep >= len(reps):
        return ""
    parts = reps[rep].split("^")
    return unescape(parts[comp - 1].strip()) if comp <= len(parts) else ""


def _field(seg: Any, n: int) -> str:
    """Field ``n`` in HL7 numbering as text (python-hl7 puts MSH-1, the field separator, at
    index 1 of MSH, so ``seg[n]`` is field n for every segment)."""
    try:
        return str(seg[n])
    except IndexError:
        return ""


def split_messages(text: str) -> list[list[str]]:
    """Messages as lists of segment strings (a new message starts at each ``MSH``)."""
    msgs: list[list[str]] = []
    for line in _SEG_SPLIT.split(text):
        if not line.strip():
            continue
        if line.startswith("MSH") or not msgs:
            msgs.append([])
        msgs[-1].append(line)
    return msgs


def read_hl7(path: Path, encoding: str = "utf-8") -> Hl7File:
    data = path.read_bytes()
    out = Hl7File(hashlib.sha256(data).hexdigest())
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode(encoding, errors="strict")
    except UnicodeDecodeError as exc:
        raise FileRejected(Reason.ENCODING, f"byte {exc.start} does not decode as "
                           f"{encoding}: {exc.reason}") from None
    for m, segs in enumerate(split_messages(text), 1):
        out.messages += 1
        out.segments += len(segs)
        _message(out, m, segs)
    return out


def _message(out: Hl7File, m: int, segs: list[str]) -> None:
    raw = "\r".join(segs)
    if not segs[0].startswith("MSH"):
        _bad_message(out, m, segs, "message does not start with MSH")
        return
    try:
        msg = hl7.parse(raw)
    except Exception as exc:  # python-hl7 raises plain exceptions on malformed input
        _bad_message(out, m, segs, f"python-hl7 cannot parse it: {exc}")
        return
    parsed = list(msg)
    msh = parsed[0]
    mtype = _comp(_field(msh, 9), 1)
    out.message_types[mtype or "?"] += 1
    pid = next((s for s in parsed if str(s[0]) == "PID"), None)
    context = _context(parsed, pid)
    for i, (seg, text) in enumerate(zip(parsed, segs, strict=False), 1):
        name = str(seg[0])
        pos = f"{m}:{i}"
        kind = KIND_OF.get(name)
        if kind is None or mtype not in MESSAGES_FOR[name]:
            if mtype not in ("ADT", "ORU", "OUL", "RDE", "RDS"):
                why = f"{mtype} messages are not mapped"
            else:
                why = CONTEXT.get(name, f"{name} carries no mapped data")
            out.ignored.append((pos, name, why))
            continue
        row = _row(name, seg, context, pos, text)
        if row is None:
            out.ignored.append((pos, name, "OBX value is not numeric (value type "
                                f"{_field(seg, 2) or 'missing'})"))
            continue
        out.rows.setdefault(kind, []).append(row)


def _bad_message(out: Hl7File, m: int, segs: list[str], detail: str) -> None:
    out.message_types["unparsable"] += 1
    for i, s in enumerate(segs, 1):
        kind = KIND_OF.get(s[:3])
        if kind is not None:
            out.rows.setdefault(kind, []).append(BadRow(f"{m}:{i}", s.encode(), detail))
        else:
            out.ignored.append((f"{m}:{i}", s[:3], f"in an unparsable message: {detail}"))


def _context(parsed: list[Any], pid: Any) -> dict[str, str]:
    msh = parsed[0]
    ctx = {"control": _field(msh, 10), "msg_date": _comp(_field(msh, 7)),
           "mrn": "", "birth": "", "sex": "", "event_date": "", "obr_date": "", "order": ""}
    for seg in parsed:
        name = str(seg[0])
        if name == "EVN" and not ctx["event_date"]:
            ctx["event_date"] = _comp(_field(seg, 2))
        elif name == "OBR" and not ctx["obr_date"]:
            ctx["obr_date"] = _comp(_field(seg, 7))
            ctx["order"] = _comp(_field(seg, 3)) or _comp(_field(seg, 2))
    if pid is not None:
        ident = _field(pid, 3)
        mrn, authority = _comp(ident, 1), _comp(ident, 4).split("&")[0]
        ctx["mrn"] = f"{authority}:{mrn}" if mrn and authority else mrn
        ctx["birth"] = _comp(_field(pid, 7))[:8]
        ctx["sex"] = _comp(_field(pid, 8))
    return ctx


def _row(name: str, seg: Any, ctx: dict[str, str], pos: str, text: str) -> SourceRow | None:
    base = {"mrn": ctx["mrn"], "birth": ctx["birth"], "sex": ctx["sex"]}
    setid = _field(seg, 1) or pos.split(":")[1]
    if name == "DG1":
        f3 = _field(seg, 3)
        system = _comp(f3, 3).upper()
        code = _comp(f3, 1) if system in ("I10", "ICD10", "ICD-10", "I10C", "ICD10CN") else ""
        term = _comp(f3, 2) or _field(seg, 4)
        date = _comp(_field(seg, 5)) or ctx["event_date"] or ctx["msg_date"]
        vals = {**base, "key": f"{ctx['control']}:DG1:{setid}", "code": code, "term": term,
                "date": date}
    elif name == "OBX":
        if _field(seg, 2) not in NUMERIC:
            return None
        f3 = _field(seg, 3)
        code = _comp(f3, 1) if _comp(f3, 3).upper() in ("LN", "LOINC") else ""
        value = _field(seg, 5)
        if _field(seg, 2) == "SN":             # structured numeric: comparator^num
            value = "" if _comp(value, 1) else _comp(value, 2)
        date = _comp(_field(seg, 14)) or ctx["obr_date"] or ctx["msg_date"]
        vals = {**base, "key": f"{ctx['order'] or ctx['control']}:OBX:{setid}:{_comp(f3)}",
                "code": code, "term": _comp(f3, 2), "value": value,
                "unit": _comp(_field(seg, 6)), "date": date}
    else:                                       # RXE / RXD
        give = _field(seg, 2)
        date = (_comp(_field(seg, 3)) if name == "RXD" else "") or ctx["msg_date"]
        vals = {**base, "key": f"{ctx['control']}:{name}:{setid}", "code": _comp(give, 1),
                "term": _comp(give, 2), "system": _comp(give, 3), "date": date}
    return SourceRow(pos, vals, text.encode())


def iter_kinds(parsed: Hl7File) -> Iterator[tuple[str, list[SourceRow | BadRow]]]:
    yield from sorted(parsed.rows.items())
