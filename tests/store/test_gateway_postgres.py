"""The whole gateway on PostgreSQL: smpplib submits, the simulated carrier delivers, the
receipts come back - and two nodes sharing the database each send a message once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import smpplib.client

from gateway.app import Gateway
from gateway.config import load_config
from gateway.smpp.receipt import parse_receipt
from gateway.store import MessageState
from gateway.store.postgres import PostgresStore
from tests.integration.loop import LoopThread

CONFIG = """
node_id: %d
accounts: [{system_id: shop, password: secret, window: 200}]
simulated_carriers: {sim: {delivery_delay: 0.02}}
routes: [{name: all, targets: [sim]}]
store: {backend: postgres, dsn: "%s"}
"""


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = f"gw_{uuid.uuid4().hex[:12]}"
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(drop(), 30))


class Node(LoopThread):
    def __init__(self, dsn: str, schema: str, node: int) -> None:
        super().__init__()
        config = load_config("t.yaml", text=CONFIG % (node, dsn))
        self.gateway = Gateway(config, store=PostgresStore(dsn, node=node, schema=schema))
        self.gateway.dispatcher.poll_interval = 0.05
        self.port = self.call(self.gateway.start("127.0.0.1", 0))

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.stop_loop()


def submit_and_collect(port: int, count: int) -> tuple[set[str], list[str]]:
    """Submit `count` messages with receipts asked; our ids, and the ids the receipts name."""
    acked: list[str] = []
    receipts: list[str] = []
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    c.set_message_sent_handler(lambda pdu: acked.append(pdu.message_id.decode()))
    c.set_message_received_handler(
        lambda pdu: receipts.append(str(parse_receipt(pdu.short_message).message_id))
    )
    c.bind_transceiver(system_id="shop", password="secret")
    for i in range(count):
        c.send_message(
            source_addr="Shop",
            destination_addr="4915100000",
            short_message=f"order {i}".encode(),
            registered_delivery=1,
        )
    for _ in range(count * 4):  # bounded: responses and receipts
        if len(acked) == count and len(receipts) >= count:
            break
        c.read_once()
    c.unbind()
    c.disconnect()
    return set(acked), receipts


def test_the_gateway_runs_on_postgres(postgres_dsn: str, schema: str) -> None:
    node = Node(postgres_dsn, schema, 1)
    try:
        acked, receipts = submit_and_collect(node.port, 50)
        assert len(acked) == 50
        assert sorted(receipts) == sorted(acked)  # each once
        for message_id in acked:
            record = node.call(node.gateway.store.get(message_id))
            assert record.state is MessageState.DELIVERED
    finally:
        node.close()


def test_two_nodes_share_one_database(postgres_dsn: str, schema: str) -> None:
    one, two = Node(postgres_dsn, schema, 1), Node(postgres_dsn, schema, 2)
    try:
        acked_one, receipts_one = submit_and_collect(one.port, 40)
        acked_two, receipts_two = submit_and_collect(two.port, 40)
        assert len(acked_one | acked_two) == 80  # node ids keep message ids apart
        assert sorted(receipts_one + receipts_two) == sorted(acked_one | acked_two)
        sent = [one.gateway.drivers["sim"], two.gateway.drivers["sim"]]
        assert sum(d._sent for d in sent) == 80  # type: ignore[attr-defined]  # none twice
    finally:
        one.close()
        two.close()
