"""A hospital's holder gateway served by its node: ``open_vault_holder``.

``medledger node start --holder-vault DIR --holder-member ORG/NAME`` opens the hospital's
gateway vault (``gateway.vault.Vault``, read through ``vault_source.VaultSource``) and the
member's signing key from the workspace keyring, and installs the resulting ``Holder`` on the
node's app (``api.routes_exchange.install_holder``): ``POST /v1/exchange/request`` then
decides on the node's ledger, records every decision as that member and releases the
patient's anchored records from the vault, HPKE-sealed to the requesting organisation.

Everything that would make every request fail is refused here, once, with a clear error: a
directory without ``vault.db``, a missing vault key (``Vault`` would create a new one, and
nothing could be opened with it), a member without a key in the keyring, or one that is not an
active member of a role the ``access`` contract lets record a holder's decisions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from medledger.consent.access import RECORDER_ROLES as RECORDERS
from medledger.consent.exchange import Clock, Holder, LedgerMember
from medledger.consent.vault_source import VaultSource
from medledger.consortium.bootstrap import Keyring
from medledger.consortium.model import member_key
from medledger.errors import Code, MedLedgerError
from medledger.gateway.vault import Vault
from medledger.node.node import Node


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class VaultHolder:
    """A ``Holder`` releasing records from ``vault``; close it (or use ``with``) when done."""

    holder: Holder
    vault: Vault
    member_id: str

    def close(self) -> None:
        self.vault.close()

    def __enter__(self) -> VaultHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_vault_holder(node: Node, ring: Keyring, member_id: str, vault_dir: Path,
                      vault_key: Path | None = None, clock: Clock = now_ms) -> VaultHolder:
    """The holder of ``member_id``'s organisation on ``node``, its records from the vault in
    ``vault_dir`` (key file ``vault_key``, default ``vault_dir/vault.key``). Raises
    ``MedLedgerError`` (``not_found``, ``unknown_signer``, ``forbidden``) before opening
    anything that cannot serve."""
    if not (vault_dir / "vault.db").is_file():
        raise MedLedgerError(Code.NOT_FOUND, f"{vault_dir} holds no gateway vault (vault.db)")
    key_path = vault_key or vault_dir / "vault.key"
    if not key_path.is_file():
        raise MedLedgerError(Code.NOT_FOUND, f"no vault key at {key_path}")
    if member_id not in ring.signing:
        raise MedLedgerError(Code.UNKNOWN_SIGNER, f"the keyring has no key of {member_id}")
    raw = node.store.get_state(f"consortium/{member_key(member_id)}")
    member = None if raw is None else orjson.loads(raw)
    if member is None or member.get("status") != "active":
        raise MedLedgerError(Code.UNKNOWN_SIGNER, f"{member_id} is not an active member on "
                             f"{node.chain_id}")
    if member.get("role") not in RECORDERS:
        raise MedLedgerError(Code.FORBIDDEN, f"{member_id} is a {member.get('role')}; the "
                             f"holder records as one of {', '.join(sorted(RECORDERS))}")
    vault = Vault(vault_dir, key_path)
    ledger = LedgerMember(node, member_id, ring.signing[member_id], clock)
    return VaultHolder(Holder(ledger, VaultSource(vault)), vault, member_id)
