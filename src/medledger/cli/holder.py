"""The holder-gateway options shared by ``node start`` and ``peer run``: serve
``POST /v1/exchange/request`` from the hospital's gateway vault (``consent.serving``)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medledger.cli.common import console, fail
from medledger.errors import MedLedgerError

if TYPE_CHECKING:  # the CLI imports only what a command runs
    from fastapi import FastAPI

    from medledger.consortium.bootstrap import Keyring
    from medledger.node.node import Node

HolderVaultOpt: Path | None = typer.Option(
    None, "--holder-vault", help="Also serve POST /v1/exchange/request as the holder of "
    "this gateway vault: consent checked on this node's ledger, every decision recorded, "
    "records HPKE-sealed to the requester (docs/consent.md).")
HolderVaultKeyOpt: Path | None = typer.Option(
    None, "--holder-vault-key", envvar="MEDLEDGER_VAULT_KEY",
    help="With --holder-vault: the vault's data key file (default: VAULT/vault.key).")
HolderMemberOpt: str | None = typer.Option(
    None, "--holder-member", help="With --holder-vault: the member (gateway, data steward "
    "or org admin; its key from the keyring) that records the holder's decisions; its "
    "organisation is the holder (default: <org>/gateway, else <org>/root).")


def serve_holder(stack: ExitStack, api: FastAPI, node: Node, ring: Keyring, org: str,
                 vault: Path, vault_key: Path | None, member: str | None) -> None:
    """Open the vault holder (closed with ``stack``) and install it on ``api``; a setting that
    could never serve ends the command with the reason."""
    from medledger.api.routes_exchange import install_holder
    from medledger.consent.serving import open_vault_holder
    from medledger.gateway.service import gateway_member

    try:
        member_id = gateway_member(list(ring.signing), org, member)
        served = stack.enter_context(open_vault_holder(node, ring, member_id, vault, vault_key))
    except MedLedgerError as exc:
        fail(exc)
    install_holder(api, served.holder)
    console.print(f"holder gateway of [bold]{served.holder.ledger.org}[/] (records as "
                  f"{member_id}) from vault {vault}: POST /v1/exchange/request")
