"""A node's working directory: genesis, keys, store and node settings in one folder.

Layout::

    DIR/genesis.json   canonical genesis document (shared by every organisation)
    DIR/keyring.json   secret keys (mode 0600). ``medledger init`` writes every organisation's
                       keys here for a development consortium; in production each organisation
                       keeps only its own.
    DIR/node.json      {"org": "<org id that signs checkpoints>", "store": "ledger.db"}
    DIR/ledger.db      the SQLite store
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.consortium.bootstrap import Keyring, new_consortium
from medledger.consortium.genesis import Genesis
from medledger.errors import Code, MedLedgerError
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.node.node import Node

DEFAULT_ORGS: list[tuple[str, str, str]] = [
    ("hosp-a", "Riverside General Hospital", "hospital"),
    ("hosp-b", "Lakeside University Hospital", "hospital"),
    ("hosp-c", "Hillview Community Hospital", "hospital"),
    ("cdc", "Provincial Center for Disease Control", "cdc"),
    ("research", "National Clinical Research Centre", "research"),
    ("pharmacy", "Shared TCM Pharmacy", "pharmacy"),
    ("insurer", "Mutual Health Insurance", "insurer"),
    ("regulator", "Health Commission", "regulator"),
]


class WorkspaceError(MedLedgerError):
    pass


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    @property
    def keyring_path(self) -> Path:
        return self.root / "keyring.json"

    @property
    def config(self) -> dict[str, Any]:
        path = self.root / "node.json"
        if not path.exists():
            raise WorkspaceError(Code.NOT_FOUND, f"{self.root} is not a medledger workspace "
                                 "(run `medledger init` first)")
        cfg: dict[str, Any] = json.loads(path.read_text())
        return cfg

    def genesis(self) -> Genesis:
        return Genesis.load(self.genesis_path.read_bytes())

    def keyring(self) -> Keyring:
        return Keyring.load(self.keyring_path)

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.root / self.config["store"])

    def node(self, **kw: Any) -> Node:
        ring, org = self.keyring(), self.config["org"]
        if f"{org}/root" not in ring.signing:
            raise WorkspaceError(Code.NOT_FOUND, f"keyring has no root key of {org}")
        signer = (org, ring.signing[f"{org}/root"])
        return Node.create(self.store(), self.genesis(), default_registry(), signer=signer, **kw)

    @classmethod
    def init(
        cls,
        root: Path,
        chain_id: str,
        orgs: Sequence[tuple[str, str, str]] = DEFAULT_ORGS,
        members: Sequence[tuple[str, str]] = (),
        node_org: str | None = None,
    ) -> Workspace:
        """Create keys, genesis and an empty store (block 0) in a new directory."""
        if (root / "node.json").exists():
            raise WorkspaceError(Code.ALREADY_EXISTS, f"{root} already holds a workspace")
        root.mkdir(parents=True, exist_ok=True)
        genesis, ring = new_consortium(chain_id, orgs, time.time_ns() // 1_000_000, members)
        (root / "genesis.json").write_bytes(genesis.encoded)
        ring.save(root / "keyring.json")
        (root / "node.json").write_text(
            json.dumps({"org": node_org or orgs[0][0], "store": "ledger.db"}, indent=1)
        )
        ws = cls(root)
        ws.node().stop()
        return ws
