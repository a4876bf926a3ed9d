"""The gateway package's public surface and its fixed reason lists."""

from __future__ import annotations

import medledger.gateway as gateway
from medledger.gateway.errors import REASON_TEXT, Reason, ReviewReason

EXPORTS = {"GATEWAY_VERSION", "FileReport", "Gateway", "GatewayError", "Hl7Report", "Profile",
           "PseudonymKey", "Pseudonymizer", "Reason", "ReviewReason", "Vault", "evaluate",
           "generate", "load_profile", "prove", "verify"}


def test_public_surface_does_not_drift() -> None:
    assert set(gateway.__all__) == EXPORTS
    assert all(hasattr(gateway, name) for name in EXPORTS)


def test_reason_lists_are_fixed_and_described() -> None:
    assert [r.value for r in Reason] == [
        "encoding", "parse", "missing_key", "missing_value", "invalid_date",
        "invalid_identifier", "invalid_value", "implausible_value", "unknown_code",
        "unknown_unit", "unit_conflict", "invalid_fhir", "duplicate_conflict", "unknown_result"]
    assert set(REASON_TEXT) == set(Reason)
    assert [r.value for r in ReviewReason] == [
        "no_exact_match", "no_candidate", "no_standard_equivalent", "unknown_extension",
        "code_text_conflict", "unknown_test"]
