"""`GET /metrics` and `/healthz` from a running gateway (uvicorn in its loop) after smpplib
sent messages through the fake carrier; and every metric name contrib/ uses is exported."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest

from drivers.smpp.upstream import SmppUpstream
from gateway.app import Gateway
from gateway.config import load_config
from tests.fakes.smsc import Behaviour, FakeSmsc
from tests.integration.loop import LoopThread
from tests.integration.serve import Served
from tests.integration.test_modem_bank import CONFIG as MODEM_CONFIG
from tests.integration.test_modem_bank import Running as ModemRunning
from tests.integration.test_upstream import run_app
from tests.unit.test_contrib import contrib_metric_names

CONFIG = """
accounts: [{system_id: shop, password: secret}]
upstreams:
  carrier: {host: 127.0.0.1, port: %d, system_id: gw, password: pw}
routes: [{name: all, targets: [carrier]}]
store: {path: "%s"}
http: {host: 127.0.0.1, port: 0}
metrics: {enabled: %s}
"""


DELIVERED = 'smsgw_messages_total{outcome="delivered",route="all",target="carrier"}'

BANK_DELIVERED = 'smsgw_messages_total{outcome="delivered",route="all",target="bank:b"}'


class Running(LoopThread):
    def __init__(self, tmp: Path, enabled: bool = True) -> None:
        super().__init__()
        self.smsc = FakeSmsc(Behaviour(throttle_first=1))
        smsc_port = self.call(self.smsc.start())
        text = CONFIG % (smsc_port, tmp / "gw.sqlite3", str(enabled).lower())
        self.gateway = Gateway(load_config("t.yaml", text=text))
        self.gateway.dispatcher.poll_interval = 0.05
        self.port = self.call(self.gateway.start("127.0.0.1", 0))
        upstream = self.gateway.drivers["carrier"]
        assert isinstance(upstream, SmppUpstream)
        self.call(upstream.wait_bound(10))
        assert self.gateway.http_port
        self.base = f"http://127.0.0.1:{self.gateway.http_port}"

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.call(self.smsc.stop())
        self.stop_loop()


def _value(text: str, sample: str) -> float:
    """The value of one exact sample line (name and labels as exported)."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not exported")


def _exported(text: str) -> set[str]:
    """Every name a PromQL expression may use: families and their samples (_total, _bucket)."""
    names = set(re.findall(r"^# TYPE (\w+)", text, re.M))
    names |= set(re.findall(r"^([a-zA-Z_:][\w:]*)", text, re.M))
    return names


def test_metrics_after_traffic(tmp_path: Path) -> None:
    running = Running(tmp_path)
    try:
        ids, receipted = run_app(running.port, 5)
        assert len(ids) == 5 and sorted(receipted) == sorted(ids)
        text = ""
        # Bounded: the last receipt's settle may trail its deliver_sm, and the loop-lag
        # probe takes its first sample a quarter second after the start.
        for _ in range(100):
            text = httpx.get(running.base + "/metrics", timeout=10).text
            lag = re.search(r"^smsgw_event_loop_lag_seconds_count (\S+)", text, re.M)
            if DELIVERED + " 5.0" in text and lag is not None and float(lag[1]) > 0:
                break
            running.call(asyncio.sleep(0.05))
        health = httpx.get(running.base + "/healthz", timeout=10)
    finally:
        running.close()
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert _value(text, 'smsgw_messages_accepted_total{account="shop"}') == 5
    assert _value(text, 'smsgw_messages_total{outcome="sent",route="all",target="carrier"}') == 5
    assert (
        _value(text, 'smsgw_messages_total{outcome="delivered",route="all",target="carrier"}') == 5
    )
    assert _value(text, 'smsgw_upstream_throttled_total{upstream="carrier"}') == 1
    assert "smsgw_messages_refused_total{" not in text  # none refused
    assert _value(text, 'smsgw_upstream_bound{bind="0/trx",upstream="carrier"}') == 1
    assert _value(text, "smsgw_submit_latency_seconds_count") == 5
    assert _value(text, 'smsgw_receipt_latency_seconds_count{target="carrier"}') == 5
    assert _value(text, 'smsgw_binds{account="shop",type="bind_transceiver"}') == 0  # unbound
    assert _value(text, "smsgw_store_commit_seconds_count") > 0
    assert _value(text, "smsgw_store_batch_size_sum") >= 5
    assert _value(text, "smsgw_event_loop_lag_seconds_count") > 0
    assert 'smsgw_reload_total{result="failed"} 0.0' in text
    for line in text.splitlines():  # bounded labels: no phone number, no message id
        assert "49151" not in line and not any(i in line for i in ids)
    missing = contrib_metric_names() - _exported(text)
    assert not missing, f"contrib/ uses names the gateway does not export: {sorted(missing)}"


def test_metrics_off_keeps_health(tmp_path: Path) -> None:
    running = Running(tmp_path, enabled=False)
    try:
        ids, _ = run_app(running.port, 2)
        assert len(ids) == 2
        assert running.gateway.metrics is None
        assert httpx.get(running.base + "/metrics", timeout=10).status_code == 404
        assert httpx.get(running.base + "/healthz", timeout=10).status_code == 200
    finally:
        running.close()


@pytest.mark.parametrize("port", [0])
def test_http_port_is_released_on_stop(tmp_path: Path, port: int) -> None:
    running = Running(tmp_path)
    base = running.base
    running.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/healthz", timeout=2)


def test_modem_metrics_after_traffic(tmp_path: Path) -> None:
    running = ModemRunning(
        tmp_path, limits1="{per_day: 100}", config=MODEM_CONFIG + "http: {{port: 0}}\n"
    )
    try:
        ids, receipted = run_app(running.port, 2)
        assert len(ids) == 2 and sorted(receipted) == sorted(ids)
        base = f"http://127.0.0.1:{running.gateway.http_port}"
        text = ""
        for _ in range(50):  # bounded: the last receipt's settle may trail its deliver_sm
            text = httpx.get(base + "/metrics", timeout=10).text
            if BANK_DELIVERED + " 2.0" in text:
                break
            time.sleep(0.05)
    finally:
        running.close()
    for modem in ("m1", "m2"):
        assert _value(text, f'smsgw_modem_state{{bank="b",modem="{modem}",state="ready"}}') == 1
        assert _value(text, f'smsgw_modem_state{{bank="b",modem="{modem}",state="failed"}}') == 0
    used = sum(
        _value(text, f'smsgw_sim_used{{bank="b",modem="{m}",period="day"}}') for m in ("m1", "m2")
    )
    assert used == 2
    assert _value(text, 'smsgw_sim_limit{bank="b",modem="m1",period="day"}') == 100
    assert 'smsgw_sim_limit{bank="b",modem="m2"' not in text  # no limit: no series
    assert _value(text, BANK_DELIVERED) == 2


def test_serve_with_http_still_stops_on_sigterm(tmp_path: Path) -> None:
    """uvicorn on the main thread would take SIGTERM for itself: the gateway must keep it."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "listen: {host: 127.0.0.1, port: 0}\n"
        "accounts: [{system_id: demo, password: demo}]\n"
        "simulated_carriers: {sim: {}}\n"
        "routes: [{name: all, targets: [sim]}]\n"
        f'store: {{path: "{tmp_path / "gw.sqlite3"}"}}\n'
        "http: {host: 127.0.0.1, port: 0}\n"
    )
    served = Served(config)
    try:
        port = served.port("http listening")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert "smsgw_binds" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert served.stop() == 0
    finally:
        served.kill()
