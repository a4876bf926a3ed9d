"""A vault-backed site: the population reader agrees with ``consent.vault_source.VaultSource``;
the ledger is checked before any data (recorded query, its hash, the study's terms and
variables); consent is decided per patient at the query's height; the excluded count never
leaves the site."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from medledger.consent.vault_source import VaultSource
from medledger.crypto.canonical import encode
from medledger.errors import Code
from medledger.gateway.anchor import leaf_id
from medledger.gateway.vault import Vault
from medledger.ledger.block import BlockHeader
from medledger.ledger.store.base import StoredBlock
from medledger.records.batch import Batch
from medledger.research import audit, egress
from medledger.research.errors import DisclosureRefused, ResearchError
from medledger.research.variables import DEFAULT_MAP
from medledger.research.vault import StudyVault, vault_site

WHO = "http://hl7.org/fhir/sid/icd-10"
SITES = ["hosp-a", "hosp-b", "hosp-c"]
T0 = 1_764_201_600_000


def pid(i: int) -> str:
    return f"k1-{i:032x}"


class FakeLedger:
    """State writes by height and block times, like a store (what the site reads)."""

    def __init__(self) -> None:
        self.height = 0
        self.writes: dict[str, list[tuple[int, bytes | None]]] = {}

    def put(self, key: str, value: Any) -> int:
        self.height += 1
        self.writes.setdefault(key, []).append((self.height, orjson.dumps(value)))
        return self.height

    def get_states_at(self, keys: Sequence[str], height: int) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for k in keys:
            vals = [v for h, v in self.writes.get(k, []) if h <= height]
            out[k] = vals[-1] if vals else None
        return out

    def head(self) -> StoredBlock:
        return self.block(self.height)

    def block(self, height: int) -> StoredBlock:
        z = b"\0" * 32
        hdr = BlockHeader("t", height, z, T0 + height * 1000, 0, 0, z, z, z).encode()
        return StoredBlock(height, z, hdr, 0, 0)


def record(vault: Vault, rid: str, version: int, res: dict[str, Any], subject: str,
           batch: str, leaf: int) -> tuple[str, bytes]:
    body = encode({"provenance": {"record_id": rid, "version": version}, "resource": res})
    fp = hashlib.sha256(body).hexdigest()
    vault.db.execute(
        "INSERT INTO records (record_id, version, resource_type, subject, resource_hash, "
        "fingerprint, body, batch_id, leaf) VALUES (?,?,?,?,?,?,?,?,?)",
        (rid, version, res["resourceType"], subject, "00" * 32, fp,
         vault.sealer.seal(body, f"record|{rid}|{version}".encode()), batch, leaf))
    return leaf_id(rid, version), bytes.fromhex(fp)


def cond(rid: str, subject: str, code: str, day: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": rid, "recordedDate": day,
            "code": {"coding": [{"system": WHO, "code": code}]}}


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    """12 patients (every 4th female, every 3rd hypertensive), anchored; plus a record whose
    newest version waits in a pending batch and one patient only in that pending batch."""
    v = Vault(tmp_path / "vault")
    entries: list[tuple[str, bytes]] = []
    for i in range(12):
        p = pid(i)
        entries.append(record(v, f"pat-{p}", 1, {
            "resourceType": "Patient", "id": p, "gender": "female" if i % 4 == 0 else "male",
            "birthDate": str(1950 + i)}, p, "b1", len(entries)))
        entries.append(record(v, f"dx-{i}", 1, cond(f"dx-{i}", p, "I10" if i % 3 == 0 else
                                                    "J45.9", "2023-01-01"), p, "b1",
                              len(entries)))
    entries.append(record(v, "dx-x", 1, cond("dx-x", pid(1), "E11.9", "2023-02-01"), pid(1),
                          "b1", len(entries)))
    b1 = Batch(entries)
    v.db.execute("INSERT INTO batches (batch_id, count, root, status) VALUES ('b1', ?, ?, "
                 "'anchored')", (b1.count, b1.root.hex()))
    record(v, "dx-x", 2, cond("dx-x", pid(1), "E11.9", "2023-02-02"), pid(1), "b2", 0)
    record(v, f"pat-{pid(99)}", 1, {"resourceType": "Patient", "id": pid(99),
                                    "gender": "female"}, pid(99), "b2", 1)
    v.db.execute("INSERT INTO batches (batch_id, count, status) VALUES ('b2', 2, 'pending')")
    return v


def test_population_agrees_with_vault_source(vault: Vault) -> None:
    study, per_patient = StudyVault(vault), VaultSource(vault)
    got: dict[str, set[str]] = {}
    for p, _, res in study.population():
        got.setdefault(p, set()).add(res["id"])
    want = {p: {orjson.loads(r.body)["resource"]["id"] for r in per_patient.records(p, ["all"])}
            for p in got | {pid(99): set()}}
    assert got == {p: ids for p, ids in want.items() if ids}
    assert pid(99) not in got and "dx-x" not in got[pid(1)]  # newest version not anchored
    before = study.version()
    vault.db.execute("UPDATE batches SET status = 'anchored' WHERE batch_id = 'b2'")
    assert study.version() != before
    assert {r[2]["id"] for r in study.population() if r[0] == pid(1)} == {
        pid(1), "dx-1", "dx-x"}


class World:
    def __init__(self, vault: Vault, **terms: Any) -> None:
        self.ledger = FakeLedger()
        self.study = {"status": "active", "sites": SITES, "org": "research",
                      "researcher": "research/dr",
                      "variables": ["sex", "female", "hypertension", "age"],
                      "disclosure": {"min_sites": 3, "min_cell": 3}, **terms}
        self.ledger.put("studies/study/s1", self.study)
        self.site = vault_site("hosp-a", vault, self.ledger)
        self.n = 0

    def grant(self, i: int, **kw: Any) -> None:
        c = {"purpose": "research", "categories": ["all"], "recipient": {"org": "research"},
             "start": 0, "end": None, "status": "active", **kw}
        self.ledger.put(f"consent/p/{pid(i)}", {f"c{i}": c})

    def query(self, analysis: str, params: dict[str, Any], record: bool = True,
              spec: dict[str, Any] | None = None, by: str = "research/dr",
              **extra: Any) -> dict[str, Any]:
        """A query with the study's spec as the site states it (``spec`` replaces parts),
        recorded by ``by``; ``extra`` keys travel unhashed."""
        self.n += 1
        said = self.site.study_spec("s1")
        q = {"study": "s1", "query_id": f"q{self.n}", "analysis": analysis, "sites": SITES,
             "params": params, "researcher": said["researcher"], "consent": said["consent"],
             "algorithm": {"name": f"medledger.research.{analysis}", "version": "0.1.0",
                           "digest": None}, **(spec or {})}
        if record:
            self.ledger.put(f"studies/query/s1/q{self.n}", {
                "query_hash": audit.digest(q), "height": self.ledger.height + 1, "by": by})
        return self.site.answer({**q, **extra})


CROSSTAB = {"levels": {"sex": ["F", "M"]}}


def test_consent_decides_the_rows(vault: Vault) -> None:
    w = World(vault)
    for i in range(12):
        if i == 5:
            w.grant(i, purpose="treatment")
        elif i == 6:
            w.grant(i, recipient={"org": "cdc"})
        elif i == 7:
            w.grant(i, categories=["labs"])             # the study reads demographics too
        elif i == 8:
            w.grant(i, recipient={"role": "researcher"},
                    categories=["conditions", "demographics"])  # exactly enough
        elif i == 9:
            w.grant(i, end=T0)                          # expired before the query
        elif i != 10:                                   # 10: no consent at all
            w.grant(i)
    out = w.query("crosstab", CROSSTAB)
    # admitted: 0-4, 8, 11 → female: 0, 4, 8
    assert (out["n"], out["values"]["counts"]) == (7, [3, 4])
    ages = w.query("moments", {"variable": "age"})
    assert ages["n"] == 7
    assert ages["values"]["total"] == sum(2024.0 - 1950 - i for i in (0, 1, 2, 3, 4, 8, 11))
    entry = w.site.audit[-1]
    assert entry["consent_height"] == w.ledger.height
    chosen = "\n".join(pid(i) for i in (0, 1, 2, 3, 4, 8, 11))
    assert entry["consent_set"] == hashlib.sha256(chosen.encode()).hexdigest()

    # a revocation ordered before the next query's block removes the patient from it
    w.grant(3, status="revoked")
    assert w.query("moments", {"variable": "age"})["n"] == 6
    egress.check("hosp-a", {"analysis": "moments", "params": {"variable": "age"}},
                 w.query("moments", {"variable": "age"}))  # n and sums only, nothing else


def test_the_ledger_is_checked_before_any_data(vault: Vault) -> None:
    w = World(vault)
    for i in range(12):
        w.grant(i)
    with pytest.raises(ResearchError) as info:
        w.query("moments", {"variable": "age"}, record=False)
    assert info.value.code == Code.FORBIDDEN and "recorded queries only" in info.value.message
    with pytest.raises(ResearchError) as info:     # sent ≠ recorded
        w.n += 1
        w.ledger.put(f"studies/query/s1/q{w.n}", {"query_hash": "00" * 32, "height": 1})
        w.site.answer({"study": "s1", "query_id": f"q{w.n}", "analysis": "moments",
                       "sites": SITES, "params": {"variable": "age"}})
    assert info.value.code == Code.CONFLICT
    with pytest.raises(DisclosureRefused) as refused:
        w.query("moments", {"variable": "glucose"})  # in the map, not in the study
    assert refused.value.rule == "column"
    assert w.site.audit[-1]["outcome"] == "refused:column"
    secure = w.query("moments", {"variable": "age"}, recorded_at=w.ledger.height + 1)
    assert secure["n"] == 12  # transport keys are not part of the hash
    w.site.source.wait = 0.1  # type: ignore[union-attr]
    with pytest.raises(ResearchError, match="recorded queries only"):  # lagging: waits, then no
        w.query("moments", {"variable": "age"}, record=False,
                recorded_at=w.ledger.height + 5)

    # the study's registered disclosure terms tighten the site's policy
    strict = World(vault, disclosure={"min_sites": 3, "min_cell": 5})
    for i in range(12):
        strict.grant(i)
    with pytest.raises(DisclosureRefused) as refused:
        strict.query("crosstab", CROSSTAB)   # 3 women pass min_cell 3, not 5
    assert refused.value.rule == "min_cell"


@pytest.mark.parametrize("terms, code", [
    ({"status": "proposed"}, Code.INVALID_STATE),
    ({"sites": ["hosp-b", "hosp-c", "hosp-d"]}, Code.FORBIDDEN),
    ({"variable_map": "ee" * 32}, Code.CONFLICT),
])
def test_the_study_must_admit_this_site(vault: Vault, terms: dict[str, Any],
                                         code: Code) -> None:
    w = World(vault, **terms)
    w.grant(0)
    with pytest.raises(ResearchError) as info:
        w.query("moments", {"variable": "age"})
    assert info.value.code == code


def test_the_study_map_may_be_pinned(vault: Vault) -> None:
    w = World(vault, variable_map=DEFAULT_MAP.digest())
    for i in range(12):
        w.grant(i)
    assert w.query("moments", {"variable": "age"})["n"] == 12
    assert np.isclose(w.query("moments", {"variable": "female"})["values"]["total"], 3.0)


def test_recorded_spec_must_match_what_the_site_applies(vault: Vault) -> None:
    """The consent filter, researcher and algorithm digest are inside the recorded query's
    hash; a vault site refuses one whose filter or researcher is not its own reading."""
    w = World(vault)
    for i in range(12):
        w.grant(i)
    said = w.site.study_spec("s1")
    assert said == {"researcher": "research/dr",
                    "consent": {"purpose": "research",
                                "recipient": {"org": "research", "role": "researcher"},
                                "categories": ["conditions", "demographics"]},
                    "privacy": {"unit": "record", "sensitivity": 1}}
    assert w.query("moments", {"variable": "age"})["n"] == 12
    wider = {**said["consent"], "categories": ["demographics"]}  # fewer categories asked
    other_org = {**said["consent"], "recipient": {"org": "cdc", "role": "researcher"}}
    for bad in ({"consent": wider}, {"consent": other_org}, {"consent": None},
                {"researcher": "research/other"},
                {"algorithm": {"name": "x", "version": "1", "digest": "ab" * 32}}):
        before = len(w.site.audit)
        with pytest.raises(ResearchError) as info:
            w.query("moments", {"variable": "age"}, spec=bad)
        assert info.value.code == Code.CONFLICT, bad
        assert len(w.site.audit) == before  # refused before any data was read
    with pytest.raises(ResearchError, match="researcher"):  # recorded by someone else
        w.query("moments", {"variable": "age"}, by="research/other")
    person = World(vault, privacy_unit="person", max_sites_per_person=2)
    assert person.site.study_spec("s1")["privacy"] == {"unit": "person", "sensitivity": 2}
    everyone = World(vault, privacy_unit="person")
    assert everyone.site.study_spec("s1")["privacy"] == {"unit": "person",
                                                         "sensitivity": len(SITES)}
