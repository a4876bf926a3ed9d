"""The ``studies`` contract: a study's terms fixed before any data are touched, and its audit.

State (in the ``studies`` namespace)::

    study/<id>                 terms (immutable once registered) + status proposed → active
    approval/<id>/<site>       a site's approval: its org-admin signs, its data steward
                               (the data committee's delegate) co-signs; committee decision ref
    query/<id>/<qid>           query hash (SHA-256, canonical JSON), analysis, variables,
                               sites, DP spend; refused unless the study is active and the
                               analysis, variables, sites and budget are within the terms
    response/<id>/<qid>/<site> the site's own record: response hash, disclosure outcome,
                               policy hash (signed by that site)
    result/<id>/<qid>          result hash and credits (contributors and roles)
    contribution/<id>          utility hash, method, permutations, seed; per site n, φ, its
                               standard error and leave-one-out (micro-units of the utility),
                               share (ppm) and revenue (minor units), both recomputed by the
                               contract from n and φ under the declared rule (ADR 0049)
    spent/<id>/<unit>          DP budget spent per privacy unit (milli-ε), checked against
                               the study's budget; ``spent/<id>`` keeps the study's total
    dpfit/<id>/<qid>           a DP fit of several rounds (noisy Newton, ADR 0053): charged
                               whole on its first query <qid>; later rounds name it
                               (``dp_round_of``), are charged 0 and are refused past its
                               declared ``dp_rounds``
    algorithm/<digest>         an analysis implementation's digest, its reviews; approved once
                               reviewed by ≥ 2 members of ≥ 2 organisations (vantage6 store
                               policy); a study with ``approved_algorithms_only`` refuses
                               queries whose ``algorithm`` is not approved

Terms: protocol hash, ethics-approval reference, participating sites (≥ 3), allowed analyses
and variables, disclosure policy (integer thresholds), DP budget (milli-ε) and its privacy unit
(``record``: one row of one site's table, count sensitivity 1; ``person``: a person, who may be
a row at up to ``max_sites_per_person`` sites — default all of them, as sites are not linked —
so a count's sensitivity is that number; ADR 0051), contribution rule
(``count`` | ``shapley`` | ``blend``, with the utility hash) and revenue pool (minor units);
optionally the SHA-256 of the variable map that defines the variables over the sites' vaults
(``research.variables``) — a vault-backed site refuses the study if its own map differs.
Numbers are integers: the ledger's canonical JSON carries no floats.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medledger.contracts.base import Access, Args, Contract, ContractError, Cosign, method
from medledger.contracts.context import Context
from medledger.errors import Code
from medledger.research import apportion

__all__ = ["ANALYSES", "Studies", "unit_sensitivity"]

ID = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ORG = r"^[a-z0-9][a-z0-9-]{0,62}$"
HEX64 = r"^[0-9a-f]{64}$"
VAR = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
ANALYSES = ("crosstab", "moments", "histogram", "glm", "survival")
Analysis = Literal["crosstab", "moments", "histogram", "glm", "survival"]
PrivacyUnit = Literal["person", "record"]

RESEARCHERS = Access(kinds=frozenset({"research"}), roles=frozenset({"researcher"}))
SITE_ADMIN = Access(kinds=frozenset({"hospital", "clinic"}), roles=frozenset({"org-admin"}))
REVIEWERS = Access(roles=frozenset({"researcher", "auditor", "data-steward"}))
SITE_SERVICE = Access(kinds=frozenset({"hospital", "clinic"}),
                      roles=frozenset({"gateway", "service", "data-steward"}))


class DisclosureTerms(Args):
    min_sites: int = Field(default=3, ge=3)
    min_cell: int = Field(default=3, ge=1)
    glm_max_param_ratio_ppm: int = Field(default=330_000, ge=1, le=1_000_000)
    dominance_n: int = Field(default=2, ge=1)
    dominance_k_ppm: int = Field(default=900_000, ge=1, le=1_000_000)
    p_ratio_ppm: int = Field(default=100_000, ge=0, le=1_000_000)


class ContributionRule(Args):
    method: Literal["count", "shapley", "blend"]
    utility: str = Field(pattern=HEX64)
    shapley_weight_ppm: int = Field(default=1_000_000, ge=0, le=1_000_000)


class RegisterArgs(Args):
    study: str = Field(pattern=ID)
    protocol: str = Field(pattern=HEX64)
    ethics_ref: str = Field(min_length=1, max_length=128)
    sites: list[str] = Field(min_length=3, max_length=1000)
    analyses: list[Analysis] = Field(min_length=1)
    variables: list[str] = Field(min_length=1, max_length=500)
    disclosure: DisclosureTerms = DisclosureTerms()
    dp_budget_milli_eps: int = Field(default=0, ge=0)
    privacy_unit: PrivacyUnit = "record"
    max_sites_per_person: int | None = Field(default=None, ge=1, le=1000)
    contribution: ContributionRule
    revenue_pool: int = Field(ge=0)
    approved_algorithms_only: bool = False
    variable_map: str | None = Field(default=None, pattern=HEX64)


class ApproveArgs(Args):
    study: str = Field(pattern=ID)
    site: str = Field(pattern=ORG)
    committee_ref: str = Field(min_length=1, max_length=128)


class QueryArgs(Args):
    study: str = Field(pattern=ID)
    query_id: str = Field(pattern=ID)
    query_hash: str = Field(pattern=HEX64)
    analysis: Analysis
    variables: list[str] = Field(min_length=1, max_length=500)
    sites: list[str] = Field(min_length=1)
    dp_milli_eps: int = Field(default=0, ge=0)
    privacy_unit: PrivacyUnit | None = None  # a DP query's unit and count sensitivity (the
    dp_sensitivity: int | None = Field(default=None, ge=1)  # study's unless stated)
    researcher: str | None = Field(default=None, min_length=1, max_length=128)
    algorithm: str | None = Field(default=None, pattern=HEX64)
    dp_rounds: int = Field(default=1, ge=1, le=25)  # rounds a DP fit's first query pays for
    dp_round_of: str | None = Field(default=None, pattern=ID)  # a later round: its first query


FIT_KEYS = ("dp_rounds", "dp_round_of")


class ReviewArgs(Args):
    digest: str = Field(pattern=HEX64)
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)


class ResponseArgs(Args):
    study: str = Field(pattern=ID)
    query_id: str = Field(pattern=ID)
    response_hash: str | None = Field(default=None, pattern=HEX64)
    outcome: str = Field(pattern=r"^(released|refused:[a-z_]{1,32})$")
    policy_hash: str = Field(pattern=HEX64)


class Credit(Args):
    member: str = Field(min_length=1, max_length=128)
    role: str = Field(min_length=1, max_length=64)


class ResultArgs(Args):
    study: str = Field(pattern=ID)
    query_id: str = Field(pattern=ID)
    result_hash: str = Field(pattern=HEX64)
    dropped: list[str] = Field(default_factory=list)
    credits: list[Credit] = Field(default_factory=list)


MICRO = 2**53 - 1  # the canonical JSON's integer range


class SiteShare(Args):
    """One site's contribution: rows used, Shapley value φ, its Monte Carlo standard error
    (0 when exact) and leave-one-out value U(N) − U(N∖i), all three signed integers in
    micro-units of the utility (``apportion.PHI_SCALE``); its share (ppm) and revenue."""

    site: str = Field(pattern=ORG)
    n: int = Field(ge=0)
    phi_micro: int = Field(ge=-MICRO, le=MICRO)
    phi_se_micro: int = Field(ge=0, le=MICRO)
    loo_micro: int = Field(ge=-MICRO, le=MICRO)
    share_ppm: int = Field(ge=0, le=1_000_000)
    revenue: int = Field(ge=0)


class ContributionArgs(Args):
    study: str = Field(pattern=ID)
    utility: str = Field(pattern=HEX64)
    method: Literal["exact", "monte-carlo"]
    permutations: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0)
    shares: list[SiteShare] = Field(min_length=1)


def _study(ctx: Context, study: str) -> dict[str, Any]:
    s = ctx.get(f"study/{study}")
    if s is None:
        raise ContractError(Code.NOT_FOUND, f"no study {study}")
    return dict(s)


def unit_sensitivity(terms: dict[str, Any]) -> int:
    """A count's L1 sensitivity under the study's privacy unit: 1 for ``record``; for
    ``person`` the declared ``max_sites_per_person``, by default every site of the study."""
    if terms.get("privacy_unit", "record") == "record":
        return 1
    return int(terms.get("max_sites_per_person") or len(terms["sites"]))


def _active(ctx: Context, study: str) -> dict[str, Any]:
    s = _study(ctx, study)
    if s["status"] != "active":
        raise ContractError(Code.INVALID_STATE, f"study {study} is {s['status']}, want active")
    return s


class Studies(Contract):
    name = "studies"

    @method(RegisterArgs, access=RESEARCHERS)
    def register(self, ctx: Context, args: RegisterArgs) -> Any:
        """Fix a study's terms; it becomes active when every listed site has approved."""
        if ctx.exists(f"study/{args.study}"):
            raise ContractError(Code.ALREADY_EXISTS, f"study {args.study} exists")
        if len(set(args.sites)) != len(args.sites) or len(args.sites) < args.disclosure.min_sites:
            raise ContractError(Code.BAD_ARGS, f"want >= {args.disclosure.min_sites} distinct "
                                "sites")
        if args.max_sites_per_person is not None and (
                args.privacy_unit != "person" or args.max_sites_per_person > len(args.sites)):
            raise ContractError(Code.BAD_ARGS, "max_sites_per_person needs privacy unit person "
                                f"and at most {len(args.sites)} sites")
        terms = args.model_dump()
        terms.update(researcher=ctx.caller.id, org=ctx.caller.org, status="proposed",
                     registered_height=ctx.height, approved=[])
        ctx.put(f"study/{args.study}", terms)
        ctx.put(f"spent/{args.study}", {"milli_eps": 0})
        ctx.put(f"spent/{args.study}/{args.privacy_unit}", {"milli_eps": 0})
        ctx.emit("study_registered", {"study": args.study})
        return {"study": args.study, "status": "proposed"}

    @method(ApproveArgs, access=SITE_ADMIN,
            cosign=lambda a: [Cosign(org=a.site, roles=frozenset({"data-steward"}))])
    def approve(self, ctx: Context, args: ApproveArgs) -> Any:
        """A participating site's approval (org-admin, co-signed by its data steward)."""
        s = _study(ctx, args.study)
        if ctx.caller.org != args.site or args.site not in s["sites"]:
            raise ContractError(Code.FORBIDDEN, f"{ctx.caller.org} cannot approve for "
                                f"{args.site} in {args.study}")
        if args.site in s["approved"]:
            raise ContractError(Code.ALREADY_EXISTS, f"{args.site} already approved")
        steward = next((c.id for c in ctx.cosigners if c.org == args.site), None)
        ctx.put(f"approval/{args.study}/{args.site}", {
            "by": ctx.caller.id, "steward": steward, "committee_ref": args.committee_ref,
            "height": ctx.height})
        s["approved"] = sorted([*s["approved"], args.site])
        if set(s["approved"]) == set(s["sites"]):
            s["status"] = "active"
            s["active_height"] = ctx.height
        ctx.put(f"study/{args.study}", s)
        return {"study": args.study, "status": s["status"]}

    @method(QueryArgs, access=RESEARCHERS)
    def query(self, ctx: Context, args: QueryArgs) -> Any:
        """Record a query's hash before dispatch; refused outside the study's terms."""
        s = _active(ctx, args.study)
        if ctx.caller.id != s["researcher"] or args.researcher not in (None, ctx.caller.id):
            raise ContractError(Code.FORBIDDEN, f"only {s['researcher']} queries {args.study}")
        if args.analysis not in s["analyses"]:
            raise ContractError(Code.FORBIDDEN, f"analysis {args.analysis} not in the protocol")
        extra = sorted(set(args.variables) - set(s["variables"]))
        if extra:
            raise ContractError(Code.FORBIDDEN, f"variables {extra} not in the protocol")
        if not set(args.sites) <= set(s["sites"]) or len(args.sites) < s["disclosure"][
                "min_sites"]:
            raise ContractError(Code.FORBIDDEN, "sites outside the study or too few")
        key = f"query/{args.study}/{args.query_id}"
        if ctx.exists(key):
            raise ContractError(Code.ALREADY_EXISTS, f"query {args.query_id} exists")
        if args.algorithm is not None or s.get("approved_algorithms_only"):
            algo = ctx.get(f"algorithm/{args.algorithm}") if args.algorithm else None
            if algo is None or not algo["approved"]:
                raise ContractError(Code.FORBIDDEN, f"algorithm {args.algorithm} is not an "
                                    "approved implementation")
        if args.dp_round_of is not None:
            self._next_round(ctx, s, args)
        elif args.dp_milli_eps:
            self._charge(ctx, s, args)
        elif args.dp_rounds != 1:
            raise ContractError(Code.BAD_ARGS, "dp_rounds without dp_milli_eps")
        record = {k: v for k, v in args.model_dump().items()
                  if k not in FIT_KEYS or v != QueryArgs.model_fields[k].default}
        ctx.put(key, {**record, "by": ctx.caller.id, "height": ctx.height})
        return {"query": args.query_id}

    @staticmethod
    def _check_unit(s: dict[str, Any], args: QueryArgs) -> str:
        """The study's privacy unit; refused when the query states another unit or
        sensitivity."""
        unit, sens = s.get("privacy_unit", "record"), unit_sensitivity(s)
        if args.privacy_unit not in (None, unit) or args.dp_sensitivity not in (None, sens):
            raise ContractError(Code.FORBIDDEN, f"DP query for unit {args.privacy_unit}, "
                                f"sensitivity {args.dp_sensitivity}; the study's unit is {unit}, "
                                f"sensitivity {sens}")
        return str(unit)

    @classmethod
    def _next_round(cls, ctx: Context, s: dict[str, Any], args: QueryArgs) -> None:
        """A later round of a DP fit: charged 0, as its first query paid for ``dp_rounds``
        rounds; refused for another analysis, other sites or variables, or past its rounds."""
        cls._check_unit(s, args)
        fkey = f"dpfit/{args.study}/{args.dp_round_of}"
        fit, first = ctx.get(fkey), ctx.get(f"query/{args.study}/{args.dp_round_of}")
        if args.dp_milli_eps or args.dp_rounds != 1:
            raise ContractError(Code.BAD_ARGS, "a later round of a DP fit is charged on its "
                                "first query")
        same = first is not None and (first["analysis"], sorted(first["sites"]), sorted(
            first["variables"])) == (args.analysis, sorted(args.sites), sorted(args.variables))
        if fit is None or not same:
            raise ContractError(Code.FORBIDDEN, f"no DP fit {args.dp_round_of} of this "
                                "analysis, sites and variables")
        if fit["used"] >= fit["rounds"]:
            raise ContractError(Code.FORBIDDEN, f"DP fit {args.dp_round_of} has used its "
                                f"{fit['rounds']} rounds")
        ctx.put(fkey, {**fit, "used": fit["used"] + 1})

    @classmethod
    def _charge(cls, ctx: Context, s: dict[str, Any], args: QueryArgs) -> None:
        """Charge a DP query to ``spent/<study>/<unit>`` (refused over the budget, or when the
        query states another privacy unit or sensitivity than the study's); a DP fit of
        several rounds is charged whole here, on its first query."""
        unit = cls._check_unit(s, args)
        total = ctx.get(f"spent/{args.study}") or {"milli_eps": 0}
        # a study registered before privacy units has only the study total: it is its unit's
        per_unit = ctx.get(f"spent/{args.study}/{unit}") or total
        spent = int(per_unit["milli_eps"])
        if spent + args.dp_milli_eps > s["dp_budget_milli_eps"]:
            raise ContractError(Code.FORBIDDEN, f"DP budget of unit {unit}: spent {spent} + "
                                f"{args.dp_milli_eps} > {s['dp_budget_milli_eps']} milli-eps")
        ctx.put(f"spent/{args.study}/{unit}", {"milli_eps": spent + args.dp_milli_eps})
        ctx.put(f"spent/{args.study}", {"milli_eps": int(total["milli_eps"]) + args.dp_milli_eps})
        if args.dp_rounds > 1:
            ctx.put(f"dpfit/{args.study}/{args.query_id}", {"rounds": args.dp_rounds, "used": 1})

    @method(ReviewArgs, access=REVIEWERS)
    def review_algorithm(self, ctx: Context, args: ReviewArgs) -> Any:
        """Record a review of an implementation digest; approved at 2 reviewers from 2 orgs."""
        key = f"algorithm/{args.digest}"
        a = ctx.get(key) or {"name": args.name, "version": args.version, "reviews": [],
                             "approved": False}
        if (a["name"], a["version"]) != (args.name, args.version):
            raise ContractError(Code.CONFLICT, f"digest is {a['name']} {a['version']}")
        if any(r["member"] == ctx.caller.id for r in a["reviews"]):
            raise ContractError(Code.ALREADY_EXISTS, "already reviewed by this member")
        a["reviews"] = [*a["reviews"], {"member": ctx.caller.id, "org": ctx.caller.org,
                                        "height": ctx.height}]
        a["approved"] = len(a["reviews"]) >= 2 and len({r["org"] for r in a["reviews"]}) >= 2
        ctx.put(key, a)
        return {"approved": a["approved"]}

    @method(ResponseArgs, access=SITE_SERVICE)
    def respond(self, ctx: Context, args: ResponseArgs) -> Any:
        """A site records the hash of what it sent (or its refusal) for a recorded query."""
        q = ctx.get(f"query/{args.study}/{args.query_id}")
        if q is None:
            raise ContractError(Code.NOT_FOUND, f"no query {args.query_id}")
        if ctx.caller.org not in q["sites"]:
            raise ContractError(Code.FORBIDDEN, f"{ctx.caller.org} is not asked in this query")
        key = f"response/{args.study}/{args.query_id}/{ctx.caller.org}"
        if ctx.exists(key):
            raise ContractError(Code.ALREADY_EXISTS, "response already recorded")
        if (args.response_hash is None) != args.outcome.startswith("refused"):
            raise ContractError(Code.BAD_ARGS, "a released response needs its hash")
        ctx.put(key, {**args.model_dump(), "by": ctx.caller.id, "height": ctx.height})
        return {"ok": True}

    @method(ResultArgs, access=RESEARCHERS)
    def result(self, ctx: Context, args: ResultArgs) -> Any:
        """The released result's hash and credits, once per query."""
        s = _active(ctx, args.study)
        if ctx.caller.id != s["researcher"]:
            raise ContractError(Code.FORBIDDEN, f"only {s['researcher']} records results")
        if not ctx.exists(f"query/{args.study}/{args.query_id}"):
            raise ContractError(Code.NOT_FOUND, f"no query {args.query_id}")
        key = f"result/{args.study}/{args.query_id}"
        if ctx.exists(key):
            raise ContractError(Code.ALREADY_EXISTS, "result already recorded")
        ctx.put(key, {**args.model_dump(), "height": ctx.height})
        return {"ok": True}

    @method(ContributionArgs, access=RESEARCHERS)
    def contribution(self, ctx: Context, args: ContributionArgs) -> Any:
        """Per-site contribution (n, φ, its standard error, leave-one-out) and the revenue
        split, once per study. The split must use the whole pool and follow the declared rule:
        shares and revenue are recomputed from n and φ (``apportion``, ADR 0049) and a split
        off the rule is refused (``conflict``), as is a utility other than the declared one."""
        s = _active(ctx, args.study)
        sites = [x.site for x in args.shares]
        if sorted(sites) != sorted(s["sites"]):
            raise ContractError(Code.BAD_ARGS, "shares must name every study site once")
        paid = sum(x.revenue for x in args.shares)
        if paid != s["revenue_pool"]:
            raise ContractError(Code.BAD_ARGS, f"revenue split sums to {paid}, want "
                                f"{s['revenue_pool']}")
        if args.method == "exact" and any(x.phi_se_micro for x in args.shares):
            raise ContractError(Code.BAD_ARGS, "exact Shapley values have standard error 0")
        rule = s["contribution"]
        if args.utility != rule["utility"]:
            raise ContractError(Code.CONFLICT, f"utility {args.utility[:16]}…, the study "
                                f"declared {rule['utility'][:16]}…")
        off = apportion.split_problems(rule, s["revenue_pool"],
                                       [x.model_dump() for x in args.shares])
        if off:
            raise ContractError(Code.CONFLICT, f"split off the declared {rule['method']} rule: "
                                + "; ".join(off[:4]))
        if ctx.exists(f"contribution/{args.study}"):
            raise ContractError(Code.ALREADY_EXISTS, "contribution already recorded")
        ctx.put(f"contribution/{args.study}", {**args.model_dump(), "height": ctx.height,
                                               "rule": rule})
        return {"ok": True}
