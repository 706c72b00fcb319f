"""The gateway's HTTP side: one FastAPI app on uvicorn, in the gateway's event loop."""

from __future__ import annotations

from gateway.http.app import BodyLimit, create_app
from gateway.http.server import HttpServer

__all__ = ["BodyLimit", "HttpServer", "create_app"]
