"""The hospital data gateway: messy HIS exports → standard, de-identified, provable records.

Pipeline (docs/gateway.md): read a source stream (CSV/TSV with a declared encoding, xlsx,
HL7 v2, FHIR) → standardise each row with a versioned source profile (columns, value maps,
dates, units, terminology) → build FHIR R4 resources and check them → pseudonymise and
date-shift → seal into the local vault with provenance → anchor fingerprints on the ledger in
Merkle batches. Bad rows are quarantined with a reason code; uncertain terms wait in a review
queue; every file gets a reconciliation.
"""

from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.errors import GatewayError, Reason, ReviewReason
from medledger.gateway.evaluate import evaluate
from medledger.gateway.pipeline import GATEWAY_VERSION, FileReport, Gateway, Hl7Report
from medledger.gateway.profile import Profile, load_profile
from medledger.gateway.synth import generate
from medledger.gateway.vault import Vault
from medledger.gateway.verify import prove, verify

__all__ = [
    "GATEWAY_VERSION",
    "FileReport",
    "Gateway",
    "GatewayError",
    "Hl7Report",
    "Profile",
    "PseudonymKey",
    "Pseudonymizer",
    "Reason",
    "ReviewReason",
    "Vault",
    "evaluate",
    "generate",
    "load_profile",
    "prove",
    "verify",
]
