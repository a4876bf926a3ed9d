"""Qualitative lab results: the result as written → a SNOMED CT qualifier value (ADR 0047).

A test whose LOINC scale is ``Ord`` (``loinc.PATHOGEN_TESTS``: SARS-CoV-2 RNA, Shigella culture,
HBsAg…) has a coded result, not a number. Hospitals write it in many ways (``POS``, ``+``,
``阳性``, ``Detected``, ``未检出``…); this module maps a curated list of spellings, in English and
Chinese, to six SNOMED CT qualifier values, and nothing else:

=================  ===========  =========================================================
key                SNOMED CT    spellings (compared after NFKC, lower case, no spaces)
=================  ===========  =========================================================
positive           10828004     positive, pos, +, (+), 阳性, 阳性(+), 阳
negative           260385009    negative, neg, -, (-), 阴性, 阴性(-), 阴
detected           260373001    detected, det, 检出, 检测到, 已检出
not-detected       260415000    not detected, nd, undetected, 未检出, 未检测到
reactive           11214006     reactive, react, 有反应性, 反应性
non-reactive       131194007    non-reactive, nonreactive, nr, 无反应性, 非反应性
=================  ===========  =========================================================

The profile may add its own spellings (``[values.result]``: source value → a key above or its
SNOMED CT code), which win over the table; a value that is already one of the six codes is
taken as is. Anything else — ``weakly positive``, ``可疑``, a number such as a Ct value — is
quarantined with reason ``unknown_result``, never guessed: the steward adds the spelling to
the profile if it has one meaning. An empty result is ``missing_value``.
"""

from __future__ import annotations

import re
import unicodedata

from medledger.gateway.errors import Reason, RowRejected
from medledger.gateway.loinc import Analyte
from medledger.gateway.profile import Profile

__all__ = ["CODES", "POSITIVE", "RESULTS", "SNOMED_SYSTEM", "result", "spelling"]

SNOMED_SYSTEM = "http://snomed.info/sct"
# key → (SNOMED CT code, display): qualifier values (snomed.info, international edition)
RESULTS: dict[str, tuple[str, str]] = {
    "positive": ("10828004", "Positive"),
    "negative": ("260385009", "Negative"),
    "detected": ("260373001", "Detected"),
    "not-detected": ("260415000", "Not detected"),
    "reactive": ("11214006", "Reactive"),
    "non-reactive": ("131194007", "Non-reactive"),
}
CODES: dict[str, tuple[str, str]] = {c: (c, d) for c, d in RESULTS.values()}
POSITIVE = frozenset({RESULTS[k][0] for k in ("positive", "detected", "reactive")})
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "positive": ("positive", "pos", "+", "(+)", "阳性", "阳性(+)", "阳"),
    "negative": ("negative", "neg", "-", "(-)", "阴性", "阴性(-)", "阴"),
    "detected": ("detected", "det", "检出", "检测到", "已检出"),
    "not-detected": ("not detected", "nd", "undetected", "未检出", "未检测到"),
    "reactive": ("reactive", "react", "有反应性", "反应性"),
    "non-reactive": ("non-reactive", "nonreactive", "nr", "无反应性", "非反应性"),
}
_SPACE = re.compile(r"[\s_]+")


def spelling(raw: str) -> str:
    """How a result is compared: NFKC (full-width ``（＋）`` is ``(+)``), lower case, no spaces
    or underscores, a hyphen between letters dropped (``non-reactive`` = ``nonreactive``)."""
    s = _SPACE.sub("", unicodedata.normalize("NFKC", raw).lower())
    return re.sub(r"(?<=[a-z])-(?=[a-z])", "", s)


_TABLE: dict[str, str] = {spelling(s): key for key, ss in _SPELLINGS.items() for s in ss}


def _coded(target: str) -> tuple[str, str] | None:
    return RESULTS.get(target) or CODES.get(target)


def result(raw: str, prof: Profile, analyte: Analyte) -> tuple[str, str]:
    """The SNOMED CT (code, display) of result ``raw`` of the qualitative test ``analyte``;
    raises RowRejected (``missing_value``, ``unknown_result``)."""
    raw = raw.strip()
    if not raw:
        raise RowRejected(Reason.MISSING_VALUE, "lab value is empty")
    own = prof.values.get("result", {})
    target = own.get(raw)
    if target is None:
        norm = spelling(raw)
        target = next((v for k, v in own.items() if spelling(k) == norm), None) \
            or _TABLE.get(norm) or (norm if norm in CODES else None)
    coded = _coded(target) if target is not None else None
    if coded is None:
        raise RowRejected(Reason.UNKNOWN_RESULT, f"{analyte.key} result {raw!r} is in no "
                          f"qualitative value map (want one of {sorted(RESULTS)} or a spelling "
                          "the profile's [values.result] maps)")
    return coded
