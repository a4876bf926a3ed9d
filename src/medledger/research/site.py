"""A site: its own rows, its own disclosure policy, and the only code that touches them.

``Site.answer(query)`` runs one query on the rows whose consent covers research, applies the
site's disclosure checks, and returns aggregates only, as a JSON-ready dict::

    {"site": name, "analysis": ..., "policy": <sha256 of the site's policy>, "n": rows used,
     "values": {name: number | list of numbers}}

A refusal raises ``DisclosureRefused`` (its message names thresholds and counts, never values).
Queries (JSON dicts) look like ``{"study", "analysis", "sites": [...], "params": {...}}``, with
optional ``"disclosure"`` (the study's disclosure terms, which can only tighten the site's
policy; the effective policy's hash is what the answer carries):

* ``crosstab``  — params ``levels`` {variable: [levels...]}
* ``moments``   — params ``variable``, optional ``bounds`` [lo, hi] (values clamped)
* ``histogram`` — params ``variable``, ``edges`` [..]
* ``glm``       — params ``family``, ``y``, ``x`` [..], optional ``weights``, ``offset``, and
  ``beta`` (the current coefficients, intercept first); ``site_weighted`` scales the prior
  weights by 1/n (the reference fit for contribution); with ``clip`` (a DP fit) the clamped,
  scaled statistics of ``dpglm`` instead, after the same disclosure checks
* ``km``        — params ``time``, ``event``, ``grid`` (every event time must be on it); with
  ``binned`` (a DP release) events and censorings per grid interval instead, nothing refused
* ``cox``       — params ``time``, ``event``, ``x`` [..], ``grid``, ``beta``; with ``clip`` (a
  DP fit) the interval sums of ``dpcox`` instead

Where the rows come from: either a fixed table (``columns``; rows whose ``consent_research`` is
false are never used) or a ``source`` that builds the table for each query — the gateway vault
filtered by the consents on the ledger at the query's height and limited to the study's
variables (``research.vault``, ADR 0039). A source may also hand the study's registered
disclosure terms (they tighten the policy like the query's) and what the site's own audit log
should note about the rows used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medledger.errors import Code
from medledger.research import audit, dpcox, dpglm, egress, glm, stats, survival
from medledger.research.disclosure import Policy
from medledger.research.errors import DisclosureRefused, ResearchError
from medledger.research.secagg import Masker
from medledger.research.sitelog import SiteLog

__all__ = ["CONSENT_COLUMN", "TRANSPORT_KEYS", "Site", "Table", "TableSource", "flatten",
           "hashed_form", "unflatten"]

CONSENT_COLUMN = "consent_research"
TRANSPORT_KEYS = ("secagg", "recorded_at")  # travel with a query, not part of its hash
Params = Mapping[str, Any]
Out = tuple[int, dict[str, Any]]
ANALYSES = ("crosstab", "moments", "histogram", "glm", "km", "cox")


def hashed_form(query: Mapping[str, Any]) -> dict[str, Any]:
    """The query as recorded on the ledger (without the keys that only travel with it)."""
    return {k: v for k, v in query.items() if k not in TRANSPORT_KEYS}


@dataclass(frozen=True)
class Table:
    """The rows one query may use: ``columns`` (name → array, all the same length), an optional
    row mask ``keep``, a ``key`` naming exactly these rows (caches), the study's registered
    disclosure terms if the source knows them, and what the site's own log notes (``log``)."""

    columns: Mapping[str, np.ndarray[Any, Any]]
    keep: np.ndarray[Any, Any] | None = None
    key: str = ""
    disclosure: Mapping[str, Any] | None = None
    log: Mapping[str, Any] = field(default_factory=dict)


class TableSource(Protocol):
    def table(self, query: Mapping[str, Any]) -> Table:
        """The table for ``query``; raises ``ResearchError`` (or ``DisclosureRefused``) when
        the query may not run here. Must not quote data in errors."""

    def study_spec(self, study: str) -> dict[str, Any]:
        """What this source reads about ``study`` on its ledger and will check in every query:
        ``researcher``, ``consent`` filter, ``privacy`` {unit, sensitivity}; {} if nothing."""


@dataclass
class Site:
    """``columns``: the site's table (name → array, all the same length); rows where
    ``consent_research`` is false are never used. With a ``source`` the table is built per
    query instead (``columns`` is then unused). ``audit`` is the site's own record of every
    query it answered or refused (hashes and outcomes only); with ``audit_path`` it is also an
    append-only, hash-chained JSON-lines file (``research.sitelog``) that survives restarts:
    reopening continues the chain and a broken file is refused."""

    name: str
    columns: Mapping[str, np.ndarray[Any, Any]]
    policy: Policy = field(default_factory=Policy)
    audit: list[dict[str, Any]] = field(default_factory=list)
    masker: Masker | None = None
    source: TableSource | None = None
    audit_path: Path | None = None
    _log_file: SiteLog | None = field(default=None, repr=False)
    _glm_cache: dict[str, glm.GlmSiteData] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.masker is None:
            self.masker = Masker(self.name)
        if self.audit_path is not None:
            self._log_file = SiteLog(Path(self.audit_path))
            self.audit[:0] = self._log_file.entries

    def _note(self, entry: dict[str, Any]) -> None:
        if self._log_file is not None:
            self._log_file.append(entry)
        self.audit.append(entry)

    def public_key(self) -> bytes:
        assert self.masker is not None
        return self.masker.public

    def study_spec(self, study: str) -> dict[str, Any]:
        """The study's researcher, consent filter and privacy unit as this site's source reads
        them on its ledger (a fixed table knows none: {})."""
        return self.source.study_spec(study) if self.source is not None else {}

    def _table(self, query: Mapping[str, Any]) -> Table:
        if self.source is not None:
            return self.source.table(query)
        n = len(next(iter(self.columns.values())))
        c = self.columns.get(CONSENT_COLUMN)
        keep: np.ndarray[Any, Any] = np.ones(n, dtype=bool) if c is None else np.asarray(
            c, dtype=bool)
        return Table(self.columns, keep, f"columns:{id(self.columns)}")

    def _col(self, name: str, t: Table) -> np.ndarray[Any, Any]:
        if name not in t.columns or name == CONSENT_COLUMN:
            raise ResearchError(Code.BAD_ARGS, f"unknown variable {name!r}")
        col: np.ndarray[Any, Any] = np.asarray(t.columns[name])
        return col if t.keep is None else col[t.keep]

    def _num(self, name: str, t: Table) -> np.ndarray[Any, Any]:
        col = self._col(name, t)
        if col.dtype.kind not in "biuf":
            raise ResearchError(Code.BAD_ARGS, f"variable {name!r} is not numeric")
        out: np.ndarray[Any, Any] = col.astype(float)
        return out

    def answer(self, query: Mapping[str, Any]) -> dict[str, Any]:
        analysis = query.get("analysis")
        if analysis not in ANALYSES:
            raise ResearchError(Code.BAD_ARGS, f"analysis {analysis!r}; want one of {ANALYSES}")
        params = query.get("params", {})
        policy = self.policy.tightened(query.get("disclosure"))
        noted: Mapping[str, Any] = {}
        try:
            policy.check_sites(len(query.get("sites", [])))
            table = self._table(query)  # a vault source checks the ledger before any data
            policy = policy.tightened(table.disclosure)
            policy.check_sites(len(query.get("sites", [])))
            noted = table.log
            n, values = getattr(self, f"_{analysis}")(params, table, policy)
        except DisclosureRefused as exc:
            self._note({"study": query.get("study"), "query": audit.digest(hashed_form(query)),
                        "outcome": f"refused:{exc.rule}", "response": None, **noted})
            raise DisclosureRefused(exc.rule, exc.detail, policy.digest()) from None
        except ResearchError:
            raise
        except Exception as exc:  # foreign errors may quote data: replace their text
            raise ResearchError(Code.BAD_ARGS, f"{analysis} failed at {self.name} "
                                f"({type(exc).__name__})") from None
        out = {"site": self.name, "analysis": analysis, "policy": policy.digest(), "n": n,
               "values": values}
        sec = query.get("secagg")
        if sec is None:
            egress.check(self.name, query, out)
            self._log(query, out, noted)
            return out
        layout, flat = flatten(values, n)
        assert self.masker is not None
        masked = self.masker.mask(sec["round"], decode_peers(sec["peers"]), flat)
        msg = {"site": self.name, "analysis": analysis, "policy": out["policy"],
               "layout": layout, "masked": [format(m, "x") for m in masked]}
        egress.check(self.name, query, msg)
        self._log(query, msg, noted)
        return msg

    def _log(self, query: Mapping[str, Any], msg: Mapping[str, Any],
             noted: Mapping[str, Any]) -> None:
        """The site's own append-only record of what it released (hashes only; a vault source
        adds the consent height and the digest of the patient set used)."""
        self._note({"study": query.get("study"), "query": audit.digest(hashed_form(query)),
                    "outcome": "released", "response": audit.digest(msg), **noted})

    def recover(self, round_id: str, peers: dict[str, str], dropped: list[str],
                length: int) -> list[str]:
        """Masks shared with sites that dropped out of a secure round (hex ring elements)."""
        assert self.masker is not None
        rec = self.masker.recovery(round_id, decode_peers(peers), dropped, length)
        return [format(m, "x") for m in rec]

    def _crosstab(self, params: Params, t: Table, pol: Policy) -> Out:
        levels = params["levels"]
        pol.check_columns(levels)
        cols = {v: self._col(v, t).tolist() for v in levels}
        table = stats.crosstab(cols, levels)
        n = int(table.sum())
        pol.check_rows("crosstab", n)
        return n, {"counts": pol.table(table).tolist()}

    def _moments(self, params: Params, t: Table, pol: Policy) -> Out:
        var = params["variable"]
        pol.check_columns([var])
        x = self._num(var, t)
        x = x[~np.isnan(x)]
        if params.get("bounds"):  # DP releases: clamp to the protocol's bounds
            x = np.clip(x, float(params["bounds"][0]), float(params["bounds"][1]))
        pol.check_rows("moments", x.size)
        pol.check_sum(var, x)
        m = stats.moments(x)
        return m.n, {"total": m.total, "sum_sq": m.sum_sq}

    def _histogram(self, params: Params, t: Table, pol: Policy) -> Out:
        var = params["variable"]
        pol.check_columns([var])
        x = self._num(var, t)
        counts = stats.histogram(x, np.asarray(params["edges"], dtype=float))
        n = int(counts.sum())
        pol.check_rows("histogram", n)
        return n, {"counts": pol.table(counts).tolist()}

    def _surv(self, params: Mapping[str, Any], t: Table, pol: Policy) -> tuple[Any, Any, Any, Any]:
        names = [params["time"], params["event"], *params.get("x", [])]
        pol.check_columns(names)
        cols = {v: self._num(v, t) for v in names}
        ok = np.all([~np.isnan(c) for c in cols.values()], axis=0)
        X = np.column_stack([cols[v][ok] for v in params.get("x", [])] or
                            [np.zeros((int(ok.sum()), 0))])
        pol.check_rows("survival", int(ok.sum()))
        grid = np.asarray(params["grid"], dtype=float)
        return X, cols[params["time"]][ok], cols[params["event"]][ok], grid

    def _km(self, params: Params, tab: Table, pol: Policy) -> Out:
        _, t, e, grid = self._surv(params, tab, pol)
        if params.get("binned"):  # for a DP release: interval counts, nothing refused
            ev, cens = survival.km_intervals(t, e, grid)
            return int(t.size), {"events": ev.tolist(), "censored": cens.tolist()}
        d, n = survival.km_site(t, e, grid)
        return int(t.size), {"d": d.tolist(), "at_risk": n.tolist()}

    def _cox(self, params: Params, tab: Table, pol: Policy) -> Out:
        X, t, e, grid = self._surv(params, tab, pol)
        if params.get("clip") is not None:  # a DP fit's interval sums (dpcox)
            return int(t.size), {"stats": dpcox.site_stats(X, t, e, grid, params).tolist()}
        st = survival.cox_site(X, t, e, grid, np.asarray(params["beta"], dtype=float))
        return int(t.size), {"s0": st.s0.tolist(), "s1": st.s1.ravel().tolist(),
                             "s2": st.s2.ravel().tolist(), "d": st.d.tolist(),
                             "x_events": st.x_events.tolist()}

    def glm_data(self, params: Mapping[str, Any], pol: Policy, t: Table) -> glm.GlmSiteData:
        """Complete cases of the model's variables, with an intercept column first."""
        names = [params["y"], *params["x"], *(params[k] for k in ("weights", "offset")
                                              if params.get(k))]
        pol.check_columns(names)
        cols = {v: self._num(v, t) for v in names}
        ok = np.all([~np.isnan(c) for c in cols.values()], axis=0)
        X = np.column_stack([np.ones(int(ok.sum()))] + [cols[v][ok] for v in params["x"]])
        w = cols[params["weights"]][ok] if params.get("weights") else None
        if params.get("site_weighted"):  # each site counts once: prior weights 1/n
            w = (w if w is not None else np.ones(int(ok.sum()))) / max(int(ok.sum()), 1)
        off = cols[params["offset"]][ok] if params.get("offset") else None
        return glm.GlmSiteData(X, cols[params["y"]][ok], w, off)

    def _glm(self, params: Params, t: Table, pol: Policy) -> Out:
        model = {k: v for k, v in params.items() if k not in ("beta", "family")}
        key = f"{t.key}:{pol.digest()}:{audit.digest(model)}"
        if key not in self._glm_cache:  # same rows and model across IRLS rounds: check once
            data = self.glm_data(params, pol, t)
            n, p = data.X.shape
            cands = [(params["y"], data.y), *zip(params["x"], data.X[:, 1:].T, strict=True),
                     ("weights", data.weights), ("offset", data.offset)]
            pol.check_glm(p, n, [(v, c) for v, c in cands
                                         if c is not None and _is_binary(c)])
            self._glm_cache = {key: data}
        data = self._glm_cache[key]
        if params.get("clip") is not None:  # a DP fit's clamped statistics (dpglm)
            return data.X.shape[0], {"stats": dpglm.site_stats(data, params).tolist()}
        step = glm.site_step(data, np.asarray(params["beta"], dtype=float), params["family"])
        return data.X.shape[0], {"info": step.info.ravel().tolist(), "xwz": step.xwz.tolist(),
                                 "deviance": step.deviance}


def _is_binary(c: np.ndarray[Any, Any]) -> bool:
    """Exactly two distinct values (one pass, no sort)."""
    if c.size == 0:
        return False
    other = c[c != c[0]]
    return other.size > 0 and bool(np.all(other == other[0]))

def flatten(values: Mapping[str, Any], n: int) -> tuple[list[list[Any]], list[float]]:
    """(layout, vector): each value (number or nested list) raveled in key order, then n."""
    layout: list[list[Any]] = []
    flat: list[float] = []
    for key in sorted(values):
        arr = np.asarray(values[key], dtype=float)
        layout.append([key, list(arr.shape)])
        flat.extend(arr.ravel().tolist())
    layout.append(["n", []])
    flat.append(float(n))
    return layout, flat


def unflatten(layout: list[list[Any]], flat: list[float]) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    pos = 0
    for key, shape in layout:
        size = int(np.prod(shape)) if shape else 1
        chunk = np.asarray(flat[pos: pos + size])
        pos += size
        out[key] = float(chunk[0]) if not shape else chunk.reshape(shape).tolist()
    n = out.pop("n")
    return out, round(n)


def decode_peers(peers: Mapping[str, str]) -> dict[str, bytes]:
    return {k: bytes.fromhex(v) for k, v in peers.items()}
