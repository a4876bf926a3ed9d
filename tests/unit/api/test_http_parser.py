"""The servers (peer, node, gateway, research site) run uvicorn with its default ``http="auto"``,
which takes the C parser ``httptools`` when it is installed and falls back to pure-Python h11
otherwise. The project depends on ``httptools`` (ADR 0065): this pins that the fallback is not
what a fresh install runs."""

from __future__ import annotations

from fastapi import FastAPI
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def test_uvicorn_picks_the_c_http_parser() -> None:
    config = Config(FastAPI())
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
