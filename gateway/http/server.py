"""uvicorn serving the gateway's app (`gateway.http.app`) in the loop the gateway already
runs: one HTTP server for the API, the status page and the metrics; HTTPS with a certificate.

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
from pathlib import Path

import structlog
import uvicorn
from starlette.types import ASGIApp

__all__ = ["HttpServer"]

log = structlog.get_logger("smsgw.http")

_START_WAIT = 10.0
_STOP_WAIT = 5.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield  # the gateway owns the process's signals


class HttpServer:
    """uvicorn serving `app` on host:port as a task of the running loop."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.app, self.host, self.port = app, host, port
        self.tls_cert, self.tls_key = tls_cert, tls_key
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
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            ssl_certfile=self.tls_cert,
            ssl_keyfile=self.tls_key,
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
