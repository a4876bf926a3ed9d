"""Subprocess for the crash test: submits forever, prints each acknowledged tx id, flushes."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from medledger.client.client import Client
from medledger.workspace import Workspace


def main(root: str, tag: str) -> None:
    ws = Workspace(Path(root))
    ring = ws.keyring()
    node = ws.node(max_block_txs=50, max_wait=0.002).start()
    gw = Client(node, node.chain_id, "hosp-a/gw", ring.signing["hosp-a/gw"])
    i = 0
    while True:
        raws = []
        for _ in range(40):
            rid = f"{tag}-{i}"
            raws.append(gw.build("registry", "register", {
                "record_id": rid, "record_type": "Encounter", "source_system": "HIS",
                "content_hash": hashlib.sha256(rid.encode()).hexdigest(), "schema_version": "1"}))
            i += 1
        for fut in node.submit_many(raws):
            receipt = fut.result(30)
            sys.stdout.write(receipt.tx_id.hex() + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
