"""The node's garbage-collector set-up runs once and keeps thresholds an application chose."""

from __future__ import annotations

import gc

import pytest

from medledger.node import collector


@pytest.fixture
def fake_gc(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    calls: dict[str, object] = {"freeze": 0, "threshold": (700, 10, 10)}

    def freeze() -> None:
        calls["freeze"] = int(calls["freeze"]) + 1  # type: ignore[call-overload]

    def set_threshold(*t: int) -> None:
        calls["threshold"] = t

    monkeypatch.setattr(collector, "_tuned", False)
    monkeypatch.setattr(gc, "freeze", freeze)
    monkeypatch.setattr(gc, "collect", lambda *a: 0)
    monkeypatch.setattr(gc, "get_threshold", lambda: calls["threshold"])
    monkeypatch.setattr(gc, "set_threshold", set_threshold)
    return calls


def test_tunes_once(fake_gc: dict[str, object]) -> None:
    assert collector.tune_for_node() is True
    assert fake_gc["threshold"] == (collector.NODE_THRESHOLD0, 10, 10)
    assert fake_gc["freeze"] == 1
    assert collector.tune_for_node() is False
    assert fake_gc["freeze"] == 1


def test_keeps_application_thresholds(fake_gc: dict[str, object]) -> None:
    fake_gc["threshold"] = (5000, 20, 20)
    assert collector.tune_for_node() is True
    assert fake_gc["threshold"] == (5000, 20, 20)
