"""Opt-out end to end (issue 11): MO keywords through an emulated modem put the sender on the
suppression list (the application still gets the MO, the confirmation goes back to the
sender), and the suppression API with httpx: auth, lookup, add, remove, a 100,000-line CSV
import that the export gives back.

One gateway per module, on its own loop thread; every wait has a deadline.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.sms import Encoding, decode_text
from tests.integration.loop import LoopThread
from tests.integration.test_modem_bank import App
from tests.integration.wait import until

CONFIRM = "You will get no more offers. Reply START to get them again."
MODEM = "+4915100000001"
CONFIG = f"""
listen: {{host: 127.0.0.1, port: 0}}
accounts:
  - {{system_id: shop, password: secret}}
  - {{system_id: boss, password: boss, admin: true}}
modem_banks:
  usb:
    emulate: 1
    emulator: {{report_delay: 0.05}}
    modems:
      - {{name: m1, imei: "356938035643809", iccid: "8949000000000000011", number: "{MODEM}"}}
routes: [{{name: all, targets: ["bank:usb"]}}]
mo_routes: [{{account: shop, prefixes: ["49151"]}}]
policy: {{opt_out: {{confirmation: "{CONFIRM}"}}}}
store: {{path: "%(db)s"}}
http: {{host: 127.0.0.1, port: 0}}
"""


class Running(LoopThread):
    def __init__(self, tmp: Path) -> None:
        super().__init__()
        path = tmp / "gateway.yaml"
        path.write_text(CONFIG % {"db": tmp / "gw.sqlite3"})
        self.gateway = Gateway(load_config(path))
        self.gateway.dispatcher.poll_interval = 0.05
        self.port: int = self.call(self.gateway.start("127.0.0.1", 0))
        self.call(self.gateway.banks["usb"].wait_ready(timeout=30), timeout=40)
        self.network = self.gateway.emulated["usb"].network
        self.modem = self.gateway.emulated["usb"].modems["m1"]
        self.url = f"http://127.0.0.1:{self.gateway.http_port}"

    def close(self) -> None:
        self.call(self.gateway.stop(), timeout=60)
        self.stop_loop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("optout"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def app(gw: Running) -> Iterator[App]:
    client = App(gw.port)
    try:
        yield client
    finally:
        client.c.unbind()
        client.c.disconnect()


@pytest.fixture
def boss(gw: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, auth=("boss", "boss"), timeout=60) as c:
        yield c


def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    return until(check, what, timeout)


def _text(pdu: Any) -> str:
    encoding = Encoding.UCS2 if pdu.data_coding == 8 else Encoding.GSM7
    return decode_text(pdu.short_message, encoding)


def _mo(gw: Running, app: App, sender: str, text: str) -> None:
    """`text` from `sender` to the modem; returns once the application has it."""
    before = len(app.received)
    gw.network.inject(gw.modem, sender, text, ucs2=not text.isascii())
    app.pump(lambda: len(app.received) > before, 30, f"the MO {text!r}")
    assert [_text(p) for p in app.received[before:]] == [text]  # no receipt: none was asked


def _scopes(boss: httpx.Client, number: str) -> list[tuple[str, str]]:
    body = boss.get(f"/api/v1/suppressions/{number}").json()
    return [(s["scope"], s["source"]) for s in body["suppressions"]]


def test_an_opt_out_reply_suppresses_the_sender_and_is_confirmed(
    gw: Running, app: App, boss: httpx.Client
) -> None:
    _mo(gw, app, "+8613800138001", "退订")
    assert _scopes(boss, "+8613800138001") == [("", "mo:4915100000001")]
    sent = _until(
        lambda: [m for m in gw.network.received if m.destination.endswith("8613800138001")],
        "the confirmation sent to the MO's sender",
    )
    assert sent[0].text == CONFIRM
    # the accept pipeline reads what the reply wrote: marketing stops, an OTP goes
    url = f"{gw.url}/api/v1/messages"
    for cls, stopped in (("marketing", "opted_out"), ("otp", None)):
        send = {"to": ["+8613800138001"], "text": f"{cls}", "class": cls, "dlr": False}
        got = httpx.post(url, json=send, auth=("shop", "secret"), timeout=10)
        assert got.status_code == 200, got.text
        assert got.json()["messages"][0].get("stopped") == stopped
    # full width, and the opt-in word frees the number again
    _mo(gw, app, "+8613800138002", " ＳＴＯＰ！")
    assert _scopes(boss, "8613800138002") == [("", "mo:4915100000001")]
    _mo(gw, app, "+8613800138002", "start")
    assert _scopes(boss, "8613800138002") == []
    # a keyword in a sentence is no opt-out
    _mo(gw, app, "+8613800138003", "stop please")
    assert _scopes(boss, "8613800138003") == []
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'smsgw_optouts_total{kind="opt_out",source="mo"} 2.0' in metrics
    assert 'smsgw_optouts_total{kind="opt_in",source="mo"} 1.0' in metrics


def test_the_api_is_for_admins_only(gw: Running) -> None:
    anonymous = httpx.get(f"{gw.url}/api/v1/suppressions/4915112345678")
    assert anonymous.status_code == 401
    shop = httpx.get(f"{gw.url}/api/v1/suppressions/4915112345678", auth=("shop", "secret"))
    assert shop.status_code == 403
    for method, path in [
        ("PUT", "/api/v1/suppressions/4915112345678"),
        ("DELETE", "/api/v1/suppressions/4915112345678"),
        ("POST", "/api/v1/suppressions/import"),
        ("GET", "/api/v1/suppressions/export"),
        ("GET", "/api/v1/dead-numbers"),
    ]:
        answer = httpx.request(method, f"{gw.url}{path}", auth=("shop", "secret"))
        assert answer.status_code == 403, (method, path)


def test_add_look_up_and_remove(boss: httpx.Client) -> None:
    added = boss.put("/api/v1/suppressions/+49 151 00000 0777", json={"scope": "Shop"})
    assert added.status_code == 200, added.text
    assert added.json()["number"] == "49151000000777"
    boss.put("/api/v1/suppressions/49151000000777")
    assert _scopes(boss, "49151000000777") == [("", "api:boss"), ("Shop", "api:boss")]
    assert boss.delete("/api/v1/suppressions/49151000000777?scope=Shop").json()["removed"] == 1
    assert _scopes(boss, "49151000000777") == [("", "api:boss")]
    assert boss.delete("/api/v1/suppressions/49151000000777").json()["removed"] == 1
    gone = boss.delete("/api/v1/suppressions/49151000000777")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    bad = boss.get("/api/v1/suppressions/not-a-number")
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "number"


def test_a_100k_line_import_comes_back_in_the_export(boss: httpx.Client) -> None:
    lines = ["number,scope"] + [
        f"+3361{i:07d}" + (",Promo" if i % 10 == 0 else "") for i in range(100_000)
    ]
    lines.insert(5, "junk,x")
    body = ("\r\n".join(lines) + "\r\n").encode()
    answer = boss.post(
        "/api/v1/suppressions/import", content=body, headers={"content-type": "text/csv"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "suppressed": 100_000,
        "invalid": 1,
        "invalid_rows": [{"line": 6, "value": "junk"}],
    }
    exported = boss.get("/api/v1/suppressions/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["number", "scope", "created_at", "source"]
    imported = {(r[0], r[1]) for r in rows[1:] if r[3] == "import"}
    assert imported == {(f"3361{i:07d}", "Promo" if i % 10 == 0 else "") for i in range(100_000)}
    # the export imports again as it is (the same rows, time and source renewed)
    again = boss.post(
        "/api/v1/suppressions/import",
        content=exported.content,
        headers={"content-type": "text/csv"},
    )
    assert again.json()["suppressed"] == len(rows) - 1
    assert again.json()["invalid"] == 0


def test_dead_numbers_are_listed_in_pages(gw: Running, boss: httpx.Client) -> None:
    store = gw.gateway.store
    now = time.time()
    gw.call(store.record_dead_failures(["4915100000901"] * 3, now, after=3, period=60.0))
    gw.call(store.record_dead_failures(["4915100000902"], now, after=3, period=60.0))
    first = boss.get("/api/v1/dead-numbers", params={"limit": 1}).json()
    assert [d["number"] for d in first["dead_numbers"]] == ["4915100000901"]
    assert first["dead_numbers"][0]["failures"] == 3 and first["dead_numbers"][0]["dead_until"]
    rest = boss.get("/api/v1/dead-numbers", params={"after": first["next"]}).json()
    assert rest["dead_numbers"][0]["number"] == "4915100000902"
    assert rest["dead_numbers"][0]["dead_until"] is None and rest["next"] is None
