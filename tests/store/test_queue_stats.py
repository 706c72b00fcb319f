"""`queue_depths` as `smsgw status` shows it (`queue_summary`), on every backend."""

from __future__ import annotations

from gateway.store.base import MessageState, queue_summary
from tests.store import T0, msg
from tests.store.conftest import AnyStore, Db


def test_counts_what_waits_and_its_oldest_age(db: Db) -> None:
    async def body(store: AnyStore) -> dict[str, object]:
        assert queue_summary(await store.queue_depths(), T0 + 100) == {
            "messages_waiting": 0,
            "oldest_message_age": None,
            "deliveries_waiting": {},
            "oldest_delivery_age": None,
        }
        for i in (1, 2, 3):
            await store.accept(msg(i))
        await store.set_state("m0003", MessageState.SENT, T0 + 5)  # with an upstream: not waiting
        await store.enqueue_delivery("shop", "receipt", b"x", T0 + 10, 3600)
        await store.enqueue_delivery("shop", "mo", b"y", T0 + 20, 3600)
        await store.enqueue_delivery("other", "mo", b"z", T0 + 30, 3600)
        return queue_summary(await store.queue_depths(), T0 + 100)

    assert db.run(body) == {
        "messages_waiting": 2,
        "oldest_message_age": 99.0,
        "deliveries_waiting": {"shop": 2, "other": 1},
        "oldest_delivery_age": 90.0,
    }
