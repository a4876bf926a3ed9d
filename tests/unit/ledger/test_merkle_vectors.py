"""Published RFC 6962/9162 proof vectors (transparency-dev/merkle ``testdata/``), read in place.

See ``../shared/vectors/README.md``: each JSON file is one case; ``wantErr`` says whether it must
be rejected. The ``happy-path.json`` cases come from a tree of 8 documented leaves, so our proof
*builders* must reproduce them byte for byte.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from medledger.ledger.merkle import (
    MemoryNodeStore,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    reference_consistency_proof,
    reference_inclusion_proof,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.vectors

VECTORS = Path(__file__).resolve().parents[3].parent / "shared" / "vectors" / "merkle"
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ERROR_CODES = {"bad_index", "bad_size", "bad_leaf_hash", "bad_proof_hash"}
ERROR_CODES |= {"wrong_proof_length", "root_mismatch"}


def _cases(kind: str, name: str = "*.json") -> list[Any]:
    folder = VECTORS / kind
    files = sorted(folder.rglob(name)) if folder.is_dir() else []
    if not files:
        return [pytest.param(None, id=f"{kind}-vectors-missing")]
    return [pytest.param(f, id=f.relative_to(VECTORS).with_suffix("").as_posix()) for f in files]


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        msg = f"Merkle test vectors not found at {VECTORS}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in case["proof"] or []]


def _store() -> MemoryNodeStore:
    store = MemoryNodeStore()
    store.extend(leaf_hash(d) for d in LEAVES)
    return store


def _check(case: dict[str, Any], path: Path, run: Any) -> None:
    if path.name == "happy-path.json":
        assert case["wantErr"] is False
    if case["wantErr"]:
        with pytest.raises(ProofError) as e:
            run()
        assert e.value.code in ERROR_CODES
    else:
        run()


@pytest.mark.parametrize("path", _cases("inclusion"))
def test_inclusion_vector(path: Path | None) -> None:
    case = _load(path)
    assert path is not None

    def run() -> None:
        verify_inclusion(
            _b64(case["leafHash"]),
            case["leafIdx"],
            case["treeSize"],
            _proof(case),
            _b64(case["root"]),
        )

    _check(case, path, run)


@pytest.mark.parametrize("path", _cases("consistency"))
def test_consistency_vector(path: Path | None) -> None:
    case = _load(path)
    assert path is not None

    def run() -> None:
        verify_consistency(
            case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), _proof(case)
        )

    _check(case, path, run)


@pytest.mark.parametrize("path", _cases("inclusion", "happy-path.json"))
def test_builder_reproduces_inclusion_vector(path: Path | None) -> None:
    case = _load(path)
    store = _store()
    index, size = case["leafIdx"], case["treeSize"]
    assert leaf_hash(LEAVES[index]) == _b64(case["leafHash"])
    assert tree_root(size, store) == _b64(case["root"])
    assert inclusion_proof(index, size, store) == _proof(case)
    assert reference_inclusion_proof(index, LEAVES[:size]) == _proof(case)


@pytest.mark.parametrize("path", _cases("consistency", "happy-path.json"))
def test_builder_reproduces_consistency_vector(path: Path | None) -> None:
    case = _load(path)
    store = _store()
    size1, size2 = case["size1"], case["size2"]
    assert tree_root(size1, store) == _b64(case["root1"])
    assert tree_root(size2, store) == _b64(case["root2"])
    assert consistency_proof(size1, size2, store) == _proof(case)
    assert reference_consistency_proof(size1, LEAVES[:size2]) == _proof(case)


def test_vector_set_is_complete() -> None:
    """Guard against an empty or truncated checkout silently passing."""
    if not VECTORS.is_dir():
        _load(None)  # skips, or fails in CI
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in VECTORS.rglob("*.json")]
    assert len(cases) >= 190
    assert sum(not c["wantErr"] for c in cases) >= 10
    assert len(list(VECTORS.rglob("happy-path.json"))) == 10
