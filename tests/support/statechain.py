"""A chain sealed by hand from given per-block writes, with a signed checkpoint per block.

For state-proof tests: block ``h`` of ``blocks`` (h >= 1) carries ``txs`` placeholder
transactions (default one, so every block has its own log size and checkpoint) and exactly the
writes given; block 0 holds ``genesis``. Headers, writes roots, the log and the checkpoint notes
are the real ones (``ledger.chain.seal``), so only the contracts are missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import nacl.signing

from medledger.client.light import LightClient
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader, result_doc
from medledger.ledger.chain import seal
from medledger.ledger.checkpoint import Checkpoint, sign_checkpoint
from medledger.ledger.execute import Executed
from medledger.ledger.store.base import Store
from medledger.ledger.store.sqlite import SQLiteStore

CHAIN = "state-proof-test"
ORG = "hosp-a"
KEY = nacl.signing.SigningKey(hashlib.sha256(b"state-proof-test key").digest())
GENESIS = b'{"chain_id":"state-proof-test"}'

Writes = Mapping[str, bytes | None]


def light(chain: str = CHAIN) -> LightClient:
    return LightClient(chain, {ORG: bytes(KEY.verify_key)})


def note_for(header: BlockHeader, key: nacl.signing.SigningKey = KEY,
             block: tuple[int, bytes] | None = None) -> bytes:
    height, block_hash = block or (header.height, header.hash)
    cp = Checkpoint(f"medledger/{header.chain}", header.log_size, header.log_root,
                    (f"medledger-block {height} {block_hash.hex()}",))
    return sign_checkpoint(cp, ORG, key)


def build(blocks: Sequence[Writes], genesis: Writes | None = None,
          txs: Sequence[int] | None = None, store: Store | None = None) -> Any:
    """A store (default: a new in-memory SQLite one) holding block 0 (``genesis``) and blocks
    1..len(blocks)."""
    store = store or SQLiteStore(":memory:")
    log = merkle.CompactRange()
    prev_hash, prev_state = hashlib.sha256(GENESIS).digest(), bytes(32)
    for h, writes in enumerate([genesis or {"consortium/config": b"{}"}, *blocks]):
        n = 0 if h == 0 else (1 if txs is None else txs[h - 1])
        ids = [hashlib.sha256(b"tx %d %d" % (h, i)).digest() for i in range(n)]
        sealed = seal(chain=CHAIN, height=h, time=1_000 + h, prev_hash=prev_hash,
                      prev_state_root=prev_state, log=log, tx_ids=ids,
                      raws=[b"raw %d" % h] * n,
                      executed=Executed([result_doc("ok")] * n, dict(writes)))
        header = sealed.header
        commit = replace(sealed.commit, checkpoint=(header.log_size, h, note_for(header)))
        if h == 0:
            store.init(GENESIS, commit)
        else:
            store.commit(commit)
        prev_hash, prev_state = header.hash, header.state_root
    return store
