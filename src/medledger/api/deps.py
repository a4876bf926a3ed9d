"""Shared plumbing for the API's route modules: the node dependency and JSON rendering."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from medledger.node.node import Node


async def get_node(request: Request) -> Node:
    """FastAPI dependency: the node the app was created for (``create_app(node)``). Async
    because it never blocks: FastAPI runs a plain-function dependency on its thread pool, a
    thread hop on every request for nothing."""
    node: Node = request.app.state.node
    return node


class JSONBytes(Response):
    """``application/json`` rendered with orjson (keys in insertion order, no floats needed)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status_code: int = 200) -> Response:
    return JSONBytes(content, status_code=status_code)
