"""What the faces (CLI, HTTP API, demo, bench) call: open keys and vaults, connect to the
ledger, ingest files with their profiles, anchor, verify."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from medledger.client.client import Client
from medledger.consortium.bootstrap import Keyring
from medledger.gateway.anchor import Anchorer, LedgerAnchorer, PeerState
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.errors import GatewayError
from medledger.gateway.pipeline import FileReport, Gateway, Hl7Report
from medledger.gateway.profile import Profile, load_profile
from medledger.gateway.vault import Vault
from medledger.node.node import Node


def default_profile_path(path: Path) -> Path:
    """``export.csv`` → ``export.csv.toml`` (the synthetic hospitals keep profiles there)."""
    return path.with_name(path.name + ".toml")


def source_name(path: Path, prof: Profile) -> str:
    """How a file is named in outcomes, truth files and reports: ``<site>/<file name>``."""
    return f"{prof.profile.site}/{path.name}"


def gateway_member(node_keys: Sequence[str], site: str, member: str | None) -> str:
    if member is not None:
        return member
    for cand in (f"{site}/gateway", f"{site}/root"):
        if cand in node_keys:
            return cand
    raise GatewayError(f"the keyring has no {site}/gateway or {site}/root key; pass --member")


@contextmanager
def ledger(ws_dir: Path, site: str, member: str | None = None,
           node: Node | None = None) -> Iterator[LedgerAnchorer]:
    """An anchorer signing as ``member`` (default ``<site>/gateway`` or ``<site>/root``) on the
    embedded node of workspace ``ws_dir`` (started here unless ``node`` is given) — or, when
    ``ws_dir`` is a cluster peer's directory (``peer.json``, as ``cluster up`` lays it out),
    through that peer's HTTP API with the directory's keyring (``peer_ledger``)."""
    from medledger.workspace import Workspace

    if node is None and (ws_dir / "peer.json").is_file():
        url, ca = _peer_url(ws_dir)
        with peer_ledger(url, site, Keyring.load(ws_dir / "keyring.json"), member,
                         ca=ca) as anchorer:
            yield anchorer
        return
    ws = Workspace(ws_dir)
    ring = ws.keyring()
    who = gateway_member(list(ring.signing), site, member)
    if who not in ring.signing:
        raise GatewayError(f"no key for {who} in {ws.keyring_path}")
    if node is not None:
        yield LedgerAnchorer(Client(node, node.chain_id, who, ring.signing[who]), node.store)
        return
    with ws.node(max_block_txs=100, max_wait=0.005) as started:
        yield LedgerAnchorer(Client(started, started.chain_id, who, ring.signing[who]),
                             started.store)


@contextmanager
def peer_ledger(url: str, site: str, ring: Keyring, member: str | None = None, *,
                ca: str | None = None) -> Iterator[LedgerAnchorer]:
    """An anchorer signing as ``member`` (default ``<site>/gateway`` or ``<site>/root``)
    through the hospital's own cluster peer at ``url`` (its HTTP API; docs/cluster.md): batch
    roots are posted there, ordered with every organisation's transactions, and read back from
    that peer's state. ``ring`` holds the member's key (a peer directory's ``keyring.json``);
    ``ca`` the CA of an ``https://`` peer's certificate (default: the system's trust store)."""
    from medledger.client.http import HttpTransport

    who = gateway_member(list(ring.signing), site, member)
    if who not in ring.signing:
        raise GatewayError(f"no key for {who} in the keyring")
    with HttpTransport(url, who, ring.signing[who], ca=ca) as http:
        chain = str(http.health()["chain_id"])
        yield LedgerAnchorer(Client(http, chain, who, ring.signing[who]), PeerState(http))


def _peer_url(peer_dir: Path) -> tuple[str, str | None]:
    """(API base URL, CA file or None) of the peer configured in ``peer_dir``: HTTPS when the
    peer serves its API with a certificate, checked against ``http_tls_ca`` when given."""
    from medledger.cluster.local import PeerConfig

    cfg = PeerConfig.load(peer_dir / "peer.json")
    if not cfg.http_tls_cert:
        return f"http://{cfg.http_host}:{cfg.http_port}", None
    ca = None if cfg.http_tls_ca is None else str(peer_dir / cfg.http_tls_ca)
    return f"https://{cfg.http_host}:{cfg.http_port}", ca


def ingest_files(vault: Vault, key: PseudonymKey, files: Sequence[tuple[Path, Profile]],
                 anchorer: Anchorer | None = None, *, full_validation: bool = False,
                 batch_size: int = 20_000, progress: Callable[[int], None] | None = None
                 ) -> tuple[str, list[FileReport]]:
    """Ingest ``files`` in one run; returns (run id, one reconciliation per file)."""
    gw = Gateway(vault, Pseudonymizer(key), anchorer, full_validation=full_validation,
                 batch_size=batch_size, progress=progress)
    for path, prof in files:
        gw.ingest(path, prof, source_name(path, prof))
    return gw.run_id, gw.finish()


def ingest_export_dir(vault: Vault, key: PseudonymKey, files: Sequence[Path], site: str | None,
                      anchorer: Anchorer | None = None, *, profile: Path | None = None,
                      full_validation: bool = False,
                      progress: Callable[[int], None] | None = None, workers: int = 0
                      ) -> tuple[str, list[FileReport]]:
    """One run over a hospital's exports: files read with ``profile`` (default: the
    ``FILE.toml`` beside each) and HL7 v2 files (``*.hl7``, read as ``site``, default the
    profiled files' site); returns one reconciliation per file and mapped kind. ``workers``
    processes parse and prepare delimited files' rows (0: in this process)."""
    files = [p for p in files if p.suffix.lower() != ".toml"]    # a shell glob's profiles
    hl7 = [p for p in files if p.suffix.lower() == ".hl7"]
    profiled = load_profiles([p for p in files if p not in hl7], profile)
    if hl7 and site is None:
        if not profiled:
            raise GatewayError("HL7 v2 files need --site (no profiled file names the site)")
        site = profiled[0][1].profile.site
    gw = Gateway(vault, Pseudonymizer(key), anchorer, full_validation=full_validation,
                 progress=progress, workers=workers)
    try:
        for p, prof in profiled:
            gw.ingest(p, prof, source_name(p, prof))
        for p in hl7:
            assert site is not None
            gw.ingest_hl7(p, site, "HL7v2")
        return gw.run_id, gw.finish()
    finally:
        gw.close()                      # worker processes end with the run, also on errors


def ingest_message_files(vault: Vault, key: PseudonymKey, files: Sequence[Path], site: str,
                         source_system: str, anchorer: Anchorer | None = None, *,
                         fmt: str = "hl7", encoding: str = "utf-8"
                         ) -> tuple[str, list[Hl7Report]]:
    """Ingest HL7 v2 (``fmt="hl7"``) or FHIR (``"fhir"``) files in one run."""
    gw = Gateway(vault, Pseudonymizer(key), anchorer)
    if fmt == "hl7":
        reports = [gw.ingest_hl7(p, site, source_system, encoding) for p in files]
    else:
        reports = [gw.ingest_fhir(p, site, source_system) for p in files]
    gw.finish()
    return gw.run_id, reports


def load_profiles(paths: Sequence[Path], profile: Path | None) -> list[tuple[Path, Profile]]:
    out = []
    for p in paths:
        if not p.is_file():
            raise GatewayError(f"{p} is not a file")
        out.append((p, load_profile(profile or default_profile_path(p))))
    return out
