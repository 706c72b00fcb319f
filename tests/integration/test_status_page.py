"""The status page in a real headless Chromium (Debian's `chromium`, driven by Playwright's
Python API with `executable_path`: no browser is downloaded), against a whole gateway with a
bank of two emulated modems and smpplib as the application.

Every wait has a deadline (Playwright's `expect` timeouts, `App.pump`). Outside CI a missing
chromium or playwright skips these tests with the reason; under CI=true it fails them.
Set SMSGW_SCREENSHOT=1 to refresh docs/status-page.png (1280x800) from the run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.smpp.upstream import SmppUpstream
from gateway.app import Gateway
from gateway.config import load_config
from gateway.telemetry.history import History
from tests.integration.loop import LoopThread
from tests.integration.test_modem_bank import App

ROOT = Path(__file__).resolve().parents[2]
CI = os.environ.get("CI", "").lower() == "true"

CONFIG = """
listen: {{host: 127.0.0.1, port: 0}}
http: {{host: 127.0.0.1, port: 0}}
metrics: {{enabled: true}}
accounts:
  - {{system_id: shop, password: secret}}
  - {{system_id: admin, password: admin, admin: true}}
{banks}
simulated_carriers:
  sim: {{delivery_delay: 0.1}}
routes:
  - {{name: phones, prefixes: ["49"], targets: [{target}]}}
  - {{name: rest, targets: [sim]}}
dispatch: {{retry_backoff: 0.2, max_retry_backoff: 1.0}}
store: {{path: "{db}"}}
"""
BANK = """modem_banks:
  b:
    emulate: 2
    emulator: {report_delay: 0.1}
    modems:
      - {name: m1, number: "+4915100000001", limits: {per_day: 500}}
      - {name: m2, number: "+4915100000002"}
"""
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


class Running(LoopThread):
    """A gateway serving HTTP on an ephemeral port; with bank `b` (two emulated modems)."""

    def __init__(self, tmp: Path, *, modems: bool = True) -> None:
        super().__init__()
        text = CONFIG.format(
            banks=BANK if modems else "",
            target='"bank:b"' if modems else "sim",
            db=tmp / "gw.sqlite3",
        )
        self.gateway = Gateway(load_config("t.yaml", text=text))
        self.gateway.dispatcher.poll_interval = 0.05
        # A point a second (90 s drawn) so the chart has a shape within the test.
        self.gateway.history = History(interval=1.0)
        self.port: int = self.call(self.gateway.start("127.0.0.1", 0))
        if modems:
            self.call(self.gateway.banks["b"].wait_ready(timeout=30), timeout=40)
        self.base = f"http://127.0.0.1:{self.gateway.http_port}"

    def close(self) -> None:
        self.call(self.gateway.stop(), timeout=60)
        self.stop_loop()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    r = Running(tmp_path_factory.mktemp("status"))
    yield r
    r.close()


def _missing(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} (CI=true: the status page test must run; see scripts/ci-services)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        _missing("no chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page opened as the admin, collecting console errors and uncaught exceptions."""

    def __init__(self, browser: Any, running: Running, width: int, height: int) -> None:
        self.context = browser.new_context(
            viewport={"width": width, "height": height},
            http_credentials={"username": "admin", "password": "admin"},
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.goto(running.base + "/")

    def close(self) -> None:
        self.context.close()


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).text_content() or "")


def test_page_is_live_shows_the_modems_and_counts_messages(
    running: Running, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    view = Page(browser, running, 1280, 800)
    page = view.page
    try:
        expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
        expect(page.locator("#node")).to_have_text("0")
        rows = page.locator("#modems tbody tr")
        expect(rows).to_have_count(2)
        expect(page.locator('#modems tr[data-key="b/m1"]')).to_contain_text("ready")
        expect(page.locator('#modems tr[data-key="b/m2"]')).to_contain_text("ready")
        expect(page.locator('#modems tr[data-key="b/m1"]')).to_contain_text("/ 500")
        expect(page.locator('#targets tr[data-key="bank:b"]')).to_contain_text("usable")
        accepted = int(_text(page, "#total-accepted").replace(",", ""))
        delivered = int(_text(page, "#total-delivered").replace(",", ""))

        app = App(running.port)
        try:
            for i in range(3):
                app.submit(f"491510000{i:04d}", f"order {i} shipped")
            app.pump(lambda: len(app.receipts) == 3, 30, "three receipts")
            # While bound: the bind is listed with its peer and window.
            expect(page.locator("#binds tbody tr")).to_have_count(1, timeout=10_000)
            expect(page.locator("#binds tbody tr")).to_contain_text("shop")
            expect(page.locator("#binds tbody tr")).to_contain_text("transceiver")
        finally:
            app.close()

        expect(page.locator("#total-accepted")).to_have_text(str(accepted + 3), timeout=15_000)
        expect(page.locator("#total-delivered")).to_have_text(str(delivered + 3), timeout=15_000)
        route = page.locator('#delivery tr[data-key="phones/bank:b"]')
        expect(route).to_contain_text("100.0 %", timeout=10_000)
        # The chart has drawn the traffic: some point of the accepted line is above zero.
        page.wait_for_function(
            """() => {
                const line = document.querySelector('#chart polyline.accepted');
                if (!line) return false;
                const ys = line.getAttribute('points').split(' ').filter(Boolean)
                    .map(p => parseFloat(p.split(',')[1]));
                return ys.length > 1 && Math.min(...ys) < 100;
            }""",
            timeout=15_000,
        )
        sent_today = sum(m["used"]["day"] for m in running.call(_modems(running.gateway)))
        assert sent_today >= 3
        docs = bool(os.environ.get("SMSGW_SCREENSHOT"))
        if docs:  # the docs' picture: a few bursts, so the chart has a shape
            _bursts(running, [4, 9, 6, 12, 7, 3])
            expect(page.locator("#total-delivered")).to_have_text(
                str(delivered + 44), timeout=30_000
            )
            time.sleep(2.5)  # the last interval sampled and drawn
        shot = tmp_path / "status-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if docs:
            shutil.copyfile(shot, ROOT / "docs" / "status-page.png")
        assert not view.errors, view.errors
    finally:
        view.close()


def _bursts(running: Running, sizes: list[int]) -> None:
    """`sizes[i]` messages in second i, through one smpplib bind, and their receipts."""
    app = App(running.port)
    try:
        sent = 0
        for size in sizes:
            started = time.monotonic()
            for _ in range(size):
                app.submit(f"491520{sent:06d}", f"order {sent} shipped")
                sent += 1
            app.pump(lambda n=sent: len(app.ids) == n, 10, "answers")
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        app.pump(lambda: len(app.receipts) == sent, 30, "receipts")
    finally:
        app.close()


async def _modems(gateway: Gateway) -> list[dict[str, Any]]:
    return gateway.modems()


def test_page_fits_a_phone(running: Running, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    view = Page(browser, running, 375, 812)
    page = view.page
    try:
        expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
        expect(page.locator("#modems tbody tr")).to_have_count(2)
        fits = page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
        widths = page.evaluate("() => [document.scrollingElement.scrollWidth, innerWidth]")
        assert fits, f"the page overflows sideways at 375 px: {widths}"
        # A reload refused: the card says so, with the loader's message (YAML path).
        broken = tmp_path / "broken.yaml"
        broken.write_text("accounts: [{system_id: shop, password: secret}]\nroutes: 7\n")
        result = running.call(running.gateway.reload(str(broken)))
        assert result.error is not None
        expect(page.locator("#reload")).to_contain_text("refused", timeout=10_000)
        expect(page.locator("#reload")).to_contain_text("routes")
        page.screenshot(path=str(tmp_path / "status-page-phone.png"), full_page=True)
        assert not view.errors, view.errors
    finally:
        view.close()


def test_page_shows_the_feed_dropping(browser: Any, tmp_path: Path) -> None:
    """The gateway stops under an open page: the page says it lost the feed and retries."""
    from playwright.sync_api import expect  # noqa: PLC0415

    running = Running(tmp_path, modems=False)
    stopped = False
    view = Page(browser, running, 1280, 800)
    page = view.page
    try:
        expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
        expect(page.locator("#modems + .empty")).to_be_visible()  # no banks: said so
        running.call(running.gateway.stop(), timeout=30)
        stopped = True
        expect(page.locator("#conn")).to_have_text("disconnected, retrying", timeout=15_000)
    finally:
        view.close()
        if not stopped:
            running.call(running.gateway.stop(), timeout=30)
        running.stop_loop()
    # Console errors are expected here (the refused reconnects), so they are not checked.


def test_admin_only(running: Running) -> None:
    anonymous = httpx.get(running.base + "/", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Basic realm="smsgw"'
    assert httpx.get(running.base + "/api/v1/status/live", timeout=10).status_code == 401
    shop = ("shop", "secret")
    assert httpx.get(running.base + "/", auth=shop, timeout=10).status_code == 403
    events = httpx.get(running.base + "/api/v1/status/events", auth=shop, timeout=10)
    assert events.status_code == 403
    page = httpx.get(running.base + "/", auth=("admin", "admin"), timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/status/status.js" in page.text
    # The script and style hold no data: served to anyone (the browser fetches them as the
    # page's subresources); anything else under /status/ is not there.
    assert httpx.get(running.base + "/status/status.js", timeout=10).status_code == 200
    assert httpx.get(running.base + "/status/secret.txt", timeout=10).status_code == 404


def test_event_stream_carries_the_status(running: Running) -> None:
    with httpx.stream(
        "GET", running.base + "/api/v1/status/events", auth=("admin", "admin"), timeout=10
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = data = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "status":
                data = line[6:]
                break
    status = json.loads(data)
    assert [m["name"] for m in status["modems"]] == ["m1", "m2"]
    assert status["uptime"] >= 0 and status["throughput"]["interval"] == 1.0
    assert {t["name"] for t in status["targets"]} == {"bank:b", "sim"}


def test_stop_ends_open_event_streams_promptly(tmp_path: Path) -> None:
    """uvicorn waits for open responses when it stops: the streams end on `closing`, so a
    stop with a page open does not sit out uvicorn's forced exit (5 s)."""
    running = Running(tmp_path, modems=False)
    got_event = threading.Event()
    ended = threading.Event()

    def watch() -> None:
        try:
            with httpx.stream(
                "GET",
                running.base + "/api/v1/status/events",
                auth=("admin", "admin"),
                timeout=30,
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("event: status"):
                        got_event.set()
        except httpx.HTTPError:
            pass
        ended.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        assert got_event.wait(10), "no status event"
        started = time.monotonic()
        running.call(running.gateway.stop(), timeout=30)
        took = time.monotonic() - started
    finally:
        running.stop_loop()
    assert ended.wait(5), "the stream did not end"
    assert took < 4.0, f"stop took {took:.1f}s with a status stream open"


def test_status_names_upstream_link_states_and_last_error(tmp_path: Path) -> None:
    """One upstream bound to the fake carrier, one that nobody answers: each link's state
    and the unreachable one's last error, as the page shows them."""
    from tests.fakes.smsc import Behaviour, FakeSmsc  # noqa: PLC0415

    loop = LoopThread()
    smsc = FakeSmsc(Behaviour())
    port = loop.call(smsc.start())
    with socket.socket() as s:  # a port that was free a moment ago: refused connections
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    text = f"""
accounts: [{{system_id: shop, password: secret}}]
upstreams:
  carrier: {{host: 127.0.0.1, port: {port}, system_id: gw, password: pw}}
  gone: {{host: 127.0.0.1, port: {dead}, system_id: gw, password: pw}}
routes: [{{name: all, targets: [carrier]}}]
store: {{path: "{tmp_path / "gw.sqlite3"}"}}
"""
    gateway = Gateway(load_config("t.yaml", text=text))
    loop.call(gateway.start("127.0.0.1", 0))
    try:
        carrier = gateway.drivers["carrier"]
        assert isinstance(carrier, SmppUpstream)
        loop.call(carrier.wait_bound(10))
        deadline = time.monotonic() + 10
        status: dict[str, Any] = loop.call(gateway.status())
        while status["upstreams"]["gone"]["last_error"] is None:
            assert time.monotonic() < deadline, "no last error for the unreachable upstream"
            time.sleep(0.05)
            status = loop.call(gateway.status())
    finally:
        loop.call(gateway.stop())
        loop.call(smsc.stop())
        loop.stop_loop()
    up, gone = status["upstreams"]["carrier"], status["upstreams"]["gone"]
    assert [(link["state"], link["bound"]) for link in up["links"]] == [("bound", True)]
    assert up["last_error"] is None and up["sent_per_s"] == 0.0
    assert [link["state"] for link in gone["links"]] == ["down"]
    assert "0/trx" in gone["last_error"] and not gone["usable"]
