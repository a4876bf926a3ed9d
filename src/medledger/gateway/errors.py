"""Errors and the fixed list of reason codes of the gateway.

Hierarchy::

    MedLedgerError            (medledger.errors)
    └── GatewayError           a profile, key, vault or input the gateway cannot use

Rows are never raised about: a bad row becomes a quarantine entry with a :class:`Reason` and its
source position, or a review item with a :class:`ReviewReason`. Both lists are fixed; a code is
never renamed, only added at the end.
"""

from __future__ import annotations

from enum import StrEnum

from medledger.errors import Code, MedLedgerError


class GatewayError(MedLedgerError):
    """A configuration, key, vault or file-level problem (not a row-level one)."""

    def __init__(self, message: str, code: Code = Code.BAD_ARGS) -> None:
        super().__init__(code, message)


class Reason(StrEnum):
    """Why a row, segment or whole file was quarantined."""

    ENCODING = "encoding"                    # the file does not decode in its declared encoding
    PARSE = "parse"                          # wrong field count, malformed CSV/HL7/JSON
    MISSING_KEY = "missing_key"              # no source record key or no patient identifier
    MISSING_VALUE = "missing_value"          # a required data element is empty
    INVALID_DATE = "invalid_date"            # not a date in any declared format, or impossible
    INVALID_IDENTIFIER = "invalid_identifier"  # e.g. a resident ID whose check digit fails
    INVALID_VALUE = "invalid_value"          # a value that is not a number / not in its value map
    IMPLAUSIBLE_VALUE = "implausible_value"  # outside the analyte's plausible range
    UNKNOWN_CODE = "unknown_code"            # a code that is not well-formed in its code system
    UNKNOWN_UNIT = "unknown_unit"            # a unit string the gateway does not know
    UNIT_CONFLICT = "unit_conflict"          # a known unit that cannot express this analyte
    INVALID_FHIR = "invalid_fhir"            # the built resource fails structural/own checks
    DUPLICATE_CONFLICT = "duplicate_conflict"  # same source key twice in a file, different content
    UNKNOWN_RESULT = "unknown_result"        # a qualitative lab result in no value map


REASON_TEXT: dict[Reason, str] = {
    Reason.ENCODING: "file does not decode in its declared encoding (quarantined whole)",
    Reason.PARSE: "row or segment cannot be parsed",
    Reason.MISSING_KEY: "source record key or patient identifier is missing",
    Reason.MISSING_VALUE: "a required data element is empty",
    Reason.INVALID_DATE: "date is not in a declared format or does not exist",
    Reason.INVALID_IDENTIFIER: "identifier fails its check digit",
    Reason.INVALID_VALUE: "value is not a number or not in its value map",
    Reason.IMPLAUSIBLE_VALUE: "value is outside the analyte's plausible range",
    Reason.UNKNOWN_CODE: "code is not well-formed in its code system",
    Reason.UNKNOWN_UNIT: "unit is not known",
    Reason.UNIT_CONFLICT: "unit cannot express this analyte",
    Reason.INVALID_FHIR: "resource fails FHIR structural or gateway checks",
    Reason.DUPLICATE_CONFLICT: "same source key appears twice with different content",
    Reason.UNKNOWN_RESULT: "qualitative lab result is in no value map (never guessed)",
}


class ReviewReason(StrEnum):
    """Why a term went to the review queue instead of being auto-accepted."""

    NO_EXACT_MATCH = "no_exact_match"        # only n-gram suggestions (never auto-accepted)
    NO_CANDIDATE = "no_candidate"            # nothing scored above the suggestion floor
    NO_STANDARD_EQUIVALENT = "no_standard_equivalent"  # e.g. a TCM diagnosis: never guessed
    UNKNOWN_EXTENSION = "unknown_extension"  # national extension code not in the edition table
    CODE_TEXT_CONFLICT = "code_text_conflict"  # code and term map to different concepts
    UNKNOWN_TEST = "unknown_test"            # lab test name not in the lab table


class RowRejected(Exception):
    """Raised while standardising one row; the pipeline turns it into a quarantine entry."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
