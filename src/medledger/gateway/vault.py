"""The hospital's local vault: standardised records encrypted at rest, with their provenance,
quarantine, review queue and per-file reconciliation (ADR 0018).

One SQLite file (WAL). Every record body, quarantined row and held review row is sealed with
AES-256-GCM under the vault's data key (a 12-byte random nonce per value; the associated data
binds the ciphertext to its row, e.g. ``record|<id>|<version>``, so ciphertexts cannot be
swapped between rows). The data key is a separate file the operator keeps outside the
database (``vault.key``, mode 0600; production: a KMS-wrapped key). What is stored in clear:
ids, versions, hashes, positions, reason codes, codes/units/values of outcomes — nothing that
identifies a person (pseudonyms are keyed).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medledger.errors import Code
from medledger.gateway.errors import GatewayError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, started_ms INTEGER, finished_ms INTEGER, gateway_version TEXT,
  site TEXT, summary TEXT);
CREATE TABLE IF NOT EXISTS files (
  file_hash TEXT NOT NULL, profile TEXT NOT NULL, source_name TEXT NOT NULL, run_id TEXT,
  status TEXT NOT NULL, rows_in INTEGER, emitted INTEGER, quarantined INTEGER,
  duplicates INTEGER, review INTEGER, reason TEXT, detail TEXT,
  PRIMARY KEY (file_hash, profile));
CREATE TABLE IF NOT EXISTS profiles (label TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  record_id TEXT NOT NULL, version INTEGER NOT NULL, resource_type TEXT NOT NULL,
  subject TEXT, resource_hash TEXT NOT NULL, fingerprint TEXT NOT NULL, prev TEXT,
  body BLOB NOT NULL, file_hash TEXT, position TEXT, profile TEXT, gateway_version TEXT,
  run_id TEXT, batch_id TEXT, leaf INTEGER,
  PRIMARY KEY (record_id, version));
CREATE VIEW IF NOT EXISTS heads AS
  SELECT record_id, max(version) AS version, resource_hash FROM records GROUP BY record_id;
CREATE TABLE IF NOT EXISTS batches (
  batch_id TEXT PRIMARY KEY, count INTEGER NOT NULL, root TEXT, status TEXT NOT NULL,
  tx_id TEXT, height INTEGER, source_system TEXT);
CREATE TABLE IF NOT EXISTS quarantine (
  id INTEGER PRIMARY KEY, file_hash TEXT, source_name TEXT, position TEXT, reason TEXT,
  detail TEXT, raw BLOB, run_id TEXT);
CREATE TABLE IF NOT EXISTS review (
  id INTEGER PRIMARY KEY, file_hash TEXT, source_name TEXT, position TEXT, profile TEXT,
  kind TEXT, term TEXT, reason TEXT, candidates TEXT, row BLOB, status TEXT NOT NULL,
  decision TEXT, reviewer TEXT, run_id TEXT);
CREATE TABLE IF NOT EXISTS decisions (
  kind TEXT NOT NULL, term TEXT NOT NULL, target TEXT, reviewer TEXT, decided_ms INTEGER,
  PRIMARY KEY (kind, term));
CREATE TABLE IF NOT EXISTS outcomes (
  source_name TEXT NOT NULL, position TEXT NOT NULL, file_hash TEXT NOT NULL,
  outcome TEXT NOT NULL, code_system TEXT, code TEXT, unit TEXT, value TEXT, reason TEXT,
  subject TEXT, record_id TEXT);
CREATE TABLE IF NOT EXISTS ignored (
  file_hash TEXT NOT NULL, source_name TEXT NOT NULL, position TEXT NOT NULL,
  segment TEXT, reason TEXT, PRIMARY KEY (file_hash, position));
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_pos ON quarantine(file_hash, position);
CREATE UNIQUE INDEX IF NOT EXISTS review_pos ON review(file_hash, position);
CREATE INDEX IF NOT EXISTS outcomes_name ON outcomes(source_name);
CREATE INDEX IF NOT EXISTS records_batch ON records(batch_id, leaf);
"""


class Sealer:
    """AES-256-GCM with a random nonce; output is nonce ‖ ciphertext ‖ tag."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise GatewayError(f"vault key has {len(key)} bytes; want 32")
        self.key = key          # handed to the run's own worker processes, never stored
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)          # what secrets.token_bytes returns, without its wrapper
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], aad)
        except InvalidTag:
            raise GatewayError(f"vault value for {aad.decode(errors='replace')} fails "
                               "authentication (wrong key or tampered)",
                               Code.STORE_CORRUPT) from None


def load_or_create_key(path: Path) -> bytes:
    if path.exists():
        from medledger.gateway.deid import check_private

        check_private(path)
        key = path.read_bytes()
        if len(key) != 32:
            raise GatewayError(f"{path} holds {len(key)} bytes; want a 32-byte key")
        return key
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class Vault:
    """``Vault(dir)``: ``dir/vault.db`` sealed with ``key_path`` (default ``dir/vault.key``)."""

    def __init__(self, root: Path, key_path: Path | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.sealer = Sealer(load_or_create_key(key_path or root / "vault.key"))
        self.db = sqlite3.connect(root / "vault.db", check_same_thread=False,
                                  isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin(self) -> None:
        self.db.execute("BEGIN")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self.db.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return list(cur.fetchall())

    def iter_rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[sqlite3.Row]:
        cur = self.db.execute(sql, params)
        cur.row_factory = sqlite3.Row
        yield from cur

    # -- records ---------------------------------------------------------------------------
    def head(self, record_id: str) -> tuple[int, str] | None:
        row = self.db.execute("SELECT version, resource_hash FROM heads WHERE record_id=?",
                              (record_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def record_body(self, record_id: str, version: int, sealed: bytes) -> bytes:
        return self.sealer.open(sealed, f"record|{record_id}|{version}".encode())

    def file_status(self, file_hash: str, profile: str) -> str | None:
        row = self.db.execute("SELECT status FROM files WHERE file_hash=? AND profile=?",
                              (file_hash, profile)).fetchone()
        return str(row[0]) if row else None

    def decisions(self) -> dict[tuple[str, str], str]:
        return {(k, t): str(v) for k, t, v in
                self.db.execute("SELECT kind, term, target FROM decisions WHERE target != ''")}

    def put_profile(self, label: str, body: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO profiles VALUES (?, ?)", (label, body))

    def profile_body(self, label: str) -> str | None:
        row = self.db.execute("SELECT body FROM profiles WHERE label=?", (label,)).fetchone()
        return str(row[0]) if row else None
