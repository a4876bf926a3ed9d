"""One organisation's peer in a cluster: a node whose ordering is NATS JetStream.

The peer admits what its clients submit (the same ingress checks as the embedded node) and
publishes it to the chain's TXS stream; it executes every block of the BLOCKS stream from its own
height on, re-verifying each transaction; it may hold the sequencer lease; and after each
durable block it witnesses its own checkpoint and exchanges cosignatures with the other peers
(``cluster/finality.py``) and compares the block's time with its own clock (``cluster/clock.py``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from medledger.cluster.clock import DEFAULT_THRESHOLD_MS, ClockSkew
from medledger.cluster.finality import Exchange
from medledger.consortium.genesis import Genesis
from medledger.contracts.base import Registry
from medledger.crypto.keys import SigningKey
from medledger.ledger.store.base import Store
from medledger.node.admit import Admitted
from medledger.node.node import Node
from medledger.ordering.jetstream import ClusterOrderer, Link, Sequencer, ensure_streams
from medledger.ordering.solo import Orderer
from medledger.ordering.wire import Names

log = logging.getLogger("medledger.peer")


@dataclass
class PeerOptions:
    servers: Sequence[str]
    replicas: int = 1  # stream replicas: 3 on a 3-server cluster
    sequencer: bool = True  # compete for the sequencer lease
    max_block_txs: int = 2000
    max_wait: float = 0.05
    lease_ttl: float = 3.0
    admit_processes: int = 0
    witnesses: Sequence[str] | None = None  # organisations whose cosignatures count (default all)
    quorum: int | None = None  # cosignatures needed for finality (default ⌈2n/3⌉)
    tls: ssl.SSLContext | None = None  # TLS to the NATS servers (see ordering.jetstream)
    # alarm when block times differ from this peer's clock by more than this (ms; 0: never)
    clock_skew_alarm_ms: int = DEFAULT_THRESHOLD_MS
    connect_within: float = 60.0  # seconds to reach NATS at start before node_unavailable
    node_kw: dict[str, Any] = field(default_factory=dict)


class Peer:
    """A started peer: ``node`` (reads, submissions), ``orderer``, ``link``."""

    def __init__(
        self,
        store: Store,
        genesis: Genesis,
        registry: Registry,
        *,
        org: str,
        key: SigningKey,
        options: PeerOptions,
    ) -> None:
        self.org, self.options = org, options
        self.names = Names(genesis.chain_id)
        self.link = Link(options.servers, name=f"{genesis.chain_id}-{org}", tls=options.tls,
                         connect_within=options.connect_within)
        try:
            self.link.call(ensure_streams(self.link.js, self.names, options.replicas,
                                          lease_ttl=options.lease_ttl), timeout=30)
        except BaseException:
            self.link.close()
            raise
        self.orderer: ClusterOrderer | None = None
        self._stopped = False

        def build(node: Node) -> Orderer[Admitted]:
            seq = Sequencer(self.link.js, self.names, org, max_txs=options.max_block_txs,
                            max_wait=options.max_wait, lease_ttl=options.lease_ttl,
                            elections=self.link.elections) \
                if options.sequencer else None
            self.orderer = ClusterOrderer(self.link, self.names, start_height=node.height,
                                          prepare=node.prepare_stream,
                                          prepare_behind=partial(node.prepare_stream,
                                                                 processes=True),
                                          sequencer=seq)
            return self.orderer

        self.node = Node.create(store, genesis, registry, signer=(org, key), orderer=build,
                                admit_processes=options.admit_processes, **options.node_kw)
        assert self.orderer is not None
        self.orderer.on_lost = self.node.fail_pending
        self.orderer.on_duplicate = self.node.settle_committed
        self.exchange: Exchange = Exchange(self.link, self.names, store, org=org, key=key,
                                 org_keys=genesis.org_keys(), witnesses=options.witnesses,
                                 needed=options.quorum)
        self.exchange.behind = lambda: max(0, self._stream_height() - self.node.height)
        self.node.on_durable.append(self.exchange.block_durable)
        self.clock: ClockSkew = ClockSkew(options.clock_skew_alarm_ms)
        self.node.on_durable.append(lambda h: self.clock.observe(
            h.time, h.height, self._stream_height() - h.height))
        self.node.final_size = lambda: self.exchange.state.final_size
        self.node.cluster_status = self.status

    def start(self) -> Peer:
        self.node.start()
        return self

    def stop(self) -> None:
        """Graceful: stop taking blocks, finish the one in flight, hand over the lease."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.node.stop()
            self.exchange.close()
        finally:
            self.link.close()

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stream_height(self) -> int:
        return self.orderer.stream_height if self.orderer else self.node.height

    def status(self) -> dict[str, Any]:
        """Height, roots, finality and lag, for ``cluster status`` and ``/v1/health``."""
        head = self.node.head
        fin = self.exchange.state
        stream = self.orderer.stream_height if self.orderer else head.height
        alarms: list[dict[str, Any]] = [{"kind": "equivocation", "org": a.org, "height": a.height}
                                        for a in fin.alarms]
        if (skew := self.clock.alarm()) is not None:
            alarms.append(skew)
        if self.orderer and (h := self.orderer.mismatch) is not None:
            # the ordering service serves this block's transactions differently from the cut
            alarms.append({"kind": "range_mismatch", "height": h})
        return {
            "org": self.org, "height": head.height, "log_size": head.log_size,
            "log_root": head.log_root.hex(), "state_root": head.state_root.hex(),
            "block_hash": head.hash.hex(), "final_height": fin.final_height,
            "final_size": fin.final_size, "stream_height": stream,
            "lag": max(0, stream - head.height), "sequencer": self.leading,
            **self.clock.status(), "alarms": alarms,
        }

    @property
    def leading(self) -> bool:
        return bool(self.orderer and self.orderer.sequencer and self.orderer.sequencer.leading)
