"""`GET /metrics` (Prometheus text format) and `GET /healthz`, served by uvicorn in the loop
the gateway already runs: one HTTP server, which the HTTP API extends with more routes.

uvicorn's `Server.serve` installs its own SIGINT/SIGTERM handlers with `signal.signal` when
run on the main thread (0.55 has no switch to turn that off), which would take the signals
from the gateway's `run`; `_Server` keeps them out. The socket is bound here so port 0 gives
an ephemeral port the caller learns.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import structlog
import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.telemetry.metrics import Metrics

__all__ = ["HttpServer", "create_app"]

log = structlog.get_logger("smsgw.http")

_START_WAIT = 10.0
_STOP_WAIT = 5.0


def create_app(metrics: Metrics | None) -> FastAPI:
    app = FastAPI(title="smsgw", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def scrape() -> Response:
        if metrics is None:
            return Response("metrics are off (metrics.enabled: false)\n", status_code=404)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield  # the gateway owns the process's signals


class HttpServer:
    """uvicorn serving `app` on host:port as a task of the running loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen; returns the port (0 asks for an ephemeral one)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", server_header=False
        )
        server = self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_WAIT
        while not server.started and not self._task.done() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if not server.started:
            await self.stop()
            sock.close()
            raise OSError(f"HTTP server did not start on {self.host}:{port}")
        self.port = port
        log.info("http listening", host=self.host, port=port)
        return port

    async def stop(self) -> None:
        """Graceful: open requests finish (bounded), then the socket closes."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _STOP_WAIT)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._server = self._task = None
