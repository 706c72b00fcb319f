"""The one place that builds and wires everything: store, drivers, dispatcher, server.

`Gateway` owns their lifecycle: `start` opens the store, starts the drivers and the dispatcher,
then listens; `stop` stops listening first, then the dispatcher and the drivers (no new receipt
or MO is read after that), waits for the receipts and MO the drivers already have in hand to be
kept, and closes the store last, so nothing accepted or received is left half-written. A
receipt kept after its link closed is not answered, so the carrier delivers it again: a repeat,
never a loss.

Modem banks with `emulate: N` get N emulated modems on pseudo-terminals, started here before the
bank (each behind a symlink, so a replug keeps its port) and stopped after it. The control
socket (`smsgw modem ...`) is served when configured; one already held by another running
gateway is logged and skipped rather than fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from drivers.base import Driver
from drivers.modem.bank import ModemBank
from drivers.simulated import SimulatedCarrier
from drivers.smpp.upstream import SmppUpstream
from gateway.config import GatewayConfig, ModemBankConfig
from gateway.control import ControlServer
from gateway.dispatch import Dispatcher
from gateway.http import HttpServer, create_app
from gateway.server.smpp import SmppServer
from gateway.store.base import QueueDepths, Store
from gateway.store.sqlite import SqliteStore
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.sources import sample, watch

if TYPE_CHECKING:
    from drivers.modem.emulator import ModemEmulator, SimNetwork

__all__ = ["Emulated", "Gateway", "run"]

log = structlog.get_logger("smsgw")


@dataclass
class Emulated:
    """A bank's emulated modems and the network behind them (tests inject and unplug here)."""

    network: SimNetwork
    modems: dict[str, ModemEmulator] = field(default_factory=dict)
    link_dir: Path | None = None


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
        self.banks: dict[str, ModemBank] = {}
        for name, bank_config in config.modem_banks.items():
            bank = ModemBank(name, bank_config, self.store, clock=clock)
            self.banks[name] = drivers[bank.name] = bank
        self.emulated: dict[str, Emulated] = {}
        self.control: ControlServer | None = None
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
        self.metrics = Metrics() if config.metrics.enabled else None
        if self.metrics is not None:
            watch(self.metrics, self)
        self.http: HttpServer | None = None
        self.http_port: int | None = None
        self.queues: QueueDepths | None = None  # the last count, for the metrics
        self._sampling: asyncio.Task[None] | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        await self.store.open()
        requeued = await self.store.requeue_interrupted(time.time())
        if requeued:
            log.warning("resuming messages interrupted by a stop", count=requeued)
        for name, bank in self.banks.items():
            bank_config = self.config.modem_banks[name]
            if bank_config.emulate:
                emulated = await asyncio.to_thread(_emulate, name, bank_config)
                self.emulated[name] = emulated
                bank.ports.update(
                    {modem: _port(emulator) for modem, emulator in emulated.modems.items()}
                )
        await self.dispatcher.start()
        self.port = await self.server.start(host, port)
        log.info("listening", host=host or self.config.listen.host, port=self.port)
        if self.config.http is not None:
            http = HttpServer(
                create_app(self.metrics), self.config.http.host, self.config.http.port
            )
            self.http_port = await http.start()
            self.http = http
        if self.metrics is not None:
            self._sampling = asyncio.get_running_loop().create_task(sample(self.metrics, self))
        control_path = self.config.control_path()
        if control_path is not None:
            control = ControlServer(
                control_path,
                {"modem.list": self._modem_list, "modem.ussd": self._modem_ussd},
            )
            try:
                await control.start()
            except OSError as exc:
                log.error("control socket not served", error=str(exc))
            else:
                self.control = control
        return self.port

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
            self._sampling = None
        await self.server.stop()
        # Drivers stop (nothing new comes in), then what they handed over is kept.
        await self.dispatcher.stop()
        await self.store.close()
        for emulated in self.emulated.values():
            await asyncio.to_thread(_stop_emulated, emulated)
        self.emulated.clear()

    # -- control channel ----------------------------------------------------------------------

    async def _modem_list(self, _request: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [row for bank in self.banks.values() for row in bank.state()]

    async def _modem_ussd(self, request: Mapping[str, Any]) -> str:
        target, code = str(request.get("modem", "")), str(request.get("code", ""))
        bank_name, _, modem = target.partition("/")
        bank = self.banks.get(bank_name)
        if bank is None or not modem:
            raise ValueError(f"no modem {target!r}: give <bank>/<modem>")
        try:
            return await bank.ussd(modem, code, float(request.get("wait", 30.0)))
        except KeyError:
            raise ValueError(f"no modem {modem!r} in bank {bank_name!r}") from None


def _port(emulator: ModemEmulator) -> str:
    return str(emulator.link) if emulator.link is not None else emulator.port


def _emulate(bank: str, config: ModemBankConfig) -> Emulated:
    """Start a bank's emulated modems (blocking: each starts a thread on a new pty)."""
    from drivers.modem.emulator import ModemEmulator, Quirks, SimNetwork  # noqa: PLC0415

    emulated = Emulated(
        SimNetwork(report_delay=config.emulator.report_delay),
        link_dir=Path(tempfile.mkdtemp(prefix=f"smsgw-{bank}-")),
    )
    quirks = config.emulator.quirks
    for modem in config.modem_list()[: config.emulate]:
        emulator = ModemEmulator(
            emulated.network,
            imei=modem.imei,
            iccid=modem.iccid,
            quirks=Quirks.parse(quirks),
            link=emulated.link_dir / modem.name if emulated.link_dir else None,
        )
        emulator.start()
        emulated.modems[modem.name] = emulator
    return emulated


def _stop_emulated(emulated: Emulated) -> None:
    for emulator in emulated.modems.values():
        emulator.stop()
    if emulated.link_dir is not None:
        shutil.rmtree(emulated.link_dir, ignore_errors=True)


def _store(config: GatewayConfig) -> Store:
    if config.store.backend == "postgres":
        from gateway.store.postgres import PostgresStore  # noqa: PLC0415 - asyncpg only if used

        assert config.store.dsn is not None  # the config's validator insists
        return PostgresStore(config.store.dsn, node=config.node_id)
    return SqliteStore(config.store.path, node=config.node_id, writer=config.store.writer)


async def run(config: GatewayConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    gateway = Gateway(config)
    await gateway.start()
    # What start-up built (modules, config, pools: ~50,000 objects) lives as long as the
    # process: take it out of the collector's view, or every full collection walks it
    # again - 20-50 ms of stalled loop on a 2-core VM, in the middle of a receipt burst.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await gateway.stop()
