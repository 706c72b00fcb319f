"""Webhooks on PostgreSQL: two gateway nodes share one database and one account's webhook;
every receipt's webhook is POSTed once, by whichever node leased it, and the binds still get
their own deliver_sm (both channels queued in the settle's one statement)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.store.postgres import PostgresStore
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.loop import LoopThread
from tests.store.test_gateway_postgres import schema, submit_and_collect

__all__ = ["schema"]  # the fixture, shared

SECRET = "s3cret-s3cret-s3cret"
CONFIG = """
node_id: %d
accounts:
  - {system_id: shop, password: secret, window: 200,
     webhook: {url: "%s", secret: %s, max_in_flight: 3}}
simulated_carriers: {sim: {delivery_delay: 0.02}}
routes: [{name: all, targets: [sim]}]
store: {backend: postgres, dsn: "%s"}
"""


class Node(LoopThread):
    def __init__(self, dsn: str, schema: str, node: int, url: str) -> None:
        super().__init__()
        config = load_config("t.yaml", text=CONFIG % (node, url, SECRET, dsn))
        self.gateway = Gateway(config, store=PostgresStore(dsn, node=node, schema=schema))
        self.gateway.dispatcher.poll_interval = 0.05
        self.gateway.webhooks.rescan = 0.05  # both nodes look often: they race for each row
        self.port = self.call(self.gateway.start("127.0.0.1", 0))

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.stop_loop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    r.default = ("hang", 0.05)  # a little slow: leases overlap in time
    yield r
    r.close()


def test_two_nodes_post_each_webhook_once(
    postgres_dsn: str, schema: str, receiver: WebhookReceiver
) -> None:
    one = Node(postgres_dsn, schema, 1, receiver.url)
    two = Node(postgres_dsn, schema, 2, receiver.url)
    try:
        acked, receipts = submit_and_collect(one.port, 30)
        assert sorted(receipts) == sorted(acked)  # the binds' channel, each once
        hits = receiver.wait(lambda h: {x.json["id"] for x in h} >= acked, timeout=60)
        time.sleep(0.5)  # a second POST of any would show now
        hits = list(receiver.hits)
        assert all(h.signed_by(SECRET) for h in hits)
        per_delivery = Counter(h.delivery for h in hits)
        assert len(per_delivery) == 30
        assert set(per_delivery.values()) == {1}
        assert {h.json["upstream"] for h in hits} == {"sim"}
    finally:
        one.close()
        two.close()
