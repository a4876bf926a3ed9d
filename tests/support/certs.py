"""A throwaway certificate authority for TLS tests (keys and certificates made here)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(root: Path, *, server: str = "nats", clients: tuple[str, ...] = ("peer",),
            servers: tuple[str, ...] = (), dual: tuple[str, ...] = ()) -> None:
    """Write ca.pem, <server>.pem/.key (SAN 127.0.0.1, localhost) and <client>.pem/.key; more
    server certificates for ``servers``, and for ``dual`` certificates good for both ends of a
    connection (server and client authentication, with the SAN) — what a NATS route needs, as
    each server dials the others with its own certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("MedLedger test CA"))
          .issuer_name(_name("MedLedger test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for cn, usage in [(server, [ExtendedKeyUsageOID.SERVER_AUTH]),
                      *[(s, [ExtendedKeyUsageOID.SERVER_AUTH]) for s in servers],
                      *[(c, [ExtendedKeyUsageOID.CLIENT_AUTH]) for c in clients],
                      *[(d, both) for d in dual]]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
        if ExtendedKeyUsageOID.SERVER_AUTH in usage:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
        _write(root / cn, key, b.sign(ca_key, hashes.SHA256()))
