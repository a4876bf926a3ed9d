"""Ordering on NATS JetStream: streams, an in-order reader, the fenced sequencer, the peer feed.

See ``wire.py`` for what the streams carry. Three roles share one NATS connection per peer:

* **submit** — ``ClusterOrderer.put`` publishes admitted transactions to the TXS stream with
  ``Nats-Msg-Id`` (retried with the same id until acknowledged, so a retry is stored once);
* **sequence** — the ``Sequencer`` holding the lease (a key in a JetStream KV bucket with a
  TTL) reads TXS in order, cuts blocks and appends each cut with
  ``Nats-Expected-Last-Sequence``. The lease is only for liveness: safety comes from the fence, so
  two peers that both believe they lead still cannot both append block *h* (the loser gets error
  10071 and re-reads its position). The stream-level header is used, not the subject-level one,
  which races on nats-server 2.9.10 (nats-server#4320);
* **feed** — every peer reads BLOCKS and TXS from its own height on, checks that cuts are
  contiguous and well formed, and hands the node one ``Batch`` per block. The node re-verifies
  every transaction (decoding, signatures, keys, nonces) while executing: nothing the engine
  delivers is trusted.

A ``Link`` runs the NATS client's event loop on its own thread; the node's threads call into it.
Every wait on a stream ends when the stream announces a new leader (``elections.py``), and the
sequencing peer keeps the TXS and BLOCKS leaders on different servers (``placement.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import queue
import socket
import ssl
import threading
import time as _time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api

from medledger.errors import Code, MedLedgerError, RejectedError
from medledger.ordering.elections import Elected, Elections, watch
from medledger.ordering.placement import LeaderSpreader
from medledger.ordering.solo import Batch, wall_ms
from medledger.ordering.wire import (
    BlockCut,
    Names,
    frame_txs,
    range_digest,
    txs_msg_id,
    unframe_txs,
)

log = logging.getLogger("medledger.ordering")
T = TypeVar("T")
WRONG_LAST_SEQUENCE = 10071  # JetStream err_code for a failed Nats-Expected-Last-Sequence
STREAM_IN_USE = 10058
NO_PLACEMENT = 10005
LEASE_KEY = "leader"
# a publish (and each retry of it) waits this long for its ack. A shorter wait for retries
# (0.4 s) was tried and withdrawn: no shorter failover could be shown, and with it a peer whose
# server vanished silently stalled in 3 of 7 partition tests (ADR 0056, update 2)
PUBLISH_WAIT = 1.0
# a transient NATS condition: the publish is retried with the same message id
_TRANSIENT = (nats.errors.TimeoutError, nats.errors.NoRespondersError,
              nats.errors.ConnectionClosedError, nats.js.errors.NoStreamResponseError,
              nats.errors.ConnectionReconnectingError, nats.errors.StaleConnectionError,
              asyncio.TimeoutError)


def tls_context(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A client TLS context that trusts ``ca`` and, for mutual TLS, presents ``cert``/``key``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class Link:
    """A NATS connection on a private event-loop thread (TLS when given a context)."""

    def __init__(self, servers: Sequence[str], name: str, *, timeout: float = 2.0,
                 tls: ssl.SSLContext | None = None, connect_within: float = 60.0) -> None:
        """Connect (retrying) for up to ``connect_within`` seconds, then give up with
        ``node_unavailable`` naming the last error; once connected, reconnect forever."""
        self.servers, self.name, self.timeout, self.tls = list(servers), name, timeout, tls
        self._last_error: Exception | None = None
        self.elections = Elections()  # wakes waits on a stream when it elects a leader
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"nats-{name}",
                                        daemon=True)
        self._thread.start()
        attempt = self.spawn(self._connect())
        try:
            self.nc: NATS = attempt.result(connect_within)
        except BaseException as exc:
            attempt.cancel()
            with contextlib.suppress(Exception):  # let the cancelled connect (and the client's
                self.call(_cancel_tasks(), timeout=5)  # own tasks) finish before the loop stops
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self.loop.close()
            why = self._last_error or exc
            raise MedLedgerError(Code.NODE_UNAVAILABLE, f"cannot reach NATS at "
                                 f"{', '.join(self.servers)}: {why!r}") from None
        self.js: JetStreamContext = self.nc.jetstream(timeout=timeout)

    async def _connect(self) -> NATS:
        async def quiet(exc: Exception) -> None:
            self._last_error = exc
            log.debug("nats %s: %s", self.name, exc)

        nc: NATS | None = None

        async def reconnected() -> None:
            if nc is not None:
                fail_dead_socket(nc)

        nc = await nats.connect(
            servers=self.servers, name=self.name, max_reconnect_attempts=-1,
            reconnect_time_wait=0.25, connect_timeout=5, allow_reconnect=True,
            error_cb=quiet, ping_interval=2, max_outstanding_pings=3, tls=self.tls,
            reconnected_cb=reconnected,
        )
        fail_dead_socket(nc)
        with contextlib.suppress(Exception):
            await watch(nc, self.elections)
        return nc

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.call(self.nc.close(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


DEAD_SOCKET_MS = 8000  # unacknowledged bytes older than this fail the client's TCP connection


def fail_dead_socket(nc: NATS) -> None:
    """Have the kernel fail the client's connection once bytes sent on it go unacknowledged for
    ``DEAD_SOCKET_MS`` (``TCP_USER_TIMEOUT``, Linux). A server that vanishes without a reset
    (a cut link) is otherwise noticed only by the client's pings, and nats-py queues a PING
    behind its flusher: with the socket's send buffer full, the flusher never returns and the
    client never notices (ADR 0056). A failed socket makes it reconnect elsewhere."""
    writer = getattr(getattr(nc, "_transport", None), "_bare_io_writer", None)
    sock = writer.get_extra_info("socket") if writer is not None else None
    if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_SOCKET_MS)


async def _cancel_tasks() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def ensure_streams(js: JetStreamContext, names: Names, replicas: int = 1,
                         duplicate_window: float = 120.0, lease_ttl: float = 3.0) -> None:
    """Create the chain's streams and lease bucket if missing (idempotent, race-safe)."""
    streams = [
        (names.txs_stream, [names.txs_subject]),
        (names.blocks_stream, [names.blocks_subject]),
        (names.cosig_stream, [names.cosig_subject()]),
    ]
    deadline = _time.monotonic() + 30  # a new cluster may still be electing its meta leader
    for stream, subjects in streams:
        cfg = api.StreamConfig(
            name=stream, subjects=subjects, num_replicas=replicas,
            storage=api.StorageType.FILE, duplicate_window=duplicate_window,
            deny_delete=True, deny_purge=True, max_msg_size=8 * 1024 * 1024,
        )
        try:
            await _retry(f"create stream {stream}", partial(js.add_stream, cfg), deadline)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_IN_USE:
                raise
    with contextlib.suppress(nats.js.errors.BadRequestError):
        await _retry("create lease bucket", lambda: js.create_key_value(
            bucket=names.lease_bucket, ttl=lease_ttl, history=1, replicas=replicas), deadline)


async def _retry(what: str, make: Callable[[], Awaitable[T]], deadline: float, *,
                 elections: Elections | None = None, stream: str = "") -> T:
    """Retry a transient NATS failure until ``deadline`` (monotonic); with ``elections``, an
    attempt is given up as soon as ``stream`` elects a leader and made again at once, and a
    pause between attempts ends when it does."""
    delay = 0.05
    pause = partial(elections.pause, stream) if elections is not None else asyncio.sleep
    while True:
        try:
            if elections is None:
                return await make()
            return await elections.within(stream, make(), None)
        except Elected as exc:
            if _time.monotonic() > deadline:
                raise RejectedError(Code.NODE_UNAVAILABLE, f"{what}: {exc!r}") from None
        except _TRANSIENT as exc:
            if _time.monotonic() + delay > deadline:
                raise RejectedError(Code.NODE_UNAVAILABLE, f"{what}: {exc!r}") from None
            await pause(delay)
            delay = min(delay * 2, 0.25)
        except (nats.js.errors.ServiceUnavailableError, nats.js.errors.BadRequestError) as exc:
            # no stream leader (an election), or 10005 "no suitable peers for placement": a
            # restarted server has not rejoined the meta group yet; anything else is final
            if isinstance(exc, nats.js.errors.BadRequestError) and exc.err_code != NO_PLACEMENT:
                raise
            if _time.monotonic() + delay > deadline:
                raise RejectedError(Code.NODE_UNAVAILABLE, f"{what}: {exc!r}") from None
            await pause(delay)
            delay = min(delay * 2, 0.25)


@dataclass(frozen=True)
class Entry:
    seq: int
    data: bytes


async def leader_range(js: JetStreamContext, stream: str, first: int, last: int,
                       *, timeout: float = 2.0, width: int = 64,
                       elections: Elections | None = None) -> list[Entry]:
    """Messages ``first..last`` of ``stream`` as its leader holds them (``STREAM.MSG.GET`` is
    answered by the stream leader, never by a follower's replica), ``width`` at a time; each
    group of requests given up after ``timeout`` s, or (``Elected``) when the stream elects a
    leader meanwhile."""
    out: list[Entry] = []
    elections = elections or Elections()
    for lo in range(first, last + 1, width):
        seqs = range(lo, min(last, lo + width - 1) + 1)
        msgs = await elections.within(stream, asyncio.gather(
            *(js.get_msg(stream, seq) for seq in seqs)), timeout)
        for seq, msg in zip(seqs, msgs, strict=True):
            if msg.seq != seq or msg.data is None:
                raise RejectedError(Code.ORDERING_FAULT, f"{stream}: asked for message {seq}, "
                                    f"got {msg.seq}")
            out.append(Entry(seq, msg.data))
    return out


class StreamReader:
    """Reads one stream strictly in order from ``next_seq``.

    An ephemeral pull consumer is created at the reader's own position and thrown away and
    re-created at the same position on any trouble (a gap, a lost server, a consumer that
    disappeared with its server). The position lives here, never in the engine.

    A consumer reads the replica of whichever server holds it, and a follower's replica may lag
    (on nats-server 2.9.10 a healed server's replica was seen to stay behind for minutes): when
    the consumer has been quiet while the stream holds more, the reader takes the next messages
    from the stream leader (``leader_range``) and re-creates the consumer, so it always moves on.
    Creating a consumer needs the cluster's meta leader as well as the stream's, so it runs in
    the background: while it cannot be done (the meta group electing), the reader goes on
    reading from the stream leader. Waits on the stream end when it elects a leader
    (``Elections``).
    """

    PROBE_AFTER = 0.3  # seconds without a message before checking the stream for more
    # JetStream API calls of the reader give up sooner than the link's default: during an
    # election each attempt would otherwise hold the reader for the whole timeout after the
    # new leader is already there; a failed attempt is simply retried
    API_TIMEOUT = 0.75
    LEADER_POLL = 0.05  # without a consumer: how often the leader is asked for more
    ADOPT_WITHIN = 4096  # a consumer created this far behind the reader is still taken

    def __init__(self, js: JetStreamContext, stream: str, subject: str, next_seq: int, *,
                 elections: Elections | None = None) -> None:
        self.js, self.stream, self.subject, self.next_seq = js, stream, subject, next_seq
        self.elections = elections or Elections()
        self._sub: Any = None
        self._creating: asyncio.Task[Any] | None = None
        self._created_at = 0  # the position the consumer being created starts from
        self._awaited = False  # a read has waited for the consumer being created
        self._retry_at = 0.0  # no new consumer before this (monotonic), after a failure
        self._stale = False
        self._last_msg = _time.monotonic()
        self.read_from_leader = 0  # messages read from the leader without a working consumer

    async def _reset(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _consumer(self) -> bool:
        """Whether a consumer is ready; start creating one (in the background) if not."""
        if self._sub is not None:
            return True
        task = self._creating
        if task is not None and task.done():
            self._creating = None
            failed = task.cancelled() or task.exception() is not None
            if failed:
                log.debug("reader %s at %d: no consumer: %r", self.stream, self.next_seq,
                          None if task.cancelled() else task.exception())
                self._retry_at = _time.monotonic() + 0.2
            elif 0 <= self.next_seq - self._created_at <= self.ADOPT_WITHIN:
                self._sub = task.result()  # (what it repeats is skipped as redelivered)
                return True
            else:
                self._drop(task.result())
        if self._creating is None and _time.monotonic() >= self._retry_at:
            self._created_at, self._awaited = self.next_seq, False
            self._creating = asyncio.ensure_future(self.elections.within(
                self.stream, self.js.pull_subscribe(
                    self.subject, durable=None, stream=self.stream,
                    config=api.ConsumerConfig(
                        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                        opt_start_seq=self.next_seq, ack_policy=api.AckPolicy.NONE,
                        inactive_threshold=30.0, num_replicas=1, mem_storage=True,
                    ),
                ), self.API_TIMEOUT))
        return False

    @staticmethod
    def _drop(sub: Any) -> None:
        asyncio.ensure_future(sub.unsubscribe()).add_done_callback(
            lambda f: f.cancelled() or f.exception())

    def _abandon(self) -> None:
        """Give up the consumer being created; one created all the same is dropped."""
        task, self._creating = self._creating, None
        if task is not None:
            task.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception() is not None
                                   or self._drop(t.result()))

    async def read(self, max_msgs: int = 256, timeout: float = 0.5) -> list[Entry]:
        if self._stale:
            self._stale = False
            await self._reset()
            self._abandon()
        if not self._consumer():
            if self._creating is not None and not self._awaited:
                # a new consumer normally takes milliseconds: wait for it, once per attempt
                self._awaited = True
                await asyncio.wait({self._creating}, timeout=min(timeout, 0.25))
            if not self._consumer():
                return await self._probe(max_msgs, quiet=min(timeout, self.LEADER_POLL))
        try:
            msgs = await self._sub.fetch(max_msgs, timeout=timeout)
        except TimeoutError:
            # (nats-py raises its own TimeoutError or a bare asyncio one for a quiet fetch.)
            # A quiet stream, or a consumer that is gone or stuck (its server died, the client
            # reconnected elsewhere): after a while, ask the stream whether there is something
            # to read; if there is, read it from the leader and start over with a new consumer
            if _time.monotonic() - self._last_msg > self.PROBE_AFTER:
                return await self._probe(max_msgs)
            return []
        except Exception as exc:
            log.debug("reader %s at %d: %r; re-creating", self.stream, self.next_seq, exc)
            await self._reset()
            return await self._probe(max_msgs, quiet=0.1)
        out: list[Entry] = []
        for m in msgs:
            seq = m.metadata.sequence.stream
            if seq < self.next_seq:
                continue  # redelivered
            if seq > self.next_seq:
                log.info("reader %s: gap %d..%d; re-creating", self.stream, self.next_seq, seq)
                await self._reset()
                break
            out.append(Entry(seq, m.data))
            self.next_seq += 1
        if out:
            self._last_msg = _time.monotonic()
        return out

    async def _probe(self, max_msgs: int, quiet: float = 0.0) -> list[Entry]:
        """Ask the stream's leader how far the stream goes and, if further than this reader,
        read the next messages from it (dropping the consumer, which failed to deliver them).
        Nothing new, or no answer: wait up to ``quiet`` seconds (less if the stream elects a
        leader meanwhile) and return nothing."""
        self._last_msg = _time.monotonic()
        stream_last = 0
        for _ in range(3):  # an attempt given up for an election is made again at once
            try:
                info = await self.elections.within(self.stream, self.js.stream_info(self.stream),
                                                   self.API_TIMEOUT)
                stream_last = int(info.state.last_seq)
                break
            except Elected:
                continue
            except Exception as exc:  # no leader yet: nothing new can be stored meanwhile
                log.debug("reader %s at %d: probe failed: %r", self.stream, self.next_seq, exc)
                break
        if stream_last < self.next_seq:
            if quiet:
                await self.elections.pause(self.stream, quiet)
            return []
        if self._sub is not None:
            log.info("reader %s at %d: no messages from the consumer while the stream holds %d; "
                     "reading from the leader and re-creating", self.stream, self.next_seq,
                     stream_last)
            await self._reset()
        return await self._from_leader(min(stream_last, self.next_seq + max_msgs - 1))

    async def _from_leader(self, last: int) -> list[Entry]:
        try:
            out = await leader_range(self.js, self.stream, self.next_seq, last,
                                     timeout=self.API_TIMEOUT * 2, elections=self.elections)
        except Exception as exc:
            log.debug("reader %s at %d: leader read failed: %r", self.stream, self.next_seq, exc)
            return []
        self.read_from_leader += len(out)
        self.next_seq = last + 1
        self._last_msg = _time.monotonic()
        return out

    def restart(self, next_seq: int) -> None:
        """Go on from ``next_seq`` with a new consumer (the old one is dropped on next read)."""
        self.next_seq = next_seq
        self._stale = True

    async def close(self) -> None:
        self._abandon()
        await self._reset()


async def last_cut(js: JetStreamContext, names: Names) -> tuple[int, BlockCut | None]:
    """(height of the last block in the stream, its cut)."""
    info = await js.stream_info(names.blocks_stream)
    height = int(info.state.last_seq)
    if height == 0:
        return 0, None
    msg = await js.get_msg(names.blocks_stream, height)
    assert msg.data is not None
    return height, BlockCut.decode(msg.data)


class Sequencer:
    """Cuts blocks from the TXS stream while it holds the lease; fenced on every append."""

    LAPSE_GRACE = 1.0  # seconds a lapsed lease is left to the peer seen holding it

    def __init__(
        self,
        js: JetStreamContext,
        names: Names,
        name: str,
        *,
        max_txs: int = 2000,
        max_wait: float = 0.05,
        lease_ttl: float = 3.0,
        clock: Callable[[], int] = wall_ms,
        elections: Elections | None = None,
    ) -> None:
        self.js, self.names, self.name = js, names, name
        self.elections = elections or Elections()
        self.max_txs, self.max_wait, self.lease_ttl = max_txs, max_wait, lease_ttl
        self._clock = clock
        self.leading = False
        self.appended = 0
        self.fenced = 0
        self.diverged = 0  # cuts whose range the consumer served differently from the leader
        self._rev = 0  # the lease's revision from the last renewal
        self._saw_other = False  # seen the lease held by another sequencer
        self._lapsed_since: float | None = None  # the lease seen lapsed (expired) since

    async def _acquire(self, kv: Any) -> int | None:
        """Take or renew the lease; the KV revision to renew against, or None.

        A lease released by its holder (deleted) or never held is taken at once. One that
        lapsed by its TTL after this peer saw another hold it is left to that holder for
        ``LAPSE_GRACE`` seconds more: when the KV's own stream was electing a leader for longer
        than the TTL, the holder is alive and re-creates the key as soon as the KV answers
        (``_keep_lease``), and a handover would only add a new sequencer's start to the pause.
        A holder that died is replaced after TTL + grace."""
        name = self.name.encode()
        try:
            entry = await kv.get(LEASE_KEY)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError) as exc:
            # nats-py reports a delete marker (a release) as "not found" with its op set; a
            # key removed by its TTL leaves no marker
            entry = None
            if self._saw_other and exc.op is None:
                now = _time.monotonic()
                self._lapsed_since = self._lapsed_since or now
                if now - self._lapsed_since < self.LAPSE_GRACE:
                    return None
        except Exception:
            return None
        if entry is not None:
            self._lapsed_since = None
            if entry.value != name:
                self._saw_other = True
                return None
            with contextlib.suppress(Exception):  # ours from before a restart
                return int(await kv.update(LEASE_KEY, name, last=entry.revision))
            return None
        try:
            rev = int(await kv.create(LEASE_KEY, name))
        except Exception:  # another was quicker, or the KV is electing
            return None
        self._lapsed_since = None
        return rev

    async def _still_ours(self, kv: Any) -> int:
        """The lease's revision if it still names this sequencer; else raise to step down."""
        entry = await kv.get(LEASE_KEY)
        if entry.value != self.name.encode():
            raise nats.js.errors.KeyWrongLastSequenceError("the lease is held by another")
        return int(entry.revision)

    async def run(self, stop: asyncio.Event) -> None:
        kv: Any = None
        while not stop.is_set():
            try:
                if kv is None:
                    kv = await self.js.key_value(self.names.lease_bucket)
                try:
                    rev = await self.elections.within(self.names.lease_stream,
                                                      self._acquire(kv), None)
                except Elected:
                    continue
                if rev is None:  # held by another (or KV electing): poll so a lapse is seen soon
                    await _sleep_or_stop(stop, min(0.25, self.lease_ttl / 3))
                    continue
                self.leading = True
                log.info("%s leads sequencing", self.name)
                await self._lead(kv, rev, stop)
            except Exception as exc:  # keep trying: NATS may be electing a leader
                log.warning("sequencer %s: %r", self.name, exc)
                await _sleep_or_stop(stop, 0.25)
            finally:
                self.leading = False

    async def _lead(self, kv: Any, rev: int, stop: asyncio.Event) -> None:
        height, cut = await last_cut(self.js, self.names)
        reader = StreamReader(self.js, self.names.txs_stream, self.names.txs_subject,
                              1 if cut is None else cut.last + 1, elections=self.elections)
        last_time = 0 if cut is None else cut.time
        self._rev = rev
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(kv, lost))
        pending: list[Entry] = []
        count, first_at = 0, 0.0
        try:
            while not stop.is_set():
                if lost.is_set():
                    raise RejectedError(Code.FENCED, f"{self.name}: the lease is held by another")
                now = _time.monotonic()
                due = pending and (count >= self.max_txs or now >= first_at + self.max_wait)
                if not due:
                    wait = self.max_wait if not pending else max(0.001,
                                                                 first_at + self.max_wait - now)
                    got = await reader.read(512, timeout=min(wait, 0.25) if pending else 0.25)
                    for e in got:
                        if not pending:
                            first_at = _time.monotonic()
                        pending.append(e)
                        count += e.data.count(b"\n") + 1
                    continue
                # cut at a message boundary, at least one message
                take, n = 0, 0
                while take < len(pending) and (take == 0 or n < self.max_txs):
                    n += pending[take].data.count(b"\n") + 1
                    take += 1
                # the cut pins the leader's copy of the range: a consumer on a follower may
                # have served a lagging or diverged replica, and every peer will check the
                # range it reads against this digest
                try:
                    held = await leader_range(self.js, self.names.txs_stream, pending[0].seq,
                                              pending[take - 1].seq,
                                              timeout=StreamReader.API_TIMEOUT,
                                              elections=self.elections)
                except Elected:  # the leader is there now: at once
                    continue
                except Exception as exc:  # no leader (an election): try the cut again soon
                    log.info("sequencer %s: cannot read TXS %d..%d from the leader: %r",
                             self.name, pending[0].seq, pending[take - 1].seq, exc)
                    await _sleep_or_stop(stop, 0.05)
                    continue
                if [e.data for e in held] != [e.data for e in pending[:take]]:
                    self.diverged += 1
                    log.warning("sequencer %s: TXS %d..%d as read differ from the leader's "
                                "copy; cutting the leader's and re-reading", self.name,
                                held[0].seq, held[-1].seq)
                    reader.restart(held[-1].seq + 1)
                    pending, take = held, len(held)  # the rest is read again
                last_time = max(last_time, self._clock())
                new = BlockCut(held[0].seq, held[-1].seq, last_time, self.name,
                               range_digest(e.data for e in held))
                await self._append(height, new)
                height += 1
                self.appended += 1
                pending = pending[take:]
                count = count - n if pending else 0  # (after a divergence nothing is left)
                first_at = _time.monotonic() if pending else 0.0
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await reader.close()
            if stop.is_set():  # hand over quickly on a clean shutdown
                with contextlib.suppress(Exception):
                    await kv.delete(LEASE_KEY, last=self._rev)

    async def _keep_lease(self, kv: Any, lost: asyncio.Event) -> None:
        """Renew the lease every third of its TTL, beside the cut loop (a KV election never
        holds up cutting); set ``lost`` once the lease is seen held by another.

        A renewal that cannot reach the KV is retried every 0.25 s for as long as it takes:
        while the KV cannot take a renewal it cannot hand the lease to anyone else either, and
        if it lapsed meanwhile and another peer took it, the first renewal after says so (and
        any cut this sequencer tries first is fenced). Safety never rests on the lease."""
        name, wait = self.name.encode(), StreamReader.API_TIMEOUT
        stream = self.names.lease_stream
        within = self.elections.within
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            while True:
                try:
                    try:
                        self._rev = int(await within(
                            stream, kv.update(LEASE_KEY, name, last=self._rev), wait))
                    except nats.js.errors.KeyWrongLastSequenceError:
                        # a renewal stored with its ack lost, or the lease lapsed: still ours
                        # if the key holds our name; taken again if it is gone
                        try:
                            self._rev = await within(stream, self._still_ours(kv), wait)
                        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                            self._rev = int(await within(
                                stream, kv.create(LEASE_KEY, name), wait))
                    break
                except nats.js.errors.KeyWrongLastSequenceError:
                    log.info("sequencer %s: the lease is held by another; stepping down",
                             self.name)
                    lost.set()
                    return
                except Elected:  # the KV has a leader again: renew at once
                    continue
                except Exception as exc:  # the KV electing a leader: keep sequencing
                    log.info("sequencer %s: lease renewal failed (%r); retrying", self.name,
                             exc)
                    await self.elections.pause(stream, 0.25)

    async def _append(self, height: int, cut: BlockCut) -> None:
        headers = {"Nats-Msg-Id": cut.msg_id, "Nats-Expected-Last-Sequence": str(height)}
        payload = cut.encode()
        stream = self.names.blocks_stream
        while True:
            try:
                ack = await self.elections.within(stream, self.js.publish(
                    self.names.blocks_subject, payload, headers=dict(headers),
                    timeout=PUBLISH_WAIT), None)
            except Elected:  # same msg id: a stored first attempt is not repeated
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    self.fenced += 1
                    raise RejectedError(Code.FENCED, f"{self.name} cannot append block "
                                        f"{height + 1}: {exc.description}") from None
                if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                    await self.elections.pause(stream, 0.1)
                    continue
                raise
            except _TRANSIENT:
                await self.elections.pause(stream, 0.1)  # same msg id, as above
                continue
            if ack.seq != height + 1:
                raise RejectedError(Code.FENCED, f"block {height + 1} stored at {ack.seq}")
            return


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


Preparer = Callable[[list[bytes]], list[Any]]  # raw txs -> node items (undecodable ones dropped)


class ClusterOrderer:
    """The node's orderer in a cluster: ``put`` submits to TXS, ``next_batch`` yields blocks.

    ``prepare`` turns raw transactions from the stream into the node's items, dropping bytes
    that do not decode (the same decision on every peer, since it depends on the bytes alone);
    it runs on a worker thread, ahead of execution. ``prepare_behind``, if given, does the same
    for blocks read while the peer is ``BEHIND`` cuts or more behind the stream (catching up;
    the node then checks them in its worker processes, ADR 0062). This peer's own submissions
    are reused as admitted. ``on_lost`` is told about transactions that could not be submitted;
    ``on_duplicate`` about those JetStream dropped as a copy of a message already in the stream
    (a client's retry through another peer): the feed may have passed that copy already, so
    the node answers such waiters from its store.
    """

    BEHIND = 8  # cuts read at once that mark a peer catching up

    def __init__(
        self,
        link: Link,
        names: Names,
        *,
        start_height: int,
        prepare: Preparer,
        prepare_behind: Preparer | None = None,
        sequencer: Sequencer | None = None,
        capacity: int = 100_000,
        submit_timeout: float = 15.0,
        feed_depth: int = 32,
        prepare_depth: int = 4,
    ) -> None:
        self.link, self.names, self.prepare = link, names, prepare
        self.prepare_behind = prepare_behind or prepare
        self.sequencer = sequencer
        self.capacity, self.submit_timeout = capacity, submit_timeout
        self.on_lost: Callable[[list[bytes], MedLedgerError], None] = lambda ids, exc: None
        self.on_duplicate: Callable[[list[bytes]], None] = lambda ids: None
        self.on_fault: Callable[[MedLedgerError], None] = lambda exc: None
        self._blocks: queue.Queue[Batch[Any] | MedLedgerError] = queue.Queue(feed_depth)
        self.prepare_depth = prepare_depth  # blocks being prepared at once, ahead of the node
        self._inflight = 0
        self._local: dict[bytes, Any] = {}  # tx id -> this peer's admitted item, until fed
        self._lock = threading.Lock()
        self._closed = False
        self.height = start_height  # last block handed to the node
        self.stream_height = start_height  # last block seen in the stream
        self.range_rereads = 0  # blocks whose range was taken from the leader (digest mismatch)
        self.cut_rereads = 0  # reads of BLOCKS whose cuts differed from the leader's copy
        self.mismatch: int | None = None  # a block whose range matches no copy read so far
        self._stop = asyncio.Event()
        self._tasks = [link.spawn(self._feed(start_height))]
        self.placement: LeaderSpreader | None = None
        if sequencer is not None:
            self._tasks.append(link.spawn(sequencer.run(self._stop)))
            # while this peer sequences, one server never leads both TXS and BLOCKS (ADR 0061)
            self.placement = LeaderSpreader(link.nc, link.js, names, link.elections,
                                            lambda: sequencer.leading)
            self._tasks.append(link.spawn(self.placement.run(self._stop)))

    # -- node-facing (thread) side --------------------------------------------------------

    def free(self) -> int:
        with self._lock:
            return self.capacity - self._inflight

    def put(self, items: Sequence[Any]) -> None:
        """Submit admitted items (with ``.tx.raw`` and ``.tx.tx_id``) as one TXS message."""
        if self._closed:
            raise RuntimeError("orderer closed")
        if not items:
            return
        with self._lock:
            self._inflight += len(items)
        raws = [a.tx.raw for a in items]
        ids = [a.tx.tx_id for a in items]
        with self._lock:  # the feed reuses these (already verified at admission)
            for tid, a in zip(ids, items, strict=True):
                self._local[tid] = a
            # a tx NATS deduplicated against a copy the feed already passed never comes back:
            # bound the map (an evicted entry only costs a re-decode)
            while len(self._local) > 2 * self.capacity:
                self._local.pop(next(iter(self._local)))
        fut = self.link.spawn(self._publish(raws, ids))
        fut.add_done_callback(lambda f: self._published(f, ids))

    def _published(self, fut: Future[bool], ids: list[bytes]) -> None:
        exc = fut.exception()
        if exc is None and fut.result():
            self.on_duplicate(ids)
        elif exc is not None:
            with self._lock:
                self._inflight -= len(ids)
                for tid in ids:
                    self._local.pop(tid, None)
            err = exc if isinstance(exc, MedLedgerError) else RejectedError(
                Code.NODE_UNAVAILABLE, f"submission failed: {exc!r}")
            self.on_lost(ids, err)

    def committed(self, n: int) -> None:
        """The node committed ``n`` of this peer's own submissions."""
        with self._lock:
            self._inflight = max(0, self._inflight - n)

    def next_batch(self, timeout: float | None = None) -> Batch[Any] | None:
        """The next block; None on timeout, or once closed and drained."""
        deadline = None if timeout is None else _time.monotonic() + timeout
        while True:
            wait = 0.2 if deadline is None else min(0.2, deadline - _time.monotonic())
            try:
                item = self._blocks.get(timeout=max(wait, 0.0001))
                break
            except queue.Empty:
                if self._closed or (deadline is not None and _time.monotonic() >= deadline):
                    return None
        if isinstance(item, MedLedgerError):
            raise item
        return item

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.link.loop.call_soon_threadsafe(self._stop.set)
        for t in self._tasks:
            with contextlib.suppress(Exception):
                t.result(timeout=10)

    # -- event-loop side -------------------------------------------------------------------

    async def _publish(self, raws: list[bytes], ids: list[bytes]) -> bool:
        """Publish one TXS message; True if JetStream dropped it as a duplicate."""
        payload = frame_txs(raws)
        headers = {"Nats-Msg-Id": txs_msg_id(ids)}
        deadline = _time.monotonic() + self.submit_timeout
        stream, elections = self.names.txs_stream, self.link.elections
        ack = await _retry("submit", lambda: self.link.js.publish(
            self.names.txs_subject, payload, headers=dict(headers), timeout=PUBLISH_WAIT),
            deadline, elections=elections, stream=stream)
        return bool(ack.duplicate)

    async def _feed(self, start_height: int) -> None:
        """Read cuts and their transactions; prepare up to ``prepare_depth`` blocks at once
        (their signatures verify in parallel, e.g. while a peer catches up) and hand them to
        the node strictly in order."""
        names, js = self.names, self.link.js
        elections = self.link.elections
        blocks = StreamReader(js, names.blocks_stream, names.blocks_subject, start_height + 1,
                              elections=elections)
        txs: StreamReader | None = None
        prev_last: int | None = None
        if start_height > 0:
            while not self._stop.is_set():
                try:
                    msg = await js.get_msg(names.blocks_stream, start_height)
                    assert msg.data is not None
                    prev_last = BlockCut.decode(msg.data).last
                    break
                except MedLedgerError as exc:
                    await self._fault(exc)
                    return
                except Exception as exc:
                    log.debug("feed start: %r", exc)
                    await _sleep_or_stop(self._stop, 0.2)
        buffered: list[Entry] = []
        loop = asyncio.get_running_loop()
        preparing: collections.deque[tuple[int, int, asyncio.Future[list[Any]]]] = \
            collections.deque()
        try:
            while not self._stop.is_set():
                # many cuts at once while behind; while at the head a cut arrives alone
                got = await blocks.read(256, timeout=0.25)
                behind = len(got) >= self.BEHIND  # at the head, cuts arrive one or two at once
                if got:
                    confirmed = await self._confirm_cuts(got, blocks)
                    if confirmed is None:
                        return
                    got = confirmed
                for entry in got:
                    try:
                        cut = BlockCut.decode(entry.data)
                        expected = 1 if prev_last is None else prev_last + 1
                        if cut.first != expected and not (prev_last is None and start_height > 0):
                            raise MedLedgerError(
                                Code.ORDERING_FAULT, f"block {entry.seq} starts at tx message "
                                f"{cut.first}, want {expected}")
                    except MedLedgerError as exc:
                        # the blocks before it first: every peer halts at the same height
                        while preparing:
                            if not await self._deliver(*preparing.popleft()):
                                return
                        await self._fault(exc)
                        return
                    self.stream_height = max(self.stream_height, entry.seq)
                    if txs is None:
                        txs = StreamReader(js, names.txs_stream, names.txs_subject, cut.first,
                                           elections=elections)
                    buffered = [e for e in buffered if e.seq >= cut.first]
                    while (buffered[-1].seq < cut.last) if buffered else (cut.last >= cut.first):
                        if self._stop.is_set():
                            return
                        buffered.extend(await txs.read(1024, timeout=0.25))
                    held = [e for e in buffered if e.seq <= cut.last]
                    buffered = buffered[len(held):]
                    if range_digest(e.data for e in held) != cut.digest:
                        # what this peer's consumer served is not what was cut: never execute
                        # it; take the range from the stream leader and start a new consumer
                        # (the blocks before it first: they are not held up by this one)
                        while preparing:
                            if not await self._deliver(*preparing.popleft()):
                                return
                        got_held = await self._leader_copy(entry.seq, cut)
                        if got_held is None:
                            return
                        held, buffered = got_held, []
                        txs.restart(cut.last + 1)
                    raws = [raw for e in held for raw in unframe_txs(e.data)]
                    preparing.append((entry.seq, cut.time,
                                      loop.run_in_executor(None, self._items, raws,
                                                           behind)))
                    prev_last = cut.last
                    # hand over finished blocks; wait for the oldest only when enough are
                    # in flight
                    while preparing and (preparing[0][2].done()
                                         or len(preparing) >= self.prepare_depth):
                        if not await self._deliver(*preparing.popleft()):
                            return
                while preparing:  # nothing more to read for now: hand over the rest
                    if not await self._deliver(*preparing.popleft()):
                        return
        finally:
            for _, _, fut in preparing:
                fut.cancel()
            await blocks.close()
            if txs is not None:
                await txs.close()

    async def _confirm_cuts(self, got: list[Entry], blocks: StreamReader) -> list[Entry] | None:
        """The cuts ``got`` as the BLOCKS leader holds them (one request per cut, 64 in
        flight): a follower's replica could serve a cut that was never committed, and a cut
        decides what a block holds. Retried until the leader answers; None when stopping."""
        while not self._stop.is_set():
            try:
                held = await leader_range(self.link.js, self.names.blocks_stream, got[0].seq,
                                          got[-1].seq, timeout=StreamReader.API_TIMEOUT,
                                          elections=self.link.elections)
            except Elected:  # the leader is there now: at once
                continue
            except Exception as exc:  # no leader (an election): ask again soon
                log.debug("cuts %d..%d: leader read failed: %r", got[0].seq, got[-1].seq, exc)
                await _sleep_or_stop(self._stop, 0.05)
                continue
            if [e.data for e in held] != [e.data for e in got]:
                self.cut_rereads += 1
                log.warning("cuts %d..%d as served differ from the BLOCKS leader's copy; "
                            "using the leader's", got[0].seq, got[-1].seq)
                blocks.restart(got[-1].seq + 1)
            return held
        return None

    async def _leader_copy(self, height: int, cut: BlockCut) -> list[Entry] | None:
        """Block ``height``'s range as the TXS leader holds it, once it matches the cut's
        digest; retried (the block is not executed meanwhile) until then. None when stopping."""
        self.range_rereads += 1
        log.warning("block %d: TXS %d..%d as served differ from the cut; reading the leader's "
                    "copy", height, cut.first, cut.last)
        delay, warned = 0.1, _time.monotonic()
        while not self._stop.is_set():
            try:
                held = await leader_range(self.link.js, self.names.txs_stream, cut.first,
                                          cut.last, elections=self.link.elections)
                if range_digest(e.data for e in held) == cut.digest:
                    self.mismatch = None
                    return held
                why = "the leader's copy differs from the cut too"
            except Exception as exc:
                why = repr(exc)
            self.mismatch = height
            if _time.monotonic() - warned > 10:
                warned = _time.monotonic()
                log.error("block %d: TXS %d..%d still do not match the cut (%s); not executing "
                          "it", height, cut.first, cut.last, why)
            await _sleep_or_stop(self._stop, delay)
            delay = min(delay * 2, 2.0)
        return None

    async def _deliver(self, height: int, time: int, prepared: asyncio.Future[list[Any]]) -> bool:
        """Queue block ``height`` for the node once prepared; False when stopping."""
        items = await prepared
        batch: Batch[Any] = Batch(items, time, height)
        while not self._stop.is_set():
            try:
                self._blocks.put_nowait(batch)
                self.height = height
                return True
            except queue.Full:
                await asyncio.sleep(0.005)
        return False

    def _items(self, raws: list[bytes], behind: bool = False) -> list[Any]:
        """Items in stream order: this peer's own admitted ones, the rest prepared."""
        with self._lock:  # (a peer that submitted nothing, e.g. one catching up, skips hashing)
            local = [self._local.pop(hashlib.sha256(r).digest(), None) for r in raws] \
                if self._local else [None] * len(raws)
        foreign = [r for r, mine in zip(raws, local, strict=True) if mine is None]
        if not foreign:
            return local
        prepared = iter((self.prepare_behind if behind else self.prepare)(foreign))
        out = []
        for raw, mine in zip(raws, local, strict=True):
            if mine is not None:
                out.append(mine)
                continue
            item = next(prepared, None)  # prepare keeps order; dropped ones are missing
            if item is not None and item.tx.raw != raw:  # ``raw`` itself was dropped
                prepared = itertools.chain([item], prepared)
                continue
            if item is not None:
                out.append(item)
        return out

    async def _fault(self, exc: MedLedgerError) -> None:
        log.error("ordering fault: %s", exc)
        self.on_fault(exc)
        while not self._stop.is_set():
            try:
                self._blocks.put_nowait(exc)
                return
            except queue.Full:
                await asyncio.sleep(0.01)
