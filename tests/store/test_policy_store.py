"""The sending rules' store side, on every backend: caps, dedup and stops decided in the
accept transaction (`Store.accept_checked`)."""

from __future__ import annotations

from gateway.policy.check import StoreCheck, dedup_key
from gateway.policy.rules import Cap, ClassRule, Reason
from gateway.store.base import MessageState
from tests.store import msg
from tests.store.conftest import AnyStore, Db

T0 = 1_800_000_000.0
REMINDER = ClassRule("payment_reminder", caps=(Cap(2, 86400.0),), dedup=False)


def test_a_cap_stops_the_third_in_its_window_and_stores_it_stopped(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        check = StoreCheck(REMINDER)
        verdicts = []
        for i in range(3):
            m = msg(i, destination_addr="8613800138000", msg_class="payment_reminder")
            verdicts.append(await store.accept_checked(m, check, T0 + i))
        assert [v.stop for v in verdicts] == [None, None, Reason.FREQUENCY_CAP]
        third = await store.get("m0002")
        assert third is not None and third.stop_reason == "frequency_cap"
        assert third.state is MessageState.ACCEPTED  # the dispatcher ends it with a receipt
        first = await store.get("m0000")
        assert first is not None and first.stop_reason is None
        # Another class, or the window moved on: not capped.
        other = msg(3, destination_addr="8613800138000", msg_class="otp")
        assert (await store.accept_checked(other, StoreCheck(ClassRule("otp")), T0 + 3)).go
        later = msg(4, destination_addr="8613800138000", msg_class="payment_reminder")
        assert (await store.accept_checked(later, check, T0 + 86400.5)).go
        # A stop that refuses stores nothing.
        refusing = StoreCheck(REMINDER, refuse=frozenset({Reason.FREQUENCY_CAP}))
        refused = msg(5, destination_addr="8613800138000", msg_class="payment_reminder")
        verdict = await store.accept_checked(refused, refusing, T0 + 86400.6)  # m1 and m4
        assert verdict.stop is Reason.FREQUENCY_CAP and await store.get("m0005") is None

    db.run(body)


def test_a_duplicate_is_answered_with_the_first_id_and_not_stored(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        key = dedup_key("shop", "8613800138000", 0, b"your code is 1234")
        check = StoreCheck(ClassRule("transactional"), dedup_key=key, dedup_window=600)
        first = await store.accept_checked(msg(1, destination_addr="8613800138000"), check, T0)
        assert first.go
        again = await store.accept_checked(msg(2, destination_addr="8613800138000"), check, T0 + 5)
        assert again.duplicate_of == "m0001" and await store.get("m0002") is None
        after = await store.accept_checked(
            msg(3, destination_addr="8613800138000"), check, T0 + 601
        )
        assert after.go and await store.get("m0003") is not None
        other = dedup_key("shop", "8613800138000", 0, b"your code is 9999")
        assert other != key
        assert await store.purge_policy(T0 + 1000, T0 + 1000) >= 1

    db.run(body)


def test_a_stop_found_before_the_store_is_stored_with_it(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        check = StoreCheck(ClassRule("marketing"), stopped=Reason.SIGNATURE_MISSING)
        verdict = await store.accept_checked(msg(1), check, T0)
        assert verdict.stop is Reason.SIGNATURE_MISSING
        record = await store.get("m0001")
        assert record is not None and record.stop_reason == "signature_missing"
        claimed = await store.claim_due(T0 + 1, 10)
        assert [(r.message.id, r.stop_reason) for r in claimed] == [("m0001", "signature_missing")]

    db.run(body)


def test_a_cap_per_account_counts_each_account_apart(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        rule = ClassRule("marketing", caps=(Cap(1, 86400.0, per_account=True),), dedup=False)
        check = StoreCheck(rule)

        def to_cn(i: int, account: str) -> object:
            return msg(i, destination_addr="8613800138000", msg_class="marketing", account=account)

        assert (await store.accept_checked(to_cn(1, "shop-a"), check, T0)).go
        assert (await store.accept_checked(to_cn(2, "shop-b"), check, T0 + 1)).go
        again = await store.accept_checked(to_cn(3, "shop-a"), check, T0 + 2)
        assert again.stop is Reason.FREQUENCY_CAP

    db.run(body)
