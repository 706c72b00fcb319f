"""From the store to the drivers, and receipts from the drivers back to the applications.

The dispatcher claims due messages from the store and sends each through a usable target of its
route, in the order the route's strategy gives (`order_targets`). Sends run concurrently (up
to `max_inflight`), so one slow upstream round trip never serialises the rest; a driver's own
window and throughput limit pace it further.

A send's outcome is recorded: sent (with every part's upstream id, indexed under each canonical
spelling), retried later with exponential backoff and jitter, or failed - permanently at once,
temporarily once `max_attempts` sends were tried or the message is `max_age` old. A `quality`
route's targets are reordered by their recent delivery (`QualityBoard`, one per route, fed
with every final outcome of the route's messages and kept across reloads). A message no
target can take now waits without spending an attempt; one whose validity period passes ends
EXPIRED. One whose every target says it can never send as it is (`Diagnosable`: a modem bank
whose SIMs all want another PIN or lack an SMSC address) ends FAILED at once
(ESME_RSUBMITFAIL), logged once per route rather than per message. Every end the application
asked to hear about becomes a receipt.

Receipts come back through `receipt`, from any driver, and are group-committed as accepts
are: whatever came while the last batch was written goes in the next, matched in one store
transaction (`match_receipts`) and settled in one more (`settle_many`), so a burst of receipts
costs a few transactions, not two per receipt. A receipt is matched to our message and part
through the upstream id, spelled as that upstream spells ids (`IdSpelling`: case and leading
zeros never matter; once the upstream's format is known, configured or learnt and kept across
restarts, an id is never read in another base); one whose id is not known yet is looked up
again once every send that started before it came has been recorded (carriers send receipts
before submit_sm_resp), and then kept raw among the unknown receipts and counted - never
forced onto a message. Every receipt is kept with its raw text. The message ends - as its
receipt says, UNKNOWN for a stat nobody can read - when its upstream's `multipart_receipts`
policy says so; "already final?" and "settle" are one conditional step in the store, so a
message ends once and its application gets exactly one final receipt: a deliver_sm in the
Appendix B format with our id and the receipted_message_id / message_state /
network_error_code TLVs, queued durably for the account; the server pushes it to a bound RX/TRX
session. Intermediate notifications (registered_delivery bit 4) go out when an upstream takes
the message and when it reports a non-final state (an intermediate notification, esm_class
0x20, included).

Every message ends: one whose receipt did not come within its upstream's `receipt_timeout` is
asked for (`Queryable.query`, query_sm) where the upstream can, and otherwise ends UNKNOWN with
a receipt; one no target could take for `max_age` ends FAILED with a receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from drivers.base import Diagnosable, Driver, Queryable, ReceiptPolicy, SendResult, UpstreamReceipt
from gateway.config import DispatchConfig
from gateway.inbound import Inbound, OptOutRule
from gateway.policy.dead import DeadRule
from gateway.policy.rules import Reason
from gateway.routing import NumberPlan, RouteTable
from gateway.routing.mo import MoRouter
from gateway.routing.quality import QualityBoard
from gateway.routing.table import Route, Strategy, Target, order_targets
from gateway.smpp.codec import encode_pdu
from gateway.smpp.constants import CommandStatus, EsmClass, Tag
from gateway.smpp.pdu import DeliverSm
from gateway.smpp.receipt import IdSpelling, ReceiptState
from gateway.smpp.tlv import Tlv
from gateway.sms.coding import decode_text, encoding_of_data_coding
from gateway.store.base import (
    IncomingReceipt,
    MessageRecord,
    MessageState,
    NewDelivery,
    OverdueMessage,
    Settlement,
    Store,
    channels_for,
    state_of_smpp,
)
from gateway.telemetry import logging as telemetry
from gateway.telemetry import stages
from gateway.telemetry.events import Events
from gateway.telemetry.metrics import Metrics

__all__ = ["Dispatcher"]

log = structlog.get_logger("smsgw.dispatch")

_NO_TARGET_WAIT = 0.2  # seconds to wait for a busy target's window before requeueing
_NO_TARGET_RETRY = 1.0  # seconds before a message no target could take is looked at again
_EARLY_MAX = 100_000  # receipts held for ids not yet recorded
_OTHER_NODE_LOOKS = 6  # looks again for a send another node has not recorded yet
_OTHER_NODE_WAIT = 0.05  # seconds before the first of them; doubles
_RECEIPT_BATCH = 512  # receipts matched and settled in one store transaction at most
# Receipts a batch handles between two turns of the event loop: building a receipt for
# the application costs 25-50 us, so a whole batch at once would stall the loop 15-25 ms.
_RECEIPT_SLICE = 128
_OVERDUE_BATCH = 256
_NO_TARGET_ERROR = 0x08  # ESME_RSYSERR in the receipt of a message no target could take
_HOPELESS_ERROR = int(CommandStatus.ESME_RSUBMITFAIL)  # every target unusable for good
_HOPELESS_LOG_EVERY = 60.0  # seconds between "route cannot send" logs of one route


class Dispatcher:
    """Moves messages out and receipts back.

    Args:
        notify: called with an account name when a deliver_sm was queued for it.
        settings: attempts, age, backoff, in-flight cap, delivery TTL, purge interval.
        retention: seconds final messages are kept (the store's `retention_days`).
        stats_retention: seconds delivery statistics are kept (`stats_retention_days`).
        early_wait: how long a receipt whose id is not known yet waits for the sends in
            flight to be recorded (carriers send receipts before submit_sm_resp).
        webhook_events: what an account's webhook wants (`WebhookConfig.events`; empty: no
            webhook): its receipts and MO are queued for the webhook too, in the same write.
    """

    def __init__(
        self,
        store: Store,
        routes: RouteTable,
        drivers: Mapping[str, Driver],
        *,
        notify: Callable[[str], None] = lambda _account: None,
        clock: Callable[[], float] = time.time,
        settings: DispatchConfig | None = None,
        retention: float = 30 * 86_400.0,
        stats_retention: float = 90 * 86_400.0,
        poll_interval: float = 0.5,
        mo_router: MoRouter | None = None,
        plan: NumberPlan | None = None,
        mo_timeout: float = 300.0,
        early_wait: float = 10.0,
        webhook_events: Callable[[str], frozenset[str]] = lambda _account: frozenset(),
    ) -> None:
        self.store = store
        self.webhook_events = webhook_events
        self.routes = {route.name: route for route in routes.routes}
        self.drivers = dict(drivers)
        self.notify = notify
        self.clock = clock
        self.settings = settings or DispatchConfig()
        self.retention = retention
        self.stopped_state = MessageState.REJECTED  # how a rule's stop ends (policy.stopped_state)
        # (longest cap window, dedup window): how long the rules' counts are kept; None: no rules
        self.policy_windows: tuple[float, float] | None = None
        self.stats_retention = stats_retention
        self.poll_interval = poll_interval
        # Other nodes share the store (PostgreSQL): a receipt may name their sends.
        self.shared_store = False
        self._wake = asyncio.Event()
        self._capacity = asyncio.Event()  # a send finished: a window may have room again
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._metrics: Metrics | None = None
        self._events = Events.off()
        self.dead: DeadRule | None = None  # policy.dead_numbers, when it names error codes
        self._early: dict[tuple[str, str], UpstreamReceipt] = {}
        self._tickets = _Tickets()  # sends in the order they started
        self.early_wait = early_wait
        self._pick = 0
        self._in_hand = 0  # receipts, MO and late results the drivers handed over, not yet kept
        self._idle = asyncio.Event()
        self._idle.set()
        self._diagnosable = {n: d for n, d in self.drivers.items() if isinstance(d, Diagnosable)}
        self._hopeless_logged: dict[str, tuple[float, str, int]] = {}  # route: at, reason, failed
        self._inbound = Inbound(
            store,
            router=mo_router or MoRouter(()),
            plan=plan or NumberPlan(),
            notify=notify,
            clock=clock,
            delivery_ttl=self.settings.delivery_ttl,
            webhook_events=webhook_events,
            mo_timeout=mo_timeout,
            seed=random.getrandbits(16),
        )
        self._by_upstream = {driver.name: driver for driver in self.drivers.values()}
        self._default_policy = ReceiptPolicy(receipt_timeout=self.settings.receipt_timeout)
        self._spellings: dict[str, IdSpelling] = {}
        self._receipts: list[_Waiting] = []  # waiting for the next receipt batch
        self._receipt_writer: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()  # batches' settlements being written
        self._background: set[asyncio.Task[None]] = set()
        self.unknown_receipts = 0  # receipts no message matched (kept raw in the store)
        self._saved: dict[str, tuple[str | None, str | None]] = {}  # id spellings kept
        # Route tables replaced by reloads: (replaced at, routes), oldest first. A message
        # goes by the table in force when it was accepted (see `swap_routes`).
        self._retired: list[tuple[float, dict[str, Route]]] = []
        self._passes = 0  # claims that emptied the queue of due messages
        self._passed = asyncio.Event()
        # Quality routes' boards and pick counters (own counters: a shared one would alias
        # the probe share when routes interleave), by route name.
        self._boards: dict[str, QualityBoard] = {}
        self._quality_picks: dict[str, int] = {}

    @property
    def metrics(self) -> Metrics | None:
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Metrics | None) -> None:
        self._metrics = self._inbound.metrics = metrics

    @property
    def events(self) -> Events:
        return self._events

    @events.setter
    def events(self, events: Events) -> None:
        self._events = self._inbound.events = events

    def set_policy(self, opt_out: OptOutRule | None, dead: DeadRule | None) -> None:
        """The sending rules' parts applied here (at start and on reload): MO opt-out
        keywords, and which receipts count towards a dead number."""
        self._inbound.opt_out = opt_out
        self.dead = dead

    async def start(self) -> None:
        for upstream, (sent, received) in (await self.store.id_formats()).items():
            self._spelling(upstream).restore(sent, received)
            self._saved[upstream] = self._spelling(upstream).bases
        for driver in self.drivers.values():
            await driver.start(self)
        await self.store.heartbeat(self.clock())  # before the first claim: it is ours
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run()),
            loop.create_task(self._housekeeping()),
            loop.create_task(self._receipt_timeouts()),
            loop.create_task(self._leases()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sending:  # sends in flight finish or time out in their drivers
            await asyncio.wait(set(self._sending), timeout=15)
        for driver in self.drivers.values():
            await driver.stop()
        # What the drivers handed over is kept before the store may close.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.early_wait + 5.0)
        if self._in_hand:
            log.warning("stopping with receipts or MO still in hand", count=self._in_hand)
        writer = self._receipt_writer
        if writer is not None and not writer.done():
            await asyncio.wait([writer], timeout=15)
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=15)
        for task in list(self._background):
            task.cancel()

    def wake(self) -> None:
        """A message was accepted: look for due work now rather than at the next poll."""
        self._wake.set()

    # -- sending ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            room = self.settings.max_inflight - len(self._sending)
            if room <= 0:
                await asyncio.wait(set(self._sending), return_when=asyncio.FIRST_COMPLETED)
                continue
            records = await self.store.claim_due(self.clock(), min(room, 512))
            if len(records) < min(room, 512):  # everything due now is claimed (reload waits)
                self._passes += 1
                self._passed.set()
            started = stages.begin()
            for record in records:
                try:
                    await self._start(record)  # awaits only when it cannot start it
                except Exception:
                    log.exception("dispatch failed", message_id=record.message.id)
                    await self.store.set_state(
                        record.message.id,
                        MessageState.ACCEPTED,
                        self.clock(),
                        retry_at=self.clock() + _NO_TARGET_RETRY,
                        tried=False,
                    )
            stages.end("dispatch.start", started)
            if not records:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _usable(self, name: str) -> bool:
        driver = self.drivers.get(name)
        return driver is not None and driver.usable()

    def _target(self, record: MessageRecord) -> Driver | None:
        route = self.routes.get(record.message.route)
        if self._retired and record.message.accepted_at < self._retired[-1][0]:
            route = self._route_at(record.message.route, record.message.accepted_at, route)
        if route is None:
            return None
        if len(route.targets) == 1:  # the common case: no strategy to apply
            driver = self.drivers.get(route.targets[0].name)
            return driver if driver is not None and driver.usable() else None
        targets = self._order(route)
        return self.drivers[targets[0].name] if targets else None

    def _order(self, route: Route) -> tuple[Target, ...]:
        """The route's usable targets in the order to try them, for one message."""
        self._pick += 1
        targets = order_targets(route, self._usable, self._pick)
        if route.strategy is Strategy.QUALITY and len(targets) > 1:
            pick = self._quality_picks[route.name] = self._quality_picks.get(route.name, 0) + 1
            targets = self._board(route).order(targets, self.clock(), pick)
        return targets

    def _board(self, route: Route) -> QualityBoard:
        board = self._boards.get(route.name)
        if board is None:
            board = self._boards[route.name] = QualityBoard(route.quality)
        return board

    def _learn(
        self, route_name: str, target: str, now: float, delivered: bool, latency: float | None
    ) -> None:
        """A final outcome of a message `target` sent, for its route's board if the route
        is a quality one; a demotion or promotion is logged and counted."""
        route = self.routes.get(route_name)
        if route is None or route.strategy is not Strategy.QUALITY or not target:
            return
        change = self._board(route).record(target, now, delivered=delivered, latency=latency)
        if change is None:
            return
        rate = round(change.rate, 3)
        if change.demoted:
            log.warning("route target demoted", route=route_name, target=target, rate=rate)
        else:
            log.info("route target promoted", route=route_name, target=target, rate=rate)
        if self.metrics is not None:
            self.metrics.transition(route_name, target, "demoted" if change.demoted else "promoted")

    def _route_at(self, name: str, accepted_at: float, current: Route | None) -> Route | None:
        """The route `name` as it was when a message accepted at `accepted_at` was routed;
        the current one if that table's targets are all gone (removed by a reload)."""
        for replaced_at, routes in self._retired:
            if accepted_at < replaced_at:
                old = routes.get(name)
                if old is not None and any(t.name in self.drivers for t in old.targets):
                    return old
                return current
        return current

    def swap_routes(self, routes: RouteTable, mo_router: MoRouter, plan: NumberPlan) -> None:
        """A reload's new tables: the next message accepted uses them.

        Messages accepted before still go by the table they were routed with - a route
        changed or removed keeps its old targets for them, as long as one of those is still
        configured (else the route of that name in the new table, if any). Tables older than
        `max_age` can route nothing any more and are dropped.
        """
        now = self.clock()
        self._retired = [r for r in self._retired if now - r[0] < self.settings.max_age]
        self._retired.append((now, self.routes))
        self.routes = {route.name: route for route in routes.routes}
        # A quality route kept by name keeps what its board learnt, under its new settings.
        for name, board in list(self._boards.items()):
            route = self.routes.get(name)
            if route is None or route.strategy is not Strategy.QUALITY:
                del self._boards[name]
                self._quality_picks.pop(name, None)
            else:
                board.settings = route.quality
        self._inbound.router = mo_router
        self._inbound.plan = plan

    async def add_driver(self, driver: Driver) -> None:
        """Start a driver added by a reload and let routes use it."""
        await driver.start(self)
        self._add(driver)

    def _add(self, driver: Driver) -> None:
        self.drivers[driver.name] = driver
        self._by_upstream[driver.name] = driver
        if isinstance(driver, Diagnosable):
            self._diagnosable[driver.name] = driver

    async def remove_driver(self, name: str, *, drain: float = 15.0) -> None:
        """Retire a driver the new route table no longer names: the messages due now that
        an older table routed to it are handed to it first, the sends started finish (up to
        `drain` seconds in all), then it stops and its binds unbind cleanly. A message of it
        due later (a retry, a scheduled one) goes by the route of its name in the new table."""
        driver = self.drivers.get(name)
        if driver is None:
            return
        deadline = asyncio.get_running_loop().time() + drain
        await self._drain_queue(deadline)
        self.drivers.pop(name, None)
        self._diagnosable.pop(name, None)
        if self._sending:
            left = max(0.1, deadline - asyncio.get_running_loop().time())
            await asyncio.wait(set(self._sending), timeout=left)
        await driver.stop()
        # Receipts it sends after this find no link; late ones still match by upstream name.
        self._by_upstream.pop(name, None)

    async def _drain_queue(self, deadline: float) -> None:
        """Until two claims have emptied the queue of due messages: the second began after
        this was called, so whatever was due then has been handed to a driver."""
        loop = asyncio.get_running_loop()
        target = self._passes + 2
        while self._passes < target and loop.time() < deadline and self._tasks:
            self._passed.clear()
            self.wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._passed.wait(), deadline - loop.time())

    async def replace_driver(self, driver: Driver, *, drain: float = 15.0) -> None:
        """A changed driver: the new one starts, the old one drains and unbinds."""
        old = self.drivers.get(driver.name)
        await driver.start(self)
        self._add(driver)
        if old is not None and old is not driver:
            if self._sending:
                await asyncio.wait(set(self._sending), timeout=drain)
            await old.stop()

    def _hopeless(self, route_name: str) -> str | None:
        """Why no target of the route can ever send without an operator, when every one
        says so (`Diagnosable`); None while one may still send, now or later."""
        route = self.routes.get(route_name)
        if route is None:
            return None
        reasons = []
        for target in route.targets:
            driver = self._diagnosable.get(target.name)
            reason = driver.unusable_reason() if driver is not None else None
            if reason is None or driver is None or driver.usable():
                return None
            reasons.append(f"{target.name}: {reason}")
        return "; ".join(reasons)

    def _log_hopeless(self, route: str, reason: str) -> None:
        """Once per route (again when the reason changes, or every minute with a count):
        a bank with a wrong PIN fails every message of its route, not one log line each."""
        now = time.monotonic()
        at, logged, failed = self._hopeless_logged.get(route, (0.0, "", 0))
        if reason == logged and now - at < _HOPELESS_LOG_EVERY:
            self._hopeless_logged[route] = (at, logged, failed + 1)
            return
        log.error(
            "no target of the route can send: its messages fail at once",
            route=route,
            reason=reason,
            failed_since_last=failed,
        )
        self._hopeless_logged[route] = (now, reason, 0)

    async def _start(self, record: MessageRecord) -> None:
        """Hand one claimed message to a driver (or settle it without one)."""
        message = record.message
        now = self.clock()
        if record.stop_reason is not None:
            # A sending rule stopped it at accept: it ends here, its app told by the receipt.
            await self._end(record, self.stopped_state, _stop_error(record.stop_reason), now)
            return
        if message.expires_at is not None and now >= message.expires_at:
            await self._end(record, MessageState.EXPIRED, 0, now)
            return
        driver = self._target(record)
        if driver is None and (reason := self._hopeless(message.route)) is not None:
            # No target of its route can ever send as it is: end it now, with a receipt.
            self._log_hopeless(message.route, reason)
            await self._end(record, MessageState.FAILED, _HOPELESS_ERROR, now)
            return
        if driver is None and message.route in self.routes:
            # Windows full: wait a moment for a send to finish rather than requeue at once.
            deadline = asyncio.get_running_loop().time() + _NO_TARGET_WAIT
            while driver is None and asyncio.get_running_loop().time() < deadline:
                self._capacity.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._capacity.wait(), _NO_TARGET_WAIT)
                driver = self._target(record)
        if driver is None and now - message.accepted_at >= self.settings.max_age:
            # Every target of its route unusable for max_age (a bank whose SIMs all want
            # another PIN, a carrier that refuses the bind): it ends, and the app hears.
            log.warning("no target could take it: failed", message_id=message.id)
            await self._end(record, MessageState.FAILED, _NO_TARGET_ERROR, now)
            return
        if driver is None:
            retry_at = now + _NO_TARGET_RETRY
            if message.expires_at is not None:
                retry_at = min(retry_at, message.expires_at)
            await self.store.set_state(
                message.id, MessageState.ACCEPTED, now, retry_at=retry_at, tried=False
            )
            return
        task = asyncio.get_running_loop().create_task(self._send(record, driver))
        self._sending.add(task)
        task.add_done_callback(self._sent_done)

    def _sent_done(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._capacity.set()

    async def _send(self, record: MessageRecord, driver: Driver) -> None:
        ticket = self._tickets.open()
        try:
            await self._send_once(record, driver)
        finally:
            self._tickets.close(ticket)

    async def _send_once(self, record: MessageRecord, driver: Driver) -> None:
        message = record.message
        try:
            result: SendResult = await driver.send(record)
        except Exception as exc:  # a driver bug must not lose the message
            log.exception("driver failed", driver=driver.name, message_id=message.id)
            result = SendResult(False, error=0x08, permanent=False)
            del exc
        now = self.clock()
        if result.ok:
            await self._sent(record, driver.name, result, now)
            return
        settings = self.settings
        if result.permanent:
            await self._end(record, MessageState.FAILED, result.error, now, driver.name)
            return
        expired = message.expires_at is not None and now >= message.expires_at
        if expired:
            await self._end(record, MessageState.EXPIRED, result.error, now, driver.name)
            return
        if record.attempts >= settings.max_attempts or now - message.accepted_at >= (
            settings.max_age
        ):
            log.warning(
                "giving up",
                message_id=message.id,
                attempts=record.attempts,
                error=result.error,
            )
            await self._end(record, MessageState.FAILED, result.error, now, driver.name)
            return
        delay = min(
            settings.retry_backoff * 2 ** max(0, record.attempts - 1), settings.max_retry_backoff
        )
        retry_at = now + delay * random.uniform(0.8, 1.2)
        if message.expires_at is not None:
            retry_at = min(retry_at, message.expires_at)
        await self.store.set_state(
            message.id, MessageState.ACCEPTED, now, error=result.error, retry_at=retry_at
        )

    async def _sent(
        self, record: MessageRecord, upstream: str, result: SendResult, now: float
    ) -> None:
        message = record.message
        spelling = self._spelling(upstream)
        part_keys = tuple(spelling.sent(upstream_id) for upstream_id in result.part_ids)
        self._learnt(upstream)
        await self.store.record_sent(message.id, upstream, part_keys, now, part_ids=result.part_ids)
        started = stages.begin()
        self._events.message_state(
            message.id, "sent", message.account, message.route, target=upstream
        )
        if telemetry.messages:
            _lifecycle("sent", record, target=upstream, upstream_id=",".join(result.part_ids))
        if self.metrics is not None:
            self.metrics.ended("sent", message.route, upstream)
        if message.registered_delivery & 0x10:
            await self._notify_app(record, MessageState.SENT, 0, now, intermediate=True)
        for keys in part_keys:
            for key in keys:
                early = self._early.pop((upstream, key), None)
                if early is not None:
                    for other in spelling.received(early.upstream_id, widened=True, learn=False):
                        self._early.pop((upstream, other), None)
                    # kept already (among the unknown ones): now it finds its message
                    self._spawn(self.receipt(early))
                    break
        stages.end("dispatch.sent", started)

    async def _end(
        self, record: MessageRecord, state: MessageState, error: int, now: float, target: str = ""
    ) -> None:
        """Settle a message we could not (or may no longer) send, and tell its application."""
        if self.metrics is not None:
            self.metrics.ended(state.name.lower(), record.message.route, target)
        self._learn(record.message.route, target, now, False, None)
        delivery = self._receipt_delivery(record, state, error, now)
        settled = await self.store.settle(
            record.message.id, state, now, error=error or None, delivery=delivery
        )
        if settled:  # not already ended another way
            m = record.message
            self._events.message_state(
                m.id, state.value, m.account, m.route, target=target or None, error=error or None
            )
        if telemetry.messages:
            _lifecycle("failed", record, state=state.name, error=error)
        if delivery is not None:
            self.notify(delivery.account)

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        """See `ReceiptSink.late_result`."""
        with self._holding():
            await self._late_result(upstream, message_id, result)

    async def _late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        if not result.ok:
            return
        record = await self.store.get(message_id)
        if record is None or record.state is not MessageState.ACCEPTED:
            return  # already re-sent, or settled: nothing to undo
        log.info("late submit_sm_resp: recorded, not re-sent", message_id=message_id)
        await self._sent(record, upstream, result, self.clock())

    # -- receipts -----------------------------------------------------------------------------

    async def receipt(self, receipt: UpstreamReceipt) -> None:
        """A driver's receipt (the `ReceiptSink` every driver is started with). Durable when
        this returns - matched and kept, the message settled, or kept as unknown - so the
        driver may acknowledge it then.

        Receipts are group-committed as accepts are: whatever came while the last batch was
        written goes in the next one, matched in one store transaction and settled in
        another, so a burst of receipts costs a few transactions, not one per receipt."""
        loop = asyncio.get_running_loop()
        with self._holding():
            waiting = _Waiting(receipt, self._tickets.issued, loop.create_future())
            # No id (a carrier's receipt with none anywhere): no send can make it known, so
            # it is kept among the unknown receipts at once.
            waiting.widened = not receipt.upstream_id.strip("\x00 ")
            self._queue_receipt(waiting)
            await waiting.done

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """Count what a driver handed over until it is kept: `stop` waits for none to be left
        before the store may close (a receipt in hand must not meet a closed store)."""
        self._in_hand += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_hand -= 1
            if not self._in_hand:
                self._idle.set()

    def _queue_receipt(self, waiting: _Waiting) -> None:
        self._receipts.append(waiting)
        if self._receipt_writer is None or self._receipt_writer.done():
            self._receipt_writer = asyncio.get_running_loop().create_task(self._write_receipts())

    async def _write_receipts(self) -> None:
        """Batch after batch: each is matched (one transaction) once the one before was, so
        it sees every receipt kept before it (every part of a message); its settlements are
        then written (a second transaction) while the next batch is matched - with SQLite
        both share the writer's next commit. Settling is conditional, so two batches never
        both end a message."""
        while self._receipts:
            batch = self._receipts[:_RECEIPT_BATCH]
            del self._receipts[:_RECEIPT_BATCH]
            await self._match_and_settle(batch)

    async def _match_and_settle(self, batch: list[_Waiting]) -> None:
        try:
            kept, settlements, notices, now, numbers, ended = await self._match_receipts(batch)
        except Exception as exc:
            if len(batch) > 1:  # one receipt the store refuses must not fail its neighbours
                half = len(batch) // 2
                await self._match_and_settle(batch[:half])
                await self._match_and_settle(batch[half:])
                return
            log.exception("receipt not kept; the upstream will send it again")
            _fail(batch, exc)  # the driver answers a temporary error
            return
        settle = self._settle_receipts(kept, settlements, notices, now, numbers, ended=ended)
        task = asyncio.get_running_loop().create_task(settle)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _match_receipts(
        self, batch: list[_Waiting]
    ) -> tuple[
        list[_Waiting],
        list[Settlement],
        list[NewDelivery],
        float,
        _Numbers | None,
        list[tuple[MessageRecord, str]],
    ]:
        """Match and keep a batch; what it ends, and the notifications it makes."""
        now = self.clock()
        started = stages.begin()
        incoming = []
        for w in batch:
            r = w.receipt
            keys = self._spelling(r.upstream).received(
                r.upstream_id, widened=w.widened, learn=not w.queried
            )
            incoming.append(
                IncomingReceipt(
                    r.upstream,
                    keys,
                    r.upstream_id,
                    r.message_state,
                    r.error,
                    now,
                    r.raw,
                    keep_unknown=w.widened,
                )
            )
        for upstream in {w.receipt.upstream for w in batch}:
            self._learnt(upstream)
        stages.end("receipt.match", started)
        matches = await self.store.match_receipts(incoming)
        started = stages.begin()
        settlements: list[Settlement] = []
        notices: list[NewDelivery] = []
        ending: set[str] = set()
        kept: list[_Waiting] = []
        events = self._events
        ended: list[tuple[MessageRecord, str]] = []  # per settlement: for its event
        dead = self.dead
        numbers = _Numbers() if dead is not None else None
        for n, (w, match) in enumerate(zip(batch, matches, strict=True)):
            if n and not n % _RECEIPT_SLICE:
                stages.end("receipt.match", started)
                await asyncio.sleep(0)
                started = stages.begin()
            r = w.receipt
            if match is None:
                if not w.widened:
                    self._spawn(self._widen(w))  # not durable yet: its caller waits on
                    continue
                if self.shared_store and w.looks < _OTHER_NODE_LOOKS:
                    self._spawn(self._look_again(w))  # another node's send, not recorded yet
                    continue
                self._unknown(r)
                kept.append(w)
                continue
            kept.append(w)
            record = match.record
            message = record.message
            final = None if r.intermediate else state_of_smpp(r.message_state)
            if events.enabled:
                stat = "enroute" if final is None else final.value
                events.receipt(
                    r.upstream,
                    r.upstream_id,
                    message_id=message.id,
                    state=stat,
                    message_state=r.message_state,
                    error=r.error,
                )
            if final is None:  # ENROUTE / ACCEPTD / an intermediate notification
                if message.registered_delivery & 0x10 and not record.state.final:
                    notice = self._receipt_delivery(
                        record, MessageState.SENT, r.error, now, intermediate=True
                    )
                    if notice is not None:
                        notices.append(notice)
                continue
            if record.state.final or message.id in ending:
                continue  # a repeated receipt: kept, but the application has had its answer
            policy = self._policy(r.upstream)
            state = _outcome(policy.multipart_receipts, match.states, final)
            if state is None:
                continue  # parts still out
            ending.add(message.id)
            if numbers is not None and dead is not None:
                if state is MessageState.DELIVERED:
                    numbers.delivered.append(message.destination_addr)
                elif dead.counts(r.upstream, r.error):
                    numbers.failed.append(message.destination_addr)
            latency = now - record.updated_at if record.state is MessageState.SENT else None
            if self.metrics is not None:
                self.metrics.ended(state.name.lower(), message.route, r.upstream)
                if latency is not None:
                    self.metrics.receipt(r.upstream, latency)
            self._learn(message.route, r.upstream, now, state is MessageState.DELIVERED, latency)
            delivery = self._receipt_delivery(record, state, r.error, now)
            settlements.append(Settlement(message.id, state, r.error or None, delivery))
            ended.append((record, r.upstream))
            if telemetry.messages:
                _lifecycle(
                    "receipt",
                    record,
                    state=state.name,
                    target=r.upstream,
                    upstream_id=r.upstream_id,
                )
        stages.end("receipt.match", started)
        return kept, settlements, notices, now, numbers, ended

    async def _settle_receipts(
        self,
        kept: list[_Waiting],
        settlements: list[Settlement],
        notices: list[NewDelivery],
        now: float,
        numbers: _Numbers | None = None,
        *,
        ended: list[tuple[MessageRecord, str]] | None = None,
    ) -> None:
        """End what a matched batch ends (one transaction); then its receipts are durable."""
        try:
            if settlements or notices:
                done = await self.store.settle_many(settlements, now, deliveries=tuple(notices))
                started = stages.begin()
                if self._events.enabled and ended:
                    self._ended_events(settlements, done, ended)
                accounts = {d.account for d in notices}
                accounts.update(
                    s.delivery.account
                    for s, ok in zip(settlements, done, strict=True)
                    if ok and s.delivery is not None
                )
                for account in sorted(accounts):
                    self.notify(account)
                stages.end("receipt.settle", started)
        except Exception as exc:
            _fail(kept, exc)  # kept, but not settled: the carrier sends them again
            return
        if numbers is not None and (numbers.failed or numbers.delivered):
            await self._dead_numbers(numbers, now)
        started = stages.begin()
        for n, w in enumerate(kept):
            if n and not n % _RECEIPT_SLICE:
                stages.end("receipt.settle", started)
                await asyncio.sleep(0)  # each wakes a driver's task, which answers its carrier
                started = stages.begin()
            if not w.done.done():
                w.done.set_result(None)
        stages.end("receipt.settle", started)

    def _ended_events(
        self,
        settlements: list[Settlement],
        done: list[bool],
        ended: list[tuple[MessageRecord, str]],
    ) -> None:
        """The state events of what a receipt batch ended (those the store did end)."""
        events = self._events
        for s, ok, (record, target) in zip(settlements, done, ended, strict=True):
            if ok:
                m = record.message
                events.message_state(
                    m.id, s.state.value, m.account, m.route, target=target, error=s.error
                )

    async def _dead_numbers(self, numbers: _Numbers, now: float) -> None:
        """One write per receipt batch: failures counted, delivered numbers forgotten. A
        failure here is only logged - the receipts themselves are settled."""
        dead = self.dead
        if dead is None:
            return
        try:
            marked = await self.store.record_dead_failures(
                numbers.failed,
                now,
                after=dead.after,
                period=dead.period,
                delivered=numbers.delivered,
            )
        except Exception:
            log.exception("dead numbers not counted")
            return
        for number in marked:
            log.info("number marked dead", number=number, until=now + dead.period)

    async def _widen(self, waiting: _Waiting) -> None:
        """An id no key matched: a receipt can beat its own submit_sm_resp, so look again
        once every send that started before it came has been recorded - only then may
        another spelling of a number match (a different message may carry it meanwhile)."""
        await self._tickets.wait_older(waiting.ticket, self.early_wait)
        waiting.widened = True
        self._queue_receipt(waiting)

    async def _look_again(self, waiting: _Waiting) -> None:
        """Nodes sharing the store: the carrier may hand a receipt to this node's link for a
        message another node sent and has not recorded yet (its loop busy), which
        `_tickets` cannot see. Look again a few times, 0.05 s doubling (3.15 s in all), before
        keeping it as unknown."""
        await asyncio.sleep(_OTHER_NODE_WAIT * 2**waiting.looks)
        waiting.looks += 1
        self._queue_receipt(waiting)

    def _unknown(self, receipt: UpstreamReceipt) -> None:
        """Still unknown after the look that waits for sends: kept (raw) in the store and
        counted; held in memory too, in case its id is recorded later after all."""
        self.unknown_receipts += 1
        final = None if receipt.intermediate else state_of_smpp(receipt.message_state)
        self._events.receipt(
            receipt.upstream,
            receipt.upstream_id,
            message_id=None,
            state="enroute" if final is None else final.value,
            message_state=receipt.message_state,
            error=receipt.error,
        )
        spelling = self._spelling(receipt.upstream)
        for key in spelling.received(receipt.upstream_id, widened=True, learn=False):
            self._early[(receipt.upstream, key)] = receipt
        while len(self._early) > _EARLY_MAX:
            self._early.pop(next(iter(self._early)))
        log.warning("receipt for an unknown id", upstream=receipt.upstream, id=receipt.upstream_id)

    def _policy(self, upstream: str) -> ReceiptPolicy:
        policy = getattr(self._by_upstream.get(upstream), "receipt_policy", None)
        if isinstance(policy, ReceiptPolicy):
            return policy
        return self._default_policy

    def _spelling(self, upstream: str) -> IdSpelling:
        spelling = self._spellings.get(upstream)
        if spelling is None:
            spelling = self._spellings[upstream] = IdSpelling(self._policy(upstream).id_format)
        return spelling

    def _learnt(self, upstream: str) -> None:
        """Keep what was just learnt of an upstream's id spelling (rarely: a few times in the
        upstream's life), so a restart does not forget it."""
        bases = self._spelling(upstream).bases
        if self._saved.get(upstream, (None, None)) != bases:
            self._saved[upstream] = bases
            self._spawn(self.store.save_id_format(upstream, *bases))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(_logged(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- receipts that never come -------------------------------------------------------------

    async def _receipt_timeouts(self) -> None:
        """Now and then: a message whose receipt did not come within its upstream's
        `receipt_timeout` is asked for (query_sm) or ends UNKNOWN with a receipt, so every
        message the application sent gets exactly one final receipt."""
        while True:
            try:
                await self.settle_overdue()
            except Exception:
                log.exception("receipt timeouts failed")
            await asyncio.sleep(min(60.0, max(0.05, self._shortest_timeout() / 4)))

    def _shortest_timeout(self) -> float:
        policies = [self._policy(name).receipt_timeout for name in self._by_upstream]
        return min([self.settings.receipt_timeout, *policies])

    async def settle_overdue(self) -> int:
        """Ask for or settle every message overdue now; how many were looked at. Each
        upstream by its own timeout (a long one never hides a short one's messages); then
        whatever is older than every timeout (sent by an upstream no longer configured)."""
        now = self.clock()
        timeouts = {name: self._policy(name).receipt_timeout for name in self._by_upstream}
        passes: list[tuple[str | None, float]] = list(timeouts.items())
        passes.append((None, max([self.settings.receipt_timeout, *timeouts.values()])))
        seen = 0
        for upstream, timeout in passes:
            while True:
                overdue = await self.store.overdue_sent(
                    now - timeout, _OVERDUE_BATCH, upstream=upstream
                )
                await self._overdue(overdue)
                seen += len(overdue)
                if len(overdue) < _OVERDUE_BATCH:
                    break
        return seen

    async def _overdue(self, overdue: list[OverdueMessage]) -> None:
        """Ask for the missing parts where the upstream can (all at once: its window paces
        them); then end UNKNOWN, in one transaction, whatever the answers did not end (the
        settlement is conditional: one the answers ended stays as they said)."""
        await asyncio.gather(*(self._ask(o) for o in overdue))
        now = self.clock()
        settlements = []
        for o in overdue:
            log.info("no receipt in time", message_id=o.record.message.id, upstream=o.upstream)
            delivery = self._receipt_delivery(o.record, MessageState.UNKNOWN, 0, now)
            settlements.append(
                Settlement(o.record.message.id, MessageState.UNKNOWN, None, delivery)
            )
        done = await self.store.settle_many(settlements, now)
        for o, ok in zip(overdue, done, strict=True):
            if ok:  # no receipt in time counts against its target
                self._learn(o.record.message.route, o.upstream, now, False, None)
                m = o.record.message
                self._events.message_state(m.id, "unknown", m.account, m.route, target=o.upstream)
        for account in sorted(
            {
                s.delivery.account
                for s, ok in zip(settlements, done, strict=True)
                if ok and s.delivery
            }
        ):
            self.notify(account)

    async def _ask(self, overdue: OverdueMessage) -> None:
        """query_sm for each part of an overdue message that has no end yet; every final
        answer goes the way of a receipt (and may end the message)."""
        driver = self._by_upstream.get(overdue.upstream)
        if not isinstance(driver, Queryable) or not getattr(driver, "can_query", True):
            return
        for upstream_id, state in zip(overdue.part_ids, overdue.states, strict=False):
            if state is not None and state_of_smpp(state) is not None:
                continue  # this part has its end
            try:
                answer = await driver.query(upstream_id, overdue.record)
            except Exception:
                log.exception("query failed", upstream=overdue.upstream, id=upstream_id)
                continue
            if answer is not None and state_of_smpp(answer.message_state) is not None:
                waiting = _Waiting(answer, 0, asyncio.get_running_loop().create_future())
                waiting.queried = True
                self._queue_receipt(waiting)
                try:
                    await waiting.done
                except Exception:
                    log.exception("query answer not kept", id=upstream_id)

    def _receipt_delivery(
        self,
        record: MessageRecord,
        state: MessageState,
        error: int,
        now: float,
        *,
        intermediate: bool = False,
    ) -> NewDelivery | None:
        """The deliver_sm receipt the application asked for, if it asked."""
        m = record.message
        if not intermediate:
            asked = m.registered_delivery & 0x03
            if not (asked == 1 or (asked == 2 and state is not MessageState.DELIVERED)):
                return None
        pdu = encode_pdu(_receipt_pdu(record, state, error, now, intermediate=intermediate))
        channels = channels_for(
            "receipt", self.webhook_events(m.account), intermediate=intermediate
        )
        return NewDelivery(m.account, "receipt", pdu, self.settings.delivery_ttl, channels)

    async def _notify_app(
        self,
        record: MessageRecord,
        state: MessageState,
        error: int,
        now: float,
        *,
        intermediate: bool = False,
    ) -> None:
        delivery = self._receipt_delivery(record, state, error, now, intermediate=intermediate)
        if delivery is not None:
            # settle_many with no settlement: queued on every channel, in one write
            await self.store.settle_many([], now, deliveries=(delivery,))
            self.notify(delivery.account)

    # -- inbound ------------------------------------------------------------------------------

    async def inbound(self, pdu: Any) -> CommandStatus:
        """An MO message from an upstream (see `gateway.inbound`): the status to answer it with."""
        with self._holding():
            return await self._inbound.take(pdu)

    # -- housekeeping -------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Now and then: purge what the retention period no longer keeps, and deliver the
        inbound messages whose missing parts never came."""
        next_purge = 0.0
        while True:
            now = self.clock()
            try:
                if now >= next_purge:
                    next_purge = now + self.settings.purge_interval
                    started = time.monotonic()
                    gone = await self.store.purge(now - self.retention)
                    if self.policy_windows is not None:
                        longest, dedup = self.policy_windows
                        gone += await self.store.purge_policy(now - longest, now - dedup)
                    gone += await self.store.forget_stats(now - self.stats_retention)
                    if gone:
                        log.info("purged", rows=gone, seconds=round(time.monotonic() - started, 3))
                await self._inbound.housekeeping(now)
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(min(self.settings.purge_interval, self._inbound.mo_timeout / 4))

    async def _leases(self) -> None:
        """Nodes sharing the store: say this one is alive, four times per lease, and take
        back the messages a node silent for a whole lease had claimed."""
        lease = self.settings.delivery_lease
        while True:
            await asyncio.sleep(lease / 4)
            now = self.clock()
            try:
                if await self.store.heartbeat(now):
                    # Silent for a lease (a stalled loop, a lost database): its sends still
                    # in flight may go twice, as after a crash - at least once, never lost.
                    log.warning("this node was taken for dead; its claims were taken over")
                taken = await self.store.take_over(now, lease)
            except Exception:
                log.exception("node heartbeat failed")
                continue
            if taken:
                log.warning("took over the messages of a silent node", count=taken)
                self.wake()


def _stop_error(reason: str) -> int:
    """The receipt's err: for a sending rule's stop (`Reason.error_code`)."""
    try:
        return Reason(reason).error_code
    except ValueError:  # a reason of a newer release: still a stop
        return _HOPELESS_ERROR


def _fail(batch: list[_Waiting], exc: Exception) -> None:
    for waiting in batch:
        if not waiting.done.done():
            waiting.done.set_exception(exc)


async def _logged(coro: Any) -> None:
    """A background step: its failure is logged, never lost as an unretrieved exception."""
    try:
        await coro
    except Exception:
        log.exception("background step failed")


@dataclass
class _Numbers:
    """A receipt batch's destinations for the dead-number count."""

    failed: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _Waiting:
    """A receipt on its way into the store: `ticket` is the last send started before it
    came; `done` resolves once it is durable."""

    receipt: UpstreamReceipt
    ticket: int
    done: asyncio.Future[None]
    widened: bool = False  # the second look (every older send recorded): the last one
    queried: bool = False  # our query_sm's answer, not a receipt the carrier sent
    looks: int = 0  # later looks for another node's send (a shared store), after the second


def _outcome(multipart: str, states: list[int | None], final: MessageState) -> MessageState | None:
    """What a message ends as, given every part's latest receipt state (after this final
    one, `final`), under the upstream's `multipart_receipts`; None while it waits."""
    if len(states) <= 1 or multipart == "any":
        return final
    if multipart in ("first", "last"):
        state = states[0] if multipart == "first" else states[-1]
        return None if state is None else state_of_smpp(state)
    ends = [None if s is None else state_of_smpp(s) for s in states]
    if any(end is None for end in ends):
        return None
    failed = [end for end in ends if end is not MessageState.DELIVERED]
    return failed[0] if failed else MessageState.DELIVERED


class _Tickets:
    """Sends numbered as they start, so a receipt can wait until every send that started
    before it came has ended (recorded, or failed)."""

    def __init__(self) -> None:
        self.issued = 0
        self._open: deque[int] = deque()
        self._ended: set[int] = set()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by ticket

    def open(self) -> int:
        self.issued += 1
        self._open.append(self.issued)
        return self.issued

    def close(self, ticket: int) -> None:
        self._ended.add(ticket)
        while self._open and self._open[0] in self._ended:
            self._ended.discard(self._open.popleft())
        low = self._open[0] if self._open else self.issued + 1
        while self._waiters and self._waiters[0][0] < low:
            waiter = heapq.heappop(self._waiters)[2]
            if not waiter.done():
                waiter.set_result(None)

    async def wait_older(self, ticket: int, timeout: float) -> bool:
        """Wait until every send numbered `ticket` or lower has ended; False on timeout."""
        if not self._open or self._open[0] > ticket:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (ticket, id(waiter), waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        return True


def _receipt_pdu(
    record: MessageRecord, state: MessageState, error: int, now: float, *, intermediate: bool
) -> Any:
    """The deliver_sm receipt for the application: Appendix B text (as `format_receipt`
    writes it, with the lower-case ``text:`` key) and the three TLVs. Written out by hand:
    one of these goes out for nearly every message."""
    m = record.message
    body = (
        m.short_message[m.short_message[0] + 1 :]
        if m.esm_class & 0x40 and m.short_message
        else m.short_message
    )
    text = decode_text(body, encoding_of_data_coding(m.data_coding), errors="replace")[:20]
    stat = ReceiptState(state.stat)
    delivered = "001" if state is MessageState.DELIVERED else "000"
    err = f"{error:03d}" if error >= 0 else "000"
    short_message = (
        f"id:{m.id} sub:001 dlvrd:{delivered} submit date:{_minute(m.accepted_at)}"
        f" done date:{_minute(now)} stat:{stat.value} err:{err} text:{text}"
    ).encode("latin-1", "replace")
    return DeliverSm(
        source_addr_ton=m.dest_addr_ton,
        source_addr_npi=m.dest_addr_npi,
        source_addr=m.destination_addr,
        dest_addr_ton=m.source_addr_ton,
        dest_addr_npi=m.source_addr_npi,
        destination_addr=m.source_addr,
        esm_class=0x20 if intermediate else int(EsmClass.SMSC_DELIVERY_RECEIPT),
        short_message=short_message,
        tlvs=(
            Tlv(Tag.receipted_message_id, m.id.encode() + b"\0"),
            Tlv(Tag.message_state, _STATE_BYTE[stat]),
            Tlv(Tag.network_error_code, b"\x03" + (error & 0xFFFF).to_bytes(2, "big")),
        ),
    )


@functools.lru_cache(maxsize=1024)
def _minute_text(minute: int) -> str:
    return time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))


def _minute(epoch: float) -> str:
    """YYMMDDhhmm in UTC (Appendix B's date), cached: a receipt's dates are recent minutes."""
    return _minute_text(int(epoch // 60))


_STATE_BYTE = {s: bytes((s.message_state,)) for s in ReceiptState}


def _lifecycle(event: str, record: MessageRecord, **fields: Any) -> None:
    """A `logging.messages` line; callers check `telemetry.messages` first (free when off)."""
    m = record.message
    telemetry.message_event(event, message_id=m.id, account=m.account, route=m.route, **fields)
