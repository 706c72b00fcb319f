"""The gateway's HTTP side: one FastAPI app on uvicorn, in the gateway's event loop."""

from __future__ import annotations

from gateway.http.server import HttpServer, create_app

__all__ = ["HttpServer", "create_app"]
