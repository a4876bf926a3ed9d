"""A peer's PostgreSQL store over TLS, as docs/deployment.md configures it: ``sslmode=verify-full``
with the consortium CA in ``sslrootcert``.

The machine's own PostgreSQL has no TLS, so this test starts a throwaway server (Debian's
``initdb``/``pg_ctl``, run as the ``postgres`` user) on a free loopback port with ``ssl = on``
and a ``pg_hba.conf`` that accepts only TLS connections. It checks that a store opened from such
a location commits and reads back a block, that a connection without TLS is refused by the
server, and that ``verify-full`` refuses a server certificate from another CA.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from medledger.ledger.store.base import BlockCommit, StoredBlock
from medledger.ledger.store.open import open_store
from medledger.ledger.store.postgres import PostgresStore
from tests.support.certs import make_ca
from tests.support.services import free_port, missing

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        missing(f"PostgreSQL server binaries ({name}) not installed")
    return found[-1]


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def tls_server() -> Iterator[tuple[int, Path]]:
    """(port, directory holding ca.pem) of a TLS-only PostgreSQL server; stopped afterwards."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        missing("starting a throwaway PostgreSQL server needs root (to run it as postgres)")
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        missing("no postgres user on this machine")
        raise
    root = Path(tempfile.mkdtemp(prefix="medledger-pgtls-"))
    root.chmod(0o755)
    data = root / "data"
    make_ca(root, server="pg", clients=())
    for f in ("pg.pem", "pg.key"):
        os.chown(root / f, pg.pw_uid, pg.pw_gid)
    (root / "pg.key").chmod(0o600)
    os.chown(root, pg.pw_uid, pg.pw_gid)
    port = free_port()
    started = False
    try:
        r = _as_postgres(initdb, "-D", str(data), "-U", "postgres", "-A", "trust")
        assert r.returncode == 0, r.stderr
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{root}'\nssl = on\n"
                       f"ssl_cert_file = '{root / 'pg.pem'}'\n"
                       f"ssl_key_file = '{root / 'pg.key'}'\nfsync = off\n")
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n")
        r = _as_postgres(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "start")
        assert r.returncode == 0, r.stderr + (root / "log").read_text(errors="replace")
        started = True
        yield port, root
    finally:
        if started:
            _as_postgres(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _block0() -> BlockCommit:
    return BlockCommit(StoredBlock(0, b"h" * 32, b"{tls}", 0, 0), [], {"config": b"over tls"},
                       [], (0, []))


def test_store_over_verified_tls(tls_server: tuple[int, Path], tmp_path: Path) -> None:
    port, root = tls_server
    base = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    store = open_store(f"{base}?sslmode=verify-full&sslrootcert={root / 'ca.pem'}&schema=ml_tls")
    assert isinstance(store, PostgresStore)
    try:
        store.init(b"genesis over tls", _block0())
        assert store.genesis() == b"genesis over tls"
        assert store.get_state("config") == b"over tls"
    finally:
        store.close()
    # the session really is encrypted: the server reports TLS for it
    with psycopg.connect(f"{base}?sslmode=verify-full&sslrootcert={root / 'ca.pem'}") as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)
    # without TLS the server's pg_hba refuses the connection
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba"):
        open_store(f"{base}?sslmode=disable&schema=ml_tls")
    # verify-full with another CA refuses the server's certificate
    other = tmp_path / "other"
    other.mkdir()
    make_ca(other, server="x", clients=())
    with pytest.raises(psycopg.OperationalError, match=r"SSL error|certificate"):
        open_store(f"{base}?sslmode=verify-full&sslrootcert={other / 'ca.pem'}&schema=ml_tls")
