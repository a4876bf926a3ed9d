"""The coordinator: sends a query to every site, combines what comes back, keeps an audit trail.

A site is anything with ``answer(query) -> dict``, ``public_key() -> bytes`` and
``recover(round_id, peers, dropped, length) -> list[str]`` — a ``Site`` in process or an HTTP
client for a site process. With ``secure=True`` each query is a secure-aggregation round
(``secagg``): the coordinator only sees masked uploads and their sum. A site that refuses
(disclosure) makes the whole query fail with ``QueryRefused`` — nothing is released, no site is
silently dropped. A site that cannot be reached is a dropout: in a secure round the coordinator
recovers (``on_dropout="recover"``, if ≥ 3 survivors) or aborts; without secure aggregation, or
with ``on_dropout="abort"``, the query aborts.

Every query carries its ``query_id`` (the id it is recorded under on the ledger): a vault-backed
site looks the query up there, checks its hash and judges consent at its height. Two keys travel
with a query without being part of its hash (``site.TRANSPORT_KEYS``): ``secagg`` (the round)
and ``recorded_at`` (the height the recorder reported, so a site whose node lags can wait).

The hashed query (E15 of the acceptance list; ADR 0052) is the whole specification: study,
``query_id``, analysis, sites, parameters, the ``researcher`` who asks, the ``algorithm`` (name,
version, reviewed digest if any), the ``consent`` filter the sites apply (purpose ``research``,
recipient organisation and role, consent categories), the disclosure terms and, for a DP
release, ``dp`` (milli-ε, privacy unit, count sensitivity). Researcher, consent filter and
privacy unit are the study's: unless given to the ``Federation``, they are asked once per
federation from sites that know the study on their ledger (``study_spec``; vault sites) and must
agree; a vault site then refuses a query whose recorded filter or researcher differs from its
own reading of the ledger.

Each run appends to ``trail``: the query hash, each site's response hash (over the masked or
aggregate payload exactly as received) and disclosure outcome, and the result hash.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from medledger import __version__
from medledger.errors import Code
from medledger.research import audit, dpcox, dpglm, glm, stats, survival
from medledger.research.errors import DisclosureRefused, QueryRefused, ResearchError
from medledger.research.secagg import Round
from medledger.research.site import unflatten

__all__ = ["Federation", "Recorder", "SiteClient", "SiteUnavailable", "plain", "variables_of"]


class SiteUnavailable(ResearchError):
    """A site could not be reached or stopped answering (a dropout)."""

    def __init__(self, site: str, why: str) -> None:
        super().__init__(Code.NODE_UNAVAILABLE, f"site {site}: {why}")


class Recorder(Protocol):
    """Writes a run to the ledger: the query before dispatch, each site's response, the result."""

    def query(self, query_id: str, query: dict[str, Any], query_hash: str) -> int | None:
        """Record the query; may return the height it was recorded at (a hint for sites)."""

    def response(self, query_id: str, site: str, outcome: str, response_hash: str | None,
                 policy_hash: str) -> None: ...

    def result(self, query_id: str, result_hash: str, dropped: list[str]) -> None: ...


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python numbers and lists, tuples as lists: the
    form a query has after a JSON round trip, so a site far away hashes it alike."""
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def variables_of(analysis: str, params: Mapping[str, Any]) -> list[str]:
    """The variables a query touches (checked against the study's protocol)."""
    if analysis == "crosstab":
        return sorted(params["levels"])
    if analysis in ("moments", "histogram"):
        return [params["variable"]]
    if analysis in ("km", "cox"):
        return sorted({params["time"], params["event"], *params.get("x", [])})
    names = [params["y"], *params["x"], params.get("weights"), params.get("offset")]
    return sorted({v for v in names if v})


class SiteClient(Protocol):
    name: str

    def answer(self, query: Mapping[str, Any]) -> dict[str, Any]: ...

    def public_key(self) -> bytes: ...

    def recover(self, round_id: str, peers: dict[str, str], dropped: list[str],
                length: int) -> list[str]: ...


Release = Callable[[dict[str, Any], int], dict[str, Any]]
F64 = glm.F64


def _noisy_counts(milli: int, sensitivity: int, keys: Sequence[str] = ("counts",)) -> Release:
    """The DP release of a count table (``values["counts"]``, or the tables ``keys`` side by
    side, one row in one cell of one of them) at ``milli`` thousandths of ε: OpenDP integer
    Laplace on the summed counts (``dp.noisy_counts``) at the privacy unit's count
    ``sensitivity``."""

    def noisy(values: dict[str, Any], _n: int) -> dict[str, Any]:
        from medledger.research import dp

        parts = [np.rint(np.asarray(values[k])).astype(np.int64) for k in keys]
        table, spent = dp.noisy_counts(np.concatenate([q.ravel() for q in parts]),
                                       milli / 1000, sensitivity)
        if spent > milli / 1000 + 1e-12:
            raise ResearchError(Code.INTERNAL, f"measurement spends {spent}, want "
                                f"{milli / 1000}")
        ends = np.cumsum([q.size for q in parts])[:-1]
        return {k: t.reshape(q.shape).tolist()
                for k, q, t in zip(keys, parts, np.split(table, ends), strict=True)}

    return noisy


def _noisy_stats(epsilon: float, l1: float) -> Release:
    """The DP release of a DP GLM's summed ``stats`` vector: OpenDP Laplace on floats at L1
    sensitivity ``l1`` spending ``epsilon`` (``dp.noisy_vector``; ``dpglm``)."""

    def noisy(values: dict[str, Any], _n: int) -> dict[str, Any]:
        from medledger.research import dp

        vec, spent = dp.noisy_vector(values["stats"], epsilon, l1)
        if spent > epsilon * (1 + 1e-9):
            raise ResearchError(Code.INTERNAL, f"measurement spends {spent}, want {epsilon}")
        return {"stats": vec.tolist()}

    return noisy


@dataclass
class Federation:
    sites: Sequence[SiteClient]
    study: str = "study"
    secure: bool = False
    on_dropout: Literal["recover", "abort"] = "abort"
    min_sites: int = 3
    trail: list[dict[str, Any]] = field(default_factory=list)
    recorder: Recorder | None = None
    disclosure: dict[str, int] | None = None  # the study's disclosure terms, sent to sites
    run_prefix: str = "q"  # query ids are <prefix><n>; the ledger refuses a reused id
    researcher: str | None = None  # these four default to what the sites read on the ledger
    consent: Mapping[str, Any] | None = None
    privacy_unit: str | None = None  # DP: "record" (sensitivity 1) unless the study says
    unit_sensitivity: int | None = None
    algorithms: Mapping[str, str] | None = None  # analysis → reviewed digest (else recorder's)
    _spec: dict[str, Any] | None = None
    _rounds: itertools.count[int] = field(default_factory=itertools.count)
    _keys: dict[str, str] = field(default_factory=dict)

    def run(self, analysis: str, params: Mapping[str, Any], *, dp_milli_eps: int = 0,
            release: Release | None = None, dp_fit: Mapping[str, Any] | None = None
            ) -> tuple[dict[str, Any], int]:
        """One query over every site: (summed values, total n). ``dp_milli_eps`` is the privacy
        loss the release will spend (part of the query, so recorded and checked first);
        ``release`` turns the exact sum into what is released (DP noise) before it is hashed,
        recorded or returned — the exact sum is not kept. ``dp_fit`` ({rounds, round, of?}):
        one round of a DP fit whose first round was charged the whole fit's ε (ADR 0053)."""
        names = [s.name for s in self.sites]
        if len(names) < self.min_sites:
            raise ResearchError(Code.FORBIDDEN, f"got {len(names)} sites, want >= "
                                f"{self.min_sites}")
        qid = f"{self.run_prefix}{len(self.trail) + 1}"
        spec = self.spec()
        query: dict[str, Any] = {"study": self.study, "query_id": qid, "analysis": analysis,
                                 "sites": names, "params": plain(dict(params)),
                                 "algorithm": self._algorithm(analysis)}
        for k in ("researcher", "consent"):
            if spec.get(k) is not None:
                query[k] = plain(spec[k])
        if dp_milli_eps or dp_fit:
            query["dp"] = {"milli_eps": dp_milli_eps, **self.privacy(), **(dp_fit or {})}
        if self.disclosure:
            query["disclosure"] = dict(self.disclosure)
        entry: dict[str, Any] = {"query_id": qid, "query": audit.digest(query),
                                 "responses": {}, "outcomes": {}, "policies": {},
                                 "artifacts": {"query": query, "responses": {}}}
        sent = query
        if self.recorder:
            # a query the ledger refuses (e.g. over the DP budget) was never dispatched: it
            # does not enter the trail, so an audit bundle holds only recorded queries
            height = self.recorder.query(qid, query, entry["query"])
            if isinstance(height, int):  # not hashed: tells a site how far its ledger must be
                sent = {**query, "recorded_at": height}
        self.trail.append(entry)
        try:
            if self.secure:
                total, n = self._secure(sent, entry)
            else:
                total, n = self._plain(sent, entry)
        finally:
            self._record_responses(entry)
        if release is not None:
            total, n = release(total, n), -1  # n would be exact: withheld from a DP release
        result = {"values": total, "n": n}
        entry["result"] = audit.digest(result)
        entry["artifacts"]["result"] = result
        if self.recorder:
            self.recorder.result(qid, entry["result"], entry.get("dropped", []))
        return total, n

    def spec(self) -> dict[str, Any]:
        """The study's ``researcher``, ``consent`` filter and ``privacy`` {unit, sensitivity}:
        the ``Federation``'s own fields where given, else what the sites that can read the
        study on their ledger say (asked once; they must agree), else nothing."""
        if self._spec is None:
            said: dict[str, Any] = {}
            for site in self.sites:
                ask = getattr(site, "study_spec", None)
                try:
                    got = ask(self.study) if ask is not None else {}
                except SiteUnavailable:
                    continue
                if got and said and got != said:
                    raise ResearchError(Code.CONFLICT, f"sites disagree on study {self.study}'s"
                                        f" researcher, consent filter or privacy unit "
                                        f"({site.name})")
                said = got or said
            self._spec = said
        own = {"researcher": self.researcher, "consent": self.consent}
        return {**self._spec, **{k: v for k, v in own.items() if v is not None}}

    def privacy(self) -> dict[str, Any]:
        """A DP query's privacy unit and count sensitivity (``dp.py``, ADR 0051)."""
        said = self.spec().get("privacy") or {}
        return {"unit": self.privacy_unit or said.get("unit", "record"),
                "sensitivity": int(self.unit_sensitivity or said.get("sensitivity", 1))}

    def _algorithm(self, analysis: str) -> dict[str, Any]:
        digests = self.algorithms or getattr(self.recorder, "algorithms", None) or {}
        return {"name": f"medledger.research.{analysis}", "version": __version__,
                "digest": digests.get(analysis)}

    def _record_responses(self, entry: dict[str, Any]) -> None:
        if not self.recorder:
            return
        for site, outcome in sorted(entry["outcomes"].items()):
            if outcome != "dropped":
                self.recorder.response(entry["query_id"], site, outcome,
                                       entry["responses"].get(site),
                                       entry["policies"].get(site, "0" * 64))

    def _collect(self, query: dict[str, Any], entry: dict[str, Any]
                 ) -> tuple[dict[str, dict[str, Any]], list[str]]:
        answers, refusals, dropped = {}, {}, []
        for site in self.sites:
            try:
                answers[site.name] = site.answer(query)
            except DisclosureRefused as exc:
                refusals[site.name] = exc.rule
                entry["policies"][site.name] = exc.policy
            except SiteUnavailable:
                dropped.append(site.name)
        for name, a in answers.items():
            entry["responses"][name] = audit.digest(a)
            entry["outcomes"][name] = "released"
            entry["policies"][name] = a["policy"]
            entry["artifacts"]["responses"][name] = a
        entry["outcomes"].update({s: f"refused:{r}" for s, r in refusals.items()})
        entry["outcomes"].update({s: "dropped" for s in dropped})
        if refusals:
            raise QueryRefused(refusals)
        return answers, dropped

    def _plain(self, query: dict[str, Any], entry: dict[str, Any]) -> tuple[dict[str, Any], int]:
        answers, dropped = self._collect(query, entry)
        if dropped:
            raise ResearchError(Code.INVALID_STATE, f"query aborted: {dropped} dropped out")
        total: dict[str, Any] = {}
        for a in answers.values():
            for k, v in a["values"].items():
                total[k] = np.add(total[k], v) if k in total else np.asarray(v)
        return {k: np.asarray(v).tolist() for k, v in total.items()}, sum(
            int(a["n"]) for a in answers.values())

    def _secure(self, query: dict[str, Any], entry: dict[str, Any]) -> tuple[dict[str, Any], int]:
        round_id = f"{self.study}/{next(self._rounds)}"
        if not self._keys:  # keys are exchanged once, when the federation is set up
            self._keys = {s.name: s.public_key().hex() for s in self.sites}
        peers = dict(self._keys)
        query = {**query, "secagg": {"round": round_id, "peers": peers}}
        answers, dropped = self._collect(query, entry)
        layouts = {audit.digest(a["layout"]) for a in answers.values()}
        if len(layouts) != 1:
            raise ResearchError(Code.CONFLICT, "sites returned different layouts")
        layout = next(iter(answers.values()))["layout"]
        length = len(next(iter(answers.values()))["masked"])
        rnd = Round(round_id, {k: bytes.fromhex(v) for k, v in peers.items()}, length)
        for name, a in answers.items():
            rnd.upload(name, [int(m, 16) for m in a["masked"]])
        recoveries: dict[str, Sequence[int]] | None = None
        if dropped and self.on_dropout == "recover" and len(answers) >= 3:
            recoveries = {s.name: [int(m, 16) for m in s.recover(round_id, peers, dropped, length)]
                          for s in self.sites if s.name in answers}
        entry["dropped"] = dropped
        return unflatten(layout, rnd.total(recoveries))

    # ---- analyses -------------------------------------------------------------------------

    def crosstab(self, levels: Mapping[str, Sequence[object]], *,
                 epsilon: float | None = None) -> np.ndarray[Any, Any]:
        """Pooled counts; with ``epsilon`` a DP release (Laplace, OpenDP) charged to the study's
        budget before any site is asked."""
        milli = round(epsilon * 1000) if epsilon else 0
        noisy = _noisy_counts(milli, self.privacy()["sensitivity"]) if milli else None
        values, _ = self.run("crosstab", {"levels": {k: list(v) for k, v in levels.items()}},
                             dp_milli_eps=milli, release=noisy)
        table: np.ndarray[Any, Any] = np.rint(np.asarray(values["counts"])).astype(np.int64)
        return table

    def moments(self, variable: str) -> stats.Moments:
        values, n = self.run("moments", {"variable": variable})
        return stats.Moments(n, float(values["total"]), float(values["sum_sq"]))

    def dp_mean(self, variable: str, bounds: tuple[float, float], epsilon: float
                ) -> tuple[float, dict[str, float]]:
        """ε-DP mean: sites clamp to ``bounds`` and return sums; Laplace noise (OpenDP) on the
        summed total and count; only the noisy values are released, hashed and recorded."""
        lo, hi = float(bounds[0]), float(bounds[1])
        milli = round(epsilon * 1000)
        if milli <= 0 or not lo < hi:
            raise ResearchError(Code.BAD_ARGS, "want epsilon > 0 and lo < hi")
        k = self.privacy()["sensitivity"]

        def noisy(values: dict[str, Any], n: int) -> dict[str, Any]:
            from medledger.research import dp

            total, count, spent = dp.noisy_mean(float(values["total"]), n,
                                                max(abs(lo), abs(hi)), milli / 1000, k)
            if spent > milli / 1000 + 1e-9:
                raise ResearchError(Code.INTERNAL, f"measurements spend {spent}")
            return {"total": total, "count": count}

        values, _ = self.run("moments", {"variable": variable, "bounds": [lo, hi]},
                             dp_milli_eps=milli, release=noisy)
        return values["total"] / max(values["count"], 1.0), values

    def histogram(self, variable: str, edges: Sequence[float], *,
                  epsilon: float | None = None) -> np.ndarray[Any, Any]:
        """Pooled counts per bin of the protocol's ``edges``; with ``epsilon`` a DP release:
        one person is in one bin, so the histogram is a one-way table (L1 sensitivity 1) and
        gets the same integer Laplace measurement as ``crosstab``, charged before any site is
        asked. Noisy counts below zero are released as they are (clipping is post-processing
        left to the reader, e.g. ``quantiles``)."""
        milli = round(epsilon * 1000) if epsilon else 0
        noisy = _noisy_counts(milli, self.privacy()["sensitivity"]) if milli else None
        values, _ = self.run("histogram", {"variable": variable, "edges": list(edges)},
                             dp_milli_eps=milli, release=noisy)
        counts: np.ndarray[Any, Any] = np.rint(np.asarray(values["counts"])).astype(np.int64)
        return counts

    def quantiles(self, variable: str, edges: Sequence[float], probs: Sequence[float], *,
                  epsilon: float | None = None) -> list[tuple[float, float, float]]:
        """Quantiles read off the pooled histogram: the bin is exact, the estimate within one
        bin width. With ``epsilon`` they are read off the DP histogram (negative noisy counts
        taken as 0), which costs ``epsilon`` once for all ``probs``."""
        counts = self.histogram(variable, edges, epsilon=epsilon)
        return stats.quantiles(np.maximum(counts, 0), np.asarray(edges, dtype=float), probs)

    def _dp_glm(self, family: glm.Family, y: str, x: Sequence[str], offset: str | None,
                epsilon: float, bounds: Mapping[str, Sequence[float]], steps: int
                ) -> glm.GlmFit:
        milli = round(epsilon * 1000)
        if milli <= 0 or family not in glm.FAMILIES or not 1 <= steps <= 25:
            raise ResearchError(Code.BAD_ARGS, f"want epsilon >= 0.001, a family of "
                                f"{glm.FAMILIES} and 1 <= steps <= 25; got {epsilon}, "
                                f"{family}, {steps}")
        p = len(x) + 1
        clip = dpglm.clip_params(family, x, bounds, y)
        l1 = float(self.privacy()["sensitivity"] * dpglm.entries(family, p))
        base = {"family": family, "y": y, "x": list(x), "weights": None, "offset": offset,
                "site_weighted": False, "clip": clip}
        if family == "gaussian":
            eps = milli / 1000
            values, _ = self.run("glm", base, dp_milli_eps=milli, release=_noisy_stats(eps, l1))
            return dpglm.ssp_fit(np.asarray(values["stats"]), clip, p, l1 / eps)
        b = l1 * steps / (milli / 1000)

        def update(noisy: F64, gamma: F64) -> tuple[F64, F64]:
            return dpglm.newton_update(noisy, gamma, family, clip, b)

        gamma, H = self._noisy_newton("glm", base, milli, steps, l1, p, update)
        return dpglm.newton_fit(family, gamma, H, clip, steps)

    def _noisy_newton(self, analysis: str, base: Mapping[str, Any], milli: int, steps: int,
                      l1: float, p: int, update: Callable[[F64, F64], tuple[F64, F64]]
                      ) -> tuple[F64, F64]:
        """``steps`` DP rounds from γ = 0, each releasing the sites' ``stats`` at ε/steps;
        the first query is charged the whole ``milli``, the others name it (ADR 0053)."""
        eps = milli / 1000 / steps
        gamma: F64 = np.zeros(p)
        info: F64 = np.eye(p)
        first: str | None = None
        for j in range(1, steps + 1):
            fit = {"rounds": steps, "round": j, **({"of": first} if first else {})}
            values, _ = self.run(analysis, {**base, "steps": steps, "beta": gamma.tolist()},
                                 dp_milli_eps=milli if first is None else 0,
                                 dp_fit=fit if steps > 1 else None,
                                 release=_noisy_stats(eps, l1))
            first = first or self.trail[-1]["query_id"]
            gamma, info = update(np.asarray(values["stats"], dtype=np.float64), gamma)
        return gamma, info

    def glm(self, family: glm.Family, y: str, x: Sequence[str], *, weights: str | None = None,
            offset: str | None = None, tol: float = 1e-10, site_weighted: bool = False,
            epsilon: float | None = None, bounds: Mapping[str, Sequence[float]] | None = None,
            steps: int = 6) -> glm.GlmFit:
        """Federated IRLS, equal to pooled fitting. With ``epsilon`` an ε-DP fit instead
        (``dpglm``): rows clamped to the declared ``bounds`` {variable: (lo, hi)} for every
        covariate (and the outcome, gaussian and poisson); gaussian releases noisy sufficient
        statistics once, binomial and poisson take ``steps`` noisy Newton steps at ε/steps
        each. The bounds and ``steps`` are query parameters, so inside the query's hash that is
        on the ledger before dispatch; the whole ε is charged on the first query, before any
        site is asked."""
        if epsilon is not None:
            if weights or site_weighted:
                raise ResearchError(Code.BAD_ARGS, "a DP GLM takes no prior weights")
            return self._dp_glm(family, y, x, offset, epsilon, bounds or {}, steps)
        p = len(x) + 1
        base = {"family": family, "y": y, "x": list(x), "weights": weights, "offset": offset,
                "site_weighted": site_weighted}

        def round_(beta: np.ndarray[Any, Any]) -> glm.GlmStep:
            values, n = self.run("glm", {**base, "beta": [float(b) for b in beta]})
            return glm.GlmStep(np.asarray(values["info"]).reshape(p, p),
                               np.asarray(values["xwz"]), float(values["deviance"]), n)

        return glm.fit(round_, p, family, tol=tol)

    def _dp_cox(self, time: str, event: str, x: Sequence[str], grid: Sequence[float],
                epsilon: float, bounds: Mapping[str, Sequence[float]], steps: int
                ) -> survival.CoxFit:
        milli = round(epsilon * 1000)
        if milli <= 0 or not x or not 1 <= steps <= 25:
            raise ResearchError(Code.BAD_ARGS, f"want epsilon >= 0.001, covariates and "
                                f"1 <= steps <= 25; got {epsilon}, {list(x)}, {steps}")
        clip = {"x": dpglm.clip_params("binomial", x, bounds, event)["x"]}
        p, G = len(x), len(grid)
        l1 = float(self.privacy()["sensitivity"] * dpcox.l1_bound(p))
        base = {"time": time, "event": event, "x": list(x), "grid": list(grid), "clip": clip}
        b = l1 * steps / (milli / 1000)

        def update(noisy: F64, gamma: F64) -> tuple[F64, F64]:
            return dpcox.newton_update(noisy, gamma, G, b)

        gamma, info = self._noisy_newton("cox", base, milli, steps, l1, p, update)
        return dpcox.cox_fit(gamma, info, clip, steps)

    def kaplan_meier(self, time: str, event: str, grid: Sequence[float], *,
                     epsilon: float | None = None) -> np.ndarray[Any, Any]:
        """Pooled S(t) at each grid time (the grid must hold every event time). With
        ``epsilon`` a DP release: sites return events and censorings per grid interval
        (``survival.km_intervals``; one row in one cell, L1 sensitivity 1 per unit record),
        integer Laplace on both summed histograms, charged before any site is asked; d and
        the numbers at risk are derived from the noisy counts (post-processing)."""
        if epsilon is not None:
            milli = round(epsilon * 1000)
            if milli <= 0:
                raise ResearchError(Code.BAD_ARGS, "want epsilon >= 0.001")
            noisy = _noisy_counts(milli, self.privacy()["sensitivity"], ("events", "censored"))
            released, _ = self.run("km", {"time": time, "event": event, "grid": list(grid),
                                          "binned": True}, dp_milli_eps=milli, release=noisy)
            dn = survival.km_from_intervals(np.asarray(released["events"], dtype=np.int64),
                                            np.asarray(released["censored"], dtype=np.int64))
            return survival.km_combine(*dn)
        values, _ = self.run("km", {"time": time, "event": event, "grid": list(grid)})
        d = np.rint(np.asarray(values["d"])).astype(np.int64)
        n = np.rint(np.asarray(values["at_risk"])).astype(np.int64)
        return survival.km_combine(d, n)

    def cox(self, time: str, event: str, x: Sequence[str], grid: Sequence[float], *,
            epsilon: float | None = None, bounds: Mapping[str, Sequence[float]] | None = None,
            steps: int = 6) -> survival.CoxFit:
        """Cox proportional hazards, Breslow ties, by federated Newton–Raphson. With
        ``epsilon`` an ε-DP fit (``dpcox``): covariates clamped to the declared ``bounds``,
        ``steps`` noisy Newton steps on per-interval sums at ε/steps each, the whole ε charged
        on the first query before any site is asked."""
        if epsilon is not None:
            return self._dp_cox(time, event, x, grid, epsilon, bounds or {}, steps)
        k, g = len(x), len(grid)
        base = {"time": time, "event": event, "x": list(x), "grid": list(grid)}

        def round_(beta: np.ndarray[Any, Any]) -> survival.CoxStep:
            v, _ = self.run("cox", {**base, "beta": [float(b) for b in beta]})
            return survival.CoxStep(np.asarray(v["s0"]), np.asarray(v["s1"]).reshape(g, k),
                                    np.asarray(v["s2"]).reshape(g, k, k), np.asarray(v["d"]),
                                    np.asarray(v["x_events"]))

        return survival.cox_fit(round_, k)
