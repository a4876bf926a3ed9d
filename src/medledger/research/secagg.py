"""Secure aggregation by pairwise masking (Bonawitz et al. 2017, "Practical Secure Aggregation
for Privacy-Preserving Machine Learning", CCS, §4 without the double mask).

* **Encoding.** Each real value v is sent as round(v · 2^48) mod 2^128 (two's complement in the
  ring). Per-value quantisation error ≤ 2^-49 ≈ 1.8e-15; the ring holds sums of magnitude up to
  2^79 ≈ 6e23, far beyond any count or XᵀWX entry, so federated GLM stays within 1e-6 of pooled.
* **Masks.** Sites i and j agree a 32-byte seed: X25519(i, j) (RFC 7748) then HKDF-SHA256 with
  the round id and both names as info (RFC 5869). The mask is SHAKE-256(seed) read as 16-byte
  little-endian integers. The site whose name sorts first adds the mask, the other subtracts it,
  so masks cancel in the sum and each single upload is uniform in the ring.
* **Rounds.** At least 3 contributors (with 2, the sum minus your own value is the other's).
  When a site drops out after the round started, its partners' masks no longer cancel; the
  coordinator either **aborts** the round, or **recovers** by asking every survivor for the
  masks it shares with the dropped sites (only if ≥ 3 survivors remain). A site answers a
  recovery request once per round and only for sites that are not itself; an upload arriving
  after recovery is refused. Limitation (no double mask): a coordinator that falsely declares a
  site dropped while holding its upload could unmask it; the ledger records each round's
  dropped list, so such a claim is auditable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from medledger.errors import Code
from medledger.research.errors import ResearchError

__all__ = ["MIN_CONTRIBUTORS", "RING", "SCALE", "Masker", "Round", "decode", "encode"]

SCALE_BITS = 48
SCALE = 1 << SCALE_BITS
RING = 1 << 128
MIN_CONTRIBUTORS = 3


def encode(values: Sequence[float]) -> list[int]:
    """Fixed-point ring elements of ``values``."""
    return [round(v * SCALE) % RING for v in values]


def decode(elements: Sequence[int]) -> list[float]:
    """Inverse of ``encode`` for sums (signed, |sum| < 2^127 / 2^48)."""
    return [(e - RING if e >= RING // 2 else e) / SCALE for e in elements]


def _prg(seed: bytes, length: int) -> list[int]:
    raw = hashlib.shake_256(seed).digest(16 * length)
    return [int.from_bytes(raw[16 * k: 16 * k + 16], "little") for k in range(length)]


@dataclass
class Masker:
    """A site's side of secure aggregation: its X25519 key and the masks it applied."""

    name: str
    key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    _recovered: set[str] = field(default_factory=set)

    @property
    def public(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def _pair_mask(self, round_id: str, peer: str, peer_public: bytes, length: int) -> list[int]:
        shared = self.key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        a, b = sorted((self.name, peer))
        info = f"medledger-secagg|{round_id}|{a}|{b}".encode()
        seed = HKDF(hashes.SHA256(), 32, None, info).derive(shared)
        mask = _prg(seed, length)
        return mask if self.name < peer else [(-m) % RING for m in mask]

    def mask(self, round_id: str, peers: dict[str, bytes], values: Sequence[float]) -> list[int]:
        """The upload: encode(values) plus the signed pairwise mask with every other peer."""
        if len(peers) < MIN_CONTRIBUTORS:
            raise ResearchError(Code.FORBIDDEN, f"secure sum over {len(peers)} sites; want >= "
                                f"{MIN_CONTRIBUTORS}")
        out = encode(values)
        for peer, pub in sorted(peers.items()):
            if peer != self.name:
                m = self._pair_mask(round_id, peer, pub, len(out))
                out = [(x + y) % RING for x, y in zip(out, m, strict=True)]
        return out

    def recovery(self, round_id: str, peers: dict[str, bytes], dropped: Sequence[str],
                 length: int) -> list[int]:
        """The sum of the masks this site applied with the ``dropped`` sites (once per round)."""
        if round_id in self._recovered or self.name in dropped:
            raise ResearchError(Code.INVALID_STATE, f"{self.name}: recovery for {round_id} "
                                "already answered or names this site")
        self._recovered.add(round_id)
        total = [0] * length
        for d in dropped:
            m = self._pair_mask(round_id, d, peers[d], length)
            total = [(x + y) % RING for x, y in zip(total, m, strict=True)]
        return total


@dataclass
class Round:
    """The coordinator's view of one secure-sum round: it only ever holds masked uploads."""

    round_id: str
    peers: dict[str, bytes]
    length: int
    uploads: dict[str, list[int]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        if len(self.peers) < MIN_CONTRIBUTORS:
            raise ResearchError(Code.FORBIDDEN, f"secure sum over {len(self.peers)} sites; "
                                f"want >= {MIN_CONTRIBUTORS}")

    def upload(self, site: str, masked: Sequence[int]) -> None:
        if self.closed or site not in self.peers or site in self.uploads:
            raise ResearchError(Code.INVALID_STATE, f"upload from {site} refused in "
                                f"{self.round_id}")
        if len(masked) != self.length:
            raise ResearchError(Code.BAD_ARGS, f"upload length {len(masked)}, want {self.length}")
        self.uploads[site] = list(masked)

    def missing(self) -> list[str]:
        return sorted(set(self.peers) - set(self.uploads))

    def total(self, recoveries: dict[str, Sequence[int]] | None = None) -> list[float]:
        """Unmasked sum. With missing uploads, ``recoveries`` (survivor → masks shared with the
        missing sites) are required from every survivor; otherwise the round aborts."""
        self.dropped = self.missing()
        self.closed = True
        if self.dropped:
            if len(self.uploads) < MIN_CONTRIBUTORS:
                raise ResearchError(Code.INVALID_STATE, f"round {self.round_id} aborted: "
                                    f"{len(self.uploads)} survivors, want >= {MIN_CONTRIBUTORS}")
            if recoveries is None or set(recoveries) != set(self.uploads):
                raise ResearchError(Code.INVALID_STATE, f"round {self.round_id} aborted: "
                                    f"{self.dropped} dropped out")
        acc = [0] * self.length
        for vec in self.uploads.values():
            acc = [(a + b) % RING for a, b in zip(acc, vec, strict=True)]
        for rec in (recoveries or {}).values() if self.dropped else ():
            acc = [(a - b) % RING for a, b in zip(acc, rec, strict=True)]
        return decode(acc)
