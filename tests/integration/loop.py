"""An asyncio loop in a background thread, so blocking clients (smpplib) can drive servers
that run on it from the test's own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.server import SmppServer
from gateway.store import SqliteStore


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run `coro` on the loop and wait for its result (bounded)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class ServerOnLoop(LoopThread):
    """An `SmppServer` and its SQLite store, listening on an ephemeral port on the loop."""

    def __init__(self, config_text: str, db: Path) -> None:
        super().__init__()
        self.config = load_config("test.yaml", text=config_text)
        self.store = SqliteStore(db)
        self.server = SmppServer(self.config, self.store)
        self.port: int = self.call(self._start())

    async def _start(self) -> int:
        await self.store.open()
        return await self.server.start("127.0.0.1", 0)

    def close(self) -> None:
        async def stop() -> None:
            await self.server.stop()
            await self.store.close()

        self.call(stop())
        self.stop_loop()
