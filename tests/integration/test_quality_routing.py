"""The `quality` route strategy end to end (issue 11, item 4): a whole Gateway with two simulated
carriers, `bad` failing 60% and `good` none, behind one quality route that lists `bad` first.
smpplib submits in waves and reads every receipt back, so each wave's outcomes are learnt
before the next is routed. `bad` takes the traffic while unmeasured, is demoted once 20
outcomes show its rate (logged, counted), then leads only the probe share; a reload that keeps
the route keeps what was learnt; made healthy, and its failures out of the window (the
gateway's clock jumps 11 minutes), it is promoted back. Every wait is bounded by reads with a
socket timeout; nothing sleeps."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
from structlog.testing import capture_logs

from drivers.simulated import SimulatedCarrier
from gateway.app import Gateway
from gateway.config import load_config
from tests.integration.loop import LoopThread

CONFIG = """
accounts: [{system_id: shop, password: secret}]
simulated_carriers:
  good: {delivery_delay: 0.02, failure_ratio: 0.0}
  bad: {delivery_delay: 0.02, failure_ratio: 0.6}
routes:
  - name: q
    strategy: quality
    targets: [bad, good]
    quality: {min_sample: 20, window: 10m, probe_share: %(probe)s}
store: {path: "%(db)s"}
"""


class _Clock:
    """Wall time plus a jump the test makes (the whole gateway reads this clock)."""

    shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


class Running(LoopThread):
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.path = tmp / "gateway.yaml"
        self.write(probe=0.1)
        self.clock = _Clock()
        self.gateway = Gateway(load_config(self.path), clock=self.clock)
        self.gateway.config_path = str(self.path)
        self.gateway.dispatcher.poll_interval = 0.05
        super().__init__()
        self.port = self.call(self.gateway.start("127.0.0.1", 0))
        self.client = smpplib.client.Client(
            "127.0.0.1", self.port, timeout=10, allow_unknown_opt_params=True
        )
        self.responses: list[Any] = []
        self.receipts: list[Any] = []
        self.client.set_message_sent_handler(self._response)
        self.client.set_message_received_handler(self._receipt)
        self.client.connect()
        self.client.bind_transceiver(system_id="shop", password="secret")

    # smpplib calls its handlers with pdu= as a keyword
    def _response(self, pdu: Any) -> None:
        self.responses.append(pdu)

    def _receipt(self, pdu: Any) -> None:
        self.receipts.append(pdu)

    def write(self, *, probe: float) -> None:
        self.path.write_text(CONFIG % {"probe": probe, "db": self.tmp / "gw.sqlite3"})

    def wave(self, n: int = 20) -> None:
        """Submit `n` messages and read until each has its response and its final receipt."""
        want_responses, want_receipts = len(self.responses) + n, len(self.receipts) + n
        for i in range(n):
            self.client.send_message(
                source_addr="Shop",
                destination_addr=f"4915112345{i:03d}",
                short_message=b"your order shipped",
                registered_delivery=1,
            )
        for _ in range(4 * n + 20):  # bounded: each read waits at most the socket timeout
            if len(self.responses) >= want_responses and len(self.receipts) >= want_receipts:
                return
            self.client.read_once()
        raise AssertionError(f"wave of {n}: responses or receipts missing")

    def sent(self) -> dict[str, float]:
        metrics = self.gateway.metrics
        assert metrics is not None
        counts = metrics.outcome_counts()
        return {t: counts.get(("sent", "q", t), 0.0) for t in ("bad", "good")}

    def transitions(self) -> dict[tuple[str, str], float]:
        metrics = self.gateway.metrics
        assert metrics is not None
        return {
            (s.labels["target"], s.labels["change"]): s.value
            for family in metrics.route_transitions.collect()
            for s in family.samples
            if s.name.endswith("_total") and s.labels["route"] == "q"
        }

    def close(self) -> None:
        self.client.unbind()
        self.client.disconnect()
        self.call(self.gateway.stop())
        self.stop_loop()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    yield r
    r.close()


def _events(logs: list[MutableMapping[str, Any]], event: str) -> list[tuple[str, str, float]]:
    return [(e["route"], e["target"], e["rate"]) for e in logs if e["event"] == event]


def test_bad_carrier_is_demoted_probed_and_promoted_back(running: Running) -> None:
    with capture_logs() as logs:
        running.wave()  # unmeasured: all to `bad`, listed first
        assert running.sent() == {"bad": 20.0, "good": 0.0}
        assert _events(logs, "route target demoted") == [("q", "bad", 0.4)]  # 8 of 20
        assert running.transitions() == {("bad", "demoted"): 1.0}
        assert [e["log_level"] for e in logs if e["event"] == "route target demoted"] == ["warning"]

        before = running.sent()
        for _ in range(10):
            running.wave()
        after = running.sent()
        to_bad, to_good = after["bad"] - before["bad"], after["good"] - before["good"]
        assert to_bad + to_good == 200
        assert 15 <= to_bad <= 25  # probe_share 0.1 of 200
        board = running.gateway.dispatcher._boards["q"]
        assert board.demoted("bad")  # its probes still fail 60%
        assert running.transitions() == {("bad", "demoted"): 1.0}

        # A reload that keeps the route (a larger probe share) keeps what was learnt.
        running.write(probe=0.5)
        result = running.call(running.gateway.reload())
        assert result.error is None
        assert running.gateway.dispatcher._boards["q"] is board
        assert board.demoted("bad") and board.settings.probe_share == 0.5

        bad = running.gateway.drivers["bad"]
        assert isinstance(bad, SimulatedCarrier)

        async def heal() -> None:
            bad.failure_ratio = 0.0

        running.call(heal())
        running.clock.shift = 11 * 60.0  # the failures leave the 10 minute window
        for _ in range(6):  # bounded: ~10 probes a wave, 20 outcomes needed
            running.wave()
            if not board.demoted("bad"):
                break
        assert not board.demoted("bad")
        assert _events(logs, "route target promoted") == [("q", "bad", 1.0)]
        assert [e["log_level"] for e in logs if e["event"] == "route target promoted"] == ["info"]
        assert running.transitions() == {("bad", "demoted"): 1.0, ("bad", "promoted"): 1.0}
