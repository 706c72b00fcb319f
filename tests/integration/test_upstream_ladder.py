"""The carrier ladder end to end: smpplib (the application) -> smsgw -> the fake SMSC, one rung
per carrier behaviour, receipts back to the application. Timeouts are shortened through the
upstream driver's settings; every wait is a bounded loop on a condition."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import trustme

from drivers.smpp.upstream import SmppUpstream
from gateway.app import Gateway
from gateway.config import load_config
from gateway.smpp.receipt import parse_receipt
from gateway.store.base import MessageState
from tests.fakes.smsc import ESME_RINVDSTADR, Behaviour, FakeSmsc
from tests.integration.loop import LoopThread

CONFIG = """
accounts: [{system_id: shop, password: secret}]
upstreams:
  carrier: {host: 127.0.0.1, port: %d, system_id: gw, password: pw%s}
routes: [{name: all, targets: [carrier]}]
dispatch: {retry_backoff: 0.1, max_retry_backoff: 0.5}
store: {path: "%s"}
"""
MO_ROUTES = """
mo_routes: [{account: shop, prefixes: [""]}]
"""

FAST = {
    "backoff": 0.05,
    "max_backoff": 0.4,
    "response_timeout": 1.0,
    "late_window": 4.0,
    "pause_min": 0.05,
    "pause_max": 0.4,
}


class Ladder(LoopThread):
    """The gateway with one carrier upstream (options in `upstream`), the fake behind it."""

    def __init__(
        self,
        tmp: Path,
        behaviour: Behaviour,
        upstream: str = "",
        *,
        server_ssl: ssl.SSLContext | None = None,
        tune: dict[str, float] | None = None,
        bound: bool = True,
        mo: bool = False,
    ) -> None:
        super().__init__()
        self.smsc = FakeSmsc(behaviour, ssl=server_ssl)
        smsc_port = self.call(self.smsc.start())
        text = CONFIG % (smsc_port, upstream, tmp / "gw.sqlite3") + (MO_ROUTES if mo else "")
        self.gateway = Gateway(load_config("t.yaml", text=text))
        self.gateway.dispatcher.poll_interval = 0.05
        driver = self.gateway.drivers["carrier"]
        assert isinstance(driver, SmppUpstream)
        self.upstream = driver
        for name, value in {**FAST, **(tune or {})}.items():
            setattr(driver, name, value)
        self.port = self.call(self.gateway.start("127.0.0.1", 0))
        if bound:
            self.call(driver.wait_bound(10))

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.call(self.smsc.stop())
        self.stop_loop()

    def state(self, message_id: str) -> MessageState:
        record = self.call(self.gateway.store.get(message_id))
        assert record is not None
        return record.state  # type: ignore[no-any-return]


class App:
    """The application: an smpplib transceiver that submits and collects receipts."""

    def __init__(self, port: int) -> None:
        self.sent: list[Any] = []
        self.receipts: list[Any] = []
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=2, allow_unknown_opt_params=True
        )
        self.client.connect()
        self.client.set_message_sent_handler(self._on_sent)
        self.client.set_message_received_handler(self._on_received)
        self.client.bind_transceiver(system_id="shop", password="secret")

    def _on_sent(self, pdu: Any) -> None:  # smpplib calls handlers with pdu=...
        self.sent.append(pdu)

    def _on_received(self, pdu: Any) -> None:
        self.receipts.append(pdu)

    def submit(self, count: int, *, sequential: bool = False, **fields: Any) -> None:
        """`count` messages asking for receipts; `sequential` waits for each answer."""
        for i in range(count):
            before = len(self.sent)
            self.client.send_message(
                source_addr="Shop",
                destination_addr=f"4915100000{i:02d}",
                short_message=fields.get("short_message", f"order {i}".encode()),
                registered_delivery=1,
                **{k: v for k, v in fields.items() if k != "short_message"},
            )
            for _ in range(20):  # bounded
                if not sequential or len(self.sent) > before:
                    break
                self.client.read_once()

    def wait(self, sent: int, receipts: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # each read returns within the client's timeout
            if len(self.sent) >= sent and len(self.receipts) >= receipts:
                return
            self.client.read_once()

    def ids(self) -> list[str]:
        return [p.message_id.decode() for p in self.sent if p.status == 0]

    def receipted(self) -> list[str]:
        return [parse_receipt(p.short_message).message_id for p in self.receipts]

    def close(self) -> None:
        self.client.unbind()
        self.client.disconnect()


def _all_through(ladder: Ladder, count: int, timeout: float = 30.0, **submit: Any) -> App:
    """Submit `count`, wait for every answer and receipt; check each arrived once."""
    app = App(ladder.port)
    try:
        app.submit(count, **submit)
        app.wait(count, count, timeout)
        assert len(app.ids()) == count
        assert sorted(app.receipted()) == sorted(app.ids())  # our ids, not the carrier's
        destinations = Counter(r.destination for r in ladder.smsc.records)
        assert destinations == Counter(f"4915100000{i:02d}" for i in range(count))
    finally:
        app.close()
    return app


@pytest.mark.parametrize(
    ("upstream", "binds"),
    [
        (", binds: 2", {"trx": 2}),
        (", binds: 2, bind: transmitter+receiver", {"tx": 2, "rx": 2}),
    ],
    ids=["trx-x2", "tx+rx-x2"],
)
def test_happy_with_several_binds(tmp_path: Path, upstream: str, binds: dict[str, int]) -> None:
    ladder = Ladder(tmp_path, Behaviour(), upstream)
    try:
        _all_through(ladder, 8)
        assert ladder.smsc.bind_counts == binds
        assert {r.mode for r in ladder.smsc.records} == ({"tx"} if "tx" in binds else {"trx"})
    finally:
        ladder.close()


def test_receipts_on_a_transmitter_bind_are_taken(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(deliver_on_tx=True), ", bind: transmitter+receiver")
    try:
        _all_through(ladder, 4)
    finally:
        ladder.close()


def test_refused_binds_are_retried_with_backoff(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(refuse_binds=3))
    try:
        _all_through(ladder, 2)
        assert ladder.smsc.binds == 4  # three refused, then one kept
    finally:
        ladder.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls(tmp_path: Path, ca: trustme.CA) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    ladder = Ladder(tmp_path, Behaviour(), f', tls: true, tls_ca: "{bundle}"', server_ssl=server)
    try:
        _all_through(ladder, 3)
    finally:
        ladder.close()


def test_tls_refuses_an_unknown_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ladder = Ladder(tmp_path, Behaviour(), ", tls: true", server_ssl=server, bound=False)
    try:
        with pytest.raises(TimeoutError):
            ladder.call(ladder.upstream.wait_bound(1.0))  # the system CAs do not know ours
        assert ladder.smsc.binds == 0
    finally:
        ladder.close()


@pytest.mark.parametrize(
    "behaviour",
    [Behaviour(throttle_first=2, throttle_every=3), Behaviour(throttle_every=2, msgqful=True)],
    ids=["throttled", "msgqful"],
)
def test_throttling_keeps_order_and_loses_nothing(tmp_path: Path, behaviour: Behaviour) -> None:
    # Window 1: with more in flight the carrier may accept later PDUs already on the wire
    # while the throttled one waits; what is not yet sent always waits behind it. Pauses stay
    # short: the dispatcher requeues a message no target takes within 0.2 s, and a requeued
    # message can be overtaken (keeping claim order across that is the dispatcher's part).
    ladder = Ladder(tmp_path, behaviour, ", window: 1", tune={"pause_min": 0.02, "pause_max": 0.05})
    try:
        _all_through(ladder, 8, sequential=True)
        got = [r.short_message.decode() for r in ladder.smsc.records]
        assert got == [f"order {i}" for i in range(8)]  # submit order, each once
        assert ladder.smsc.seen > 8  # it did throttle
    finally:
        ladder.close()


def test_slow_carrier(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(response_delay=0.3), ", window: 4")
    try:
        _all_through(ladder, 6)
        assert ladder.smsc.seen == 6  # slow, not timed out: nothing sent twice
    finally:
        ladder.close()


def test_link_dropped_mid_run(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(drop_after=3))
    try:
        _all_through(ladder, 8)
        assert ladder.smsc.bind_counts["trx"] >= 2  # it reconnected
    finally:
        ladder.close()


@pytest.mark.parametrize("kind", ["garbage", "bad_length", "unknown_command"])
def test_malformed_replies(tmp_path: Path, kind: str) -> None:
    behaviour = Behaviour(malformed_every=3, malformed=kind)  # type: ignore[arg-type]
    ladder = Ladder(tmp_path, behaviour, tune={"response_timeout": 0.5, "late_window": 1.0})
    try:
        _all_through(ladder, 6)
        assert ladder.smsc.malformed_sent >= 2
        if kind != "unknown_command":  # a reply we cannot frame ends the link
            assert ladder.smsc.bind_counts["trx"] >= 2
    finally:
        ladder.close()


def test_late_response_is_not_a_duplicate(tmp_path: Path) -> None:
    behaviour = Behaviour(late_first=1, late_delay=1.5)
    ladder = Ladder(tmp_path, behaviour, tune={"response_timeout": 0.5, "late_window": 5.0})
    try:
        _all_through(ladder, 3)  # each destination exactly once at the carrier
        assert ladder.smsc.answered_late == 1
        assert len(ladder.smsc.records) == 3
    finally:
        ladder.close()


def test_permanent_error_ends_the_message_with_a_failure_receipt(tmp_path: Path) -> None:
    refused = "491510000001"
    behaviour = Behaviour(fail_destinations={refused: ESME_RINVDSTADR})
    ladder = Ladder(tmp_path, behaviour)
    app = App(ladder.port)
    try:
        app.submit(3)
        app.wait(3, 3)
        ids = app.ids()
        assert sorted(app.receipted()) == sorted(ids)
        receipts = {parse_receipt(p.short_message).message_id: p for p in app.receipts}
        failed = receipts[ids[1]]
        parsed = parse_receipt(failed.short_message)
        assert parsed.stat.name == "UNDELIV"
        assert parsed.err == f"{ESME_RINVDSTADR:03d}"
        assert ladder.state(ids[1]) is MessageState.FAILED
        assert ladder.smsc.seen == 3  # a permanent error is not retried
        assert refused not in {r.destination for r in ladder.smsc.records}
    finally:
        app.close()
        ladder.close()


@pytest.mark.parametrize("mode", ["udh", "sar", "payload"])
def test_long_message_in_the_upstreams_form(tmp_path: Path, mode: str) -> None:
    text = ("Your order 4711 has shipped and will arrive on Tuesday. " * 4).encode()  # 224
    ladder = Ladder(tmp_path, Behaviour(), f", long_messages: {mode}")
    app = App(ladder.port)
    try:
        app.submit(1, short_message=b"", message_payload=text)
        app.wait(1, 1)
        assert app.receipted() == app.ids()  # one receipt, with our id
        records = ladder.smsc.records
        if mode == "payload":
            assert [(r.message_payload, r.short_message) for r in records] == [(text, b"")]
            return
        assert len(records) == 2
        if mode == "udh":
            assert all(r.esm_class & 0x40 and r.sar is None for r in records)
            udhs = [r.udh for r in records]
            assert [u[:3] for u in udhs] == [b"\x05\x00\x03"] * 2
            assert udhs[0][3] == udhs[1][3]  # one reference
            assert [u[4:] for u in udhs] == [b"\x02\x01", b"\x02\x02"]
            body = b"".join(r.short_message[6:] for r in records)
        else:
            assert not any(r.esm_class & 0x40 for r in records)
            sars = [r.sar for r in records]
            assert sars[0] is not None and sars[1] is not None
            assert sars[0][0] == sars[1][0]
            assert [s[1:] for s in sars if s] == [(2, 1), (2, 2)]
            body = b"".join(r.short_message for r in records)
        assert body == text
    finally:
        app.close()
        ladder.close()


def test_throughput_paces_sends(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(), ", throughput: 5")
    try:
        _all_through(ladder, 10)  # paced, never dropped
        # A bucket of 5/s holds 5 tokens: after those, one send per 0.2 s at most.
        at = [r.at for r in ladder.smsc.records]
        assert at[9] - at[4] >= 0.9
    finally:
        ladder.close()


def test_stop_unbinds(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(), ", binds: 2")
    smsc = ladder.smsc
    ladder.call(ladder.gateway.stop())
    try:
        for _ in range(100):  # bounded
            if not smsc.connected():
                break
            ladder.call(asyncio.sleep(0.02))
        assert smsc.connected() == 0
        assert smsc.unbinds == 2  # both connections unbound, not just dropped
    finally:
        ladder.call(smsc.stop())
        ladder.stop_loop()


@pytest.mark.parametrize(
    ("spelling", "early"),
    [("decimal", False), ("zeros", False), ("lower", False), ("decimal", True)],
    ids=["decimal", "zeros", "lower", "decimal-before-response"],
)
def test_receipt_ids_spelled_otherwise_in_the_text(
    tmp_path: Path, spelling: str, early: bool
) -> None:
    behaviour = Behaviour(
        receipt_tlvs=False,
        receipt_id=spelling,  # type: ignore[arg-type]
        receipt_before_response=early,
        receipt_delay=0.0 if early else 0.2,  # after the send is recorded, as carriers do
    )
    ladder = Ladder(tmp_path, behaviour)
    try:
        _all_through(ladder, 3)  # matched through the text's id alone
    finally:
        ladder.close()


# -- the upstream window, and receipts whose TLVs and text disagree (issue 8, item 14) ----------


@pytest.mark.parametrize("binds", [1, 2])
def test_the_window_caps_unanswered_submits_per_bind(tmp_path: Path, binds: int) -> None:
    """The carrier holds every submit_sm_resp: each bind has exactly `window` unanswered and
    no more, however many messages wait; released, all go through."""
    window, count = 3, 12
    ladder = Ladder(tmp_path, Behaviour(hold_responses=True), f", window: {window}, binds: {binds}")
    smsc = ladder.smsc
    app = App(ladder.port)
    try:
        app.submit(count)
        app.wait(count, 0)  # all accepted by the gateway, so all are queued for the carrier
        _until(ladder, lambda: smsc.outstanding() == window * binds, 10)
        # A while longer with every response held: nothing more is sent (bounded look).
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert smsc.outstanding() == window * binds
            ladder.call(asyncio.sleep(0.05))
        assert len(smsc.records) == window * binds
        smsc.behaviour.hold_responses = False
        assert ladder.call(smsc.release_responses()) == window * binds
        app.wait(count, count)
        assert sorted(app.receipted()) == sorted(app.ids())
        assert len(smsc.records) == count  # each once
        assert smsc.max_outstanding == window  # per bind, never more
    finally:
        app.close()
        ladder.close()


def test_a_receipt_whose_tlvs_and_text_disagree_takes_the_tlvs(tmp_path: Path) -> None:
    """The text names the next message's id and the opposite outcome; the TLVs are right."""
    behaviour = Behaviour(text_disagrees=True, fail_share=0.5, seed=3)
    ladder = Ladder(tmp_path, behaviour)
    app = App(ladder.port)
    try:
        app.submit(6)
        app.wait(6, 6)
        ids = app.ids()
        assert sorted(app.receipted()) == sorted(ids)  # one each, for its own message
        truth = {r.destination: r.delivered for r in ladder.smsc.records}
        assert set(truth.values()) == {True, False}  # both outcomes are in the run
        got = {p.source_addr.decode(): p.message_state for p in app.receipts}
        assert got == {d: 2 if ok else 5 for d, ok in truth.items()}
        for i, message_id in enumerate(ids):
            delivered = truth[f"4915100000{i:02d}"]
            want = MessageState.DELIVERED if delivered else MessageState.UNDELIVERABLE
            assert ladder.state(message_id) is want
    finally:
        app.close()
        ladder.close()


def _until(ladder: Ladder, condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        ladder.call(asyncio.sleep(0.02))


# -- what real carriers do with receipts (issue 8, items 4-7) ----------------------------------
# The gateway side: per-upstream `multipart_receipts`, `receipt_timeout`, `id_format`,
# `receipts_without_flag`; intermediate notifications; unknown stat words.

LONG = ("Your order 4711 has shipped and will arrive on Tuesday. " * 4).encode()  # two parts


@pytest.mark.parametrize("which", ["last", "first"])
def test_multipart_reported_by_one_part_ends(tmp_path: Path, which: str) -> None:
    behaviour = Behaviour(multipart_receipts=which)  # type: ignore[arg-type]
    ladder = Ladder(tmp_path, behaviour, f", multipart_receipts: {which}")
    app = App(ladder.port)
    try:
        app.submit(2, short_message=b"", message_payload=LONG)
        app.wait(2, 2, timeout=10)
        assert len(ladder.smsc.records) == 4  # two parts each
        assert len(ladder.smsc.receipts_sent) == 2  # the carrier reported one part of each
        assert sorted(app.receipted()) == sorted(app.ids())  # exactly one final each
        assert all(ladder.state(i) is MessageState.DELIVERED for i in app.ids())
    finally:
        app.close()
        ladder.close()


def test_a_receipt_that_never_comes_is_settled_after_the_timeout(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(drop_receipts=True), ", receipt_timeout: 1")
    app = App(ladder.port)
    try:
        app.submit(2)
        app.wait(2, 2, timeout=15)
        assert sorted(app.receipted()) == sorted(app.ids())  # one final receipt each
        assert {parse_receipt(p.short_message).stat.name for p in app.receipts} == {"UNKNOWN"}
    finally:
        app.close()
        ladder.close()


def test_intermediate_notifications_are_not_mo(tmp_path: Path) -> None:
    """esm_class 0x20 (ENROUTE) before each receipt: the application did not ask for
    intermediate notifications, so it gets the final receipt only - and no MO."""
    ladder = Ladder(tmp_path, Behaviour(intermediate=True), "", mo=True)
    app = App(ladder.port)
    try:
        app.submit(3)
        app.wait(3, 3)
        ladder.call(asyncio.sleep(0.3))  # anything mistaken for MO would have arrived by now
        app.wait(3, 4, timeout=0.5)
        assert len(ladder.smsc.receipts_sent) == 6  # an intermediate and a final each
        assert sorted(app.receipted()) == sorted(app.ids())
        assert all(p.esm_class & 0x04 for p in app.receipts)
    finally:
        app.close()
        ladder.close()


def test_receipts_without_the_receipt_bit(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(receipt_flag=False), ", receipts_without_flag: true")
    try:
        _all_through(ladder, 3, timeout=8)
    finally:
        ladder.close()


@pytest.mark.parametrize("word", ["ACKED", "UNDELIVERABLE", "delivrd", "X!7?"])
def test_an_unknown_stat_still_ends_the_message(tmp_path: Path, word: str) -> None:
    """A word we can read ends the message by itself; one that is not final (Kannel's ACKED:
    the SMSC took it) or none at all is kept, and the receipt timeout still ends it."""
    behaviour = Behaviour(receipt_tlvs=False, stat_word=word)
    ladder = Ladder(tmp_path, behaviour, ", receipt_timeout: 1")
    try:
        app = _all_through(ladder, 2, timeout=8)  # each gets one final receipt
        for message_id in app.ids():
            assert ladder.state(message_id).final
    finally:
        ladder.close()


@pytest.mark.parametrize(
    ("id_format", "spelling"),
    [
        ("hex", "lower"),
        ("hex", "zeros"),
        ("decimal", "zeros"),
        ("uuid", "upper"),
        ("uuid", "stripped"),
    ],
)
def test_id_formats_and_spellings(tmp_path: Path, id_format: str, spelling: str) -> None:
    behaviour = Behaviour(
        receipt_tlvs=False,
        id_format=id_format,  # type: ignore[arg-type]
        id_start=0x0E999F21 if id_format != "decimal" else 484,
        receipt_id=spelling,  # type: ignore[arg-type]
        receipt_delay=0.2,
    )
    ladder = Ladder(tmp_path, behaviour, f", id_format: {id_format}")
    try:
        _all_through(ladder, 3)
    finally:
        ladder.close()
