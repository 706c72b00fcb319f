"""Connects a `Metrics` to a gateway: hands it to the parts that count, and registers the
scrape-time gauges read from their in-memory state (cheap, bounded by the configuration)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from prometheus_client.core import Metric

from drivers.smpp.upstream import SmppUpstream
from gateway.store.base import QueueDepths
from gateway.telemetry.history import Totals
from gateway.telemetry.metrics import Metrics, counter, gauge

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["record_history", "sample", "totals", "watch"]

QUEUE_INTERVAL = 5.0  # seconds between the store's queue counts: their cost stays bounded

log = structlog.get_logger("smsgw.metrics")

_MODEM_STATES = ("closed", "opening", "initialising", "sim_wait", "registering", "ready", "failed")


async def sample(metrics: Metrics, gateway: Gateway, interval: float = QUEUE_INTERVAL) -> None:
    """Until cancelled: event-loop lag, the store's queue counts every `interval`, and the
    status page's throughput history every `gateway.history.interval`."""
    loop = asyncio.get_running_loop()
    lag = loop.create_task(metrics.watch_loop())
    history = loop.create_task(record_history(metrics, gateway))
    try:
        while True:
            try:
                gateway.queues = await gateway.store.queue_depths()
            except Exception as exc:  # a store hiccup must not end the sampling
                log.warning("queue depths not read", error=str(exc))
            await gateway.delivery.read()  # logs its own failure
            await asyncio.sleep(interval)
    finally:
        for task in (lag, history):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def totals(metrics: Metrics) -> Totals:
    """Accepted, sent and delivered since start, every account, route and target."""
    sent = delivered = 0.0
    for (outcome, _route, _target), count in metrics.outcome_counts().items():
        if outcome == "sent":
            sent += count
        elif outcome == "delivered":
            delivered += count
    return Totals(metrics.accepted_total(), sent, delivered)


async def record_history(metrics: Metrics, gateway: Gateway) -> None:
    """Until cancelled: a throughput point every interval (a few dozen series read)."""
    loop = asyncio.get_running_loop()
    history = gateway.history
    due = loop.time()
    while True:
        history.record(time.time(), totals(metrics))
        # Paced by the loop's clock, so a slow turn does not shift every later point.
        due += history.interval
        await asyncio.sleep(max(0.0, due - loop.time()))


def watch(metrics: Metrics, gateway: Gateway) -> None:
    gateway.server.metrics = metrics
    gateway.dispatcher.metrics = metrics
    # SqliteStore and PostgresStore time their batches; PostgresStore is not imported here
    # (asyncpg only if used), so: any store with the attribute.
    if hasattr(gateway.store, "metrics"):
        setattr(gateway.store, "metrics", metrics)  # noqa: B010
    for driver in gateway.drivers.values():
        if isinstance(driver, SmppUpstream):
            driver.metrics = metrics

    def upstreams() -> Iterator[Metric]:
        ups = [d for d in gateway.drivers.values() if isinstance(d, SmppUpstream)]
        yield gauge(
            "smsgw_upstream_bound",
            "1 if the upstream connection (link/mode) is bound",
            ["upstream", "bind"],
            (([u.name, c.name], float(c.bound)) for u in ups for c in u.connections),
        )
        yield gauge(
            "smsgw_upstream_inflight",
            "PDUs sent on the upstream connection and not answered yet",
            ["upstream", "bind"],
            (([u.name, c.name], float(c.busy)) for u in ups for c in u.connections),
        )

    def modems() -> Iterator[Metric]:
        rows = [row for bank in gateway.banks.values() for row in bank.state()]
        yield gauge(
            "smsgw_modem_state",
            "1 for the modem's current state",
            ["bank", "modem", "state"],
            (
                ([r["bank"], r["name"], s], float(str(r["state"]).lower() == s))
                for r in rows
                for s in _MODEM_STATES
            ),
        )
        yield gauge(
            "smsgw_modem_signal_dbm",
            "Signal strength",
            ["bank", "modem"],
            (([r["bank"], r["name"]], float(r["signal_dbm"])) for r in rows if r["signal_dbm"]),
        )
        yield gauge(
            "smsgw_modem_queue",
            "Sends waiting on the modem",
            ["bank", "modem"],
            (([r["bank"], r["name"]], float(r["queue"])) for r in rows),
        )
        yield gauge(
            "smsgw_sim_used",
            "Messages sent by the SIM in the period",
            ["bank", "modem", "period"],
            (([r["bank"], r["name"], p], float(n)) for r in rows for p, n in r["used"].items()),
        )
        yield gauge(
            "smsgw_sim_limit",
            "The SIM's limit for the period (absent: none)",
            ["bank", "modem", "period"],
            (
                ([r["bank"], r["name"], p], float(n))
                for r in rows
                for p, n in r["limits"].items()
                if n is not None
            ),
        )

    def dispatch() -> Iterator[Metric]:
        yield gauge(
            "smsgw_dispatch_sending",
            "Messages handed to a target and not answered yet",
            [],
            [([], float(len(gateway.dispatcher._sending)))],
        )

    def queues() -> Iterator[Metric]:
        q: QueueDepths | None = gateway.queues
        if q is None:
            return
        now = time.time()
        yield gauge("smsgw_queue_waiting", "Messages waiting to be sent", [], [([], q.waiting)])
        yield gauge(
            "smsgw_queue_oldest_seconds",
            "Age of the oldest message waiting to be sent (0: none)",
            [],
            [([], 0.0 if q.oldest is None else max(0.0, now - q.oldest))],
        )
        yield gauge(
            "smsgw_deliveries_waiting",
            "Receipts and MO messages waiting for the account's application",
            ["account"],
            (([a], float(n)) for a, (n, _at) in q.deliveries.items()),
        )
        yield gauge(
            "smsgw_deliveries_oldest_seconds",
            "Age of the account's oldest waiting delivery",
            ["account"],
            (([a], max(0.0, now - at)) for a, (_n, at) in q.deliveries.items()),
        )

    def delivery() -> Iterator[Metric]:
        # From the store's counters (last hour and the one before it, whole hours); labels
        # bounded by the configuration: routes x targets, never numbers or campaigns.
        rows = gateway.delivery.per_route(time.time() - 3600)
        yield gauge(
            "smsgw_delivery_rate",
            "Delivered of the messages ended after a send, accepted since the previous hour",
            ["route", "target"],
            (([r["route"], r["target"]], r["rate"]) for r in rows if r["rate"] is not None),
        )
        yield gauge(
            "smsgw_delivery_pending",
            "Messages accepted since the previous hour and not ended yet",
            ["route", "target"],
            (([r["route"], r["target"]], float(r["pending"])) for r in rows),
        )

    def mqtt() -> Iterator[Metric]:
        link = gateway.mqtt
        if link is None:
            return
        yield gauge(
            "smsgw_mqtt_connected", "1 if the MQTT broker link is up", [],
            [([], float(link.connected.is_set()))],
        )  # fmt: skip
        yield counter("smsgw_mqtt_published", "Events the broker acknowledged", link.published)
        yield counter(
            "smsgw_mqtt_dropped", "Events dropped: the queue was full (broker away)", link.dropped
        )
        yield gauge(
            "smsgw_mqtt_queued", "Events waiting for the broker", [], [([], float(link.queued))]
        )

    metrics.add_source(upstreams)
    metrics.add_source(mqtt)
    metrics.add_source(delivery)
    metrics.add_source(queues)
    metrics.add_source(modems)
    metrics.add_source(dispatch)
