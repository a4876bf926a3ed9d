"""Research platform: federated analytics where data stay at each site.

Sites compute aggregates on their own rows (``site``-side functions); the coordinator combines
them (``combine``/``fit`` functions). Modules:

* ``stats`` — counts, cross-tabulations, moments, histograms and exact binned quantiles;
* ``glm`` — gaussian / binomial / poisson GLM by federated IRLS (identical to pooled fitting);
* ``survival`` — Kaplan–Meier and Cox (Breslow) on a protocol time grid;
* ``dp``, ``dpglm``, ``dpcox`` — DP releases through OpenDP: the measurements, DP GLM (noisy
  sufficient statistics, noisy Newton) and DP Cox (per-interval sums, noisy Newton);
* ``disclosure`` — each site's disclosure-control policy and checks (DataSHIELD-like defaults);
* ``secagg`` — secure aggregation by pairwise masking (X25519 seeds) over fixed-point integers;
* ``contract`` — the ``studies`` contract: protocol fixed before data are touched, audit hashes;
* ``audit`` — hashing of query specs, responses and results;
* ``sitelog`` — a site's own append-only, hash-chained audit log;
* ``contribution`` — rows used, leave-one-out, Shapley value, revenue split.
* ``apportion`` — the revenue split under the declared rule, in integers (contract side).
* ``vault`` — a site reading its gateway vault under the consents on the ledger;
* ``variables`` — the variable map from vault records to one row per patient.
"""
