"""The one place that builds and wires everything: store, drivers, dispatcher, server.

`Gateway` owns their lifecycle: `start` opens the store, starts the drivers and the dispatcher,
then listens; `stop` stops listening first, then the dispatcher and the drivers, and closes the
store last, so nothing accepted is left half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

import structlog

from drivers.base import Driver
from drivers.simulated import SimulatedCarrier
from drivers.smpp.upstream import SmppUpstream
from gateway.config import GatewayConfig
from gateway.dispatch import Dispatcher
from gateway.server.smpp import SmppServer
from gateway.store.base import Store
from gateway.store.sqlite import SqliteStore

__all__ = ["Gateway", "run"]

log = structlog.get_logger("smsgw")


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store: Store = store or _store(config)
        drivers: dict[str, Driver] = {
            name: SimulatedCarrier(
                name, delivery_delay=sim.delivery_delay, failure_ratio=sim.failure_ratio
            )
            for name, sim in config.simulated_carriers.items()
        }
        for name, upstream in config.upstreams.items():
            drivers[name] = SmppUpstream(name, upstream)
        self.drivers = drivers
        self.server = SmppServer(config, self.store, clock=clock)
        self.dispatcher = Dispatcher(
            self.store,
            config.route_table(),
            drivers,
            notify=self.server.notify,
            clock=clock,
            settings=config.dispatch,
            retention=config.store.retention_days * 86_400.0,
            mo_router=config.mo_router(),
            plan=config.numbers.plan(),
            mo_timeout=config.mo_reassembly_timeout,
        )
        self.server.on_accept = self.dispatcher.wake
        self.port: int | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        await self.store.open()
        requeued = await self.store.requeue_interrupted(time.time())
        if requeued:
            log.warning("resuming messages interrupted by a stop", count=requeued)
        await self.dispatcher.start()
        self.port = await self.server.start(host, port)
        log.info("listening", host=host or self.config.listen.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        await self.server.stop()
        await self.dispatcher.stop()
        await self.store.close()


def _store(config: GatewayConfig) -> Store:
    if config.store.backend == "postgres":
        from gateway.store.postgres import PostgresStore  # noqa: PLC0415 - asyncpg only if used

        assert config.store.dsn is not None  # the config's validator insists
        return PostgresStore(config.store.dsn, node=config.node_id)
    return SqliteStore(config.store.path, node=config.node_id)


async def run(config: GatewayConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    gateway = Gateway(config)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await gateway.stop()
