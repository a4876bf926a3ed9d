"""Normalising free-text terms before they are compared."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[\s,，;；:：.。·'\"“”‘’()（）\[\]【】\-_/]+")


def normalise_term(raw: str) -> str:
    """NFKC, lower case, punctuation and runs of spaces folded to one space, trimmed.

    Full-width forms become ASCII (NFKC), so ``"２型糖尿病"`` equals ``"2型糖尿病"``.
    """
    s = unicodedata.normalize("NFKC", raw).lower()
    s = _PUNCT.sub(" ", s)
    return _SPACE.sub(" ", s).strip()


def has_han(s: str) -> bool:
    """True when ``s`` contains a CJK unified ideograph."""
    return any("\u4e00" <= ch <= "\u9fff" for ch in s)


# qualifiers that say "no further detail": the term without them names the same concept
UNSPECIFIED = frozenset({"nos", "unspecified", "not otherwise specified", "not specified",
                         "未特指", "未指明", "未明确", "未分类"})
_PAREN = re.compile(r"^(?P<head>[^(（]+)[(（](?P<qual>[^)）(（]+)[)）]$")
_COMMA = re.compile(r"^(?P<head>[^,，]+)[,，](?P<qual>[^,，]+)$")
_TRAILING = re.compile(r"^(?P<head>.+?)\s+(?:nos|unspecified)$")


def term_variants(raw: str) -> list[str]:
    """Normalised spellings that name the same concept as ``raw`` by the conventions of
    clinical terminologies, most literal first — never a guess at a different concept:

    * an index-style inversion ``"hypertension, essential"`` → ``"essential hypertension"``,
      and a trailing qualifier in brackets ``"高血压（原发性）"`` → ``"原发性高血压"``;
    * a qualifier that only says "unspecified" (``NOS``, ``unspecified``, ``未特指``…) dropped:
      ``"heart failure NOS"``, ``"心力衰竭（未特指）"`` → the unqualified term, which the
      tables map to the unspecified code.
    """
    text = unicodedata.normalize("NFKC", raw).strip()
    out: list[str] = []
    m = _PAREN.match(text) or _COMMA.match(text)
    if m:
        head, qual = m["head"].strip(), m["qual"].strip()
        if normalise_term(qual) in UNSPECIFIED:
            out.append(normalise_term(head))
        else:
            glue = "" if has_han(head) and has_han(qual) else " "
            out.append(normalise_term(qual + glue + head))
    t = _TRAILING.match(normalise_term(text))
    if t:
        out.append(t["head"])
    return [v for v in dict.fromkeys(out) if v]
