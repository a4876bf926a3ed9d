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
