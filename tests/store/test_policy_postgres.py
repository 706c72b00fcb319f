"""The sending rules across two nodes sharing PostgreSQL: a cap of two lets exactly two of
twenty simultaneous messages through, half accepted by each node, and a duplicate accepted on
the other node gets the first node's id."""

from __future__ import annotations

import asyncio

from gateway.policy.check import StoreCheck, dedup_key
from gateway.policy.rules import Cap, ClassRule, Reason
from gateway.store.postgres import PostgresStore
from tests.store import msg
from tests.store.test_gateway_postgres import schema

__all__ = ["schema"]  # the fixture, shared

T0 = 1_800_000_000.0
CN = "8613800138000"


def test_a_cap_and_dedup_hold_across_two_nodes(postgres_dsn: str, schema: str) -> None:
    async def main() -> None:
        one = PostgresStore(postgres_dsn, node=1, schema=schema, min_size=1, max_size=8)
        two = PostgresStore(postgres_dsn, node=2, schema=schema, min_size=1, max_size=8)
        await one.open()
        await two.open()
        try:
            check = StoreCheck(ClassRule("payment_reminder", caps=(Cap(2, 86400.0),), dedup=False))
            verdicts = await asyncio.gather(
                *(
                    (one if i % 2 else two).accept_checked(
                        msg(i, destination_addr=CN, msg_class="payment_reminder"), check, T0
                    )
                    for i in range(20)
                )
            )
            assert sum(v.go for v in verdicts) == 2
            # Group-committed: the twenty went in a transaction or two per node, not twenty.
            assert 2 <= one.commits + two.commits <= 4
            assert all(v.stop is Reason.FREQUENCY_CAP for v in verdicts if not v.go)
            key = dedup_key("shop", CN, 0, b"code 1")
            otp = StoreCheck(ClassRule("otp"), dedup_key=key, dedup_window=600)
            first = await one.accept_checked(msg(100, destination_addr=CN), otp, T0)
            again = await two.accept_checked(msg(101, destination_addr=CN), otp, T0 + 1)
            assert first.go and again.duplicate_of == "m0100"
        finally:
            await one.close()
            await two.close()

    asyncio.run(asyncio.wait_for(main(), timeout=60))
