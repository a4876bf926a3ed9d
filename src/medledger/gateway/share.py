"""The vault's shareable view: the current version of every de-identified resource, as FHIR
NDJSON, for the exchange and research features that read from the vault.

Each line is ``{"resource": …, "record_id", "version", "fingerprint", "batch_id"}`` — enough to
prove the record against the ledger with ``gateway proof`` — and nothing from the source
(file names, positions and run ids stay in the vault). Before a line is written it is scanned
for resident IDs (valid check digit) and mobile numbers; any hit stops the export with an error
naming the record, so a view with an identifier is never produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from medledger.gateway.errors import GatewayError
from medledger.gateway.scan import pattern_leaks
from medledger.gateway.vault import Vault


def shareable(vault: Vault, resource_type: str | None = None) -> Iterator[dict[str, Any]]:
    """Current versions of the vault's records (optionally of one resource type)."""
    sql = ("SELECT r.record_id, r.version, r.fingerprint, r.batch_id, r.body FROM heads h "
           "JOIN records r ON r.record_id = h.record_id AND r.version = h.version")
    params: tuple[Any, ...] = ()
    if resource_type:
        sql += " WHERE r.resource_type=?"
        params = (resource_type,)
    for r in vault.iter_rows(sql + " ORDER BY r.record_id", params):
        env = orjson.loads(vault.record_body(r[0], r[1], r[4]))
        yield {"resource": env["resource"], "record_id": r[0], "version": r[1],
               "fingerprint": r[2], "batch_id": r[3]}


def export(vault: Vault, out: Path, resource_type: str | None = None) -> int:
    """Write the shareable view to ``out`` (NDJSON); returns the number of lines."""
    n = 0
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("wb") as fh:
        for doc in shareable(vault, resource_type):
            line = orjson.dumps(doc)
            leaks = pattern_leaks(line.decode())
            if leaks:
                fh.close()
                tmp.unlink()
                raise GatewayError(f"record {doc['record_id']} holds an identifier pattern "
                                   f"{leaks}; nothing was exported")
            fh.write(line + b"\n")
            n += 1
    tmp.replace(out)
    return n
