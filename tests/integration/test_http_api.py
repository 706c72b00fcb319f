"""The HTTP API against a whole gateway, with httpx as the client (issue 10, items 1-3 and 7).

The gateway runs on its own loop in a thread with its HTTP server on an ephemeral port; every
request is a real HTTP request over loopback. Messages go to a simulated carrier (delivered
after 50 ms) or, for the `99` prefix, to a bank of one emulated modem.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import smpplib.client
import trustme

from gateway.app import Gateway
from gateway.config import load_config
from gateway.http.auth import REJECT_DELAY
from gateway.smpp.receipt import canonical_ids
from tests.integration.loop import LoopThread
from tests.integration.serve import Served
from tests.integration.wait import until

TOKEN = "shop-token-0123456789abcdef"

CONFIG = """
accounts:
  - {system_id: shop, password: secret, api_tokens: [%(token)s]}
  - {system_id: slow, password: slow, throughput: 2}
  - {system_id: far, password: far, allow_cidrs: ["10.0.0.0/8"]}
  - {system_id: boss, password: boss, admin: true}
simulated_carriers: {sim: {delivery_delay: 0.05, failure_ratio: 0}}
modem_banks: {usb: {emulate: 1, emulator: {report_delay: 0.05}}}
routes:
  - {name: modems, prefixes: ["99"], targets: ["bank:usb"]}
  - {name: all, targets: [sim]}
store: {path: "%(db)s"}
http: {host: 127.0.0.1, port: 0, max_body: 4096%(tls)s}
"""


class Running(LoopThread):
    def __init__(self, tmp: Path, tls: str = "") -> None:
        super().__init__()
        self.path = tmp / "gateway.yaml"
        self.path.write_text(CONFIG % {"token": TOKEN, "db": tmp / "gw.sqlite3", "tls": tls})
        self.gateway = Gateway(load_config(self.path))
        self.gateway.config_path = str(self.path)
        self.gateway.dispatcher.poll_interval = 0.05
        self.smpp_port = self.call(self.gateway.start("127.0.0.1", 0))
        assert self.gateway.http_port is not None
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.gateway.http_port}"

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.stop_loop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("http"))
    try:
        running.call(running.gateway.banks["usb"].wait_ready(timeout=20))
        yield running
    finally:
        running.close()


@pytest.fixture
def client(gw: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, auth=("shop", "secret"), timeout=15) as c:
        yield c


def _until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    return until(check, what, timeout)


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error


# -- health, docs ------------------------------------------------------------------------------


def test_health_ready_and_metrics_need_no_login(gw: Running) -> None:
    assert httpx.get(f"{gw.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gw.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "store_writable": True,
        "smpp_listening": True,
        "route_target_usable": True,
    }
    assert "smsgw_messages_accepted_total" in httpx.get(f"{gw.url}/metrics").text


def test_openapi_and_docs_are_served_offline(gw: Running) -> None:
    spec = httpx.get(f"{gw.url}/openapi.json").json()
    for path in ("/api/v1/messages", "/api/v1/messages/{message_id}", "/api/v1/reload"):
        assert path in spec["paths"], path
    assert "post" in spec["paths"]["/api/v1/messages"]
    page = httpx.get(f"{gw.url}/docs")
    assert page.status_code == 200
    external = [u for u in _urls(page.text) if u.startswith(("http:", "https:", "//"))]
    assert not external, external  # nothing from a CDN
    for asset in ("/_swagger/swagger-ui-bundle.js", "/_swagger/swagger-ui.css"):
        assert asset in page.text
        got = httpx.get(gw.url + asset)
        assert got.status_code == 200 and len(got.content) > 10_000


def _urls(html: str) -> list[str]:
    import re  # noqa: PLC0415

    return re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)


# -- auth ----------------------------------------------------------------------------------------


def test_basic_and_bearer_auth_and_refusals(gw: Running) -> None:
    body = {"to": ["+4915100000001"], "text": "auth"}
    url = f"{gw.url}/api/v1/messages"
    assert httpx.post(url, json=body, auth=("shop", "secret")).status_code == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(url, json=body, headers=bearer).status_code == 200
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401 and _error(missing)["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Basic")
    for auth, headers in (
        (("shop", "wrong"), {}),
        (("nobody", "x"), {}),
        (None, {"Authorization": "Bearer not-a-token-of-anyone"}),
        (("far", "far"), {}),  # right password, but not from 10.0.0.0/8
    ):
        started = time.monotonic()
        refused = httpx.post(url, json=body, auth=auth, headers=headers, timeout=10)
        assert refused.status_code == 401, (auth, refused.text)
        assert time.monotonic() - started >= REJECT_DELAY * 0.9  # slowed like a bad bind
    garbled = httpx.post(url, json=body, headers={"Authorization": "Basic !!!"})
    assert garbled.status_code == 401


def test_admin_endpoints_refuse_other_accounts(gw: Running, client: httpx.Client) -> None:
    for method, path in (
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/modems"),
        ("POST", "/api/v1/reload"),
    ):
        refused = client.request(method, path)
        assert refused.status_code == 403 and _error(refused)["code"] == "forbidden"


# -- send, query, cancel ---------------------------------------------------------------------


def test_send_query_and_receipt(gw: Running, client: httpx.Client) -> None:
    sent = client.post(
        "/api/v1/messages",
        json={"to": ["+4915100000002", "4915100000003"], "from": "Shop", "text": "Ihr Code: 4711"},
    )
    assert sent.status_code == 200, sent.text
    answer = sent.json()
    assert [m["to"] for m in answer["messages"]] == ["+4915100000002", "4915100000003"]
    assert answer["refused"] == []
    ids = [m["id"] for m in answer["messages"]]
    assert len(set(ids)) == 2
    for message_id in ids:
        # Durable before the answer: in the store the moment the response arrived.
        assert gw.call(gw.gateway.store.get(message_id)) is not None

    def delivered() -> dict[str, Any] | None:
        info = client.get(f"/api/v1/messages/{ids[0]}").json()
        return info if info["state"] == "delivered" else None

    info = _until(delivered, "the message delivered")
    assert info["account"] == "shop" and info["source"] == "Shop"
    assert info["destination"] == "4915100000002" and info["route"] == "all"
    assert info["history"][0][1] == "accepted"
    assert info["receipts"] and info["receipts"][0]["upstream"] == "sim"
    assert info["upstream_ids"][0]["upstream"] == "sim" and info["upstream_ids"][0]["part"] == 1
    # As the store indexes it: lower case, without the leading zeros of a run of digits.
    indexed = canonical_ids(info["receipts"][0]["upstream_id"])[0].removeprefix("s:")
    assert info["upstream_ids"][0]["id"] == indexed
    assert "stat:DELIVRD" in info["receipts"][0]["raw"]
    # Another account does not see it; an admin does.
    other = httpx.get(f"{gw.url}/api/v1/messages/{ids[0]}", auth=("slow", "slow"))
    assert other.status_code == 404 and _error(other)["code"] == "not_found"
    assert httpx.get(f"{gw.url}/api/v1/messages/{ids[0]}", auth=("boss", "boss")).status_code == 200
    unknown = client.get("/api/v1/messages/nope")
    assert unknown.status_code == 404 and _error(unknown)["field"] == "message_id"


def test_unicode_long_text_and_binary_go_through_the_smpp_pipeline(
    gw: Running, client: httpx.Client
) -> None:
    long_text = "【XX商城】您的订单已发货，回T退订。" * 12  # UCS-2, over 254 octets
    sent = client.post("/api/v1/messages", json={"to": ["+8613800000000"], "text": long_text})
    assert sent.status_code == 200, sent.text
    record = gw.call(gw.gateway.store.get(sent.json()["messages"][0]["id"]))
    assert record.message.data_coding == 8
    assert record.message.short_message == b""  # in message_payload, cut for the carrier
    assert long_text.encode("utf-16-be") in record.message.tlvs
    binary = client.post(
        "/api/v1/messages", json={"to": ["+4915100000004"], "hex": "0102ff", "data_coding": 4}
    )
    assert binary.status_code == 200, binary.text
    record = gw.call(gw.gateway.store.get(binary.json()["messages"][0]["id"]))
    assert record.message.short_message == b"\x01\x02\xff" and record.message.data_coding == 4
    gsm = client.post("/api/v1/messages", json={"to": ["+4915100000005"], "text": "Preis: 5€"})
    record = gw.call(gw.gateway.store.get(gsm.json()["messages"][0]["id"]))
    assert record.message.data_coding == 0 and record.message.short_message == b"Preis: 5\x1be"


def test_class_and_campaign_are_kept_with_the_message(gw: Running, client: httpx.Client) -> None:
    sent = client.post(
        "/api/v1/messages",
        json={"to": ["+4915100000011"], "text": "x", "class": "marketing", "campaign": "xmas-a"},
    )
    assert sent.status_code == 200, sent.text
    record = gw.call(gw.gateway.store.get(sent.json()["messages"][0]["id"]))
    assert (record.message.msg_class, record.message.campaign) == ("marketing", "xmas-a")
    plain = client.post("/api/v1/messages", json={"to": ["+4915100000011"], "text": "y"})
    record = gw.call(gw.gateway.store.get(plain.json()["messages"][0]["id"]))
    assert record.message.msg_class == "transactional"  # the policy's default class
    unknown = client.post(
        "/api/v1/messages", json={"to": ["+4915100000011"], "text": "x", "class": "promo"}
    )
    assert unknown.status_code == 422 and _error(unknown)["code"] == "unknown_class"
    assert _error(unknown)["field"] == "class"


def test_bad_requests_name_the_field(client: httpx.Client) -> None:
    cases: list[tuple[Any, int, str, str | None]] = [
        ("{not json", 400, "bad_json", None),
        ({"to": ["+4915100000001"]}, 422, "invalid_request", "body"),
        ({"to": [], "text": "x"}, 422, "invalid_request", "to"),
        ({"to": ["+49abc"], "text": "x"}, 422, "invalid_request", "to"),
        ({"to": ["+4915100000001"], "text": "x", "colour": 1}, 422, "invalid_request", "colour"),
        ({"to": ["+4915100000001"], "hex": "zz"}, 422, "invalid_request", "body"),
        (
            {"to": ["+4915100000001"], "text": "x", "validity": -1},
            422,
            "invalid_request",
            "validity",
        ),
        (
            {"to": ["+4915100000001"], "text": "x", "from": "ThisSenderIsFarTooLong"},
            422,
            "invalid_request",
            "from",
        ),
    ]
    for body, status, code, field in cases:
        if isinstance(body, str):
            got = client.post(
                "/api/v1/messages", content=body, headers={"Content-Type": "application/json"}
            )
        else:
            got = client.post("/api/v1/messages", json=body)
        assert got.status_code == status, (body, got.text)
        error = _error(got)
        assert error["code"] == code, (body, error)
        if field is not None:
            assert error["field"] == field, (body, error)
            assert field in error["message"] or field == "body"


def test_refusals_of_the_accept_pipeline_are_per_recipient(client: httpx.Client) -> None:
    too_late = (datetime.now(UTC) + timedelta(days=30)).isoformat()  # past max_validity
    refused = client.post(
        "/api/v1/messages", json={"to": ["+4915100000001"], "text": "x", "schedule": too_late}
    )
    assert refused.status_code == 422 and _error(refused)["code"] == "invalid_schedule"
    mixed = client.post(
        "/api/v1/messages",
        json={"to": ["+4915100000001", "+4915100000002"], "text": "x", "from": "ABCDEFGHIJKL"},
    )
    assert mixed.status_code == 422 and _error(mixed)["code"] == "invalid_source"


def test_an_oversize_body_gets_a_clear_413(client: httpx.Client) -> None:
    big = {"to": ["+4915100000001"], "text": "x" * 10_000}
    got = client.post("/api/v1/messages", json=big)
    assert got.status_code == 413
    error = _error(got)
    assert error["code"] == "too_large" and "4,096 bytes" in error["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"to": ["+4915100000001"], "text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    chunked = client.post(
        "/api/v1/messages", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413 and _error(chunked)["code"] == "too_large"


def test_throughput_limit_answers_429_with_retry_after(gw: Running) -> None:
    with httpx.Client(base_url=gw.url, auth=("slow", "slow"), timeout=10) as slow:
        body = {"to": ["+4915100000001"], "text": "x"}
        statuses = [slow.post("/api/v1/messages", json=body) for _ in range(4)]
        throttled = [r for r in statuses if r.status_code == 429]
        assert statuses[0].status_code == 200 and throttled, [r.status_code for r in statuses]
        assert _error(throttled[0])["code"] == "throttled"
        assert int(throttled[0].headers["retry-after"]) >= 1
        too_many = slow.post(
            "/api/v1/messages", json={"to": [f"+491510000{i:04d}" for i in range(5)], "text": "x"}
        )
        assert too_many.status_code == 429 and _error(too_many)["field"] == "to"


def test_cancel_a_scheduled_message(gw: Running, client: httpx.Client) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sent = client.post(
        "/api/v1/messages", json={"to": ["+4915100000009"], "text": "later", "schedule": later}
    )
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["messages"][0]["id"]
    other = httpx.delete(f"{gw.url}/api/v1/messages/{message_id}", auth=("slow", "slow"))
    assert other.status_code == 404
    assert client.delete(f"/api/v1/messages/{message_id}").json() == {
        "id": message_id,
        "cancelled": True,
    }
    again = client.delete(f"/api/v1/messages/{message_id}")
    assert again.status_code == 409 and _error(again)["code"] == "not_pending"
    assert client.get(f"/api/v1/messages/{message_id}").json()["state"] != "accepted"


# -- operations (admin) ------------------------------------------------------------------------


def test_admin_status_modems_ussd_and_reload(gw: Running) -> None:
    with httpx.Client(base_url=gw.url, auth=("boss", "boss"), timeout=40) as boss:
        status = boss.get("/api/v1/status").json()
        assert status["port"] == gw.smpp_port and status["modems"][0]["bank"] == "usb"
        modems = boss.get("/api/v1/modems").json()
        assert [(m["bank"], m["name"], m["state"]) for m in modems] == [("usb", "modem1", "READY")]
        answer = boss.post("/api/v1/modems/usb/modem1/ussd", json={"code": "*100#", "wait": 20})
        assert answer.status_code == 200, answer.text
        assert "12.34" in answer.json()["answer"]
        missing = boss.post("/api/v1/modems/usb/nope/ussd", json={"code": "*100#"})
        assert missing.status_code == 404 and "nope" in _error(missing)["message"]
        reloaded = boss.post("/api/v1/reload")
        assert reloaded.status_code == 200 and reloaded.json()["applied"] == []
        original = gw.path.read_text()
        try:
            gw.path.write_text(original.replace("targets: [sim]", "targets: [nowhere]"))
            refused = boss.post("/api/v1/reload")
            assert refused.status_code == 422
            error = _error(refused)
            assert error["code"] == "reload_refused" and "line" in error["message"]
        finally:
            gw.path.write_text(original)


def test_a_message_to_the_modem_bank_is_delivered(gw: Running, client: httpx.Client) -> None:
    sent = client.post("/api/v1/messages", json={"to": ["+99123456"], "text": "via modem"})
    message_id = sent.json()["messages"][0]["id"]

    def delivered() -> bool:
        return bool(client.get(f"/api/v1/messages/{message_id}").json()["state"] == "delivered")

    _until(delivered, "delivered through the emulated modem", timeout=30)
    info = client.get(f"/api/v1/messages/{message_id}").json()
    assert info["receipts"][0]["upstream"] == "bank:usb"


def test_smpp_and_http_share_one_account_and_one_pipeline(gw: Running) -> None:
    """A message sent over SMPP is visible over HTTP with the same id scheme, and vice versa."""
    smpp = smpplib.client.Client(
        "127.0.0.1", gw.smpp_port, timeout=10, allow_unknown_opt_params=True
    )
    smpp.connect()
    try:
        smpp.bind_transmitter(system_id="shop", password="secret")
        smpp.send_message(source_addr="Shop", destination_addr="4915100000077", short_message=b"s")
        resp = smpp.read_pdu()
        message_id = resp.message_id.decode()  # type: ignore[attr-defined]
        smpp.unbind()
    finally:
        smpp.disconnect()
    got = httpx.get(f"{gw.url}/api/v1/messages/{message_id}", auth=("shop", "secret"))
    assert got.status_code == 200 and got.json()["destination"] == "4915100000077"


# -- HTTPS -------------------------------------------------------------------------------------


def test_https_with_the_configured_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    running = Running(tmp_path, tls=f", tls_cert: {cert_path}, tls_key: {key_path}")
    try:
        trusted = ssl.create_default_context(cafile=str(ca_path))
        got = httpx.get(f"{running.url}/healthz", verify=trusted)
        assert got.json() == {"status": "ok"}
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{running.url}/healthz")  # not trusted without the CA
    finally:
        running.close()


# -- the CLI over HTTP -------------------------------------------------------------------------


def _smsgw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_the_cli_uses_the_http_api_when_there_is_one(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        CONFIG % {"token": TOKEN, "db": tmp_path / "gw.sqlite3", "tls": ""}
        + f"listen: {{host: 127.0.0.1, port: 0}}\ncontrol_socket: {tmp_path / 'smsgw.sock'}\n"
    )
    served = Served(config)
    try:
        served.wait_for("http listening", timeout=30)
        token_file = tmp_path / "smsgw.token"
        _until(token_file.exists, "the local token written")
        assert token_file.stat().st_mode & 0o077 == 0  # our user only
        written = json.loads(token_file.read_text())
        assert written["url"].startswith("http://127.0.0.1:")
        (tmp_path / "smsgw.sock").unlink()  # the control socket is gone: only HTTP is left
        status = _smsgw("status", "-c", str(config), "--json", cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["modems"][0]["bank"] == "usb"
        modems = _smsgw("modem", "list", "-c", str(config), cwd=tmp_path)
        assert modems.returncode == 0 and "modem1" in modems.stdout, modems.stderr
        unknown = _smsgw("query", "nope", "-c", str(config), cwd=tmp_path)
        assert unknown.returncode == 1 and unknown.stderr.startswith("error: no message")
        assert "Traceback" not in unknown.stderr
        sent = httpx.post(
            f"{written['url']}/api/v1/messages",
            json={"to": ["+4915100000001"], "text": "cli"},
            auth=("shop", "secret"),
        )
        message_id = sent.json()["messages"][0]["id"]
        query = _smsgw("query", message_id, "-c", str(config), cwd=tmp_path)
        assert query.returncode == 0 and message_id in query.stdout, query.stderr
        reloaded = _smsgw("reload", "-c", str(config), cwd=tmp_path)
        assert reloaded.returncode == 0 and "reloaded" in reloaded.stdout, reloaded.stderr
        # The local token is the gateway's own: it changes with every start.
        assert written["token"] not in config.read_text()
        stolen = httpx.get(
            f"{written['url']}/api/v1/status",
            headers={"Authorization": "Basic " + base64.b64encode(b"x:y").decode()},
        )
        assert stolen.status_code == 401
        assert served.stop() == 0
        down = _smsgw("status", "-c", str(config), cwd=tmp_path)
        assert down.returncode == 2 and "is it running" in down.stderr
    finally:
        served.kill()
