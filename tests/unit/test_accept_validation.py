"""Accept-time validation, answered to smpplib (a real client library) by a real server.

Every refusal carries its own status; what is accepted is stored with its schedule and
validity, and a scheduled message is not claimable before its time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.smpp

from gateway.config import MessagesConfig
from gateway.server.validate import Rejected, check_replace, check_submit, source_status
from gateway.smpp import CommandStatus, DataSm, ReplaceSm, SubmitSm, make_tlvs
from gateway.smpp.times import format_smpp_time, relative_smpp_time
from gateway.store import MessageState
from tests.integration.loop import ServerOnLoop

S = CommandStatus
CONFIG = """
numbers: {country_code: "49"}
accounts: [{system_id: shop, password: secret}]
simulated_carriers: {sim: {}}
routes: [{name: de, prefixes: ["49"], targets: [sim]}]
messages: {default_validity: 3600, max_validity: 7200}
"""
DEST = "4915112345678"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerOnLoop]:
    r = ServerOnLoop(CONFIG, tmp_path_factory.mktemp("db") / "smsgw.sqlite3")
    yield r
    r.close()


@pytest.fixture(scope="module")
def client(running: ServerOnLoop) -> Iterator[smpplib.client.Client]:
    c = smpplib.client.Client("127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    c.bind_transmitter(system_id="shop", password="secret")
    yield c
    c.unbind()
    c.disconnect()


def submit(c: smpplib.client.Client, command: str = "submit_sm", **fields: Any) -> tuple[int, str]:
    """Send one request with smpplib and read its response: (status, message_id)."""
    base: dict[str, Any] = {
        "source_addr_ton": 5,
        "source_addr": "Shop",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": DEST,
    }
    if command == "submit_sm":
        base["short_message"] = b"hello"
    both = (
        command == "submit_sm" and "message_payload" in fields and fields.get("short_message", b"x")
    )
    pdu = smpplib.smpp.make_pdu(command, client=c, **(base | fields))
    if both:
        # smpplib refuses to send both (its prep() raises); the point is that we refuse.
        pdu.sm_length = len(pdu.short_message)
        pdu.prep = lambda: None
    c.send_pdu(pdu)
    resp = c.read_pdu()
    assert resp.command == f"{command}_resp"
    message_id = resp.message_id.decode() if resp.status == 0 else ""
    return int(resp.status), message_id


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"schedule_delivery_time": "2401311200000"}, S.ESME_RINVSCHED),  # wrong length
        ({"schedule_delivery_time": "241331120000000+"}, S.ESME_RINVSCHED),  # month 13
        ({"schedule_delivery_time": "240131120000049+"}, S.ESME_RINVSCHED),  # 49 quarters
        ({"schedule_delivery_time": "000001000000100R"}, S.ESME_RINVSCHED),  # R with tnn
        ({"schedule_delivery_time": "000003000000000R"}, S.ESME_RINVSCHED),  # past max
        ({"validity_period": "24013x120000000+"}, S.ESME_RINVEXPIRY),  # bad digit
        ({"validity_period": "200101000000000+"}, S.ESME_RINVEXPIRY),  # in the past
        (  # validity ends before the schedule
            {"schedule_delivery_time": "000000010000000R", "validity_period": "000000003000000R"},
            S.ESME_RINVEXPIRY,
        ),
        ({"destination_addr": ""}, S.ESME_RINVDSTADR),
        ({"destination_addr": "49151abc"}, S.ESME_RINVDSTADR),
        ({"destination_addr": "4412345"}, S.ESME_RINVDSTADR),  # no route
        ({"source_addr": "TwelveChars!"}, S.ESME_RINVSRCADR),  # alphanumeric over 11
        ({"source_addr": ""}, S.ESME_RINVSRCADR),  # alphanumeric needs a name
        ({"source_addr_ton": 1, "source_addr": "Shop"}, S.ESME_RINVSRCADR),
        ({"source_addr_ton": 1, "source_addr": "+4915112345678901"}, S.ESME_RINVSRCADR),
        ({"source_addr_ton": 0, "source_addr": "A long sender"}, S.ESME_RINVSRCADR),
        ({"source_addr_ton": 7, "source_addr": "123"}, S.ESME_RINVSRCTON),
        ({"data_coding": 0x09}, S.ESME_RINVDCS),  # pictogram
        ({"data_coding": 0x0C}, S.ESME_RINVDCS),  # reserved
        ({"data_coding": 0x1C}, S.ESME_RINVDCS),  # GSM general group, reserved alphabet
        ({"data_coding": 0x85}, S.ESME_RINVDCS),  # reserved group
        ({"message_payload": b"also here"}, S.ESME_RINVPARLEN),  # and short_message
        ({"registered_delivery": 0x03}, S.ESME_RINVREGDLVFLG),
        ({"registered_delivery": 0x21}, S.ESME_RINVREGDLVFLG),
    ],
)
def test_refusals(client: smpplib.client.Client, fields: dict[str, Any], status: int) -> None:
    assert submit(client, **fields) == (status, "")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"source_addr_ton": 1, "source_addr": "+4930123456"},
        {"source_addr_ton": 0, "source_addr": "4930123456"},
        {"source_addr_ton": 0, "source_addr": "Shop"},
        {"source_addr_ton": 6, "source_addr": "12345"},
        {"source_addr_ton": 1, "source_addr": ""},  # the SMSC's default sender
        {"source_addr": "ElevenChars"},
        {"data_coding": 0x08, "short_message": "hi".encode("utf-16-be")},
        {"data_coding": 0x18, "short_message": "hi".encode("utf-16-be")},  # UCS-2 flash
        {"data_coding": 0xF0},
        {"registered_delivery": 0x11},  # receipt on success or failure, plus intermediate
        # Longer than one SMS and no UDH: SMPP allows 254 octets (see gateway.server.validate).
        {"short_message": b"x" * 254},
        {"short_message": b"", "message_payload": b"in the TLV"},
        {"schedule_delivery_time": "200101000000000+"},  # in the past: due now
    ],
)
def test_accepted(client: smpplib.client.Client, fields: dict[str, Any]) -> None:
    status, message_id = submit(client, **fields)
    assert status == 0
    assert message_id


def stored(running: ServerOnLoop, message_id: str) -> Any:
    record = running.call(running.store.get(message_id))
    assert record is not None
    return record


def test_default_validity_from_acceptance(
    running: ServerOnLoop, client: smpplib.client.Client
) -> None:
    _, message_id = submit(client)
    m = stored(running, message_id).message
    assert m.schedule_at is None
    assert m.expires_at == pytest.approx(m.accepted_at + 3600)


def test_relative_validity(running: ServerOnLoop, client: smpplib.client.Client) -> None:
    _, message_id = submit(client, validity_period=relative_smpp_time(600))
    m = stored(running, message_id).message
    assert m.expires_at == pytest.approx(m.accepted_at + 600)


def test_absolute_validity_with_offset(
    running: ServerOnLoop, client: smpplib.client.Client
) -> None:
    expires = int(time.time()) + 1800
    _, message_id = submit(client, validity_period=format_smpp_time(expires, -20))
    assert stored(running, message_id).message.expires_at == pytest.approx(expires)


def test_validity_is_capped(running: ServerOnLoop, client: smpplib.client.Client) -> None:
    _, message_id = submit(client, validity_period=relative_smpp_time(86400))
    m = stored(running, message_id).message
    assert m.expires_at == pytest.approx(m.accepted_at + 7200)


def test_scheduled_message_waits_for_its_time(
    running: ServerOnLoop, client: smpplib.client.Client
) -> None:
    _, message_id = submit(client, schedule_delivery_time=relative_smpp_time(1800))
    m = stored(running, message_id).message
    assert m.schedule_at == pytest.approx(m.accepted_at + 1800)
    # Default validity counts from the schedule, so the message is not born expired.
    assert m.expires_at == pytest.approx(m.schedule_at + 3600)
    store = running.store
    before = running.call(store.claim_due(m.accepted_at + 1799, 1000))
    assert message_id not in {r.message.id for r in before}
    assert stored(running, message_id).state is MessageState.ACCEPTED
    after = running.call(store.claim_due(m.schedule_at + 1, 1000))
    assert message_id in {r.message.id for r in after}


def test_data_sm_qos_time_to_live(running: ServerOnLoop, client: smpplib.client.Client) -> None:
    status, message_id = submit(client, "data_sm", message_payload=b"payload", qos_time_to_live=900)
    assert status == 0
    m = stored(running, message_id).message
    assert m.expires_at == pytest.approx(m.accepted_at + 900)
    assert submit(client, "data_sm", message_payload=b"x", qos_time_to_live=0) == (
        S.ESME_RINVEXPIRY,
        "",
    )


# -- the checks on their own ---------------------------------------------------------------------

LIMITS = MessagesConfig(default_validity=3600, max_validity=7200)
NOW = 1_750_000_000.0


def test_check_submit_plain() -> None:
    assert check_submit(SubmitSm(destination_addr=DEST), NOW, LIMITS) == (None, NOW + 3600)


def test_check_submit_statuses() -> None:
    with pytest.raises(Rejected) as err:
        check_submit(SubmitSm(validity_period="bad"), NOW, LIMITS)
    assert err.value.status is S.ESME_RINVEXPIRY
    with pytest.raises(Rejected) as err:
        check_submit(
            DataSm(tlvs=make_tlvs(qos_time_to_live=0)),
            NOW,
            LIMITS,
        )
    assert err.value.status is S.ESME_RINVEXPIRY


@pytest.mark.parametrize(
    ("ton", "addr", "status"),
    [
        (5, "Shop", None),
        (5, "", S.ESME_RINVSRCADR),
        (5, "Tab\there", S.ESME_RINVSRCADR),
        (1, "+491511234", None),
        (1, "49 151", S.ESME_RINVSRCADR),
        (2, "0301234", None),
        (3, "anything-goes", None),
        (0, "+491511234", None),
        (0, "", None),
        (8, "1", S.ESME_RINVSRCTON),
        # Over 20 characters no receipt (its destination_addr) nor upstream submit_sm can carry.
        (0, "1" * 20, None),
        (0, "1" * 21, S.ESME_RINVSRCADR),
        (2, "0" * 30, S.ESME_RINVSRCADR),
        (3, "n" * 21, S.ESME_RINVSRCADR),
    ],
)
def test_source_status(ton: int, addr: str, status: CommandStatus | None) -> None:
    assert source_status(ton, addr) == status


def test_check_replace_times() -> None:
    """replace_sm: an empty time keeps the message's; a kept validity moves with the schedule."""
    stored = {"schedule_at": NOW + 3600, "expires_at": NOW + 7200, "accepted_at": NOW - 10}
    assert check_replace(ReplaceSm(short_message=b"x"), NOW, LIMITS, **stored) is None
    in_2h = relative_smpp_time(7200)
    assert check_replace(ReplaceSm(schedule_delivery_time=in_2h), NOW, LIMITS, **stored) == (
        NOW + 7200,
        NOW + 10800,  # one hour after it is due, as before
    )
    in_3h = relative_smpp_time(3 * 3600)
    assert check_replace(ReplaceSm(validity_period=in_3h), NOW, LIMITS, **stored) == (
        NOW + 3600,  # the schedule kept
        NOW + 3 * 3600,
    )
    past = format_smpp_time(NOW - 60)
    assert check_replace(ReplaceSm(schedule_delivery_time=past), NOW, LIMITS, **stored) == (
        None,  # due now
        NOW + 3600,  # the hour of validity from now
    )
    for bad, status in (
        (ReplaceSm(validity_period=relative_smpp_time(60)), S.ESME_RINVEXPIRY),  # before due
        (ReplaceSm(validity_period="bad"), S.ESME_RINVEXPIRY),
        (ReplaceSm(schedule_delivery_time="bad"), S.ESME_RINVSCHED),
    ):
        with pytest.raises(Rejected) as err:
            check_replace(bad, NOW, LIMITS, **stored)
        assert err.value.status is status
