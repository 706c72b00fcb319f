"""Webhooks end to end (issue 10, item 5): a whole gateway, smpplib submitting as the account,
the simulated carrier's receipts (or an emulated modem's MO) POSTed to a real HTTP server
(`tests.fakes.webhook_receiver`) that fails, hangs, refuses, goes down and recovers."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import smpplib.client

from gateway.app import Gateway
from gateway.config import load_config
from gateway.store import MessageState
from tests.fakes.webhook_receiver import Hit, WebhookReceiver
from tests.integration.loop import LoopThread
from tests.integration.test_modem_bank import CONFIG as MODEM_CONFIG
from tests.integration.test_modem_bank import Running as ModemRunning

SECRET = "s3cret-s3cret-s3cret"
CONFIG = """
accounts:
  - {system_id: shop, password: secret%(webhook)s}
simulated_carriers: {sim: {delivery_delay: 0.05}}
routes: [{name: all, targets: [sim]}]
dispatch: {delivery_ttl: %(ttl)s}
store: {path: "%(db)s"}
"""


def webhook(url: str, **extra: Any) -> str:
    more = "".join(f", {k}: {v}" for k, v in extra.items())
    return f', webhook: {{url: "{url}", secret: {SECRET}{more}}}'


class Running(LoopThread):
    def __init__(self, tmp: Path, hook: str, *, ttl: float = 3600) -> None:
        super().__init__()
        self.path = tmp / "gateway.yaml"
        self.path.write_text(CONFIG % {"webhook": hook, "ttl": ttl, "db": tmp / "gw.sqlite3"})
        self.gateway = Gateway(load_config(self.path))
        self.gateway.config_path = str(self.path)
        self.gateway.dispatcher.poll_interval = 0.05
        self.gateway.webhooks.backoff = (0.4, 3.0)
        self.gateway.webhooks.rescan = 0.2
        self.port: int = self.call(self.gateway.start("127.0.0.1", 0))

    def send(self, count: int, *, bind: str = "transmitter", registered: int = 1) -> list[str]:
        """`count` messages from smpplib as shop, receipts asked for; their ids."""
        ids: list[str] = []
        c = smpplib.client.Client("127.0.0.1", self.port, timeout=10, allow_unknown_opt_params=True)
        c.set_message_sent_handler(lambda pdu: ids.append(pdu.message_id.decode()))
        c.connect()
        getattr(c, f"bind_{bind}")(system_id="shop", password="secret")
        for i in range(count):
            c.send_message(
                source_addr="Shop",
                destination_addr=f"49151000000{i:02d}",
                short_message=f"order {i} shipped".encode(),
                registered_delivery=registered,
            )
        deadline = time.monotonic() + 10
        while len(ids) < count:
            assert time.monotonic() < deadline
            c.read_once()
        c.unbind()
        c.disconnect()
        return ids

    def webhook_rows(self) -> int:
        """Webhook rows still queued for shop (all rows minus the SMPP ones nobody takes)."""
        depths = self.call(self.gateway.store.queue_depths())
        return depths.deliveries.get("shop", (0, 0.0))[0]

    def counted(self, outcome: str) -> float:
        assert self.gateway.metrics is not None
        value = self.gateway.metrics.registry.get_sample_value(
            "smsgw_webhook_deliveries_total", {"account": "shop", "outcome": outcome}
        )
        return value or 0.0

    def close(self) -> None:
        self.call(self.gateway.stop(), timeout=60)
        self.stop_loop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        time.sleep(0.02)


def by_delivery(hits: list[Hit]) -> dict[str, list[Hit]]:
    out: dict[str, list[Hit]] = {}
    for hit in hits:
        out.setdefault(hit.delivery, []).append(hit)
    return out


def test_each_receipt_arrives_once_signed_with_its_fields(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    running = Running(tmp_path, webhook(receiver.url))
    try:
        ids = running.send(3)
        hits = receiver.wait(lambda h: len(h) >= 3)
        # every webhook row done: only the 3 SMPP rows (nobody bound RX) wait
        wait_until(lambda: running.webhook_rows() == 3, 10, "webhook rows removed")
        assert len(receiver.hits) == 3
        assert len(by_delivery(hits)) == 3
        assert {h.json["id"] for h in hits} == set(ids)
        for hit in hits:
            assert hit.signed_by(SECRET)
            assert not hit.signed_by("another-secret-of-16")
            assert hit.headers["content-type"] == "application/json"
            assert abs(int(hit.headers["x-smsgw-timestamp"]) - time.time()) < 60
            p = hit.json
            assert p["event"] == "receipt"
            assert p["account"] == "shop"
            assert p["delivery_id"] == int(hit.delivery)
            assert p["attempt"] == 1
            assert p["state"] == "delivered"
            assert p["message_state"] == 2
            assert p["error"] == 0
            assert p["upstream"] == "sim"
            assert p["route"] == "all"
            assert p["upstream_id"]
            assert "stat:DELIVRD" in p["receipt"]
            assert p["receipt"].startswith(f"id:{p['upstream_id']}")  # the carrier's own text
            assert p["from"] == "Shop"
            assert p["to"].startswith("49151")
            assert p["submitted_at"] <= p["done_at"] <= p["sent_at"]
            record = running.call(running.gateway.store.get(p["id"]))
            assert record.state is MessageState.DELIVERED
        wait_until(lambda: running.counted("delivered") == 3, 10, "counted delivered")
    finally:
        running.close()


def test_state_events_are_the_intermediate_notifications(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    running = Running(tmp_path, webhook(receiver.url, events="[receipt, state]"))
    try:
        (message_id,) = running.send(1, registered=0x11)  # a receipt, and intermediate ones
        hits = receiver.wait(lambda h: len(h) >= 2)
        events = sorted((h.json["event"], h.json["state"]) for h in hits)
        assert events == [("receipt", "delivered"), ("state", "sent")]
        assert {h.json["id"] for h in hits} == {message_id}
        running.send(1, registered=0x10)  # intermediate only: no final receipt wanted
        hits = receiver.wait(lambda h: len(h) >= 3)
        assert hits[2].json["event"] == "state"
        time.sleep(0.5)
        assert len(receiver.hits) == 3
    finally:
        running.close()


def test_failures_are_retried_with_growing_gaps_until_it_recovers(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.script(500, 503, 500)
    running = Running(tmp_path, webhook(receiver.url))
    try:
        running.send(1)
        hits = receiver.wait(lambda h: any(x.answer == 200 for x in h), timeout=20)
        assert [h.answer for h in hits] == [500, 503, 500, 200]
        assert len(by_delivery(hits)) == 1  # one delivery, four tries
        assert [h.json["attempt"] for h in hits] == [1, 2, 3, 4]
        gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
        # the n-th wait is within [d/2, d] of d = 0.4 * 2**(n-1): each at least the one before
        assert gaps[0] >= 0.2 - 0.05
        for before, after in itertools.pairwise(gaps):
            assert after >= before - 0.05, gaps
        assert gaps[-1] <= 1.6 + 0.5
        wait_until(lambda: running.webhook_rows() == 1, 10, "delivered row removed")
        # counted once the delete is durable: that is after the row is gone, on the loop
        wait_until(lambda: running.counted("delivered") == 1, 10, "counted delivered")
        assert running.counted("retry") == 3
    finally:
        running.close()


def test_a_hanging_receiver_is_retried_after_the_timeout(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.script(("hang", 3.0))
    running = Running(tmp_path, webhook(receiver.url, timeout=0.5))
    try:
        running.send(1)
        hits = receiver.wait(lambda h: len(h) >= 2, timeout=20)
        first, second = hits[:2]
        assert (first.answer, second.answer) == ("hang", 200)
        assert first.delivery == second.delivery  # at least once: the receiver dedupes on it
        assert second.at - first.at >= 0.5 + 0.2 - 0.05  # the timeout, then a backoff
        assert second.at - first.at < 3.0  # not waiting the hang out
        wait_until(lambda: running.webhook_rows() == 1, 10, "delivered row removed")
    finally:
        running.close()


def test_a_permanent_refusal_is_dropped_and_counted(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.script(400)
    running = Running(tmp_path, webhook(receiver.url))
    try:
        running.send(1)
        wait_until(lambda: running.counted("rejected") == 1, 10, "counted rejected")
        assert running.webhook_rows() == 1  # the SMPP row only
        time.sleep(1.0)  # a retry would come within 0.4 s: none does
        assert [h.answer for h in receiver.hits] == [400]
    finally:
        running.close()


def test_a_delivery_past_its_ttl_is_dropped(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.default = 500
    running = Running(tmp_path, webhook(receiver.url), ttl=2)
    try:
        running.send(1)
        wait_until(lambda: running.counted("expired") == 1, 15, "counted expired")
        tries = len(receiver.hits)
        assert 2 <= tries <= 5
        assert running.webhook_rows() == 1  # the SMPP row, until its own ttl
        time.sleep(1.0)
        assert len(receiver.hits) == tries
    finally:
        running.close()


def test_an_account_with_binds_and_a_webhook_gets_both(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    running = Running(tmp_path, webhook(receiver.url))
    try:
        received: list[Any] = []
        sent: list[str] = []
        c = smpplib.client.Client(
            "127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True
        )
        c.set_message_sent_handler(lambda pdu: sent.append(pdu.message_id.decode()))
        # smpplib passes pdu= as a keyword: list.append takes no keywords
        c.set_message_received_handler(lambda pdu: received.append(pdu))  # noqa: PLW0108
        c.connect()
        c.bind_transceiver(system_id="shop", password="secret")
        for i in range(2):
            c.send_message(
                source_addr="Shop",
                destination_addr=f"4915100000{i}",
                short_message=b"hello",
                registered_delivery=1,
            )
        deadline = time.monotonic() + 15
        while len(sent) < 2 or len(received) < 2:
            assert time.monotonic() < deadline
            c.read_once()
        c.unbind()
        c.disconnect()
        assert {p.receipted_message_id.decode() for p in received} == set(sent)
        hits = receiver.wait(lambda h: len(h) >= 2)
        assert {h.json["id"] for h in hits} == set(sent)
        wait_until(lambda: running.webhook_rows() == 0, 10, "both channels done")
    finally:
        running.close()


def test_deliveries_wait_through_a_restart(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.down()
    running = Running(tmp_path, webhook(receiver.url))
    try:
        ids = running.send(2)
        for message_id in ids:  # receipts settled: both webhook rows queued
            wait_until(
                lambda m=message_id: (
                    running.call(running.gateway.store.get(m)).state is MessageState.DELIVERED
                ),
                10,
                "receipt settled",
            )
        wait_until(lambda: running.counted("retry") >= 2, 10, "tried while down")
    finally:
        running.close()
    receiver.up()  # the same port
    again = Running(tmp_path, webhook(receiver.url))
    try:
        hits = receiver.wait(lambda h: len(h) >= 2, timeout=15)
        assert {h.json["id"] for h in hits} == set(ids)
        assert all(h.json["attempt"] >= 2 for h in hits)  # the tries before the restart count
        wait_until(lambda: again.webhook_rows() == 2, 10, "webhook rows removed")
    finally:
        again.close()


def test_a_reload_adds_and_removes_a_webhook_live(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    running = Running(tmp_path, "")
    try:
        running.send(1)
        time.sleep(0.5)
        assert receiver.hits == []
        text = running.path.read_text()
        running.path.write_text(
            text.replace("password: secret}", "password: secret" + webhook(receiver.url) + "}")
        )
        result = running.call(running.gateway.reload())
        assert result.error is None
        (message_id,) = running.send(1)
        (hit,) = receiver.wait(lambda h: len(h) >= 1)
        assert hit.json["id"] == message_id
        running.path.write_text(text)  # removed again
        assert running.call(running.gateway.reload()).error is None
        running.send(1)
        time.sleep(1.0)
        assert len(receiver.hits) == 1
    finally:
        running.close()


MO_CONFIG = MODEM_CONFIG.replace(
    "accounts: [{{system_id: shop, password: secret}}]",
    "accounts: [{{system_id: shop, password: secret, webhook: "
    '{{url: "%s", secret: %s, events: [mo]}}}}]',
)


def test_mo_arrives_reassembled(tmp_path: Path, receiver: WebhookReceiver) -> None:
    running = ModemRunning(tmp_path, config=MO_CONFIG % (receiver.url, SECRET))
    try:
        modem = running.emulated.modems["m2"]
        long_text = "Part one, and part two. " * 6
        running.network.inject(modem, "+491700000001", "Yes please")
        running.network.inject(modem, "ΔHMOΣ", long_text, parts=2)
        hits = receiver.wait(lambda h: len(h) >= 2, timeout=30)
        by_text = {h.json["text"]: h for h in hits}
        assert set(by_text) == {"Yes please", long_text}  # one POST for the two parts
        for hit in hits:
            assert hit.signed_by(SECRET)
            p = hit.json
            assert p["event"] == "mo"
            assert p["account"] == "shop"
            assert p["to"] == "4915100000002"
            assert p["data_coding"] in (0, 8)
        assert by_text["Yes please"].json["from"] == "491700000001"
        assert by_text[long_text].json["from"] == "DHMOS"
        time.sleep(0.5)
        assert len(receiver.hits) == 2
    finally:
        running.close()
