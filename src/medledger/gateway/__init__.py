"""The hospital data gateway: messy HIS exports → standard, de-identified, provable records.

Pipeline (docs/gateway.md): read a source stream (CSV/TSV with a declared encoding, xlsx,
HL7 v2, FHIR) → standardise each row with a versioned source profile (columns, value maps,
dates, units, terminology) → build FHIR R4 resources and check them → pseudonymise and
date-shift → seal into the local vault with provenance → anchor fingerprints on the ledger in
Merkle batches. Bad rows are quarantined with a reason code; uncertain terms wait in a review
queue; every file gets a reconciliation.
"""
