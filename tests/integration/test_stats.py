"""Delivery statistics through a whole gateway: an A/B pair of campaigns sent over HTTP to two
simulated carriers (A's always delivers, B's fails about half), read back side by side from
GET /api/v1/stats and `smsgw stats`; an account sees only its own rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from tests.integration.loop import LoopThread
from tests.integration.wait import until

ROOT = Path(__file__).resolve().parents[2]
PER_VARIANT = 20

CONFIG = """
accounts:
  - {system_id: shop, password: secret}
  - {system_id: other, password: other}
  - {system_id: boss, password: boss, admin: true}
simulated_carriers:
  good: {delivery_delay: 0.05, failure_ratio: 0}
  flaky: {delivery_delay: 0.05, failure_ratio: 0.5}
routes:
  - {name: a, prefixes: ["49151"], targets: [good]}
  - {name: b, prefixes: ["49176"], targets: [flaky]}
store: {path: "%(db)s"}
http: {host: 127.0.0.1, port: 0}
"""


class Running(LoopThread):
    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.path = tmp / "gateway.yaml"
        self.path.write_text(CONFIG % {"db": tmp / "gw.sqlite3"})
        self.gateway = Gateway(load_config(self.path))
        self.gateway.config_path = str(self.path)
        self.gateway.dispatcher.poll_interval = 0.05
        self.call(self.gateway.start("127.0.0.1", 0))
        assert self.gateway.http_port is not None
        self.url = f"http://127.0.0.1:{self.gateway.http_port}"

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.stop_loop()


def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    return until(check, what, timeout)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("stats"))
    try:
        with httpx.Client(base_url=running.url, auth=("shop", "secret"), timeout=15) as c:
            for variant, prefix in (("A", "4915100000"), ("B", "4917600000")):
                to = [f"{prefix}{i:03d}" for i in range(PER_VARIANT)]
                sent = c.post(
                    "/api/v1/messages",
                    json={"to": to, "from": "Shop", "text": f"Sale {variant}", "campaign": variant},
                )
                assert sent.status_code == 200, sent.text
            # every message ended: nothing pending any more
            _until(
                lambda: _total(c)["pending"] == 0 and _total(c)["sent"] == 2 * PER_VARIANT,
                "every message ended",
            )
        yield running
    finally:
        running.close()


def _total(client: httpx.Client) -> dict[str, Any]:
    rows = client.get("/api/v1/stats", params={"group": ""}).json()["rows"]
    return rows[0] if rows else {"pending": -1, "sent": 0}


def test_ab_campaigns_side_by_side(gw: Running) -> None:
    answer = httpx.get(
        f"{gw.url}/api/v1/stats",
        params={"group": "campaign", "since": "-1h"},
        auth=("boss", "boss"),
    )
    assert answer.status_code == 200, answer.text
    rows = {row["campaign"]: row for row in answer.json()["rows"]}
    assert set(rows) == {"A", "B"}
    a, b = rows["A"], rows["B"]
    assert a["sent"] == b["sent"] == PER_VARIANT
    assert a["delivered"] == PER_VARIANT and a["delivery_rate"] == 1.0
    assert b["delivered"] + b["failed"] == PER_VARIANT
    assert b["delivery_rate"] < 0.95  # 19 of 20 with failure_ratio 0.5: p = 2e-5
    assert a["pending"] == b["pending"] == 0
    assert a["latency_p50"] is not None and 0 <= a["latency_p50"] <= 1.0


def test_grouped_by_route_target_and_destination(gw: Running) -> None:
    answer = httpx.get(
        f"{gw.url}/api/v1/stats",
        params={"group": "route,target,country,prefix"},
        auth=("boss", "boss"),
    ).json()
    keys = {(r["route"], r["target"], r["country"], r["prefix"]) for r in answer["rows"]}
    assert keys == {("a", "good", "DE", "491"), ("b", "flaky", "DE", "491")}
    only_b = httpx.get(
        f"{gw.url}/api/v1/stats", params={"group": "route", "campaign": "B"}, auth=("boss", "boss")
    ).json()["rows"]
    assert [r["route"] for r in only_b] == ["b"]


def test_an_account_sees_only_its_own_rows(gw: Running) -> None:
    mine = httpx.get(f"{gw.url}/api/v1/stats", params={"group": "account"}, auth=("shop", "secret"))
    assert [r["account"] for r in mine.json()["rows"]] == ["shop"]
    theirs = httpx.get(
        f"{gw.url}/api/v1/stats",
        params={"group": "account", "account": "shop"},
        auth=("other", "other"),
    )
    assert theirs.status_code == 200 and theirs.json()["rows"] == []


def test_bad_group_and_time_name_the_field(gw: Running) -> None:
    bad = httpx.get(
        f"{gw.url}/api/v1/stats", params={"group": "route,colour"}, auth=("boss", "boss")
    )
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["field"] == "group" and "colour" in error["message"]
    assert "valid: hour, account, route, target, class, campaign" in error["message"]
    when = httpx.get(f"{gw.url}/api/v1/stats", params={"since": "yesterday"}, auth=("boss", "boss"))
    assert when.status_code == 422 and when.json()["error"]["field"] == "since"
    iso = httpx.get(
        f"{gw.url}/api/v1/stats",
        params={"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"},
        auth=("boss", "boss"),
    )
    assert iso.status_code == 200 and iso.json()["rows"] == []


def _smsgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the exit code is what is tested
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_smsgw_stats_prints_a_table_and_json(gw: Running) -> None:
    done = _smsgw("stats", "-c", str(gw.path), "--group", "campaign", "--timeout", "10")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["CAMPAIGN", "SENT", "DELIVERED"]
    assert lines[1].split()[:3] == ["A", str(PER_VARIANT), str(PER_VARIANT)]
    assert lines[1].split()[7] == "100.0%"
    assert lines[2].split()[0] == "B"
    done = _smsgw("stats", "-c", str(gw.path), "--campaign", "B", "--json", "--timeout", "10")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert [(r["route"], r["target"]) for r in rows] == [("b", "flaky")]
    bad = _smsgw("stats", "-c", str(gw.path), "--group", "colour", "--timeout", "10")
    assert bad.returncode == 1 and bad.stderr.startswith("error: group: unknown colour")


def test_status_feed_and_metrics_read_the_store(gw: Running) -> None:
    def fed() -> dict[str, Any] | None:
        # read at most every 5 s (DeliveryStats.ttl): the first read may predate the sends
        live = httpx.get(f"{gw.url}/api/v1/status/live", auth=("boss", "boss")).json()
        return live if len(live["delivery"]) == 2 else None

    live = _until(fed, "the status feed's delivery rows")
    assert live["delivery_window"] == "last 24 h"
    rows = {(r["route"], r["target"]): r for r in live["delivery"]}
    assert set(rows) == {("a", "good"), ("b", "flaky")}
    assert rows["a", "good"]["rate"] == 1.0 and rows["a", "good"]["sent"] == PER_VARIANT
    assert rows["b", "flaky"]["pending"] == 0

    def scraped() -> str | None:
        text = httpx.get(f"{gw.url}/metrics").text
        return text if 'smsgw_delivery_rate{route="a",target="good"} 1.0' in text else None

    text = _until(scraped, "the delivery rate gauge")
    assert 'smsgw_delivery_rate{route="b",target="flaky"}' in text
    # bounded labels: no campaign, no number
    assert not [line for line in text.splitlines() if "campaign" in line or "49151" in line]
