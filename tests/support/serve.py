"""Serve an ASGI app (the node's API) on a free loopback port in a thread, for HTTP tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tests.support.services import free_port


@contextmanager
def served_app(app: Any) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT``) once uvicorn is listening; stops it
    afterwards and checks that it did stop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive(), "uvicorn did not shut down (an open stream kept it up?)"
