"""The surveillance demo: six years of seasonal shigellosis reported by three hospitals, an
outbreak in one district, the alert it raises, the CDC's verification and the epidemic curve.

Every figure printed is read back from the ledger. The outbreak's reports come from the
hospitals' gateways the whole way: each hospital's microbiology export (positive and negative
Shigella stool cultures written ``POS``, ``Negative``, ``阳性（+）``…, ``gateway.synth_micro``)
→ ``gateway ingest`` (qualitative results mapped to SNOMED CT, records anchored on the ledger)
→ automatic drafts from the run inside the hospital (``fromgateway.draft_run``, lab rule
LOINC 82300-5 → A03.9, district from the address) → draft digest on the ledger → physician
confirms → payload sealed to the CDC → ``case_reports.submit``. The six years of background
reports are sealed and submitted directly (about 2,400 reports: ingesting six years of
history through the gateways would make the demo minutes long). Two synthetic
hospitals' diagnosis runs (``gateway.synth``) are drafted too: their COVID-19 and hepatitis B
diagnoses become drafts with true dates and districts, are confirmed and submitted, and the
persons both hospitals saw are linked, not double-counted. Then the CDC's monitor tests the last
complete week, records its signals, and the CDC reads the line list, re-computes the evidence
from the ledger, opens a report only it can open, verifies the signal and logs its response.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64, unb64
from medledger.demo.ledger import DemoResult
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.node.node import Node
from medledger.surveillance import casefile, monitor, views
from medledger.surveillance.calendar import iso_week, utc_date, week_monday
from medledger.surveillance.casefile import CaseFields
from medledger.surveillance.diseases import age_band
from medledger.surveillance.signals import signal_id
from medledger.workspace import Workspace

DISTRICTS = ("110101", "110102", "110105", "110106")
OUTBREAK_DISTRICT = "110101"   # Riverside / 江城 in the synthetic hospitals' addresses
OUTBREAK_CITY = 0              # synth.CITIES index of that district
HOSPITALS = {"hosp-a": "dr-li", "hosp-b": "dr-wu", "hosp-c": "dr-zhao"}
SHIGELLA_CULTURE = ["http://loinc.org", "82300-5"]  # Shigella sp [Presence] in Stool by Culture
WEEKS = 313


class _Scenario:
    def __init__(self, ws: Workspace, node: Node, png: Path | None, seed: int) -> None:
        self.ws, self.node, self.png = ws, node, png
        self.ring = ws.keyring()
        self.chain = node.chain_id
        self.out = DemoResult()
        self.rng = np.random.default_rng(seed)
        self.pkey = os.urandom(32)  # the hospitals' shared pseudonymisation key
        self.gkey = os.urandom(32)  # the consortium pseudonym key of the gateways
        genesis = node.genesis.doc
        cdc = next(o for o in genesis["orgs"] if o["kind"] == "cdc")
        self.cdc = cdc["id"]
        self.cdc_kex = unb64(cdc["kex_key"], length=32)
        self.clients: dict[str, Client] = {}
        self.n = 0

    def client(self, member: str) -> Client:
        if member not in self.clients:
            self.clients[member] = Client(self.node, self.chain, member, self.ring.signing[member])
        return self.clients[member]

    def enroll(self, member: str, role: str) -> None:
        key = SigningKey.generate()
        self.ring.signing[member] = key
        r = self.client(f"{member.split('/')[0]}/root").call("consortium", "enroll", {
            "member": member, "role": role, "public_key": b64(key.public)})
        assert r.ok, r

    def run(self) -> DemoResult:
        t0 = time.perf_counter()
        for org, doctor in HOSPITALS.items():
            self.enroll(f"{org}/gateway", "gateway")
            self.enroll(f"{org}/{doctor}", "physician")
        self.enroll(f"{self.cdc}/epi", "physician")
        self.enroll(f"{self.cdc}/monitor", "service")
        today = utc_date(self.node.head.time)
        self.week = iso_week(today - timedelta(days=7))  # the last complete ISO week
        self._background()
        self._outbreak()
        self._gateway()
        self._detect()
        self._curve()
        self.out.add("workload time", f"{time.perf_counter() - t0:.2f} s")
        return self.out

    # ------------------------------------------------------------------ reports flow in

    def _seal(self, org: str, fields: CaseFields, person: str) -> dict[str, Any]:
        self.n += 1
        return casefile.seal_report(
            chain_id=self.chain, org=org, report_id=f"rep-{self.n:06d}", cdc=self.cdc,
            cdc_kex_key=self.cdc_kex, fields=fields, patient_id=("urn:oid:demo-nid", person),
            patient_details={"name": f"Synthetic patient {person}"}, pseudonym_key=self.pkey,
            physician=f"{org}/{HOSPITALS[org]}",
            physician_key=self.ring.signing[f"{org}/{HOSPITALS[org]}"])

    def _background(self) -> None:
        last = week_monday(self.week)
        futures: list[Future[Any]] = []
        orgs = list(HOSPITALS)
        for w in range(WEEKS):
            monday = last - timedelta(weeks=WEEKS - 1 - w)
            mean = 1.6 * np.exp(0.8 * np.sin(2 * np.pi * (w - 13) / 52.18))
            for district in DISTRICTS:
                for _ in range(int(self.rng.poisson(mean))):
                    day = monday + timedelta(days=int(self.rng.integers(7)))
                    fields = CaseFields(
                        disease_code="A03.9", onset_date=day.isoformat(),
                        diagnosis_date=(day + timedelta(days=1)).isoformat(), district=district,
                        age_band=age_band(int(self.rng.integers(0, 90))),
                        sex=str(self.rng.choice(["female", "male"])), lab_status="confirmed")
                    org = orgs[int(self.rng.integers(3))]
                    args = self._seal(org, fields, f"B{self.n}")
                    futures.append(self.node.submit(self.client(f"{org}/gateway").build(
                        "case_reports", "submit", args)))
        receipts = [f.result(120) for f in futures]
        ok = sum(r.ok for r in receipts)
        self.out.add("background reports", f"{ok:,} of {len(receipts):,} submitted over "
                     f"{WEEKS} weeks in {len(DISTRICTS)} districts (3 hospitals; sealed and "
                     "submitted directly, not through the gateways, to keep the demo fast)")
        self.out.ok &= ok == len(receipts)

    def _from_gateway(self, org: str, root: Path, files: list[Path], rules: Any
                      ) -> tuple[int, dict[str, int]]:
        """Ingest ``files`` through ``org``'s gateway (anchored on the ledger), draft from the run
        inside the hospital, record each draft's digest, and have the physician confirm and
        submit it. Returns (drafts, outcomes by case: new / linked)."""
        from medledger.gateway.anchor import LedgerAnchorer
        from medledger.gateway.deid import PseudonymKey
        from medledger.gateway.service import ingest_export_dir
        from medledger.gateway.vault import Vault
        from medledger.surveillance.fromgateway import draft_run, record_args, submit_args

        key = PseudonymKey("k1", self.gkey)
        gateway = self.client(f"{org}/gateway")
        doctor = f"{org}/{HOSPITALS[org]}"
        outcome: dict[str, int] = {"new": 0, "linked": 0}
        with Vault(root / "vault" / org) as vault:
            run_id, _ = ingest_export_dir(vault, key, files, org,
                                          LedgerAnchorer(gateway, self.node.store))
            got = draft_run(vault, key, run_id, files, rules)
            for d in got.new:
                gateway.call("case_reports", "draft", record_args(d))
                r = gateway.call("case_reports", "submit", submit_args(
                    d, chain_id=self.chain, cdc=self.cdc, cdc_kex_key=self.cdc_kex, key=key,
                    physician=doctor, physician_key=self.ring.signing[doctor]))
                if r.ok:
                    outcome[r.value["case"]] += 1
        return len(got.new), outcome

    def _outbreak(self) -> None:
        """Shigella cultures of children in one district, last week, through the gateways."""
        from medledger.gateway.synth import ADDRESS_DISTRICTS
        from medledger.gateway.synth_micro import outbreak_exports
        from medledger.surveillance.fromgateway import GatewayRules

        monday = week_monday(self.week)
        days = [monday + timedelta(days=int(self.rng.integers(0, 5))) for _ in range(24)]
        root = self.ws.root.parent / "gateway-outbreak"
        names = outbreak_exports(root / "syn", days, city=OUTBREAK_CITY, shared=5, negatives=4)
        rules = GatewayRules.from_doc({
            "lab": [{"id": "lab-shigella", "codes": [SHIGELLA_CULTURE], "disease_code": "A03.9"}],
            "districts": [list(e) for e in ADDRESS_DISTRICTS]})
        a_drafts, a = self._from_gateway("hosp-a", root, [root / "syn" / names[0]], rules)
        b_drafts, b = self._from_gateway("hosp-b", root, [root / "syn" / names[1]], rules)
        self.out.add("outbreak reports", f"hosp-a gateway ingest of 28 Shigella stool cultures "
                     f"(24 POS/Positive, 4 negative) → {a_drafts} lab-confirmed drafts from the "
                     f"run (district {OUTBREAK_DISTRICT} from the address), confirmed and "
                     f"submitted: {a['new']} new cases; 5 children cultured again at hosp-b "
                     f"(阳性) → {b_drafts} drafts, submitted: {b['linked']} linked, not "
                     "double-counted")
        self.out.ok &= a_drafts == a["new"] == 24 and b_drafts == b["linked"] == 5

    def _gateway(self) -> None:
        """Two hospitals' gateway runs → drafts inside each hospital → confirmed reports."""
        from medledger.gateway.anchor import LedgerAnchorer
        from medledger.gateway.deid import PseudonymKey
        from medledger.gateway.service import ingest_export_dir
        from medledger.gateway.synth import ADDRESS_DISTRICTS, generate
        from medledger.gateway.vault import Vault
        from medledger.surveillance.fromgateway import (
            GatewayRules,
            draft_run,
            record_args,
            submit_args,
        )

        shared = 3
        root = self.ws.root.parent / "gateway"
        generate(root / "syn", seed=5, persons=40, rows=40, notifiable=shared)
        key = PseudonymKey("k1", self.gkey)          # the consortium pseudonym key
        rules = GatewayRules.from_doc({"diagnosis": [{"id": "notifiable-dx"}],
                                       "districts": [list(e) for e in ADDRESS_DISTRICTS]})
        outcome: dict[str, int] = {"new": 0, "linked": 0}
        drafted = []
        for org, export in (("hosp-a", "diagnoses.csv"), ("hosp-b", "diagnoses.tsv")):
            gateway = self.client(f"{org}/gateway")
            with Vault(root / "vault" / org) as vault:
                files = [root / "syn" / org / export]
                run_id, _ = ingest_export_dir(vault, key, files, org,
                                              LedgerAnchorer(gateway, self.node.store))
                got = draft_run(vault, key, run_id, files, rules)
                drafted.append(len(got.new))
                for d in got.new:
                    gateway.call("case_reports", "draft", record_args(d))
                    r = gateway.call("case_reports", "submit", submit_args(
                        d, chain_id=self.chain, cdc=self.cdc, cdc_kex_key=self.cdc_kex,
                        key=key, physician=f"{org}/{HOSPITALS[org]}",
                        physician_key=self.ring.signing[f"{org}/{HOSPITALS[org]}"]))
                    if r.ok:
                        outcome[r.value["case"]] += 1
        self.out.add("gateway drafting", f"hosp-a and hosp-b gateway runs drafted inside each "
                     f"hospital: {drafted[0]} + {drafted[1]} drafts (COVID-19, hepatitis B; "
                     "true dates, district from the address), confirmed and submitted: "
                     f"{outcome['new']} new cases, {outcome['linked']} linked (incl. the "
                     f"{shared} persons both hospitals diagnosed with COVID-19)")
        self.out.ok &= outcome["new"] + outcome["linked"] == sum(drafted) and \
            outcome["linked"] >= shared

    # ------------------------------------------------------------------ detection and response

    def _detect(self) -> None:
        store = self.node.store
        run = monitor.run(store, self.week, self.node.height)
        cdc_monitor = self.client(f"{self.cdc}/monitor")
        recorded = [cdc_monitor.call("signals", "raise_signal", s) for s in run.signals]
        self.out.add("monitor", f"{run.series_tested} series with cases tested for {self.week} "
                     f"in {run.seconds:.2f} s; {len(run.signals)} signal(s) recorded "
                     f"({sum(r.ok for r in recorded)} ok)")
        for s in run.signals:
            self.out.add("  signal", f"{s['grade']} {s['disease']} {s['stratum']} "
                         f"{s['method']}: {s['counts'][-1]} cases > {float(s['threshold']):.1f}")
        sid = signal_id("shigellosis", {"district": OUTBREAK_DISTRICT}, "farrington-flexible",
                        self.week)
        sig = views.signal(store, sid)
        if sig is None:
            self.out.add("outbreak signal", "MISSING")
            self.out.ok = False
            return
        problems = monitor.recheck(store, store, sig)
        rows = views.signal_line_list(store, sig)
        record = views._load(store.get_state(f"case_reports/report/{rows[-1]['report']}"))
        opened = casefile.open_report(self.chain, record,
                                      self.ring.agreement[self.cdc].secret, store)
        epi = self.client(f"{self.cdc}/epi")
        verified = epi.call("signals", "verify_signal", {
            "signal": sid, "outcome": "confirmed",
            "note": "cluster of culture-confirmed Shigella in children; common exposure likely"})
        responded = epi.call("signals", "respond", {
            "signal": sid, "action": "investigation",
            "note": f"field team to district {OUTBREAK_DISTRICT}; school canteen samples taken"})
        epi.call("case_reports", "verify", {"org": record["org"],
                                            "report_id": record["report_id"]})
        self.out.add("evidence re-computed", "identical (series, thresholds, grade) from the "
                     f"ledger at height {sig['as_of_height']}" if not problems else
                     f"DIFFERS: {problems}")
        self.out.add("line list (CDC only)", f"{len(rows)} pseudonymous cases behind signal "
                     f"{sid[:12]}…; report {opened.ref} opens for the CDC only: physician "
                     f"{opened.physician}, checks {'passed' if opened.ok else opened.problems}")
        self.out.add("CDC verification", f"signal {verified.value['status']}, response logged "
                     f"(investigation; status {responded.value['status']}); report "
                     f"{opened.ref} verified")
        self.out.ok &= (sig["grade"] == "red" and not problems and opened.ok
                        and verified.ok and responded.ok)
        self.sig = sig

    def _curve(self) -> None:
        store = self.node.store
        first = views.weeks_back(self.week, 16)
        weeks_, counts = views.weekly(store, "shigellosis", [OUTBREAK_DISTRICT], first,
                                      self.week)
        self.out.add("epidemic curve", f"shigellosis, district {OUTBREAK_DISTRICT}, by ISO week "
                     "(onset, else diagnosis date)")
        for w, c in zip(weeks_, counts, strict=True):
            self.out.add(f"  {w}", f"{c:3d} {'█' * c}")
        if self.png is not None:
            _plot(self.png, weeks_, counts, float(self.sig["threshold"]) if hasattr(self, "sig")
                  else None)
            self.out.add("epidemic curve PNG", str(self.png))


def _plot(path: Path, weeks_: list[str], counts: list[int], threshold: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(range(len(counts)), counts, color=["#c0392b" if i == len(counts) - 1 else "#7f8c8d"
                                              for i in range(len(counts))])
    if threshold is not None:
        ax.axhline(threshold, color="#e67e22", linestyle="--",
                   label=f"improved Farrington bound for {weeks_[-1]} ({threshold:.1f})")
        ax.legend()
    ax.set_xticks(range(len(weeks_)), [w[5:] for w in weeks_], rotation=45)
    ax.set_ylabel("cases (by onset, else diagnosis date)")
    ax.set_title(f"Shigellosis, district {OUTBREAK_DISTRICT}: epidemic curve")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(png: Path | None = Path("medledger-epicurve.png"), workdir: Path | None = None,
        seed: int = 7) -> DemoResult:
    """Run the scenario in a throwaway workspace and verify the resulting chain."""
    with tempfile.TemporaryDirectory(prefix="medledger-surveillance-") as tmp:
        root = workdir or Path(tmp)
        ws = Workspace.init(root / "consortium", "demo-surveillance")
        with ws.node(max_block_txs=500, max_wait=0.01) as node:
            out = _Scenario(ws, node, png, seed).run()
        report = verify_store(ws.store(), default_registry())
        out.add("full verify", f"{'OK' if report.ok else 'FAILED'}: {report.blocks} blocks, "
                f"{report.txs} txs in {report.seconds:.2f} s")
        out.ok &= report.ok
        return out
