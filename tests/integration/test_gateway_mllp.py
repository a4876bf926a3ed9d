"""The MLLP listener: framed HL7 v2 over a loopback socket, each message acknowledged, records
in the vault, a repeated delivery adding nothing."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.mllp import CR, EB, SB, MllpListener, ack
from medledger.gateway.pipeline import Gateway
from medledger.gateway.vault import Vault

pytestmark = [pytest.mark.integration, pytest.mark.vectors]
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "hl7v2"


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[tuple[MllpListener, Vault]]:
    vault = Vault(tmp_path / "v")
    lis = MllpListener(Gateway(vault, Pseudonymizer(PseudonymKey("k1", b"\x03" * 32))),
                       "hosp-a", anchor_every=0.0)
    loop = asyncio.new_event_loop()
    ready, stop = asyncio.Event(), asyncio.Event()
    t = threading.Thread(target=loop.run_until_complete,
                         args=(lis.serve("127.0.0.1", 0, ready, stop),), daemon=True)
    t.start()
    for _ in range(100):
        if lis.port:
            break
        threading.Event().wait(0.05)
    yield lis, vault
    loop.call_soon_threadsafe(stop.set)
    t.join(10)
    vault.close()


def _send(port: int, messages: list[bytes]) -> list[bytes]:
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        buf = b""
        for m in messages:
            s.sendall(SB + m + EB + CR)
            while EB + CR not in buf:
                chunk = s.recv(65536)
                assert chunk, "listener closed the connection"
                buf += chunk
            frame, buf = buf.split(EB + CR, 1)
            assert frame.startswith(SB)
            replies.append(frame[1:])
    return replies


def test_messages_are_ingested_and_acknowledged(listener: tuple[MllpListener, Vault]) -> None:
    lis, vault = listener
    msgs = [(VECTORS / n).read_bytes().lstrip(b"\xef\xbb\xbf").replace(b"\n", b"\r")
            for n in ("RDE-O11-01.hl7", "RDS-O13-01.hl7", "ADT-A01-01.hl7")]
    replies = _send(lis.port, [*msgs, msgs[0], b"\xff\xfe not hl7"])
    codes = [r.split(b"\r")[1].split(b"|")[1] for r in replies]
    assert codes == [b"AA", b"AA", b"AA", b"AA", b"AR"]
    control = msgs[0].split(b"\r")[0].split(b"|")[9]
    assert replies[0].split(b"\r")[1].split(b"|")[2] == control     # MSA-2 echoes MSH-10
    assert replies[0].startswith(b"MSH|^~\\&|")
    records = vault.rows("SELECT count(*) FROM records WHERE resource_type!='Patient'")[0][0]
    assert records == 2                                                 # RXE + RXD
    assert (lis.received, lis.accepted, lis.rejected) == (5, 4, 1)
    assert vault.rows("SELECT count(*) FROM ignored")[0][0] > 0


def test_ack_of_garbage_has_defaults() -> None:
    a = ack(b"garbage", "AR", "bad")
    assert a.startswith(b"MSH|^~\\&|") and b"MSA|AR||bad" in a
