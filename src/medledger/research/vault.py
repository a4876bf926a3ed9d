"""A research site that reads its own gateway vault, keeping only patients whose consent on the
ledger covers research for the study's recipient at the query's height (ADR 0039).

For each query ``VaultTableSource.table`` does, in this order, before any data is read:

1. **The query is on the ledger.** It looks up ``studies/query/<study>/<query_id>`` in its own
   node's store (if the query says it was recorded at a height this node has not reached, it
   waits up to ``wait`` seconds) and checks that the recorded hash is the hash of the query it
   received (``site.hashed_form``). The record's height is *the query's height*. A query
   that is not recorded is refused (``require_recorded=False`` — tests, local runs — judges
   at the node's head instead), so every query a vault site answers has passed the
   contract's protocol and budget checks.
2. **The study, as registered.** ``studies/study/<study>`` at that height: active, this site
   among its sites, and — if the study fixed a ``variable_map`` hash — the same map as this
   site's. Every variable the query touches must be one of the study's variables (else a
   ``column`` refusal); the table holds only the study's variables. The study's registered
   disclosure terms tighten the site's policy like the coordinator's copy does.
3. **Consent.** For every patient in the vault, ``consent.model.decide`` on the patient's
   consent index (``consent/p/<patient>``) as of that height, for the study's organisation and
   the ``researcher`` role, purpose ``research``, the consent categories the study's variables
   read (``VariableMap.categories``), at the block time of that height. Only granted patients
   are rows. A revocation ordered before the query's block removes the patient from it.
   That filter — purpose, recipient organisation and role, categories — is part of the
   recorded query (``consent``), and so are the ``researcher`` (the recorded query's signer)
   and the algorithm digest (the recorded one): a query whose recorded values differ from the
   site's own reading is refused (``conflict``, ADR 0052). ``study_spec`` tells a coordinator
   these values (and the study's privacy unit) before it records a query.

Then the vault is read (``StudyVault.population``: the current, anchored version of every
record — the rule of ``consent.vault_source.VaultSource``, which it extends — cached until the
vault changes) and mapped to one row per patient (``research.variables``).

What leaves: only what ``Site.answer`` releases. The number of patients left out (no consent,
revoked, other categories) is never released — no message, error or result carries it; the
site's own audit log records the consent height and the SHA-256 of the set of patients used,
so the site can later show which rows a query saw.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from medledger.consent import model as consent
from medledger.consent.vault_source import VaultSource
from medledger.errors import Code
from medledger.gateway.vault import Vault
from medledger.ledger.block import BlockHeader
from medledger.ledger.store.base import Store, StoredBlock
from medledger.research import audit
from medledger.research.contract import unit_sensitivity
from medledger.research.disclosure import Policy
from medledger.research.errors import DisclosureRefused, ResearchError
from medledger.research.federation import variables_of
from medledger.research.site import Site, Table, hashed_form
from medledger.research.variables import DEFAULT_MAP, Extract, VariableMap, extract

__all__ = ["LedgerReader", "StudyVault", "VaultTableSource", "open_ledger", "vault_site"]

PURPOSE = "research"
_POPULATION = (
    "SELECT r.subject, r.record_id, r.version, r.resource_type, r.body FROM records r "
    "JOIN batches b ON b.batch_id = r.batch_id AND b.status = 'anchored' "
    "WHERE r.subject IS NOT NULL "
    "AND r.version = (SELECT max(m.version) FROM records m WHERE m.record_id = r.record_id) "
    "ORDER BY r.subject, r.record_id")


class LedgerReader(Protocol):
    """What a vault site reads from its own node's store (``Store`` has all three)."""

    def get_states_at(self, keys: Sequence[str], height: int) -> dict[str, bytes | None]: ...

    def head(self) -> StoredBlock | None: ...

    def block(self, height: int) -> StoredBlock | None: ...


class StudyVault(VaultSource):
    """``VaultSource`` (one patient's records, for exchange) plus one pass over every patient,
    for research. Same rule: a record counts in its newest version, and only if that version's
    batch is anchored; ``tests/unit/research/test_vault_source.py`` checks both readers agree."""

    def version(self) -> tuple[int, int]:
        """Changes whenever a record version is stored or a batch is anchored."""
        row = self.vault.db.execute(
            "SELECT (SELECT coalesce(max(rowid), 0) FROM records), "
            "(SELECT count(*) FROM batches WHERE status = 'anchored')").fetchone()
        return int(row[0]), int(row[1])

    def population(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(patient, resourceType, resource) of every current anchored record."""
        for r in self.vault.iter_rows(_POPULATION):
            body = self.vault.record_body(r["record_id"], r["version"], r["body"])
            yield r["subject"], r["resource_type"], orjson.loads(body)["resource"]


@dataclass
class VaultTableSource:
    """The ``TableSource`` of a vault-backed ``Site`` (see the module docstring)."""

    site: str
    vault: StudyVault
    ledger: LedgerReader
    mapping: VariableMap = DEFAULT_MAP
    require_recorded: bool = True
    wait: float = 5.0
    recipient_role: str = "researcher"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _extract: tuple[tuple[int, int], Extract] | None = field(default=None, repr=False)

    def table(self, query: Mapping[str, Any]) -> Table:
        with self._lock:  # one vault connection; caches
            height, rec = self._height(query)
            terms = self._study(str(query.get("study")), height)
            self._check_spec(query, rec, terms)
            used = variables_of(str(query.get("analysis")), query.get("params", {}))
            outside = sorted(set(used) - set(terms["variables"]))
            if outside:
                raise DisclosureRefused("column", f"variables {outside} are not in the "
                                        "study's protocol")
            names = [v for v in terms["variables"] if v in self.mapping]
            cats = self.consent_filter(terms)["categories"]
            version, ext = self._population()
            keep = self._consenting(ext.patients, terms["org"], cats, height)
            chosen = hashlib.sha256("\n".join(
                p for p, k in zip(ext.patients, keep, strict=True) if k).encode()).hexdigest()
            return Table({n: ext.columns[n] for n in names}, keep,
                         f"vault:{version}:{query.get('study')}:{chosen}",
                         terms.get("disclosure"),
                         {"consent_height": height, "consent_set": chosen})

    def consent_filter(self, terms: Mapping[str, Any]) -> dict[str, Any]:
        """The consent filter this site applies for a study: purpose research, the study's
        organisation and ``recipient_role``, the categories the study's variables read."""
        names = [v for v in terms["variables"] if v in self.mapping]
        return {"purpose": PURPOSE, "recipient": {"org": terms["org"],
                                                  "role": self.recipient_role},
                "categories": self.mapping.categories(names)}

    def study_spec(self, study: str) -> dict[str, Any]:
        """The study's researcher, consent filter and privacy unit read at this node's head."""
        with self._lock:
            terms = self._study(study, self._head())
        return {"researcher": terms["researcher"], "consent": self.consent_filter(terms),
                "privacy": {"unit": terms.get("privacy_unit", "record"),
                            "sensitivity": unit_sensitivity(terms)}}

    def _check_spec(self, query: Mapping[str, Any], rec: Mapping[str, Any] | None,
                    terms: Mapping[str, Any]) -> None:
        """A recorded query carries the consent filter this site applies, the researcher who
        recorded it and the recorded algorithm digest; anything else is refused."""
        qid = query.get("query_id")
        if rec is None and not any(k in query for k in ("consent", "researcher")):
            return  # unrecorded (require_recorded=False): judged at head, nothing to compare
        if query.get("consent") != self.consent_filter(terms):
            raise ResearchError(Code.CONFLICT, f"query {qid}: its consent filter is not the one "
                                "this site applies for the study (purpose research, the study's "
                                "organisation and role, its variables' categories)")
        if rec is not None and query.get("researcher") != rec.get("by"):
            raise ResearchError(Code.CONFLICT, f"query {qid}: researcher "
                                f"{query.get('researcher')}, recorded by {rec.get('by')}")
        digest = (query.get("algorithm") or {}).get("digest")
        if rec is not None and digest != rec.get("algorithm"):
            raise ResearchError(Code.CONFLICT, f"query {qid}: algorithm digest differs from "
                                "the recorded one")

    # -- the ledger ------------------------------------------------------------------------
    def _head(self) -> int:
        head = self.ledger.head()
        if head is None:
            raise ResearchError(Code.NODE_UNAVAILABLE, "the site's ledger store is empty")
        return head.height

    def _state(self, key: str, height: int) -> Any:
        raw = self.ledger.get_states_at([key], height)[key]
        return None if raw is None else orjson.loads(raw)

    def _height(self, query: Mapping[str, Any]) -> tuple[int, dict[str, Any] | None]:
        study, qid = query.get("study"), query.get("query_id")
        key = f"studies/query/{study}/{qid}"
        rec = None if qid is None else self._state(key, self._head())
        hint = query.get("recorded_at")
        if rec is None and isinstance(hint, int) and qid is not None:
            deadline = time.monotonic() + self.wait  # this node may lag behind the recorder's
            while self._head() < hint and time.monotonic() < deadline:
                time.sleep(0.02)
            rec = self._state(key, self._head())
        if rec is None:
            if self.require_recorded:
                raise ResearchError(Code.FORBIDDEN, f"query {qid} of study {study} is not on "
                                    "the ledger; this site answers recorded queries only")
            return self._head(), None
        if audit.digest(hashed_form(query)) != rec["query_hash"]:
            raise ResearchError(Code.CONFLICT, f"query {qid} differs from the query recorded "
                                "on the ledger")
        return int(rec["height"]), dict(rec)

    def _study(self, study: str, height: int) -> dict[str, Any]:
        terms = self._state(f"studies/study/{study}", height)
        if terms is None:
            raise ResearchError(Code.NOT_FOUND, f"no study {study} on the ledger")
        if terms["status"] != "active":
            raise ResearchError(Code.INVALID_STATE, f"study {study} is {terms['status']}")
        if self.site not in terms["sites"]:
            raise ResearchError(Code.FORBIDDEN, f"{self.site} is not a site of study {study}")
        want = terms.get("variable_map")
        if want is not None and want != self.mapping.digest():
            raise ResearchError(Code.CONFLICT, f"study {study} fixes variable map "
                                f"{want[:16]}…; this site's is {self.mapping.digest()[:16]}…")
        return dict(terms)

    def _consenting(self, patients: list[str], org: str, categories: list[str], height: int
                    ) -> np.ndarray[Any, Any]:
        block = self.ledger.block(height)
        if block is None:
            raise ResearchError(Code.UNKNOWN_BLOCK, f"no block {height} in the site's store")
        when = BlockHeader.decode(block.header).time
        keys = [f"consent/{consent.patient_key(p)}" for p in patients]
        got = self.ledger.get_states_at(keys, height)
        keep = np.zeros(len(patients), dtype=bool)
        for i, k in enumerate(keys):
            raw = got[k]
            if raw is not None:
                keep[i] = consent.decide(orjson.loads(raw), org, self.recipient_role, PURPOSE,
                                         categories, when).granted
        return keep

    # -- the vault -------------------------------------------------------------------------
    def _population(self) -> tuple[tuple[int, int], Extract]:
        version = self.vault.version()
        if self._extract is None or self._extract[0] != version:
            self._extract = (version, extract(self.mapping, self.vault.population()))
        return self._extract


def vault_site(name: str, vault: Vault, ledger: LedgerReader, *,
               mapping: VariableMap = DEFAULT_MAP, policy: Policy | None = None,
               require_recorded: bool = True, wait: float = 5.0,
               audit_path: Path | None = None) -> Site:
    """A ``Site`` whose rows come from ``vault`` under the consents on ``ledger``; with
    ``audit_path`` its own audit log is that append-only file (``research.sitelog``)."""
    source = VaultTableSource(name, StudyVault(vault), ledger, mapping, require_recorded, wait)
    return Site(name, {}, policy or Policy(), source=source, audit_path=audit_path)


def open_ledger(location: str | Path) -> Store:
    """The site's view of the ledger: a workspace directory (its store) or a store location
    (a SQLite file, or a ``postgresql://`` URI of a cluster peer's store)."""
    from medledger.ledger.store.open import open_store
    from medledger.workspace import Workspace

    path = Path(location)
    if (path / "node.json").exists():
        return Workspace(path).store()
    if not str(location).startswith(("postgresql:", "postgres:")) and not path.is_file():
        raise ResearchError(Code.NOT_FOUND, f"no workspace or ledger store at {location}")
    return open_store(str(location), create=False)
