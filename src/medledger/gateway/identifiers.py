"""Direct identifiers: Chinese resident identity numbers (GB 11643-1999, ISO 7064 MOD 11-2
check character), mobile numbers, and a normaliser used before pseudonymisation."""

from __future__ import annotations

import functools
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"                     # index: weighted sum mod 11
# identifiers stand alone: not inside a longer run of letters/digits (hashes, pseudonyms)
RID_RE = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
MOBILE_RE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}"
                       r"(?![0-9A-Za-z])")


def rid_check_char(first17: str) -> str:
    """The check character of an 18-character resident ID given its first 17 digits."""
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalise_rid(raw: str) -> str:
    """Strip spaces and hyphens, upper-case the check character ``x``."""
    return raw.replace(" ", "").replace("-", "").strip().upper()


@functools.lru_cache(maxsize=65_536)
def valid_rid(rid: str) -> bool:
    """True when ``rid`` (normalised) is 17 digits plus a matching check character."""
    return (len(rid) == 18 and rid[:17].isdigit() and rid[0] != "0"
            and rid_check_char(rid[:17]) == rid[17])


def find_rids(text: str) -> list[str]:
    """Every valid resident ID in ``text`` (candidates failing the check digit are skipped)."""
    return [m for m in (normalise_rid(x) for x in RID_RE.findall(text)) if valid_rid(m)]


def find_mobiles(text: str) -> list[str]:
    return MOBILE_RE.findall(text)
