"""De-identification: keyed consortium pseudonyms and per-patient date shifting (ADR 0017).

* Pseudonym = ``<key version>-`` + the first 32 hex digits of HMAC-SHA256(consortium key,
  ``"medledger/pseudonym/v1" ‖ 0x00 ‖ kind ‖ 0x00 ‖ normalised identifier``). Every hospital
  holding the same key version computes the same pseudonym for the same person, so records link
  across hospitals without any hospital seeing another's identities; nobody without the key can
  brute-force the small resident-ID space. Never a plain hash.
* The key lives outside the gateway (a file or secret the operator provides, mode 0600); its
  version is part of every pseudonym, so a rotated key yields new, unlinkable pseudonyms.
* Date shift: every date of a patient moves by the same number of days in [-50, -1] ∪ [1, 50],
  derived from HMAC(key, ``"medledger/date-shift/v1" ‖ 0x00 ‖ pseudonym``), so intervals between
  one patient's events survive while the calendar dates do not (semantics as Microsoft's FHIR
  Anonymizer ``dateShift``, scoped per patient instead of per resource).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from medledger.gateway.errors import GatewayError

_VERSION_RE = re.compile(r"^[a-z0-9]{1,8}$")


@dataclass(frozen=True)
class PseudonymKey:
    version: str
    secret: bytes

    def __post_init__(self) -> None:
        if not _VERSION_RE.match(self.version):
            raise GatewayError(f"key version {self.version!r}; want 1-8 of [a-z0-9]")
        if len(self.secret) < 32:
            raise GatewayError(f"pseudonym key has {len(self.secret)} bytes; want at least 32")

    @classmethod
    def load(cls, path: Path) -> PseudonymKey:
        """Read ``{"version": "k1", "key": "<base64>"}`` from ``path``; refuse a file that
        others than its owner may read."""
        check_private(path)
        try:
            doc = json.loads(path.read_text())
            return cls(str(doc["version"]), base64.b64decode(doc["key"], validate=True))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GatewayError(f"cannot read pseudonym key {path}: {exc}") from None

    @classmethod
    def generate(cls, path: Path, version: str = "k1") -> PseudonymKey:
        """Write a new random 256-bit key to ``path`` (mode 0600) and return it."""
        key = cls(version, secrets.token_bytes(32))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": version, "key": base64.b64encode(key.secret).decode()}, f)
        return key


def check_private(path: Path) -> None:
    """Refuse a key file readable or writable by group or others (want mode 0600)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise GatewayError(f"cannot read key file {path}: {exc}") from None
    if mode & 0o077:
        raise GatewayError(f"key file {path} has mode {mode:04o}; want 0600 (chmod 600)")


class Pseudonymizer:
    """Pseudonyms and date shifts under one consortium key version."""

    def __init__(self, key: PseudonymKey) -> None:
        self.key = key
        self._shift_cache: dict[str, int] = {}      # bounded caches: patients repeat
        self._pseud_cache: dict[bytes, str] = {}

    def pseudonym(self, kind: str, value: str) -> str:
        """``kind`` names the identifier namespace: ``"cn-rid"`` links across hospitals,
        ``"mrn:<site>"`` stays within one hospital."""
        msg = b"medledger/pseudonym/v1\x00" + kind.encode() + b"\x00" + value.encode()
        cached = self._pseud_cache.get(msg)
        if cached is None:
            mac = hmac.digest(self.key.secret, msg, "sha256").hex()
            cached = f"{self.key.version}-{mac[:32]}"
            if len(self._pseud_cache) >= 100_000:
                self._pseud_cache.clear()
            self._pseud_cache[msg] = cached
        return cached

    def shift_days(self, pseudonym: str) -> int:
        days = self._shift_cache.get(pseudonym)
        if days is None:
            mac = hmac.digest(self.key.secret, b"medledger/date-shift/v1\x00" +
                              pseudonym.encode(), "sha256")
            n = int.from_bytes(mac[:4], "big") % 100
            days = n - 50 if n < 50 else n - 49          # [-50, -1] ∪ [1, 50]
            if len(self._shift_cache) >= 100_000:
                self._shift_cache.clear()
            self._shift_cache[pseudonym] = days
        return days

    def shift(self, pseudonym: str, d: date) -> date:
        return d + timedelta(days=self.shift_days(pseudonym))


def generalise_birth(birth: date | None, today: date) -> str | None:
    """Birth date → year only; None for people 90 or older (HIPAA Safe Harbor (C))."""
    if birth is None:
        return None
    if today.year - birth.year >= 90:
        return None
    return f"{birth.year:04d}"
