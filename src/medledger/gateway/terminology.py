"""Term and code matching: exact codes and curated synonyms are accepted, everything else is
sent to review with n-gram suggestions (ADR 0016).

Order for a diagnosis (``code`` and/or ``term`` from a row):

1. a WHO ICD-10 code in the table → accepted (``exact_code``); a curated national extension
   code → accepted with its edition and mapped to its WHO parent (``national_code``);
   a well-formed code outside the tables → review (``unknown_extension``); a malformed code →
   quarantined (``unknown_code``);
2. a term equal to a WHO title (English or Chinese) or a national title → ``exact_term``;
3. the hospital's own synonyms, then steward decisions recorded in the vault, then the
   consortium table → ``synonym`` / ``manual``;
4. a TCM diagnosis → review (``no_standard_equivalent``) with **no** candidates;
5. anything else → review with at most five TF-IDF candidates and scores.

When both a code and a term are given and both resolve to different WHO codes, the row goes to
review (``code_text_conflict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from medledger.gateway import icd10, loinc
from medledger.gateway.errors import Reason, ReviewReason, RowRejected
from medledger.gateway.synonyms import CONSORTIUM, TCM_SUFFIXES, TCM_TERMS
from medledger.gateway.text import has_han, normalise_term, term_variants
from medledger.gateway.tfidf import Candidate, NgramIndex


@dataclass(frozen=True)
class DxMatch:
    """The outcome of matching one diagnosis: ``who_code`` set when accepted, else a review."""

    who_code: str | None
    method: str     # exact_code|national_code|exact_term|synonym|manual|variant|review
    national_code: str | None = None
    review: ReviewReason | None = None
    candidates: tuple[Candidate, ...] = ()


@dataclass(frozen=True)
class LabMatch:
    analyte: loinc.Analyte | None
    method: str                         # exact_code|synonym|manual|review
    review: ReviewReason | None = None
    candidates: tuple[Candidate, ...] = ()


def _is_tcm(norm: str) -> bool:
    return norm in _TCM or (has_han(norm) and norm.endswith(TCM_SUFFIXES))


_TCM = frozenset(normalise_term(t) for t in TCM_TERMS)


@dataclass
class Terminology:
    """Matching tables for one hospital: consortium tables + its own synonyms + decisions."""

    hospital_dx: Mapping[str, str] = field(default_factory=dict)   # term → WHO code
    hospital_lab: Mapping[str, str] = field(default_factory=dict)  # test name → analyte key
    decisions: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (kind, term) → target

    def __post_init__(self) -> None:
        self._exact: dict[str, str] = {}
        for c in icd10.WHO.values():
            self._exact[normalise_term(c.en)] = c.code
            self._exact[normalise_term(c.zh)] = c.code
        for c in icd10.WHO.values():    # "Asthma, unspecified" also answers to "asthma"
            for title in (c.en, c.zh):
                for bare in term_variants(title):
                    self._exact.setdefault(bare, c.code)
        for parent, zh in icd10.NATIONAL.values():
            self._exact.setdefault(normalise_term(zh), parent)
        self._hosp = {normalise_term(k): v for k, v in self.hospital_dx.items()}
        self._cons = {normalise_term(s): code for code, syns in CONSORTIUM.items() for s in syns}
        self._lab = {normalise_term(n): a.key for a in loinc.ANALYTES for n in a.names}
        self._hosp_lab = {normalise_term(k): v for k, v in self.hospital_lab.items()}
        self._dx_index: NgramIndex | None = None
        self._dx_memo: dict[tuple[str | None, str | None], DxMatch] = {}
        self._lab_memo: dict[tuple[str | None, str | None], LabMatch] = {}
        self._lab_index: NgramIndex | None = None

    # -- diagnoses -------------------------------------------------------------------------
    def diagnosis(self, code: str | None, term: str | None) -> DxMatch:
        """The match for a (code, term) pair; results are memoised (terms repeat)."""
        key = (code, term)
        hit = self._dx_memo.get(key)
        if hit is None:
            hit = self._diagnosis(code, term)
            if len(self._dx_memo) >= 50_000:
                self._dx_memo.clear()
            self._dx_memo[key] = hit
        return hit

    def _diagnosis(self, code: str | None, term: str | None) -> DxMatch:
        by_code = self._by_code(code) if code else None
        by_term = self._by_term(term) if term else None
        if by_code is not None and by_code.who_code is not None:
            if by_term is not None and by_term.who_code not in (None, by_code.who_code):
                return DxMatch(None, "review", review=ReviewReason.CODE_TEXT_CONFLICT,
                               candidates=(Candidate(by_code.who_code, code or "", 1.0),
                                           Candidate(by_term.who_code or "", term or "", 1.0)))
            return by_code
        if by_term is not None and by_term.who_code is not None:
            return by_term
        if by_code is not None:            # well-formed but unknown code, no usable term
            return by_code
        if by_term is not None:
            return by_term
        raise RowRejected(Reason.MISSING_VALUE, "diagnosis has neither a code nor a term")

    def _by_code(self, raw: str) -> DxMatch:
        code = icd10.normalise_code(raw)
        if code in icd10.WHO:
            return DxMatch(code, "exact_code")
        if code in icd10.NATIONAL:
            return DxMatch(icd10.NATIONAL[code][0], "national_code", national_code=code)
        if not icd10.is_well_formed(code):
            raise RowRejected(Reason.UNKNOWN_CODE, f"{raw!r} is not an ICD-10 code")
        parent = icd10.structural_parent(code)
        cands = (Candidate(parent, code, 0.5),) if parent else ()
        return DxMatch(None, "review", review=ReviewReason.UNKNOWN_EXTENSION, candidates=cands)

    def _by_term(self, raw: str) -> DxMatch:
        norm = normalise_term(raw)
        if not norm:
            raise RowRejected(Reason.MISSING_VALUE, "diagnosis term is empty")
        if norm in self._exact:
            return DxMatch(self._exact[norm], "exact_term")
        if norm in self._hosp:
            return DxMatch(self._hosp[norm], "synonym")
        if ("dx", norm) in self.decisions:
            return DxMatch(self.decisions[("dx", norm)], "manual")
        if norm in self._cons:
            return DxMatch(self._cons[norm], "synonym")
        for variant in term_variants(raw):  # same concept by terminology conventions
            hit = self._accepted(variant)
            if hit is not None:
                return DxMatch(hit, "variant")
        if _is_tcm(norm):
            return DxMatch(None, "review", review=ReviewReason.NO_STANDARD_EQUIVALENT)
        cands = tuple(self.dx_index().search(norm))
        reason = ReviewReason.NO_EXACT_MATCH if cands else ReviewReason.NO_CANDIDATE
        return DxMatch(None, "review", review=reason, candidates=cands)

    def _accepted(self, norm: str) -> str | None:
        """The code an accepted table gives a normalised term, in the order above."""
        for table in (self._exact, self._hosp):
            if norm in table:
                return table[norm]
        return self.decisions.get(("dx", norm)) or self._cons.get(norm)

    def dx_index(self) -> NgramIndex:
        if self._dx_index is None:
            entries = [(c.code, c.en) for c in icd10.WHO.values()]
            entries += [(c.code, c.zh) for c in icd10.WHO.values()]
            entries += [(code, s) for code, syns in CONSORTIUM.items() for s in syns]
            self._dx_index = NgramIndex(entries)
        return self._dx_index

    # -- labs ------------------------------------------------------------------------------
    def lab(self, code: str | None, name: str | None) -> LabMatch:
        """The match for a (LOINC code, test name) pair; memoised like :meth:`diagnosis`."""
        key = (code, name)
        hit = self._lab_memo.get(key)
        if hit is None:
            hit = self._match_lab(code, name)
            if len(self._lab_memo) >= 50_000:
                self._lab_memo.clear()
            self._lab_memo[key] = hit
        return hit

    def _match_lab(self, code: str | None, name: str | None) -> LabMatch:
        if code and code.strip() in loinc.BY_LOINC:
            return LabMatch(loinc.BY_LOINC[code.strip()], "exact_code")
        norm = normalise_term(name or "")
        if not norm:
            raise RowRejected(Reason.MISSING_VALUE, "lab test has neither a LOINC code nor a name")
        if norm in self._hosp_lab:
            return LabMatch(loinc.BY_KEY[self._hosp_lab[norm]], "synonym")
        if ("lab", norm) in self.decisions:
            return LabMatch(loinc.BY_KEY[self.decisions[("lab", norm)]], "manual")
        if norm in self._lab:
            return LabMatch(loinc.BY_KEY[self._lab[norm]], "synonym")
        if self._lab_index is None:
            self._lab_index = NgramIndex(
                [(a.key, n) for a in loinc.ANALYTES for n in (*a.names, a.display)])
        cands = tuple(self._lab_index.search(norm))
        return LabMatch(None, "review", review=ReviewReason.UNKNOWN_TEST, candidates=cands)
