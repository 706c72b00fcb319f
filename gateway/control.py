"""The running gateway's local control channel: JSON lines over a Unix socket.

A request is one line, ``{"command": "modem.list", ...}``; the answer is one line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. A client may send several
requests on one connection. The socket is made mode 0600: whoever can reach it can run USSD on
the gateway's SIMs. `request` is the client side, for `smsgw modem ...`.

Why a Unix socket and not the admin HTTP API: it works with no port configured, stays on the
host, and file permissions are its access control.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

__all__ = ["ControlError", "ControlServer", "Unreachable", "request"]

log = structlog.get_logger("smsgw.control")

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]
_MAX_LINE = 64 * 1024


class ControlError(Exception):
    """The gateway answered with an error, or could not be reached."""


class Unreachable(ControlError):
    """No gateway answered: not running, wrong socket, or no answer in time."""


class ControlServer:
    """Serves `handlers` (command name -> coroutine taking the request) on a Unix socket."""

    def __init__(self, path: str | os.PathLike[str], handlers: Mapping[str, Handler]) -> None:
        self.path = Path(path)
        self.handlers = dict(handlers)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen. A socket file left by a gateway that died is replaced.

        Raises:
            OSError: another gateway answers on the path, or it cannot be created.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await asyncio.to_thread(_alive, self.path):
                raise OSError(f"{self.path}: another gateway is listening there")
            self.path.unlink()
        old = os.umask(0o177)  # created 0600, never briefly world-accessible
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=_MAX_LINE
            )
        finally:
            os.umask(old)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the limit
                    writer.write(_line({"ok": False, "error": "request too long"}))
                    break
                if not line:
                    break
                writer.write(_line(await self._answer(line)))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON"}
        if not isinstance(req, dict) or not isinstance(req.get("command"), str):
            return {"ok": False, "error": 'expected {"command": ...}'}
        handler = self.handlers.get(req["command"])
        if handler is None:
            return {"ok": False, "error": f"unknown command {req['command']!r}"}
        try:
            return {"ok": True, "result": await handler(req)}
        except Exception as exc:
            log.info("control command failed", command=req["command"], error=str(exc))
            return {"ok": False, "error": str(exc) or type(exc).__name__}


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def request(path: str | os.PathLike[str], command: str, timeout: float = 10.0, **args: Any) -> Any:
    """Send one command to the gateway listening on `path` and return its result (blocking).

    Raises:
        Unreachable: no gateway there, or no answer within `timeout`.
        ControlError: the gateway's error.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
            sock.sendall(_line({"command": command, **args}))
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except FileNotFoundError:
            raise Unreachable(f"{os.fspath(path)}: no gateway running (no socket)") from None
        except ConnectionRefusedError:
            raise Unreachable(f"{os.fspath(path)}: no gateway answering") from None
        except TimeoutError:
            raise Unreachable(f"no answer within {timeout:g}s") from None
        except OSError as exc:
            raise Unreachable(f"{os.fspath(path)}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise Unreachable("the gateway closed the connection without an answer") from None
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "failed")))
    return answer.get("result")
