"""Nodes sharing PostgreSQL hand work to each other: a node silent for a lease has its claimed
messages taken over (once, by one node; never a live node's), a node stopping cleanly hands
its claims and delivery leases over at once, and the lease is the configured one."""

from __future__ import annotations

import asyncio

from gateway.store import MessageState
from gateway.store.postgres import PostgresStore
from tests.store import T0, msg
from tests.store.test_gateway_postgres import schema

__all__ = ["schema"]  # the fixture, shared

LEASE = 15.0


def _run(dsn: str, schema: str, body: object) -> None:
    async def main() -> None:
        stores = [
            PostgresStore(dsn, node=n, schema=schema, min_size=1, max_size=4, lease=5.0)
            for n in (1, 2, 3)
        ]
        for store in stores:
            await store.open()
        try:
            await body(*stores)  # type: ignore[operator]
        finally:
            for store in stores:
                await store.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_silent_nodes_claims_are_taken_over_once(postgres_dsn: str, schema: str) -> None:
    async def body(one: PostgresStore, two: PostgresStore, three: PostgresStore) -> None:
        for store in (one, two, three):
            assert await store.heartbeat(T0)  # the first beat makes the row
        for i in range(4):
            await one.accept(msg(i))
        assert len(await one.claim_due(T0, 2)) == 2  # node 1 claims two, then goes silent
        assert len(await two.claim_due(T0, 1)) == 1
        await two.heartbeat(T0 + LEASE)
        await three.heartbeat(T0 + LEASE)
        # within the lease node 1 is alive: nothing is taken
        assert await two.take_over(T0 + LEASE - 1, LEASE) == 0
        # past it, two nodes race: exactly one takes node 1's two, node 2's claim stays
        got = await asyncio.gather(
            two.take_over(T0 + LEASE + 1, LEASE), three.take_over(T0 + LEASE + 1, LEASE)
        )
        assert sorted(got) == [0, 2]
        states = [(await one.get(f"m{i:04d}")) for i in range(3)]
        assert [r.state for r in states if r] == [
            MessageState.ACCEPTED,
            MessageState.ACCEPTED,
            MessageState.DISPATCHING,
        ]
        # node 1 comes back: its heartbeat says it was taken for dead
        assert await one.heartbeat(T0 + LEASE + 2)
        assert not await one.heartbeat(T0 + LEASE + 3)
        again = await three.claim_due(T0 + LEASE + 4, 10)
        assert sorted(r.message.id for r in again) == ["m0000", "m0001", "m0003"]

    _run(postgres_dsn, schema, body)


def test_a_clean_stop_hands_claims_and_leases_over(postgres_dsn: str, schema: str) -> None:
    async def body(one: PostgresStore, two: PostgresStore, _three: PostgresStore) -> None:
        await one.heartbeat(T0)
        await one.accept(msg(0))
        assert len(await one.claim_due(T0, 5)) == 1
        ids = [await one.enqueue_delivery("shop", "receipt", b"r", T0, 600) for _ in range(2)]
        offered = await one.pending_deliveries("shop", T0, 10)
        assert [d.id for d in offered] == ids
        # the configured lease (5 s), not the old fixed 120 s
        assert await two.pending_deliveries("shop", T0 + 4, 10) == []
        assert [d.id for d in await two.pending_deliveries("shop", T0 + 5.5, 10)] == ids
        assert await one.pending_deliveries("shop", T0 + 8, 10) == []  # node 2 holds them
        assert [d.id for d in await one.pending_deliveries("shop", T0 + 11, 10)] == ids
        assert await one.release(T0 + 12) == 3  # the claim and two deliveries
        # handed over at once, not after the lease
        assert [d.id for d in await two.pending_deliveries("shop", T0 + 12, 10)] == ids
        assert [r.message.id for r in await two.claim_due(T0 + 12, 5)] == ["m0000"]
        assert await one.heartbeat(T0 + 13)  # its row went with the release

    _run(postgres_dsn, schema, body)
