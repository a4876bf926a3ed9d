"""Creating a consortium: organisation keys, a genesis document, and a keyring on disk.

Used by ``medledger init`` and by the demo, tests and benchmarks. In a real deployment each
organisation generates its own keys and only sends the public halves to whoever assembles
genesis; ``Keyring`` then holds only that organisation's secrets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medledger.consortium.genesis import Genesis, validate
from medledger.crypto.keys import AgreementKey, SigningKey, b64, unb64


@dataclass
class Keyring:
    """Secret keys by member id (Ed25519) and by organisation (X25519)."""

    signing: dict[str, SigningKey] = field(default_factory=dict)
    agreement: dict[str, AgreementKey] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the keyring as JSON readable only by its owner (mode 0600)."""
        doc = {
            "signing": {m: b64(k.seed) for m, k in sorted(self.signing.items())},
            "agreement": {o: b64(k.secret) for o, k in sorted(self.agreement.items())},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        doc = json.loads(path.read_text())
        return cls(
            {m: SigningKey(unb64(s, length=32)) for m, s in doc["signing"].items()},
            {o: AgreementKey(unb64(s, length=32)) for o, s in doc["agreement"].items()},
        )


def new_consortium(
    chain_id: str,
    orgs: Sequence[tuple[str, str, str]],
    time_ms: int,
    members: Sequence[tuple[str, str]] = (),
    policies: dict[str, object] | None = None,
) -> tuple[Genesis, Keyring]:
    """Fresh keys for ``orgs`` (id, display name, kind) and genesis ``members`` (id, role)."""
    ring = Keyring()
    org_docs = []
    for org_id, name, kind in orgs:
        sk, ak = SigningKey.generate(), AgreementKey.generate()
        ring.signing[f"{org_id}/root"] = sk
        ring.agreement[org_id] = ak
        org_docs.append({"id": org_id, "name": name, "kind": kind,
                         "sign_key": b64(sk.public), "kex_key": b64(ak.public)})
    member_docs = []
    for member_id, role in members:
        sk = SigningKey.generate()
        ring.signing[member_id] = sk
        member_docs.append({"id": member_id, "role": role, "key": b64(sk.public),
                            "not_after": None})
    doc = {"chain_id": chain_id, "time": time_ms, "orgs": org_docs,
           "members": member_docs, "policies": dict(policies or {})}
    validate(doc)
    return Genesis(doc), ring
