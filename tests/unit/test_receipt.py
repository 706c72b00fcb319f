"""Tests of gateway.smpp.receipt: SMPP v3.4 Appendix B receipts and message-id matching."""

from __future__ import annotations

import contextlib
import re
import string
import time
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.receipt import (
    MAX_NUMERIC_DIGITS,
    Receipt,
    ReceiptParseError,
    ReceiptState,
    canonical_ids,
    format_receipt,
    format_receipt_bytes,
    ids_match,
    looks_like_receipt,
    parse_receipt,
    parse_state,
)

D = ReceiptState

# --------------------------------------------------------------------------------------------
# Formatting: golden strings

# SMPP v3.4 Appendix B, Table B-2 template, as a regex of what `format_receipt` must produce.
APPENDIX_B = re.compile(
    r"id:\S+ sub:\d{3} dlvrd:\d{3} submit date:\d{10} done date:\d{10} "
    r"stat:[A-Z]{7} err:\d{3} Text:.{0,20}"
)

SAMPLE = Receipt(
    message_id="0123456789",
    sub=1,
    dlvrd=1,
    submit_date=datetime(2023, 1, 1, 12, 0, 30),
    done_date=datetime(2023, 1, 1, 12, 1, 45),
    stat=D.DELIVRD,
    err="0",
    text="Hello world, this is longer than twenty characters",
)


def test_format_appendix_b_exact() -> None:
    out = format_receipt(SAMPLE)
    assert out == (
        "id:0123456789 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 "
        "stat:DELIVRD err:000 Text:Hello world, this is"
    )
    assert APPENDIX_B.fullmatch(out)


def test_format_twelve_digit_dates_and_no_text() -> None:
    out = format_receipt(SAMPLE, date_digits=12, include_text=False)
    assert out == (
        "id:0123456789 sub:001 dlvrd:001 submit date:230101120030 done date:230101120145 "
        "stat:DELIVRD err:000"
    )


def test_format_options() -> None:
    assert format_receipt(SAMPLE, text_label="text", text_length=5).endswith(" text:Hello")
    bare = Receipt(message_id="abc", stat=D.UNDELIV, err="0x1F")
    assert format_receipt(bare) == (
        "id:abc sub:000 dlvrd:000 submit date:0000000000 done date:0000000000 stat:UNDELIV err:0x1F"
    )
    assert format_receipt(Receipt(message_id="a", stat=D.ENROUTE, err="1234")).endswith(
        "stat:ENROUTE err:1234"
    )
    assert format_receipt(Receipt(message_id="a", stat=D.DELIVRD, text="")).endswith(" Text:")


def test_format_bytes() -> None:
    receipt = Receipt(message_id="1", stat=D.DELIVRD, text="café €")
    assert format_receipt_bytes(receipt).endswith(b"Text:caf\xe9 ?")
    utf8 = format_receipt_bytes(receipt, encoding="utf-8")
    assert parse_receipt(utf8).text == "café €"
    assert parse_receipt(format_receipt_bytes(receipt, encoding="utf-16-be")).text == "café €"
    assert parse_receipt(format_receipt_bytes(receipt, encoding="utf-16")).text == "café €"


@pytest.mark.parametrize(
    "receipt",
    [
        Receipt(message_id="", stat=D.DELIVRD),
        Receipt(message_id="a b", stat=D.DELIVRD),
        Receipt(message_id="a", stat=D.DELIVRD, sub=-1),
        Receipt(message_id="a", stat=D.DELIVRD, err="0 1"),
    ],
)
def test_format_rejects_unwritable(receipt: Receipt) -> None:
    with pytest.raises(ValueError):
        format_receipt(receipt)


# --------------------------------------------------------------------------------------------
# Parsing: what carriers send


def test_parse_appendix_b() -> None:
    r = parse_receipt(
        "id:0123456789 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 "
        "stat:DELIVRD err:000 text:Hello"
    )
    assert r == Receipt(
        message_id="0123456789",
        sub=1,
        dlvrd=1,
        submit_date=datetime(2023, 1, 1, 12, 0),
        done_date=datetime(2023, 1, 1, 12, 1),
        stat=D.DELIVRD,
        err="000",
        text="Hello",
    )
    assert r.message_state == 2
    assert r.error_code == 0


def test_parse_hex_id_short_counts() -> None:
    r = parse_receipt(
        "id:c449ab9744f47b6af1879e49e75e4f40 sub:001 dlvrd:0 submit date:0610191018 "
        "done date:0610191018 stat:ACCEPTD err:0 text:This is an Acti"
    )
    assert r.message_id == "c449ab9744f47b6af1879e49e75e4f40"
    assert (r.sub, r.dlvrd, r.err, r.error_code) == (1, 0, "0", 0)
    assert r.submit_date == datetime(2006, 10, 19, 10, 18)
    assert (r.stat, r.message_state, r.text) == (D.ACCEPTD, 6, "This is an Acti")


def test_parse_kannel_smppbox() -> None:
    # Kannel's smppbox writes unix times as dates and pads the text with %12s.
    r = parse_receipt(
        "id:5f1e3a2b-0c4d-4e5f-8a9b-0c1d2e3f4a5b sub:001 dlvrd:001 submit date:1377676935 "
        "done date:1377676940 stat:DELIVRD err:000 text:       hello"
    )
    assert r.message_id == "5f1e3a2b-0c4d-4e5f-8a9b-0c1d2e3f4a5b"
    assert r.submit_date is None and r.done_date is None
    assert r.text == "hello"


def test_parse_upper_case_keys_utf8_bytes() -> None:
    raw = (
        "ID:1230518113420145 SUB:001 DLVRD:001 SUBMIT DATE:2305181134 DONE DATE:2305181134 "
        "STAT:DELIVRD ERR:000 TEXT:您好，验证码：1234"
    ).encode()
    r = parse_receipt(raw)
    assert (r.message_id, r.stat, r.err) == ("1230518113420145", D.DELIVRD, "000")
    assert r.done_date == datetime(2023, 5, 18, 11, 34)
    assert r.text == "您好，验证码：1234"


def test_parse_latin1_bytes_trailing_nuls() -> None:
    r = parse_receipt(b"id:42 stat:UNDELIV err:011 text:Ol\xe1 se\xf1or\x00\x00\x00 \r\n")
    assert (r.message_id, r.stat, r.error_code, r.text) == ("42", D.UNDELIV, 11, "Olá señor")


def test_parse_twelve_digit_dates_missing_text() -> None:
    r = parse_receipt(
        "id:0A1B2C sub:001 dlvrd:000 submit date:230101120030 done date:230101235959 "
        "stat:EXPIRED err:0x1F"
    )
    assert r.submit_date == datetime(2023, 1, 1, 12, 0, 30)
    assert r.done_date == datetime(2023, 1, 1, 23, 59, 59)
    assert (r.stat, r.message_state, r.err, r.error_code, r.text) == (
        D.EXPIRED,
        3,
        "0x1F",
        31,
        None,
    )


def test_parse_reordered_mixed_case_extra_fields() -> None:
    r = parse_receipt(
        "  Id: 998877  Stat:  Delivered   submit_date:2023-01-01 12:00:00  DONE  DATE:2301011201 "
        "imsi:234150000000000 mccmnc:23415 Err:4 Text: meet at: 5pm stat:FAILED  "
    )
    assert r.message_id == "998877"
    assert r.stat is D.DELIVRD
    assert r.submit_date == datetime(2023, 1, 1, 12, 0)
    assert r.done_date == datetime(2023, 1, 1, 12, 1)
    assert (r.sub, r.dlvrd, r.err) == (None, None, "4")
    assert r.text == "meet at: 5pm stat:FAILED"


def test_parse_minimal() -> None:
    r = parse_receipt("id:ABC-123 stat:REJECTD")
    assert r == Receipt(message_id="ABC-123", stat=D.REJECTD)
    assert r.message_state == 8


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("2301011200", datetime(2023, 1, 1, 12, 0)),
        ("230101120059", datetime(2023, 1, 1, 12, 0, 59)),
        ("20230101120059", datetime(2023, 1, 1, 12, 0, 59)),
        ("2313011200", None),  # month 13
        ("2302301200", None),  # 30 February
        ("2301012400", None),  # hour 24
        ("0000000000", None),
        ("23010112", None),  # too short
        ("abcdefghij", None),
        ("", None),
        ("2301011200 junk", datetime(2023, 1, 1, 12, 0)),
    ],
)
def test_parse_dates(date: str, expected: datetime | None) -> None:
    r = parse_receipt(f"id:1 submit date:{date} done date:{date} stat:DELIVRD")
    assert r.submit_date == expected
    assert r.done_date == expected


@pytest.mark.parametrize(
    ("err", "code"),
    [("000", 0), ("0", 0), ("12", 12), ("1234", 1234), ("0x1F", 31), ("0X1f", 31)],
)
def test_error_codes(err: str, code: int) -> None:
    r = parse_receipt(f"id:1 stat:UNDELIV err:{err}")
    assert (r.err, r.error_code) == (err, code)


@pytest.mark.parametrize("err", ["1F", "E", "0x", "0xZZ", "-1", "１２"])
def test_error_codes_not_numeric(err: str) -> None:
    r = parse_receipt(f"id:1 stat:UNDELIV err:{err}")
    assert r.err == err
    assert r.error_code is None


@pytest.mark.parametrize(
    ("token", "state"),
    [
        ("DELIVRD", D.DELIVRD),
        ("delivered", D.DELIVRD),
        ("DELIVERD", D.DELIVRD),
        ("EXPIRED", D.EXPIRED),
        ("DELETED", D.DELETED),
        ("UNDELIV", D.UNDELIV),
        ("UNDELIVERABLE", D.UNDELIV),
        ("undelivered", D.UNDELIV),
        ("FAILED", D.UNDELIV),
        ("ACCEPTD", D.ACCEPTD),
        ("ACCEPTED", D.ACCEPTD),
        ("UNKNOWN", D.UNKNOWN),
        ("REJECTD", D.REJECTD),
        ("Rejected", D.REJECTD),
        ("ENROUTE", D.ENROUTE),
        ("EN_ROUTE", D.ENROUTE),
        ("en-route", D.ENROUTE),
        ("BUFFRED", D.ENROUTE),
        ("ACKED", D.ENROUTE),
        ("2", D.DELIVRD),
        ("8", D.REJECTD),
    ],
)
def test_parse_state_spellings(token: str, state: ReceiptState) -> None:
    assert parse_state(token) is state
    assert parse_receipt(f"id:1 stat:{token} err:000").stat is state


def test_message_state_numbers() -> None:
    assert {s.name: s.message_state for s in ReceiptState} == {
        "ENROUTE": 1,
        "DELIVRD": 2,
        "EXPIRED": 3,
        "DELETED": 4,
        "UNDELIV": 5,
        "ACCEPTD": 6,
        "UNKNOWN": 7,
        "REJECTD": 8,
    }
    for state in ReceiptState:
        assert ReceiptState.from_message_state(state.message_state) is state
    with pytest.raises(ValueError):
        ReceiptState.from_message_state(0)


def test_message_state_agrees_with_constants() -> None:
    from gateway.smpp.constants import MessageState  # noqa: PLC0415

    names = {"DELIVRD": "DELIVERED", "UNDELIV": "UNDELIVERABLE", "ACCEPTD": "ACCEPTED"}
    names |= {"REJECTD": "REJECTED"}
    for state in ReceiptState:
        assert MessageState(state.message_state).name == names.get(state.name, state.name)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello there",
        "sub:001 dlvrd:001 stat:DELIVRD err:000",  # no id
        "id: stat:DELIVRD",  # empty id
        "id:123 sub:001 dlvrd:001 err:000 text:hi",  # no stat
        "id:123 stat:DDDDDDD",  # stat not recognised
        "id:123 stat: text:DELIVRD",  # empty stat
        "text:id:1 stat:DELIVRD",  # everything after text: is text
        # The Appendix B template itself: placeholder stat
        "id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm "
        "stat:DDDDDDD err:E Text: . . . . . . . . .",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(ReceiptParseError):
        parse_receipt(text)
    assert not looks_like_receipt(text)
    assert issubclass(ReceiptParseError, ValueError)


def test_looks_like_receipt() -> None:
    assert looks_like_receipt("id:1 sub:001 dlvrd:001 stat:DELIVRD err:000 text:x")
    assert looks_like_receipt(b"ID:1 STAT:DELIVRD")
    assert not looks_like_receipt("Hi, see you at 5")
    assert not looks_like_receipt(b"\x00\x01\x02")
    assert not looks_like_receipt("Note: id is 5")


def test_hostile_values_stay_cheap() -> None:
    big = "9" * 50_000
    start = time.perf_counter()
    r = parse_receipt(f"id:{big} sub:{big} dlvrd:{big} err:{big} submit date:{big} stat:1")
    assert (r.sub, r.dlvrd, r.error_code, r.submit_date) == (None, None, None, None)
    assert canonical_ids(big) == ("s:" + big,)
    assert canonical_ids("f" * 50_000) == ("s:" + "f" * 50_000,)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------------------------
# Properties

ID_ALPHABET = string.ascii_letters + string.digits + "-_.:"
ids = st.text(ID_ALPHABET, min_size=1, max_size=65) | st.uuids().map(str)
dates = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)
)
errs = (
    st.none()
    | st.from_regex(r"[0-9]{1,4}", fullmatch=True)
    | st.from_regex(r"0x[0-9A-F]{1,4}", fullmatch=True)
)
texts = st.none() | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
receipts = st.builds(
    Receipt,
    message_id=ids,
    stat=st.sampled_from(ReceiptState),
    sub=st.integers(0, 999),
    dlvrd=st.integers(0, 999),
    submit_date=dates,
    done_date=dates,
    err=errs,
    text=texts,
)


@given(receipts, st.sampled_from([10, 12]), st.booleans(), st.sampled_from(["Text", "text"]))
def test_format_parse_round_trip(
    receipt: Receipt, date_digits: int, include_text: bool, label: str
) -> None:
    out = format_receipt(
        receipt,
        date_digits=10 if date_digits == 10 else 12,
        include_text=include_text,
        text_label="Text" if label == "Text" else "text",
    )
    parsed = parse_receipt(out)
    assert parsed.message_id == receipt.message_id
    assert parsed.stat is receipt.stat
    assert parsed.message_state == receipt.stat.message_state
    assert (parsed.sub, parsed.dlvrd) == (receipt.sub, receipt.dlvrd)
    keep_seconds = date_digits == 12
    for got, sent in (
        (parsed.submit_date, receipt.submit_date),
        (parsed.done_date, receipt.done_date),
    ):
        if sent is None:
            assert got is None
        else:
            assert got == sent.replace(second=sent.second if keep_seconds else 0, microsecond=0)
    err = receipt.err or "000"
    assert parsed.err == (err.zfill(3) if err.isdigit() else err)
    if include_text and receipt.text is not None:
        assert parsed.text == receipt.text[:20].strip()
    else:
        assert parsed.text is None
    assert parse_receipt(format_receipt_bytes(receipt, encoding="utf-8")) == parse_receipt(
        format_receipt(receipt)
    )


@given(st.text() | st.binary())
def test_parse_arbitrary_input_raises_only_parse_error(data: str | bytes) -> None:
    with contextlib.suppress(ReceiptParseError):
        parse_receipt(data)
    looks_like_receipt(data)


fragments = st.sampled_from(
    [
        "id:",
        "ID :",
        "sub:",
        "dlvrd:",
        "submit date:",
        "done  date:",
        "Stat:",
        "err:",
        "text:",
        "imsi:",
        " ",
        "  ",
        ":",
        "0x",
        "\x00",
        "\t",
        "DELIVRD",
        "2301011200",
        "999",
        "abc",
    ]
)


@given(st.lists(fragments | st.text(max_size=5), max_size=25).map("".join))
def test_parse_receipt_like_junk_raises_only_parse_error(data: str) -> None:
    try:
        r = parse_receipt(data)
    except ReceiptParseError:
        return
    assert r.message_id and not any(c.isspace() for c in r.message_id)
    assert looks_like_receipt(data)


# --------------------------------------------------------------------------------------------
# Message-id canonicalisation


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0A1B2C", "662316"),  # hex in submit_sm_resp, decimal in the receipt
        ("0a1b2c", "662316"),
        ("0x0A1B2C", "662316"),
        ("0A0B2C", "658220"),
        ("000123", "123"),
        ("0000000000", "0"),
        ("abc123", "ABC123"),
        ("00ff", "FF"),
        ("0xff", "255"),
        ("c449ab9744f47b6af1879e49e75e4f40", "C449AB9744F47B6AF1879E49E75E4F40"),
        ("  123\x00\x00", "123"),
        ("550E8400-E29B-41D4-A716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
        ("0" * 40 + "123", "123"),  # leading zeros do not count towards the length cap
        ("0a", "10"),  # documented, unavoidable: a hex id and a decimal id of equal value
    ],
)
def test_ids_match(a: str, b: str) -> None:
    assert ids_match(a, b)
    assert ids_match(b, a)
    assert set(canonical_ids(a)) & set(canonical_ids(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10", "16"),  # "10" is not also read as hex
        ("123", "291"),  # nor is "123" (0x123 == 291)
        ("100000", "1048576"),  # ...hence a letterless hex id misses its decimal spelling
        ("123", "1230"),
        ("abc", "abd"),
        ("0a1b2c", "658220"),
        ("550e8400-e29b-41d4-a716-446655440000", "550e8400e29b41d4a716446655440000"),
        ("1" * 33, "0x" + "1" * 33),  # too long to be numbers: string keys only
        ("", ""),
        ("1.0", "1"),
        ("+1", "1"),
        ("1_0", "10"),
        ("١٢٣", "123"),  # Arabic-Indic digits are not read as numbers
    ],
)
def test_ids_do_not_match(a: str, b: str) -> None:
    assert not ids_match(a, b)
    assert not ids_match(b, a)


@pytest.mark.parametrize(
    ("message_id", "keys"),
    [
        ("0A1B2C", ("s:a1b2c", "n:662316")),  # leading zeros never matter
        ("000123", ("s:123", "n:123")),
        ("0x1F", ("s:x1f", "n:31")),
        ("abc123", ("s:abc123", "n:11256099")),
        ("ABCXYZ", ("s:abcxyz",)),
        ("550e8400-e29b-41d4-a716-446655440000", ("s:550e8400-e29b-41d4-a716-446655440000",)),
        (
            "1" * MAX_NUMERIC_DIGITS,
            ("s:" + "1" * MAX_NUMERIC_DIGITS, "n:" + "1" * MAX_NUMERIC_DIGITS),
        ),
        ("1" * (MAX_NUMERIC_DIGITS + 1), ("s:" + "1" * (MAX_NUMERIC_DIGITS + 1),)),
        ("0x", ("s:x",)),
        (" \x00 ", ()),
    ],
)
def test_canonical_ids(message_id: str, keys: tuple[str, ...]) -> None:
    assert canonical_ids(message_id) == keys


def test_assume_hex() -> None:
    assert canonical_ids("100000", assume_hex=True) == ("s:100000", "n:1048576")
    assert set(canonical_ids("100000", assume_hex=True)) & set(canonical_ids("1048576"))
    assert canonical_ids("abc", assume_hex=True) == ("s:abc", "n:2748")


@given(st.integers(0, 10**MAX_NUMERIC_DIGITS - 1), st.integers(0, 8), st.booleans(), st.booleans())
def test_hex_with_letters_matches_decimal(
    value: int, zeros: int, upper: bool, prefix: bool
) -> None:
    spelled = "0" * zeros + format(value, "X" if upper else "x")
    if prefix:
        spelled = "0x" + spelled
    elif spelled.isdigit():
        return  # a letterless hex id reads as decimal unless assume_hex
    assert ids_match(spelled, str(value))
    assert ids_match(spelled, "0" * zeros + str(value))
    assert set(canonical_ids(spelled.removeprefix("0x"), assume_hex=True)) & set(
        canonical_ids(str(value))
    )


@given(st.integers(0, 10**30), st.integers(0, 10**30), st.integers(0, 5), st.integers(0, 5))
def test_distinct_decimal_ids_never_match(a: int, b: int, za: int, zb: int) -> None:
    assert ids_match("0" * za + str(a), "0" * zb + str(b)) == (a == b)


@given(st.integers(0, 2**120), st.integers(0, 2**120))
def test_distinct_hex_ids_never_match(a: int, b: int) -> None:
    assert ids_match(f"0x{a:x}", f"0X{b:X}") == (a == b)
    ha, hb = f"{a:x}", f"{b:X}"
    if not ha.isdigit() and not hb.isdigit():  # a letterless hex id reads as decimal
        assert ids_match(ha, hb) == (a == b)


@given(st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=40))
def test_case_and_padding_never_matter(message_id: str) -> None:
    assert ids_match(message_id, f" {message_id.upper()}\x00")
    assert ids_match(message_id.lower(), message_id)
    keys = canonical_ids(message_id)
    # leading zeros of every run of letters and digits do not matter either
    assert keys[0] == "s:" + "-".join(
        run.lstrip("0") or ("0" if run else "") for run in message_id.lower().split("-")
    )
    padded = "-".join("00" + run if run else run for run in message_id.split("-"))
    assert ids_match(message_id, padded)
    body = message_id.lower().removeprefix("0x")
    if "-" in body or not all(c in string.hexdigits for c in body):
        assert len(keys) == 1  # UUIDs and alphanumerics beyond hex are never numbers


@given(st.text(max_size=80))
def test_canonical_ids_total(message_id: str) -> None:
    keys = canonical_ids(message_id)
    assert len(keys) <= 2
    assert all(k.startswith(("s:", "n:")) for k in keys)
    assert ids_match(message_id, message_id) == bool(keys)


# --------------------------------------------------------------------------------------------
# What drivers hand us (issue 8)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: b.decode()])
def test_looks_like_receipt_on_every_type_it_is_given(wrap: object) -> None:
    """The codec gives short_message as a memoryview: it must read like bytes."""
    body = b"id:1A2B sub:001 dlvrd:001 stat:DELIVRD err:000 text:x"
    assert looks_like_receipt(wrap(body))  # type: ignore[operator]
    assert not looks_like_receipt(wrap(b"see you at 5: bring the id"))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        ("Xyzzy", ReceiptState.UNKNOWN),  # junk
        ("DELIVERED_TO_HANDSET", ReceiptState.UNKNOWN),  # a vendor's word
        ("", ReceiptState.UNKNOWN),  # empty
        ("undeliverable", ReceiptState.UNDELIV),  # known words still read as themselves
        ("delivrd", ReceiptState.DELIVRD),
    ],
)
def test_lenient_reading_keeps_a_receipt_whose_stat_we_do_not_know(
    stat: str, expected: ReceiptState
) -> None:
    text = f"id:77 sub:001 dlvrd:000 stat:{stat} err:042 text:hi"
    receipt = parse_receipt(memoryview(text.encode()), lenient=True)
    assert (receipt.message_id, receipt.stat, receipt.error_code) == ("77", expected, 42)
    if expected is ReceiptState.UNKNOWN:
        with pytest.raises(ReceiptParseError):
            parse_receipt(text)  # strict reading (and `looks_like_receipt`) as before
    with pytest.raises(ReceiptParseError):
        parse_receipt("sub:001 stat:DELIVRD", lenient=True)  # an id is still needed
