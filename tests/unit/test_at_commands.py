"""Builders and answer readers for the modem's AT commands, and a round trip through the engine
into our TPDU decoder. Answer lines follow TS 27.005 / 27.007 and vendor manuals (constructed)."""

from __future__ import annotations

import pytest

from drivers.modem.at import AtEngine, CommandDone
from drivers.modem.commands import (
    AnswerError,
    Operator,
    RegistrationState,
    SignalQuality,
    StorageUse,
    StoredMessage,
    ccid,
    cmgd,
    cmgl,
    cmgr,
    cmgs,
    cpin,
    cpms,
    csca,
    cusd,
    decode_ussd,
    parse_cmgl,
    parse_cmgr,
    parse_cmgs,
    parse_cops,
    parse_cpin,
    parse_cpms,
    parse_creg,
    parse_csca,
    parse_csq,
    parse_iccid,
    parse_imei,
    parse_imsi,
    ussd_encoding,
)
from gateway.sms.coding import Encoding
from gateway.sms.gsm7 import encode_gsm7, pack_septets
from gateway.sms.tpdu import SmsDeliver, decode_pdu, encode_sms_submit

DELIVER_GSM7 = (
    "0791447758100650040C9144770009103200004230504122134013D9775D0E1ABFC965507A0EA2E164B9D80C"
)
DELIVER_UCS2 = (
    "0791947101670000040D91945121436587F9000842305041322040100047007200FC00DF00650020D83DDC4B"
)
DELIVER_ALNUM = (
    "0891683108100005F00407D053F41B0E000042305090000040124F39B92C07C5603419688E4EC3E16532"
)


# -- sending ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("smsc", [None, "+8613800100500"])
def test_cmgs_from_an_encoded_submit(smsc: str | None) -> None:
    encoded = encode_sms_submit(
        destination="+447700900456",
        body=encode_gsm7("Hello from smsgw"),
        encoding=Encoding.GSM7,
        status_report=True,
        smsc=smsc,
    )
    command = cmgs(encoded.pdu, len(encoded.pdu) - encoded.tpdu_length)
    assert command.text == f"AT+CMGS={encoded.tpdu_length}"
    assert command.data == encoded.hex.encode()
    assert command.timeout == 60.0


def test_cmgs_refuses_a_wrong_smsc_length() -> None:
    pdu = bytes.fromhex("0021000C91447700094065000010C8329BFD0699E5EF3668DE9E9FEF")
    assert cmgs(pdu, 1).text == "AT+CMGS=27"
    with pytest.raises(ValueError, match="SMSC part"):
        cmgs(pdu, 0)
    with pytest.raises(ValueError, match="SMSC part"):
        cmgs(pdu, 2)


@pytest.mark.parametrize(
    ("lines", "mr"), [(["+CMGS: 7"], 7), (["+CMGS: 255"], 255), (['+CMGS: 12,"24/03/05"'], 12)]
)
def test_parse_cmgs(lines: list[str], mr: int) -> None:
    assert parse_cmgs(lines) == mr


@pytest.mark.parametrize("lines", [[], ["+CMGS: 256"], ["+CMGS: x"], ["OK"]])
def test_parse_cmgs_refuses(lines: list[str]) -> None:
    with pytest.raises(AnswerError):
        parse_cmgs(lines)


# -- signal, network, SIM --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rssi", "dbm"),
    [(0, -113), (1, -111), (14, -85), (31, -51), (99, None), (100, -116), (191, -25)],
)
def test_parse_csq(rssi: int, dbm: int | None) -> None:
    assert parse_csq([f"+CSQ: {rssi},99"]) == SignalQuality(rssi, 99, dbm)


def test_parse_csq_refuses() -> None:
    for lines in ([], ["+CSQ: 20"], ["+CSQ: a,b"]):
        with pytest.raises(AnswerError):
            parse_csq(lines)


def test_parse_creg_forms() -> None:
    assert parse_creg(["+CREG: 0,1"]) == RegistrationState(0, 1, None, None, None)
    state = parse_creg(['+CREG: 2,5,"1A2B","01C3",7'])
    assert state == RegistrationState(2, 5, 0x1A2B, 0x01C3, 7)
    assert state.registered and state.roaming
    assert not parse_creg(["+CREG: 0,2"]).registered
    assert parse_creg(['+CEREG: 2,1,"2F1A","01A2B3C4",7'], "+CEREG").ci == 0x01A2B3C4
    with pytest.raises(AnswerError):
        parse_creg(["+CREG: 1"])


def test_parse_cops() -> None:
    assert parse_cops(['+COPS: 0,0,"Vodafone UK",7']) == Operator(0, 0, "Vodafone UK", 7)
    assert parse_cops(['+COPS: 0,2,"23415",2']).name == "23415"
    assert parse_cops(["+COPS: 0"]) == Operator(0, None, None, None)
    assert parse_cops(['+COPS: 1,0,"O2 - UK, Ltd"']).name == "O2 - UK, Ltd"


@pytest.mark.parametrize(
    ("line", "state"),
    [("+CPIN: READY", "READY"), ("+CPIN: SIM PIN", "SIM PIN"), ('+CPIN: "SIM PUK"', "SIM PUK")],
)
def test_parse_cpin(line: str, state: str) -> None:
    assert parse_cpin([line]) == state


def test_cpin_builder() -> None:
    assert cpin("1234").text == 'AT+CPIN="1234"'
    assert cpin("12345678", "4321").text == 'AT+CPIN="12345678","4321"'
    for bad in ("12", "12a4", '1234"'):
        with pytest.raises(ValueError, match="digits"):
            cpin(bad)


def test_identity() -> None:
    assert parse_imei(["867123456789012"]) == "867123456789012"
    assert parse_imei(['+CGSN: "867123456789012"']) == "867123456789012"
    assert parse_imsi(["234150123456789"]) == "234150123456789"
    with pytest.raises(AnswerError):
        parse_imei(["ERROR?"])


@pytest.mark.parametrize(
    "lines",
    [
        ["+CCID: 89441000301234567890"],
        ['+CCID: "89441000301234567890"'],
        ["89441000301234567890"],  # SIMCom AT+CCID: bare
        ["+ICCID: 89441000301234567890"],
        ["^ICCID: 98440100032143658709"],  # Huawei: EF-ICCID nibble-swapped
        ["+QCCID: 89441000301234567890"],
        ['+CRSM: 144,0,"98440100032143658709"'],
    ],
)
def test_parse_iccid(lines: list[str]) -> None:
    assert parse_iccid(lines) == "89441000301234567890"


def test_parse_iccid_padded_and_bad() -> None:
    assert parse_iccid(["+QCCID: 8944100030123456789F"]) == "8944100030123456789"
    with pytest.raises(AnswerError):
        parse_iccid(["+CCID: 1234"])
    assert ccid("AT^ICCID?").text == "AT^ICCID?"


# -- storage and SMSC ------------------------------------------------------------------------------


def test_parse_cpms() -> None:
    assert parse_cpms(['+CPMS: "SM",3,20,"SM",3,20,"ME",0,255']) == (
        StorageUse("SM", 3, 20),
        StorageUse("SM", 3, 20),
        StorageUse("ME", 0, 255),
    )
    assert parse_cpms(["+CPMS: 3,20,3,20,3,20"]) == (StorageUse(None, 3, 20),) * 3
    with pytest.raises(AnswerError):
        parse_cpms(['+CPMS: "SM",3'])
    assert cpms("SM", "SM", "SM").text == 'AT+CPMS="SM","SM","SM"'
    assert cpms("ME").text == 'AT+CPMS="ME"'


def test_csca() -> None:
    assert parse_csca(['+CSCA: "+447785016005",145']) == ("+447785016005", 145)
    assert parse_csca(['+CSCA: "",129']) == (None, 129)
    assert csca("+447785016005").text == 'AT+CSCA="+447785016005",145'
    assert csca("07785016005").text == 'AT+CSCA="07785016005",129'
    with pytest.raises(ValueError, match="SMSC"):
        csca('+44"')


# -- reading ---------------------------------------------------------------------------------------


def test_parse_cmgl_and_decode() -> None:
    lines = [
        "+CMGL: 0,1,,36",
        DELIVER_GSM7,
        '+CMGL: 1,0,"",36',
        DELIVER_UCS2,
        "+CMGL: 7,0,,33",
        DELIVER_ALNUM,
    ]
    messages = parse_cmgl(lines)
    assert [(m.index, m.stat, m.length) for m in messages] == [(0, 1, 36), (1, 0, 36), (7, 0, 33)]
    texts = []
    for m in messages:
        sms = decode_pdu(m.pdu)
        assert isinstance(sms, SmsDeliver)
        assert sms.tpdu_length == m.length
        texts.append((sms.originator, sms.text))
    assert texts == [
        ("+447700900123", "Your code is 482913"),
        ("+4915123456789", "Grüße 👋"),
        ("Shop", "Order 1042 shipped"),
    ]
    assert parse_cmgl([]) == ()
    assert parse_cmgl(["+CMGL: 0,1,,36"]) == ()  # no PDU line after it


def test_parse_cmgr() -> None:
    message = parse_cmgr(['+CMGR: 0,"",36', DELIVER_GSM7], index=3)
    assert message == StoredMessage(3, 0, bytes.fromhex(DELIVER_GSM7), 36)
    assert parse_cmgr([]) is None  # empty slot, answered with OK alone
    assert parse_cmgr(["+CMGR: 0,,0"]) is None  # empty slot, a header with no PDU
    assert cmgr(3).text == "AT+CMGR=3"
    assert cmgl().text == "AT+CMGL=4"
    assert cmgd(3).text == "AT+CMGD=3"
    assert cmgd(1, 4).text == "AT+CMGD=1,4"


def test_engine_into_parsers() -> None:
    """AT+CMGL through the engine with a +CMTI in the middle, into parse_cmgl and decode_pdu."""
    engine = AtEngine(echo=False)
    command = cmgl()
    engine.send(command, 0.0)
    engine.receive_data(
        (
            f'\r\n+CMGL: 4,0,,36\r\n{DELIVER_GSM7}\r\n+CMTI: "SM",5\r\n'
            f"+CMGL: 5,0,,33\r\n{DELIVER_ALNUM}\r\n\r\nOK\r\n"
        ).encode(),
        0.0,
    )
    events = []
    while (event := engine.next_event()) is not None:
        events.append(event)
    answer = events[-1]
    assert isinstance(answer, CommandDone)
    assert [m.index for m in parse_cmgl(answer.lines)] == [4, 5]


# -- USSD ------------------------------------------------------------------------------------------


def test_cusd_builder() -> None:
    assert cusd("*100#").text == 'AT+CUSD=1,"*100#",15'
    assert cusd("*100#", packed_hex=True).text == 'AT+CUSD=1,"AA180C3602",15'
    with pytest.raises(ValueError, match="USSD"):
        cusd('*100#"')


@pytest.mark.parametrize(
    ("dcs", "encoding"),
    [
        (15, Encoding.GSM7),
        (0x00, Encoding.GSM7),
        (0x10, Encoding.GSM7),
        (0x11, Encoding.UCS2),
        (72, Encoding.UCS2),
        (0x44, Encoding.BINARY),
        (0xF4, Encoding.BINARY),
        (0xF0, Encoding.GSM7),
        (None, Encoding.GSM7),
    ],
)
def test_ussd_encoding(dcs: int | None, encoding: Encoding) -> None:
    assert ussd_encoding(dcs) is encoding


def test_decode_ussd() -> None:
    ucs2 = "Balance: 5 EUR".encode("utf-16-be").hex().upper()
    assert decode_ussd(ucs2, 72) == "Balance: 5 EUR"
    assert decode_ussd("Your balance is 5.00", 15) == "Your balance is 5.00"
    assert decode_ussd("C8329BFD06", 15, packed_hex=True) == "Hello"
    assert decode_ussd("48656C6C6F", 0x44) == "Hello"
    language = pack_septets(encode_gsm7("en"))
    assert decode_ussd((language + "Ok".encode("utf-16-be")).hex(), 0x11) == "Ok"
    assert decode_ussd("en\rHello", 0x10) == "Hello"
    assert decode_ussd(None, 15) == ""
    assert decode_ussd("not hex", 72) == "not hex"
    # Seven septets fill 7 octets exactly with a CR pad in the eighth's place (23.038 6.1.2.3.1).
    padded = pack_septets(encode_gsm7("1234567\r")).hex()
    assert decode_ussd(padded, 15, packed_hex=True) == "1234567"
