"""Test helpers for driving the SMPP server from outside: a raw client that writes any bytes
and reads PDUs with bounds, and a capture of what the gateway logged."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import structlog.testing

from gateway.smpp import decode_pdu, encode_pdu
from gateway.smpp.framing import FrameBuffer

__all__ = ["GatewayLog", "Raw"]


class GatewayLog:
    """What the gateway logged (structlog) and what its loop reported as unhandled."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.unhandled: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: self.unhandled.append(context))
        self._capture = structlog.testing.capture_logs()
        self.records: list[dict[str, Any]] = self._capture.__enter__()

    def close(self) -> None:
        self._capture.__exit__(None, None, None)

    def errors(self) -> list[object]:
        """Unhandled exceptions and error-level records (a traceback is one of these)."""
        bad: list[object] = list(self.unhandled)
        bad += [
            r
            for r in self.records
            if r.get("log_level") in {"error", "critical", "exception"} or r.get("exc_info")
        ]
        return bad


class Raw:
    """A client on a plain socket: our codec, any number of PDUs per write, bounded reads."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.frames = FrameBuffer()
        self.timeout = timeout

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, *items: Any) -> None:
        """One write of PDUs (encoded here) and raw bytes, in order."""
        self.sock.sendall(b"".join(i if isinstance(i, bytes) else encode_pdu(i) for i in items))

    def read(self, count: int) -> list[Any]:
        """The next `count` PDUs; fails if the server closes first or is silent too long."""
        out: list[Any] = []
        deadline = time.monotonic() + self.timeout
        while len(out) < count:
            raw = self.frames.next_pdu()
            if raw is not None:
                out.append(decode_pdu(raw))
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(out)} of {count} PDUs came: {out}")
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"closed after {len(out)} of {count} PDUs: {out}")
            self.frames.feed(data)
        return out

    def rest(self) -> list[Any]:
        """Every PDU until the server closes (which it must within the timeout)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self.sock.recv(65536)
            if not data:
                return [decode_pdu(raw) for raw in self.frames.pdus()]
            self.frames.feed(data)
        raise AssertionError("the server kept the connection open")

    def silent_for(self, seconds: float) -> bool:
        """Nothing arrives for `seconds` (the connection stays open)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.frames.feed(data)
        return False

    def bind(self, pdu: Any) -> Any:
        self.send(pdu)
        (resp,) = self.read(1)
        return resp
