"""A real HTTP server receiving webhooks, on 127.0.0.1 and an ephemeral port, in a thread.

Behaviour ladder: answers 200 by default; `script` queues answers for the next requests (a
status, or ("hang", seconds) to hold the request that long before a 200); `down()` closes the
port (connections are refused) and `up()` opens it again on the same port. Every request that
reached the handler is recorded (arrival time, headers, body, the answer given), including
ones that were answered with an error or held.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Hit", "WebhookReceiver"]


@dataclass
class Hit:
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]
    body: bytes
    answer: int | str  # the status sent, or "hang"

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def delivery(self) -> str:
        return self.headers["x-smsgw-delivery"]

    def signed_by(self, secret: str) -> bool:
        want = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, self.headers.get("x-smsgw-signature", ""))


class WebhookReceiver:
    def __init__(self, port: int = 0) -> None:
        self.hits: list[Hit] = []
        self._script: deque[int | tuple[str, float]] = deque()
        self._lock = threading.Condition()
        self.default: int | tuple[str, float] = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                answer = receiver._next()
                headers = {k.lower(): v for k, v in self.headers.items()}
                kept: int | str = "hang" if isinstance(answer, tuple) else answer
                with receiver._lock:
                    receiver.hits.append(Hit(time.monotonic(), headers, body, kept))
                    receiver._lock.notify_all()
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Close the port: new connections are refused until `up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.down()

    def script(self, *answers: int | tuple[str, float]) -> None:
        with self._lock:
            self._script.extend(answers)

    def _next(self) -> int | tuple[str, float]:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def wait(self, predicate: Callable[[list[Hit]], bool], timeout: float = 30.0) -> list[Hit]:
        """Wait (bounded) until `predicate(hits)`; returns a copy of the hits."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.hits):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"webhook receiver: condition not met in {timeout} s; "
                        f"{len(self.hits)} hits: {[h.answer for h in self.hits]}"
                    )
                self._lock.wait(left)
            return list(self.hits)

    def delivered(self) -> list[Hit]:
        """The hits answered 2xx (a hang ends in 200, but the sender gave up on it)."""
        with self._lock:
            return [h for h in self.hits if isinstance(h.answer, int) and 200 <= h.answer < 300]
