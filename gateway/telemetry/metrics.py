"""Every Prometheus metric the gateway exports, declared once (STYLE.md section 10).

`Metrics` is built per `Gateway` with its own `CollectorRegistry` (two gateways in one test
process never share a series) and handed to the parts that count. Hot-path counters take
label children cached per (account / route, target): a dict lookup and an `.inc()`.
Labels are bounded by the configuration: accounts, routes, targets, binds, modems - never a
message id or a phone number.

The MQTT link's counts (`smsgw_mqtt_*`) are the link's own, read at scrape time too.

Gauges of state (upstream links, modems, queues) are read at scrape time by `_StateCollector`
from callables the gateway registers (`add_source`): nothing is updated per message for them.

Reload (item 1 of issue 9) reports with `Metrics.reload_done(ok)`: it counts
`smsgw_reload_total{result="ok"|"failed"}` and on success sets
`smsgw_config_reload_last_success_timestamp_seconds` to now.
A reload that adds an upstream gives the new `SmppUpstream` the gateway's `metrics` (its
`.metrics` attribute) to count throttling; the scrape-time gauges read `gateway.drivers` and
`gateway.banks` afresh on each scrape, so added and removed ones show without more wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.smpp.constants import CommandStatus

__all__ = ["Metrics", "Source", "counter", "gauge"]

# A scrape-time source: yields metric families built from in-memory state.
Source = Callable[[], Iterable[Metric]]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RECEIPT = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)
_WEBHOOK = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.sources: list[Source] = []

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source()


class Metrics:
    """The gateway's metrics, in `registry`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter(
            "smsgw_messages_accepted", "Messages accepted from applications", ["account"],
            registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "smsgw_messages_refused",
            "Submits refused, by SMPP status",
            ["account", "status"],
            registry=r,
        )
        self.outcome = Counter(
            "smsgw_messages",
            "Messages sent and ended (delivered, failed, expired), by route and target",
            ["outcome", "route", "target"],
            registry=r,
        )
        self.submit_latency = Histogram(
            "smsgw_submit_latency_seconds",
            "From a submit PDU read to its submit_sm_resp queued",
            registry=r,
            buckets=_LATENCY,
        )
        self.receipt_latency = Histogram(
            "smsgw_receipt_latency_seconds",
            "From sent to its final receipt",
            ["target"],
            registry=r,
            buckets=_RECEIPT,
        )
        self.route_transitions = Counter(
            "smsgw_route_target_transitions",
            "A quality route's target demoted (its delivery rate fell) or promoted back",
            ["route", "target", "change"],
            registry=r,
        )
        self.binds = Gauge(
            "smsgw_binds", "Application binds, by account and type", ["account", "type"],
            registry=r,
        )  # fmt: skip
        self.upstream_throttled = Counter(
            "smsgw_upstream_throttled",
            "Throttling answers (ESME_RTHROTTLED / ESME_RMSGQFUL) from an upstream",
            ["upstream"],
            registry=r,
        )
        self.store_commit = Histogram(
            "smsgw_store_commit_seconds", "One store transaction (a batch)", registry=r,
            buckets=_LATENCY,
        )  # fmt: skip
        self.store_batch = Histogram(
            "smsgw_store_batch_size", "Operations per store transaction", registry=r,
            buckets=_BATCH,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "smsgw_event_loop_lag_seconds",
            "How late a periodic timer of the event loop fires",
            registry=r,
            buckets=_LATENCY,
        )
        self.reload = Counter(
            "smsgw_reload", "Configuration reloads, by result", ["result"], registry=r
        )
        self.webhook_deliveries = Counter(
            "smsgw_webhook_deliveries",
            "Webhook POSTs by outcome: delivered, retry, rejected (4xx), expired (ttl), unreadable",
            ["account", "outcome"],
            registry=r,
        )
        self.webhook_latency_seconds = Histogram(
            "smsgw_webhook_latency_seconds",
            "From a webhook POST sent to its answer",
            ["account"],
            registry=r,
            buckets=_WEBHOOK,
        )
        self.optouts = Counter(
            "smsgw_optouts",
            "Numbers opted out or back in, by how: mo, api, cli, import",
            ["kind", "source"],
            registry=r,
        )
        self.reload_last_success = Gauge(
            "smsgw_config_reload_last_success_timestamp_seconds",
            "When the configuration was last loaded (start or reload)",
            registry=r,
        )
        self.reload_last_success.set_to_current_time()
        for result in ("ok", "failed"):
            self.reload.labels(result)  # both series exist from the start: alerts see a 0
        self._state = _StateCollector()
        r.register(self._state)
        self._accepted: dict[str, Counter] = {}
        self._refused: dict[tuple[str, int], Counter] = {}
        self._outcomes: dict[tuple[str, str, str], Counter] = {}
        self._receipts: dict[str, Histogram] = {}

    # -- hot path: cached children ----------------------------------------------------------

    def accept(self, account: str, count: int = 1) -> None:
        child = self._accepted.get(account)
        if child is None:
            child = self._accepted[account] = self.accepted.labels(account)
        child.inc(count)

    def refuse(self, account: str, status: int) -> None:
        key = (account, status)
        child = self._refused.get(key)
        if child is None:
            child = self._refused[key] = self.refused.labels(account, _status_name(status))
        child.inc()

    def ended(self, outcome: str, route: str, target: str) -> None:
        """`outcome`: sent, delivered, failed or expired."""
        key = (outcome, route, target)
        child = self._outcomes.get(key)
        if child is None:
            child = self._outcomes[key] = self.outcome.labels(outcome, route, target)
        child.inc()

    def receipt(self, target: str, latency: float) -> None:
        child = self._receipts.get(target)
        if child is None:
            child = self._receipts[target] = self.receipt_latency.labels(target)
        child.observe(max(0.0, latency))

    def transition(self, route: str, target: str, change: str) -> None:
        """`change`: demoted or promoted (rare: not cached)."""
        self.route_transitions.labels(route, target, change).inc()

    def webhook_delivery(self, account: str, outcome: str) -> None:
        self.webhook_deliveries.labels(account, outcome).inc()

    def webhook_latency(self, account: str, seconds: float) -> None:
        self.webhook_latency_seconds.labels(account).observe(max(0.0, seconds))

    def committed(self, seconds: float, size: int) -> None:
        """One store transaction; called from the store's writer thread (thread-safe)."""
        self.store_commit.observe(seconds)
        self.store_batch.observe(size)

    def optout(self, kind: str, source: str, count: int = 1) -> None:
        """`count` numbers opted out ("opt_out") or back in ("opt_in") through `source`."""
        self.optouts.labels(kind, source).inc(count)

    def reload_done(self, ok: bool) -> None:
        """The reload engineer's hook: count a reload, and stamp a successful one."""
        self.reload.labels("ok" if ok else "failed").inc()
        if ok:
            self.reload_last_success.set_to_current_time()

    # -- read back (the status page; a few dozen series, every few seconds) -----------------

    def accepted_total(self) -> float:
        """Messages accepted since start, all accounts."""
        return sum(value for _labels, value in _totals(self.accepted))

    def outcome_counts(self) -> dict[tuple[str, str, str], float]:
        """Counts keyed (outcome, route, target) since start."""
        return {
            (labels["outcome"], labels["route"], labels["target"]): value
            for labels, value in _totals(self.outcome)
        }

    # -- scrape-time state ------------------------------------------------------------------

    def add_source(self, source: Source) -> None:
        self._state.sources.append(source)

    async def watch_loop(self, interval: float = 0.25) -> None:
        """Measure event-loop lag: how late a sleep of `interval` wakes (runs until cancelled)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                due = loop.time() + interval
                await asyncio.sleep(interval)
                self.loop_lag.observe(max(0.0, loop.time() - due))


def _totals(counter: Counter) -> Iterator[tuple[dict[str, str], float]]:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):  # not _created
                yield sample.labels, sample.value


def _status_name(status: int) -> str:
    """ESME_RTHROTTLED rather than 0x00000058; a status of no name as hex."""
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


def counter(name: str, doc: str, value: float) -> Metric:
    """A counter read at scrape time from a count kept elsewhere (`name` without _total)."""
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def gauge(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
) -> Metric:
    """A gauge family from (label values, value) rows, for a scrape-time `Source`."""
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family
