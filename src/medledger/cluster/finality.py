"""Cosignature exchange between peers: witnessing, finality and equivocation alarms.

After each durable block a peer (1) hands its own signed checkpoint to its witness, which checks
it extends the last checkpoint it cosigned (consistency proof from the peer's store), persists it
and only then cosigns; (2) publishes the note with its cosignature line on the COSIG stream
(subject ``…cosig.<org>``). Every peer reads that stream in order and, for each message:

* checks the log signature and the cosignature against the organisation's genesis key;
* if it has the block, compares the checkpoint body with its own: equal → the cosignature is
  stored (``Store.add_cosignatures``) and finality recomputed; different → the two notes are kept
  as portable ``Equivocation`` evidence (``Store.set_local``) and an alarm names the first
  height at which that organisation's view differs from ours;
* if it has not reached that block yet, it keeps the message until it has.

A checkpoint is final once ``quorum(n)`` (default ⌈2n/3⌉) of the ``n`` witnessing organisations
cosigned it; ``final`` is the newest such (size, height).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from medledger.crypto.keys import SigningKey
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader
from medledger.ledger.checkpoint import CheckpointError, check_note, key_id, parse_body, split_note
from medledger.ledger.cosignature import attach, check_cosignatures
from medledger.ledger.equivocation import Equivocation, peer_evidence_key
from medledger.ledger.finality import quorum
from medledger.ledger.store.base import Store
from medledger.ledger.witness import Witness, WitnessError
from medledger.ordering.jetstream import Link, StreamReader, _sleep_or_stop
from medledger.ordering.wire import Names

log = logging.getLogger("medledger.finality")
POSITION_KEY = "cosig/next_seq"
# blocks the node is behind the stream from which its witness cosigns only the newest
# checkpoint reached (consistency is still proven from the last one it cosigned)
CATCH_UP_LAG = 8


@dataclass
class Alarm:
    org: str  # whose checkpoint disagrees with ours
    height: int  # first height at which it differs
    evidence: Equivocation


@dataclass
class FinalityState:
    final_size: int = 0
    final_height: int = 0
    alarms: list[Alarm] = field(default_factory=list)
    cosigned_height: int = 0  # newest block this peer's own witness cosigned


class Exchange:
    """One peer's side of the cosignature exchange (runs on the link's event loop)."""

    def __init__(
        self,
        link: Link,
        names: Names,
        store: Store,
        *,
        org: str,
        key: SigningKey,
        org_keys: Mapping[str, bytes],
        witnesses: Sequence[str] | None = None,
        needed: int | None = None,
        on_alarm: Callable[[Alarm], None] | None = None,
    ) -> None:
        self.link, self.names, self.store, self.org = link, names, store, org
        self.origin = f"medledger/{names.chain}"
        self.org_keys = dict(org_keys)
        self.witnesses = sorted(witnesses or org_keys)
        self.witness_keys = {w: self.org_keys[w] for w in self.witnesses}
        self.needed = quorum(len(self.witnesses)) if needed is None else needed
        self.witness = Witness(org, key, store, {self.origin: self.org_keys},
                               alarm=lambda ev: None)
        self._verifiers = {(n, key_id(n, pk)): pk for n, pk in self.org_keys.items()}
        self.state = FinalityState()
        self.on_alarm = on_alarm or (lambda a: None)
        self._alarmed: set[str] = set()
        self._pending: dict[int, list[tuple[str, bytes]]] = {}  # size -> (org, note) waiting
        self._counts: dict[int, set[str]] = {}
        self._cosigner = ThreadPoolExecutor(1, thread_name_prefix="cosign")
        self._newest: BlockHeader | None = None  # newest durable block handed to the witness
        self._published_size = 0  # largest log size whose cosignature of ours is stored
        self.behind: Callable[[], int] = lambda: 0  # blocks the node is behind the stream
        self._saved_at = 0.0
        self._lock = threading.Lock()
        self._stop = asyncio.Event()
        raw = store.get_local(POSITION_KEY)
        self._task = link.spawn(self._read(int(raw) if raw else 1))
        latest = self.witness.latest(self.origin)
        if latest is not None:
            self.state.cosigned_height = _height(parse_body(split_note(latest)[0]))

    # -- own checkpoints -----------------------------------------------------------------

    def block_durable(self, header: BlockHeader) -> None:
        """Node hook: witness and publish this block's checkpoint (off the commit thread)."""
        self._newest = header
        self._cosigner.submit(self._cosign_own, header)

    def _cosign_own(self, header: BlockHeader) -> None:
        """Witness, persist and publish ``header``'s checkpoint. While the node replays a
        backlog (``CATCH_UP_LAG`` blocks or more behind the stream) a checkpoint a newer block
        has already superseded is skipped: the witness proves consistency from the last one it
        cosigned to the newest (RFC 9162 §2.1.4), so skipping sizes weakens no check; at the
        head every block's checkpoint is cosigned, so the peers' cosigned sizes coincide."""
        if header is not self._newest and self.behind() >= CATCH_UP_LAG:
            return
        stored = self.store.checkpoint(header.log_size)
        if stored is None:
            return
        note = stored[2]
        latest = self.witness.latest(self.origin)
        old = 0 if latest is None else parse_body(split_note(latest)[0]).size
        proof = merkle.consistency_proof(old, header.log_size, self.store) \
            if 0 < old < header.log_size else []
        try:
            line = self.witness.add_checkpoint(old, proof, note)
        except WitnessError as exc:  # our own store no longer extends what we cosigned
            log.error("witness %s refused its own checkpoint at height %d: %s", self.org,
                      header.height, exc)
            return
        self.state.cosigned_height = header.height
        message = attach(note, [line])
        self.link.spawn(self._publish(header.log_size, message))
        self._retry_pending()  # others' cosignatures that arrived before this block

    async def _publish(self, size: int, message: bytes) -> None:
        """Publish our cosignature for ``size``, retrying (backoff up to 1 s) until it is
        stored, the exchange closes, or one of ours for a larger size is out (cosigning a
        larger tree vouches for its prefixes). It used to give up after 50 tries: when the
        COSIG stream refused for ~10 s (leaderless after a partition healed) and the chain then
        went quiet, the newest checkpoint never became final (tests/cluster/test_netns.py,
        test_cosig_outage.py)."""
        headers = {"Nats-Msg-Id": f"{self.org}-{size}-{hash(message) & 0xFFFFFFFF:x}"}
        delay, tries = 0.1, 0
        while not self._stop.is_set() and size > self._published_size:
            try:
                await self.link.js.publish(self.names.cosig_subject(self.org), message,
                                           headers=headers, timeout=2.0)
                self._published_size = max(self._published_size, size)
                return
            except Exception as exc:
                tries += 1
                (log.warning if tries == 20 else log.debug)(
                    "publish cosignature for size %d (try %d, retrying): %r", size, tries, exc)
                await _sleep_or_stop(self._stop, delay)
                delay = min(1.0, delay * 2)

    # -- everybody's cosignatures ----------------------------------------------------------

    async def _read(self, start: int) -> None:
        reader = StreamReader(self.link.js, self.names.cosig_stream, self.names.cosig_subject(),
                              start, elections=self.link.elections)
        try:
            while not self._stop.is_set():
                got = await reader.read(256, timeout=0.25)
                if got:
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._handle_many, [e.data for e in got], reader.next_seq)
                elif self._pending:
                    await asyncio.get_running_loop().run_in_executor(None, self._retry_pending)
                    await _sleep_or_stop(self._stop, 0.05)
        finally:
            await reader.close()

    def _handle_many(self, messages: list[bytes], next_seq: int) -> None:
        with self._lock:
            for m in messages:
                self._handle(m)
            self._retry_pending_locked()
            # the position only spares re-reading after a restart (handling is idempotent),
            # so it is saved at most once a second rather than fsynced per message batch
            now = time.monotonic()
            if now - self._saved_at >= 1.0:
                self.store.set_local(POSITION_KEY, str(next_seq).encode())
                self._saved_at = now

    def _retry_pending(self) -> None:
        with self._lock:
            self._retry_pending_locked()

    def _retry_pending_locked(self) -> None:
        if not self._pending:
            return
        top = self.store.compact()[0]
        for size in sorted(s for s in self._pending if s <= top):
            for org, note in self._pending.pop(size):
                self._compare(org, note)

    def _handle(self, message: bytes) -> None:
        try:
            text, signers, _ = check_note(message, self._verifiers)
            cp = parse_body(text)
            valid = check_cosignatures(message, self.witness_keys).valid
        except CheckpointError as exc:
            log.warning("ignoring a malformed cosignature message: %s", exc)
            return
        cosigners = [c.name for c in valid if c.name in signers]
        if cp.origin != self.origin or not cosigners:
            return
        org = cosigners[0]
        if cp.size > self.store.compact()[0]:
            self._pending.setdefault(cp.size, []).append((org, message))
            return
        self._compare(org, message)

    def _compare(self, org: str, message: bytes) -> None:
        text = split_note(message)[0]
        cp = parse_body(text)
        mine = self.store.checkpoint(cp.size)
        if mine is None:
            return  # a size between our checkpoints: we checkpoint every block, so not ours
        my_text = split_note(mine[2])[0]
        if my_text != text:
            self._raise(org, mine[2], message)
            return
        line = next(ln for ln in check_cosignatures(message, self.witness_keys).valid
                    if ln.name == org)
        self.store.add_cosignatures(cp.size, {org: line.line.encode("utf-8")})
        seen = self._counts.setdefault(cp.size, set())
        seen.add(org)
        if len(seen) >= self.needed and cp.size > self.state.final_size:
            self.state.final_size, self.state.final_height = cp.size, mine[1]
            for s in [s for s in self._counts if s <= cp.size]:
                del self._counts[s]

    def _raise(self, org: str, mine: bytes, theirs: bytes) -> None:
        if org in self._alarmed:
            return
        try:
            ev = Equivocation.from_notes(mine, theirs)
        except CheckpointError as exc:  # EquivocationError, or a note that does not parse
            log.warning("checkpoint of %s differs but is not evidence: %s", org, exc)
            return
        height = _height(parse_body(split_note(theirs)[0]))
        self._alarmed.add(org)
        alarm = Alarm(org, height, ev)
        self.store.set_local(peer_evidence_key(org), ev.to_json())  # kept before it is shown
        self.state.alarms.append(alarm)
        log.error("ALARM: %s's checkpoint differs from ours at height %d (evidence kept)", org,
                  height)
        self.on_alarm(alarm)

    def final_note(self) -> bytes | None:
        """The newest final checkpoint with its quorum of cosignatures attached."""
        size = self.state.final_size
        if size == 0:
            return None
        found = self.store.checkpoint(size)
        if found is None:
            return None
        lines = self.store.cosignatures(size)
        return attach(found[2], [lines[k].decode("utf-8") for k in sorted(lines)])

    def close(self) -> None:
        self._cosigner.shutdown(wait=True)
        self.link.loop.call_soon_threadsafe(self._stop.set)
        with contextlib.suppress(Exception):
            self._task.result(timeout=5)


def _height(cp: object) -> int:
    for ext in getattr(cp, "extensions", ()):
        if ext.startswith("medledger-block "):
            return int(ext.split()[1])
    return 0
