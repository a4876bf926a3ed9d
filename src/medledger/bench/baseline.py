"""The machine's Ed25519 signature ceiling.

:func:`signature_baseline` — raw Ed25519 verification with PyNaCl on 1 and 2 threads (and 2
processes): the machine's signature ceiling, which bounds any validating ledger on it.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

from nacl.bindings import crypto_sign_open
from nacl.signing import SigningKey

from medledger.bench.machine import CpuWatch


@dataclass
class SigBaseline:
    """Raw ``crypto_sign_open`` rate (PyNaCl/libsodium) over a real transaction's signed bytes.

    ``two_threads_per_s`` is what a thread pool in one Python process gets (libsodium releases
    the GIL, the PyNaCl wrapper around it does not); ``two_processes_per_s`` needs no GIL.
    """

    verifications: int
    message_bytes: int
    one_thread_per_s: float
    two_threads_per_s: float
    two_processes_per_s: float
    other_cpu_pct: float

    @property
    def ceiling_per_s(self) -> float:
        """The best in-process (threaded) rate: what one node process can verify."""
        return max(self.one_thread_per_s, self.two_threads_per_s)


def _verify_loop(signed: bytes, public_key: bytes, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        crypto_sign_open(signed, public_key)
    return time.perf_counter() - t0


def verify_rate(seconds: float = 1.0) -> float:
    """One thread's Ed25519 verifications per second over ~``seconds`` (a fresh key, a
    transaction-sized message): a quick reading of the machine's speed, for benchmarks whose
    figures scale with it. Virtual machines drift, so a benchmark takes it more than once."""
    key = SigningKey.generate()
    message = b"medledger-bench " * 31  # ~500 bytes, as a transaction's signed body
    signed = key.sign(message).signature + message
    public = key.verify_key.encode()
    _verify_loop(signed, public, 200)
    n, elapsed = 0, 0.0
    while elapsed < seconds:
        elapsed += _verify_loop(signed, public, 1000)
        n += 1000
    return n / elapsed


def signature_baseline(
    message: bytes, signature: bytes, public_key: bytes, verifications: int = 20_000
) -> SigBaseline:
    """Verify one (message, signature) ``verifications`` times on 1 thread, 2 threads and 2
    processes (each after an untimed warm-up)."""
    signed = signature + message
    half = verifications // 2
    watch = CpuWatch()
    _verify_loop(signed, public_key, 200)
    one = verifications / _verify_loop(signed, public_key, verifications)
    with ThreadPoolExecutor(2) as threads:
        t0 = time.perf_counter()
        jobs = [
            threads.submit(_verify_loop, signed, public_key, n)
            for n in (half, verifications - half)
        ]
        for f in jobs:
            f.result()
        two = verifications / (time.perf_counter() - t0)
    with ProcessPoolExecutor(2) as procs:
        list(procs.map(_verify_loop, [signed] * 2, [public_key] * 2, [200, 200]))
        t0 = time.perf_counter()
        list(procs.map(_verify_loop, [signed] * 2, [public_key] * 2, [half, verifications - half]))
        two_procs = verifications / (time.perf_counter() - t0)
    return SigBaseline(verifications, len(message), one, two, two_procs, watch.other_pct())
