"""The MO path's opt-out (`gateway.inbound`, `OptOutRule`) against the real SQLite store:
scope per sender id, a long (reassembled) opt-out, a sender that is not a number, binary MO
ignored, a confirmation that fails never fails the MO, and no rule means no change."""

from __future__ import annotations

from pathlib import Path

from gateway.inbound import OptOutRule
from gateway.policy.keywords import DEFAULT
from gateway.smpp.constants import CommandStatus
from gateway.smpp.pdu import DeliverSm
from tests.integration.test_inbound import mo_path, parts_of, queued, run


def _mo(text: str, source: str = "+4915199999", **kw: object) -> DeliverSm:
    body = text.encode("utf-16-be")
    fields: dict[str, object] = {
        "source_addr": source,
        "destination_addr": "4930123",
        "data_coding": 8,
        "short_message": body,
    }
    fields.update(kw)
    return DeliverSm(**fields)  # type: ignore[arg-type]


def test_scope_sender_suppresses_for_the_address_replied_to(tmp_path: Path) -> None:
    confirmed: list[tuple[str, str, str, str]] = []

    async def confirm(account: str, to: str, sender: str, text: str) -> None:
        confirmed.append((account, to, sender, text))

    async def body() -> None:
        async with mo_path(tmp_path / "db.sqlite3") as (store, dispatcher):
            dispatcher.set_policy(OptOutRule(DEFAULT, per_sender=True), None)
            assert await dispatcher.inbound(_mo("退订")) == CommandStatus.ESME_ROK
            found = await store.suppression("4915199999")
            assert [(s.scope, s.source) for s in found] == [("4930123", "mo:4930123")]
            assert confirmed == []  # no confirmation configured
            assert await dispatcher.inbound(_mo("订阅")) == CommandStatus.ESME_ROK
            assert await store.suppression("4915199999") == []
            assert len(await queued(store)) == 2  # the application got both

            rule = OptOutRule(DEFAULT, confirmation="bye", confirm=confirm)
            dispatcher.set_policy(rule, None)
            # a long opt-out: its whole text is the keyword, padded with spaces
            for part in parts_of("STOP" + " " * 200, ref=7, source="4915188888"):
                await dispatcher.inbound(part)
            assert [s.scope for s in await store.suppression("4915188888")] == [""]
            assert confirmed == [("shop", "4915188888", "4930123", "bye")]

            # Confirmations per language: the keyword's language picks the text.
            texts = {"zh": "您已退订", "*": "You are unsubscribed"}
            dispatcher.set_policy(OptOutRule(DEFAULT, confirmation=texts, confirm=confirm), None)
            await dispatcher.inbound(_mo("ＴＤ", source="8613800000001"))
            await dispatcher.inbound(_mo("Unsubscribe", source="4915177777"))
            assert [c[3] for c in confirmed[1:]] == ["您已退订", "You are unsubscribed"]

    run(body)


def test_what_is_not_an_opt_out_changes_nothing(tmp_path: Path) -> None:
    async def broken(account: str, to: str, sender: str, text: str) -> None:
        raise RuntimeError("no route")

    async def body() -> None:
        async with mo_path(tmp_path / "db.sqlite3") as (store, dispatcher):
            assert await dispatcher.inbound(_mo("STOP")) == CommandStatus.ESME_ROK  # no rule
            assert await store.suppression("4915199999") == []
            dispatcher.set_policy(OptOutRule(DEFAULT, confirmation="bye", confirm=broken), None)
            await dispatcher.inbound(_mo("STOP", source="Brand", source_addr_ton=5))
            await dispatcher.inbound(_mo("please stop"))
            await dispatcher.inbound(_mo("", short_message=b"STOP", data_coding=4))  # binary
            assert await store.suppressions_page(None, 10) == []
            # the confirmation fails: the opt-out and the MO stand
            assert await dispatcher.inbound(_mo("td")) == CommandStatus.ESME_ROK
            assert len(await store.suppression("4915199999")) == 1
            assert len(await queued(store)) == 5

    run(body)
