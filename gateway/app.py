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
import hashlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from drivers.base import Driver
from drivers.modem.bank import ModemBank
from drivers.remote import RemoteBank
from drivers.simulated import SimulatedCarrier
from drivers.smpp.upstream import SmppUpstream
from gateway.config import (
    ConfigError,
    GatewayConfig,
    ModemBankConfig,
    ModemConfig,
    WebhookConfig,
    load_config,
)
from gateway.control import ControlServer
from gateway.dispatch import Dispatcher
from gateway.http import BodyLimit, HttpServer, create_app
from gateway.http.api import SendRequest, submit_pdu
from gateway.http.batches import BatchRunner
from gateway.http.webhooks import WebhookSender
from gateway.inbound import OptOutRule
from gateway.policy.keywords import Keywords
from gateway.reload import RESTART_NEEDED, ReloadResult, plan_reload
from gateway.routing import normalize
from gateway.server.smpp import SmppServer
from gateway.store.base import MessageState, QueueDepths, Store, queue_summary
from gateway.store.sqlite import SqliteStore
from gateway.telemetry import systemd
from gateway.telemetry.delivery import DAY, DeliveryStats
from gateway.telemetry.events import Events, watch_signal
from gateway.telemetry.history import History, Rates, delivery_rates
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.mqtt import MqttLink, MqttMessage, link_for
from gateway.telemetry.sources import sample, totals, watch

if TYPE_CHECKING:
    from drivers.modem.emulator import ModemEmulator, SimNetwork
    from drivers.modem.emulator_journal import NetworkJournal

__all__ = ["Emulated", "Gateway", "emulated_ports", "run", "start_emulated", "stop_emulated"]

log = structlog.get_logger("smsgw")

# Seconds the deliveries queued are gathered before one notice names their accounts to the
# other nodes: short against a receipt's way (tens of ms), long enough to fold a burst.
_NOTICE_TICK = 0.005
# Seconds after another node's notice for an account during which this node's own notices
# for it page from the start too (see `Gateway._notify`).
_REMOTE_RECENT = 2.0


@dataclass
class Emulated:
    """A bank's emulated modems and the network behind them (tests inject and unplug here)."""

    network: SimNetwork
    modems: dict[str, ModemEmulator] = field(default_factory=dict)
    link_dir: Path | None = None
    journal: NetworkJournal | None = None


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
        self.clock = clock
        # The broker link (events, notices between nodes, remote banks); None without `mqtt:`.
        self.mqtt: MqttLink | None = (
            link_for(config.mqtt, config.node_name()) if config.mqtt is not None else None
        )
        self.banks: dict[str, ModemBank] = {}
        self.remote_banks: dict[str, RemoteBank] = {}  # driven by agents, over MQTT
        for name, bank_config in config.modem_banks.items():
            if bank_config.remote is not None:
                remote = self._remote_bank(name, bank_config)
                self.remote_banks[name] = drivers[remote.name] = remote
                continue
            bank = ModemBank(name, bank_config, self.store, clock=clock)
            self.banks[name] = drivers[bank.name] = bank
        self.emulated: dict[str, Emulated] = {}
        self.control: ControlServer | None = None
        self.drivers = drivers
        self.server = SmppServer(config, self.store, clock=clock)
        self.webhooks = WebhookSender(self.store, _webhooks(config), clock=clock)
        self.dispatcher = Dispatcher(
            self.store,
            config.route_table(),
            drivers,
            notify=self._notify,
            webhook_events=self.webhooks.events,
            clock=clock,
            settings=config.dispatch,
            retention=config.store.retention_days * 86_400.0,
            stats_retention=config.store.stats_retention_days * 86_400.0,
            mo_router=config.mo_router(),
            plan=config.numbers.plan(),
            mo_timeout=config.mo_reassembly_timeout,
        )
        self.server.on_accept = self.dispatcher.wake
        self.dispatcher.shared_store = config.store.backend == "postgres"
        self._policy_to_dispatcher(config)
        self.port: int | None = None
        self.config_path: str | None = None  # what `reload` reads when given no path
        self._reloading = asyncio.Lock()
        self.metrics = Metrics() if config.metrics.enabled else None
        self.webhooks.metrics = self.metrics
        if self.metrics is not None:
            watch(self.metrics, self)
        self.batches = BatchRunner(self.store, self.server, self.metrics)
        self.http: HttpServer | None = None
        self.http_port: int | None = None
        self.queues: QueueDepths | None = None  # the last count, for the metrics
        self.delivery = DeliveryStats(self.store)  # the status page's and metrics' rates
        self.started_at = time.time()
        self.last_reload: dict[str, Any] | None = None  # when, ok, what (the status page)
        # The node's own CLI's HTTP credential (admin), written beside the control socket.
        self.local_token: str | None = None
        self._sampling: asyncio.Task[None] | None = None
        self.history = History()  # the status page's 15 minutes, sampled beside the queues
        self._rates = Rates()
        # Operator events on that link (a no-op sink without it), handed to each part.
        self.events = Events(self.mqtt)
        self.server.events = self.dispatcher.events = self.events
        for driver in drivers.values():
            if isinstance(driver, SmppUpstream | ModemBank):
                driver.events = self.events
        self._signals: asyncio.Task[None] | None = None
        # Deliveries queued here announced to the other nodes (`_notify`), one tick at a time.
        self._noticed: set[str] = set()
        self._notice_timer: asyncio.TimerHandle | None = None
        self._remote_notice: dict[str, float] = {}  # account -> when another node's came
        self.notices_sent = 0
        # Set first thing in `stop`: the status page's event streams end on it, so uvicorn
        # is not left waiting for them until its forced exit.
        self.closing = asyncio.Event()

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        self.closing.clear()
        await self.store.open()
        if self.mqtt is not None:
            await self.mqtt.subscribe(self.mqtt.topic_of("+", "deliveries"), self._on_notice)
            self.mqtt.start()  # in the background: a broker that is away never holds us up
        requeued = await self.store.requeue_interrupted(time.time())
        if requeued:
            log.warning("resuming messages interrupted by a stop", count=requeued)
        for name, bank in self.banks.items():
            bank.ports.update(await self._emulate(name, self.config.modem_banks[name]))
        await self.webhooks.start()
        await self.dispatcher.start()
        self.port = await self.server.start(host, port)
        await self.batches.start()  # batches a stop interrupted accept the rest
        log.info("listening", host=host or self.config.listen.host, port=self.port)
        if self.config.http is not None:
            self.local_token = secrets.token_urlsafe(32)
            settings = self.config.http
            http = HttpServer(
                BodyLimit(create_app(self), settings.max_body),
                settings.host,
                settings.port,
                tls_cert=settings.tls_cert,
                tls_key=settings.tls_key,
            )
            self.http_port = await http.start()
            self.http = http
            self._write_local_token()
        if self.metrics is not None:
            self._sampling = asyncio.get_running_loop().create_task(sample(self.metrics, self))
        if self.events.enabled:
            self._signals = asyncio.get_running_loop().create_task(
                watch_signal(self.events, self.modems)
            )
        control_path = self.config.control_path()
        if control_path is not None:
            control = ControlServer(
                control_path,
                {
                    "modem.list": self._modem_list,
                    "modem.ussd": self._modem_ussd,
                    "message.query": self._message_query,
                    "status": self._status,
                    "reload": self._reload,
                },
            )
            try:
                await control.start()
            except OSError as exc:
                log.error("control socket not served", error=str(exc))
            else:
                self.control = control
        return self.port

    async def stop(self) -> None:
        self.closing.set()
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
        if self._signals is not None:
            self._signals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._signals
            self._signals = None
        await self.batches.stop()
        await self.server.stop()
        # Drivers stop (nothing new comes in), then what they handed over is kept.
        await self.dispatcher.stop()
        await self.webhooks.stop()
        # Nothing of ours is in flight now: other nodes take our claims and leased deliveries
        # at once rather than after the lease.
        try:
            released = await self.store.release(time.time())
        except Exception:  # the store is going away: the lease ends them anyway
            log.exception("could not hand over this node's claims and leases")
        else:
            if released:
                log.info("handed over to the other nodes", count=released)
        if self.mqtt is not None:
            self.events.flush()  # after the dispatcher: its last events go out first
            if self._notice_timer is not None:  # the last tick's notice goes out too
                self._notice_timer.cancel()
                self._send_notice()
            await self.mqtt.stop()
        await self.store.close()
        for emulated in self.emulated.values():
            await asyncio.to_thread(_stop_emulated, emulated)
        self.emulated.clear()

    def _notify(self, account: str) -> None:
        """A deliver_sm was queued for `account`: its binds and its webhook sender look, and
        so, through the broker, do the other nodes' binds (the app may be bound there)."""
        # Paged from the start only while other nodes queue for this account too: one of
        # theirs with a higher id may have been offered before this one committed.
        remote = self._remote_notice.get(account)
        rewind = remote is not None and time.monotonic() - remote < _REMOTE_RECENT
        self.server.notify(account, rewind=rewind)
        self.webhooks.wake(account)
        if self.mqtt is not None:
            # Coalesced: the accounts named within one tick go out in one notice, so a
            # receipt burst costs at most one broker message per tick, not one per receipt.
            self._noticed.add(account)
            if self._notice_timer is None:
                loop = asyncio.get_running_loop()
                self._notice_timer = loop.call_later(_NOTICE_TICK, self._send_notice)

    def _send_notice(self) -> None:
        self._notice_timer = None
        accounts, self._noticed = sorted(self._noticed), set()
        if accounts and self.mqtt is not None:
            self.mqtt.publish(self.mqtt.topic("deliveries"), {"v": 1, "accounts": accounts})
            self.notices_sent += 1

    def _on_notice(self, message: MqttMessage) -> None:
        """Another node queued deliveries: wake this node's binds of those accounts (the
        webhooks are that node's to send). A lost notice costs only the rescan's delay."""
        node = message.topic.split("/")[-2]
        if self.mqtt is None or node == self.mqtt.node:
            return
        data = message.json()
        if not isinstance(data, dict) or data.get("v") != 1:
            return
        for account in data.get("accounts", ()):
            if isinstance(account, str):
                self._remote_notice[account] = time.monotonic()
                self.server.notify(account, rewind=True)

    # -- opt-out --------------------------------------------------------------------------------

    def _opt_out_rule(self, config: GatewayConfig) -> OptOutRule:
        o = config.policy.opt_out
        return OptOutRule(
            Keywords.of(o.keywords, o.opt_in_keywords),
            per_sender=o.scope == "sender",
            confirmation=o.confirmation,
            confirm=self._confirm_opt_out,
        )

    async def _confirm_opt_out(self, account: str, to: str, sender: str, text: str) -> None:
        """The opt-out confirmation: a transactional message from the address the MO was
        sent to, as the MO route's account, through the accept pipeline."""
        config = next((a for a in self.config.accounts if a.system_id == account), None)
        number = normalize(to, self.config.numbers.plan())
        if config is None or number is None:
            return
        # No receipt: the account's application never sent it, and would not know its id.
        request = SendRequest(to=[f"+{number}"], from_=sender, text=text, dlr=False)
        pdu = submit_pdu(request, f"+{number}", self.server.clock())
        status, message_id = await self.server.accept(pdu, config, msg_class="transactional")
        if message_id:
            log.info("opt-out confirmation accepted", account=account, message_id=message_id)
        else:
            log.warning("opt-out confirmation refused", account=account, status=status)

    # -- reload -------------------------------------------------------------------------------

    async def reload(self, path: str | None = None) -> ReloadResult:
        """Read, validate and apply a new configuration without dropping a bind.

        Nothing is applied unless the whole file is valid: on error the old configuration
        keeps running and the result carries the loader's message (YAML path and line).
        Accounts, routes, MO routes, number plan and message rules are swapped in one step
        of the loop (no await between), so each message is accepted and routed under one
        table. Upstreams, simulated carriers and modem banks it adds start before that swap;
        those it changes or removes are replaced or drained after it. The settings that need
        a restart are named (`gateway.reload.RESTART_NEEDED`).
        """
        source = path or self.config_path
        if source is None:
            return ReloadResult(error="no configuration file to reload from")
        async with self._reloading:
            try:
                # complete: an empty or half file must not reload into no accounts or routes
                new = await asyncio.to_thread(load_config, source, complete=True)
            except ConfigError as exc:
                log.error("reload refused: the old configuration keeps running", error=str(exc))
                self._reloaded(ok=False, detail=str(exc))
                return ReloadResult(error=str(exc))
            plan = plan_reload(self.config, new)
            # What the new table may name starts first: no message is routed to a target
            # that is not there yet, and the old table never names these.
            for name in plan.upstreams.added + plan.simulated_carriers.added:
                await self.dispatcher.add_driver(self._driver(name, new))
            for name in plan.modem_banks.added:
                await self._add_bank(name, new.modem_banks[name])
            # The swap: synchronous, so no message sees half of it.
            self.server.reconfigure(new)
            self._policy_to_dispatcher(new)
            self.webhooks.reconfigure(_webhooks(new))
            self.dispatcher.swap_routes(new.route_table(), new.mo_router(), new.numbers.plan())
            old, self.config = self.config, new
            for name in plan.upstreams.changed + plan.simulated_carriers.changed:
                await self.dispatcher.replace_driver(self._driver(name, new))
            restart = list(plan.restart_needed)
            for name in plan.modem_banks.changed:
                restart += [
                    f"modem_banks.{name}: {k}"
                    for k in await self._reconfigure_bank(name, new.modem_banks[name])
                ]
            for name in plan.upstreams.removed + plan.simulated_carriers.removed:
                await self.dispatcher.remove_driver(name)
            for name in plan.modem_banks.removed:
                await self._remove_bank(name)
            self.drivers = dict(self.dispatcher.drivers)
            # What still runs as started stays in the config, so the next reload names it again.
            kept = {name: getattr(old, name) for name in RESTART_NEEDED}
            kept["modem_banks"] = {
                **{name: bank.config for name, bank in self.banks.items()},
                **{name: new.modem_banks[name] for name in self.remote_banks},
            }
            self.config = new.model_copy(update=kept)
            result = ReloadResult(applied=plan.applied(), restart_needed=restart)
            log.info("reloaded", applied=result.applied, restart_needed=result.restart_needed)
            if result.restart_needed:
                log.warning("changed settings need a restart", settings=result.restart_needed)
            self._reloaded(ok=True, detail=result.applied)
            return result

    async def _emulate(self, name: str, config: ModemBankConfig) -> dict[str, str]:
        """Start the emulated modems `config` asks for that are not running yet (and stop
        those it no longer asks for); returns the port of each emulated modem by name."""
        wanted = {m.name: m for m in config.modem_list()[: config.emulate]}
        emulated = self.emulated.get(name)
        if emulated is None:
            if not wanted:
                return {}
            emulated = self.emulated[name] = Emulated(
                _network(config), link_dir=Path(tempfile.mkdtemp(prefix=f"smsgw-{name}-"))
            )
        await asyncio.to_thread(_start_emulators, name, config, emulated, list(wanted.values()))
        _journal(emulated, config)
        return {modem: _port(emulated.modems[modem]) for modem in wanted}

    def _remote_bank(self, name: str, config: ModemBankConfig) -> RemoteBank:
        if self.mqtt is None or config.remote is None:  # the config's validator insists
            raise ValueError(f"modem_banks.{name}: a remote bank needs mqtt:")
        return RemoteBank(name, config.remote, self.mqtt, clock=self.clock)

    async def _add_bank(self, name: str, config: ModemBankConfig) -> None:
        if config.remote is not None:
            remote = self._remote_bank(name, config)
            await self.dispatcher.add_driver(remote)
            self.remote_banks[name] = remote
            return
        bank = ModemBank(name, config, self.store, clock=self.clock)
        bank.events = self.events
        bank.ports.update(await self._emulate(name, config))
        await self.dispatcher.add_driver(bank)
        self.banks[name] = bank

    async def _reconfigure_bank(self, name: str, config: ModemBankConfig) -> list[str]:
        if name in self.remote_banks or config.remote is not None:
            # Local <-> remote, or another agent: a new driver in its place (drained first).
            local = self.banks.pop(name, None)
            if config.remote is not None:
                remote = self._remote_bank(name, config)
                await self.dispatcher.replace_driver(remote)
                self.remote_banks[name] = remote
            else:
                self.remote_banks.pop(name, None)
                await self._add_bank(name, config)
            if local is not None and name in self.emulated:
                await asyncio.to_thread(_stop_emulated, self.emulated.pop(name))
            return []
        bank = self.banks[name]
        kept = await bank.reconfigure(config, ports=await self._emulate(name, config))
        emulated = self.emulated.get(name)
        if emulated is not None:  # emulators of modems the bank no longer runs
            gone = set(emulated.modems) - {m.name for m in config.modem_list()[: config.emulate]}
            await asyncio.to_thread(_stop_emulated, emulated, gone)
        return kept

    async def _remove_bank(self, name: str) -> None:
        if self.remote_banks.pop(name, None) is not None:
            await self.dispatcher.remove_driver(f"bank:{name}")
            return
        bank = self.banks.pop(name)
        await self.dispatcher.remove_driver(bank.name)
        emulated = self.emulated.pop(name, None)
        if emulated is not None:
            await asyncio.to_thread(_stop_emulated, emulated)

    def _write_local_token(self) -> None:
        """Where this node's CLI finds the HTTP API and its admin token: a file only our user
        reads, beside the control socket (the port may be an ephemeral one)."""
        path = self.config.token_path()
        if path is None or self.config.http is None or self.local_token is None:
            return
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(
            self.config.http.host, self.config.http.host
        )
        scheme = "https" if self.config.http.tls_cert else "http"
        url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.http_port}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"url": url, "token": self.local_token}, f)
            tmp.replace(path)
        except OSError as exc:
            log.warning("no local API token: the CLI uses the control socket", error=str(exc))

    async def readiness(self) -> dict[str, bool]:
        """What /readyz checks: the store takes writes, SMPP listens, a target can send."""
        try:
            async with asyncio.timeout(5):
                store = await self.store.ping()
        except Exception:  # a dead writer, a closed pool: not ready, whatever the cause
            store = False
        return {
            "store_writable": store,
            "smpp_listening": self.server.listening(),
            "route_target_usable": any(driver.usable() for driver in self.drivers.values()),
        }

    def _policy_to_dispatcher(self, config: GatewayConfig) -> None:
        """How the dispatcher ends a rule's stop, how long it keeps the rules' counts, the MO
        opt-out keywords and which receipts count towards a dead number."""
        rules = self.server.rules
        self.dispatcher.stopped_state = MessageState(config.policy.stopped_state)
        self.dispatcher.policy_windows = rules.windows if rules.active else None
        self.dispatcher.set_policy(self._opt_out_rule(config), config.policy.dead_numbers.rule())

    def _reloaded(self, *, ok: bool, detail: str | list[str] | None = None) -> None:
        self.last_reload = {"at": time.time(), "ok": ok, "detail": detail}
        self.events.reload(ok, detail)
        if self.metrics is not None:
            self.metrics.reload_done(ok)

    def _driver(self, name: str, config: GatewayConfig) -> Driver:
        if name in config.upstreams:
            upstream = SmppUpstream(name, config.upstreams[name])
            upstream.metrics = self.metrics  # a reload's upstream counts like a started one
            upstream.events = self.events
            return upstream
        sim = config.simulated_carriers[name]
        return SimulatedCarrier(
            name, delivery_delay=sim.delivery_delay, failure_ratio=sim.failure_ratio
        )

    # -- control channel ----------------------------------------------------------------------

    async def _reload(self, request: Mapping[str, Any]) -> dict[str, Any]:
        path = request.get("path")
        result = await self.reload(str(path) if path else None)
        if result.error is not None:
            raise ValueError(result.error)
        return result.as_dict()

    async def _modem_list(self, _request: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.modems()

    async def _modem_ussd(self, request: Mapping[str, Any]) -> str:
        target, code = str(request.get("modem", "")), str(request.get("code", ""))
        bank_name, _, modem = target.partition("/")
        return await self.ussd(bank_name, modem, code, float(request.get("wait", 30.0)))

    async def _message_query(self, request: Mapping[str, Any]) -> dict[str, Any]:
        message_id = str(request.get("id", ""))
        info = await self.message_info(message_id)
        if info is None:
            raise ValueError(f"no message {message_id!r}")
        return info

    async def _status(self, _request: Mapping[str, Any]) -> dict[str, Any]:
        return await self.status()

    # -- what the control socket and the HTTP API both ask ----------------------------------

    def modems(self) -> list[dict[str, Any]]:
        """Every modem of every bank, as `smsgw modem list` shows them."""
        banks: list[ModemBank | RemoteBank] = [*self.banks.values(), *self.remote_banks.values()]
        return [row for bank in banks for row in bank.state()]

    async def ussd(self, bank_name: str, modem: str, code: str, wait: float = 30.0) -> str:
        """The network's answer to USSD `code` sent through one modem.

        Raises:
            ValueError: no such bank or modem (the message names it).
        """
        bank = self.banks.get(bank_name) or self.remote_banks.get(bank_name)
        if bank is None or not modem:
            raise ValueError(f"no modem {bank_name}/{modem}: give <bank>/<modem>")
        try:
            return await bank.ussd(modem, code, wait)
        except KeyError:
            raise ValueError(f"no modem {modem!r} in bank {bank_name!r}") from None
        except (TimeoutError, RuntimeError) as exc:  # a remote bank's agent: away, or failed
            raise ValueError(f"{bank_name}/{modem}: {exc}") from None

    async def message_info(self, message_id: str) -> dict[str, Any] | None:
        """A message's state, history and receipts (raw text too), or None if unknown."""
        record = await self.store.get(message_id, lagging=True)
        if record is None:
            return None
        m = record.message
        receipts = await self.store.receipts(message_id, lagging=True)
        return {
            "id": m.id,
            "account": m.account,
            "source": m.source_addr,
            "destination": m.destination_addr,
            "route": m.route,
            "class": m.msg_class,
            "campaign": m.campaign,
            "state": record.state.value,
            "error": record.error,
            "attempts": record.attempts,
            "accepted_at": m.accepted_at,
            "updated_at": record.updated_at,
            # The record does not carry the part count; the receipts name parts (0-based in
            # the store, 1-based here as `smsgw send` prints them).
            "parts": max((r.part + 1 for r in receipts), default=None),
            "history": [[at, state.value] for at, state in await self.store.history(m.id)],
            # As the store indexes them (lower case): the carrier's id for each part sent.
            "upstream_ids": [
                {"part": part + 1, "upstream": upstream, "id": key.removeprefix("s:")}
                for part, upstream, key in await self.store.upstream_ids(m.id)
            ],
            "receipts": [
                {
                    "part": r.part + 1,
                    "upstream": r.upstream,
                    "upstream_id": r.upstream_id,
                    "message_state": r.message_state,
                    "error": r.error,
                    "received_at": r.received_at,
                    "raw": r.raw.decode("latin-1"),
                }
                for r in receipts
            ],
        }

    async def status(self, *, sampled: bool = False) -> dict[str, Any]:
        """Binds, upstreams, modems and queues on one screen (`smsgw status`, the status page).

        Args:
            sampled: take the queue counts the metrics sampler last read (at most 5 s old)
                rather than count again: the status page asks every 2 s per open page.
        """
        now = time.time()
        metrics = self.metrics
        outcomes = metrics.outcome_counts() if metrics is not None else {}
        stats = await self.delivery.read()
        sent: dict[str, float] = {}
        for (outcome, _route, target), count in outcomes.items():
            if outcome == "sent":
                sent[target] = sent.get(target, 0.0) + count
        upstreams = {
            name: {
                "usable": driver.usable(),
                "links": [{**row, "bound": row["state"] == "bound"} for row in driver.link_rows()],
                "sent_per_s": self._rates.rate(("target", name), sent.get(name, 0.0), now),
                "last_error": driver.last_error,
            }
            for name, driver in self.drivers.items()
            if isinstance(driver, SmppUpstream)
        }
        sessions = self.server.bind_rows()
        live: set[Hashable] = {("target", name) for name in self.drivers}
        for row in sessions:  # the key (the connection's id) only pairs samples of one bind
            key = row.pop("key")
            live.add(key)
            row["accepted_per_s"] = self._rates.rate(key, row["accepted"], now)
        self._rates.forget(live)  # binds gone, targets removed by a reload
        targets = [
            {
                "name": name,
                "kind": _kind(driver),
                "usable": driver.usable(),
                "sent_per_s": self._rates.rate(("target", name), sent.get(name, 0.0), now),
            }
            for name, driver in sorted(self.drivers.items())
        ]
        return {
            "node": self.config.node_id,
            "port": self.port,
            "now": now,
            "started_at": self.started_at,
            "uptime": max(0.0, now - self.started_at),
            "binds": self.server.binds(),
            "sessions": sessions,
            "upstreams": upstreams,
            "targets": targets,
            "modems": self.modems(),
            "queues": queue_summary(
                self.queues
                if sampled and self.queues is not None
                else await self.store.queue_depths(),
                now,
            ),
            "throughput": None
            if metrics is None
            else {**asdict(totals(metrics)), **self.history.series()},
            # the store's last day; the counters since start when the store cannot say
            "delivery": delivery_rates(outcomes)
            if stats is None
            else self.delivery.per_route(now - DAY),
            "delivery_window": "since start" if stats is None else "last 24 h",
            "last_reload": self.last_reload,
            "mqtt": None
            if self.mqtt is None
            else {**self.mqtt.status(), "events_dropped": self.events.dropped},
        }


def _kind(driver: Driver) -> str:
    if isinstance(driver, SmppUpstream):
        return "smpp"
    if isinstance(driver, ModemBank):
        return "modem bank"
    if isinstance(driver, RemoteBank):
        return "remote modem bank"
    return "simulated" if isinstance(driver, SimulatedCarrier) else "other"


def _port(emulator: ModemEmulator) -> str:
    return str(emulator.link) if emulator.link is not None else emulator.port


def _network(config: ModemBankConfig) -> SimNetwork:
    from drivers.modem.emulator import SimNetwork  # noqa: PLC0415 - only for emulated banks

    return SimNetwork(report_delay=config.emulator.report_delay)


def _start_emulators(
    bank: str, config: ModemBankConfig, emulated: Emulated, modems: list[ModemConfig]
) -> None:
    """Start an emulated modem for each of `modems` not running yet (blocking: each starts
    a thread on a new pty, behind a symlink so a replug keeps its port)."""
    from drivers.modem.emulator import ModemEmulator, Quirks  # noqa: PLC0415

    for modem in modems:
        if modem.name in emulated.modems:
            continue
        emulator = ModemEmulator(
            emulated.network,
            imei=modem.imei or emulated_imei(bank, modem.name),
            iccid=modem.iccid or emulated_iccid(bank, modem.name),
            quirks=Quirks.parse(config.emulator.quirks),
            link=emulated.link_dir / modem.name if emulated.link_dir else None,
        )
        emulator.start()
        emulated.modems[modem.name] = emulator


def _check_digit(digits: str) -> str:
    """`digits` with its Luhn check digit appended (IMEI, ICCID)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return digits + str(-total % 10)


def _digits_of(bank: str, modem: str, count: int) -> str:
    digest = hashlib.sha256(f"{bank}/{modem}".encode()).digest()
    return str(int.from_bytes(digest, "big"))[-count:].zfill(count)


def emulated_imei(bank: str, modem: str) -> str:
    """A 15-digit IMEI fixed by bank and modem name: the same after a restart, so the SIM
    usage kept under it (per-SIM limits) carries over."""
    return _check_digit("35" + _digits_of(bank, modem, 12))


def emulated_iccid(bank: str, modem: str) -> str:
    """A 19-digit ICCID (89 = telecom, 00 = test country) fixed by bank and modem name."""
    return _check_digit("8900" + _digits_of(bank, modem, 14))


def _journal(emulated: Emulated, config: ModemBankConfig) -> None:
    """The network's journal folder (`emulator.journal`), once per bank."""
    if config.emulator.journal is None or emulated.journal is not None:
        return
    from drivers.modem.emulator_journal import NetworkJournal  # noqa: PLC0415

    modems = emulated.modems

    def imei_of(name: str) -> str | None:
        modem = modems.get(name)
        return modem.imei if modem is not None else None

    emulated.journal = NetworkJournal(emulated.network, config.emulator.journal, imei_of)
    emulated.journal.start()


def start_emulated(bank: str, config: ModemBankConfig) -> Emulated:
    """A bank's `emulate: N` modems and their network, started (blocking; `smsgw agent`)."""
    emulated = Emulated(_network(config), link_dir=Path(tempfile.mkdtemp(prefix=f"smsgw-{bank}-")))
    _start_emulators(bank, config, emulated, list(config.modem_list()[: config.emulate]))
    _journal(emulated, config)
    return emulated


def emulated_ports(emulated: Emulated) -> dict[str, str]:
    """The port of each emulated modem, by name (what the bank opens)."""
    return {name: _port(modem) for name, modem in emulated.modems.items()}


def stop_emulated(emulated: Emulated) -> None:
    """Stop a bank's emulated modems, their journal and their folder (blocking)."""
    _stop_emulated(emulated)


def _stop_emulated(emulated: Emulated, names: Collection[str] | None = None) -> None:
    """Stop the emulated modems called `names`, or all of them and their folder."""
    if names is None and emulated.journal is not None:
        emulated.journal.stop()
        emulated.journal = None
    for name in list(emulated.modems) if names is None else names:
        emulator = emulated.modems.pop(name, None)
        if emulator is not None:
            emulator.stop()
            if emulator.link is not None:
                emulator.link.unlink(missing_ok=True)
    if names is None and emulated.link_dir is not None:
        shutil.rmtree(emulated.link_dir, ignore_errors=True)


def _webhooks(config: GatewayConfig) -> dict[str, WebhookConfig]:
    return {a.system_id: a.webhook for a in config.accounts if a.webhook is not None}


def _store(config: GatewayConfig) -> Store:
    if config.store.backend == "postgres":
        from gateway.store.postgres import PostgresStore  # noqa: PLC0415 - asyncpg only if used

        assert config.store.dsn is not None  # the config's validator insists
        return PostgresStore(
            config.store.dsn,
            node=config.node_id,
            prefix_digits=config.store.stats_prefix_digits,
            min_size=config.store.pool_min,
            max_size=config.store.pool_max,
            replica_dsn=config.store.replica_dsn,
            lease=config.dispatch.delivery_lease,
        )
    return SqliteStore(
        config.store.path,
        node=config.node_id,
        writer=config.store.writer,
        prefix_digits=config.store.stats_prefix_digits,
        lease=config.dispatch.delivery_lease,
    )


async def run(config: GatewayConfig, path: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly; SIGHUP reloads `path`."""
    gateway = Gateway(config)
    gateway.config_path = path
    loop = asyncio.get_running_loop()
    up = asyncio.Event()
    reloads: set[asyncio.Task[ReloadResult]] = set()

    async def reload_when_up() -> ReloadResult:
        await up.wait()
        systemd.notify_reloading()  # Type=notify: systemctl reload waits for READY=1 again
        try:
            return await gateway.reload()
        finally:
            systemd.notify_ready()  # a refused reload leaves the old config serving: ready too

    def hangup() -> None:
        task = loop.create_task(reload_when_up())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # Before start: a SIGHUP while starting waits for it rather than kill the process.
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, hangup)
    # What start-up built (modules, config, pools: ~50,000 objects) lives as long as the
    # process: take it out of the collector's view, or every full collection walks it
    # again - 20-50 ms of stalled loop on a 2-core VM, in the middle of a receipt burst.
    # The collection runs before the port listens (60-80 ms of CPU no client waits on:
    # after it, it stalled the first submits and the first purge step by 50-490 ms); the
    # freeze after start-up, which only moves the collector's lists, takes what start built.
    gc.collect()
    await gateway.start()
    up.set()
    gc.freeze()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    systemd.notify_ready()  # listening: systemd (Type=notify) counts us as started now
    interval = systemd.watchdog_interval()
    watchdog = systemd.Watchdog(interval) if interval is not None else None
    if watchdog is not None:
        watchdog.start()
    await stop.wait()
    systemd.notify_stopping()
    log.info("stopping")
    try:
        if reloads:  # a reload under way finishes before the parts it swaps stop
            await asyncio.wait(set(reloads), timeout=30)
        await gateway.stop()
    finally:
        if watchdog is not None:  # fed while stopping: a slow, clean stop is not a hang
            watchdog.stop()
