"""An MLLP listener: HL7 v2 messages over TCP into the gateway, each acknowledged.

MLLP framing (HL7 v2 Minimal Lower Layer Protocol): ``0x0B`` message ``0x1C 0x0D``. Every
framed message goes through :meth:`Gateway.ingest_hl7` exactly like a file and is answered with
an HL7 ``ACK``: ``MSA|AA`` when it was accounted for (mapped, quarantined, held for review or
listed as ignored — a repeated delivery of the same bytes is ``AA`` too: it adds nothing),
``MSA|AR`` when it could not be read at all (not HL7, not decodable). One run spans the
listener's life; pending records are anchored every ``anchor_every`` seconds and on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from medledger.gateway.pipeline import Gateway

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
MAX_MESSAGE = 8 * 1024 * 1024


def ack(message: bytes, code: str, text: str = "") -> bytes:
    """The ``ACK`` for ``message`` (fields taken from its MSH; defaults if it has none)."""
    first = message.lstrip(b"\xef\xbb\xbf").split(b"\r")[0].split(b"\n")[0]
    fields = first.decode("utf-8", "replace").split("|") if first.startswith(b"MSH") else []

    def f(n: int) -> str:                       # MSH-n is fields[n - 1] (MSH-1 is the "|")
        return fields[n - 1] if len(fields) >= n else ""

    trigger = f(9).split("^")[1] if "^" in f(9) else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    msh = "|".join(["MSH", "^~\\&", f(5), f(6), f(3), f(4), now, "", f"ACK^{trigger}^ACK",
                    f"ACK{f(10)}"[:20], f(11) or "P", f(12) or "2.5.1"])
    msa = "|".join(["MSA", code, f(10)] + ([text[:80]] if text else []))
    return (msh + "\r" + msa + "\r").encode()


class MllpListener:
    """Serves MLLP on ``host:port`` into ``gateway`` for ``site``."""

    def __init__(self, gateway: Gateway, site: str, source_system: str = "MLLP",
                 encoding: str = "utf-8", anchor_every: float = 5.0) -> None:
        self.gateway, self.site, self.source_system = gateway, site, source_system
        self.encoding, self.anchor_every = encoding, anchor_every
        self.lock = threading.Lock()
        self.received = 0
        self.accepted = 0
        self.rejected = 0
        self.port = 0
        self._spool = tempfile.TemporaryDirectory(prefix="medledger-mllp-")
        self._last_anchor = time.monotonic()

    def handle(self, message: bytes) -> bytes:
        """Ingest one message (thread-safe) and return its ACK."""
        with self.lock:
            self.received += 1
            path = Path(self._spool.name) / f"msg-{self.received:09d}.hl7"
            path.write_bytes(message)
            try:
                rep = self.gateway.ingest_hl7(path, self.site, self.source_system,
                                              self.encoding, f"{self.site}/mllp")
            finally:
                path.unlink(missing_ok=True)
            if rep.messages == 0 or any(f.status == "rejected" for f in rep.files):
                self.rejected += 1
                return ack(message, "AR", "message could not be read as HL7 v2")
            self.accepted += 1
            if time.monotonic() - self._last_anchor >= self.anchor_every:
                self.gateway.checkpoint()
                self._last_anchor = time.monotonic()
            return ack(message, "AA")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                with contextlib.suppress(asyncio.IncompleteReadError):
                    await reader.readuntil(SB)
                if reader.at_eof():
                    break
                body = await reader.readuntil(EB + CR)
                if len(body) > MAX_MESSAGE:
                    break
                reply = await asyncio.to_thread(self.handle, body[:-2])
                writer.write(SB + reply + EB + CR)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve(self, host: str, port: int, ready: asyncio.Event | None = None,
                    stop: asyncio.Event | None = None) -> None:
        server = await asyncio.start_server(self._client, host, port, limit=MAX_MESSAGE)
        self.port = server.sockets[0].getsockname()[1]
        try:
            async with server:
                if ready is not None:
                    ready.set()
                if stop is None:
                    await server.serve_forever()
                else:
                    await stop.wait()
        finally:                                # also on Ctrl-C (cancellation)
            with self.lock:
                self.gateway.finish()
            self._spool.cleanup()
