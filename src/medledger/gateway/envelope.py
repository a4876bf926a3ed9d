"""One stored record version: the provenance envelope around a resource, its fingerprint, its
sealed body and its Merkle leaf (ADR 0018, ADR 0041).

* body = ``canonical({"provenance": prov, "resource": resource})``, built around the
  resource's canonical bytes without serialising them again;
* fingerprint = SHA-256(body) — what the ledger anchors and ``gateway verify`` recomputes;
* sealed = AES-256-GCM(body) under the vault key, associated data ``record|<id>|<version>``;
* leaf = the RFC 9162 leaf hash of ``<id>.v<version> ‖ 0x00 ‖ fingerprint``
  (``records.batch.entry``), so the batch root is built as leaves arrive.

The owner of the vault seals every version it stores with :func:`seal`. Where a row is
prepared (inline or in a worker process), version 1 of its resources is sealed ahead with the
same function; the owner keeps that result when the record turns out to be new and seals
again when it is not (ADR 0041).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from medledger.gateway.vault import Sealer
from medledger.ledger.merkle import leaf_hash
from medledger.records.batch import entry

Sealed = tuple[str, bytes, bytes]       # (fingerprint hex, sealed body, Merkle leaf hash)


def canonical(doc: Any) -> bytes:
    """The gateway's content serialisation: orjson with sorted keys (floats as shortest
    round-trip); fingerprints are SHA-256 over these bytes."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def leaf_id(record_id: str, version: int) -> str:
    return f"{record_id}.v{version}"


@dataclass(frozen=True)
class Origin:
    """Where the records of one file of one run come from (every record's provenance)."""

    file_hash: str
    profile: str                # id@version
    gateway_version: str
    run_id: str


def body(origin: Origin, position: str, record_id: str, version: int, prev: str | None,
         resource: bytes) -> bytes:
    """The plaintext body of a record version; ``resource`` is its canonical JSON."""
    prov = {"source_file_sha256": origin.file_hash, "position": position,
            "profile": origin.profile, "gateway_version": origin.gateway_version,
            "run_id": origin.run_id, "record_id": record_id, "version": version, "prev": prev}
    # == canonical({"provenance": prov, "resource": res}) without re-serialising res
    return b'{"provenance":' + canonical(prov) + b',"resource":' + resource + b"}"


def seal(sealer: Sealer, origin: Origin, position: str, record_id: str, version: int,
         prev: str | None, resource: bytes) -> Sealed:
    """(fingerprint hex, sealed body, leaf hash) of a record version."""
    plain = body(origin, position, record_id, version, prev, resource)
    fp = hashlib.sha256(plain).digest()
    sealed = sealer.seal(plain, f"record|{record_id}|{version}".encode())
    return fp.hex(), sealed, leaf_hash(entry(leaf_id(record_id, version), fp))
