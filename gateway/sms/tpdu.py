"""GSM 03.40 (3GPP TS 23.040) TPDUs in the PDU form of the AT interface (3GPP TS 27.005).

Theory of operation
-------------------
A modem in PDU mode speaks hex. AT+CMGS=<n> takes, and +CMT, +CDS, AT+CMGR and AT+CMGL give, an
SMSC address followed by one TPDU (TS 27.005 sections 3.1 and 4.3). The SMSC address has the
RP-address form of TS 24.011 section 8.2.5.1: a length octet that counts the octets after it
(type-of-address plus digits), and ``00`` for "the SMSC stored on the SIM". <n> counts the TPDU's
octets only, never the SMSC part.

Three TPDUs matter to a gateway (TS 23.040 section 9.2.2). Each starts with a first octet whose
two low bits are TP-MTI (9.2.3.1); what the other bits mean depends on the type:

=====================  ========================================================================
SMS-SUBMIT (9.2.2.2)    fo MR DA PID DCS [VP] UDL UD      fo: RD VPF SRR UDHI RP
SMS-DELIVER (9.2.2.1)   fo OA PID DCS SCTS UDL UD         fo: MMS LP SRI UDHI RP
SMS-STATUS-REPORT       fo MR RA SCTS DT ST [PI [PID] [DCS] [UDL UD]]   fo: MMS LP SRQ UDHI
(9.2.2.3)
=====================  ========================================================================

The same MTI names a different TPDU in each direction (00: DELIVER down, DELIVER-REPORT up; 01:
SUBMIT up, SUBMIT-REPORT down; 10: STATUS-REPORT down, COMMAND up). What the AT interface shows
(received and stored messages, status reports) is DELIVER, SUBMIT and STATUS-REPORT, which is how
`decode_pdu` reads the MTI unless told the direction.

Fields:

* Addresses (9.1.2.5): a length, a type-of-address octet (1, TON in bits 6-4, NPI in bits 3-0)
  and semi-octets, low nibble first, padded with F. The length counts useful semi-octets (the
  digits; one that also counts the filler, as some senders write it, is tolerated). Digits are
  0-9 and ``* # a b c`` (9.1.2.3). An alphanumeric address (TON 5) is GSM 7-bit default
  alphabet text, packed, and its length counts the semi-octets the packed septets fill
  (ceil(7n/4)); at most 11 characters fit the 20 semi-octets allowed.
* Timestamps, TP-SCTS / TP-DT / absolute TP-VP (9.2.3.11): seven semi-octet pairs YY MM DD hh mm
  ss zz, each pair with its nibbles swapped. zz is the offset from UTC in quarter hours; bit 3 of
  that octet (the top bit of its first, tens, semi-octet) is the sign. Two-digit years read as
  1990-2089.
* Validity (9.2.3.12): relative (one octet, 5 minutes to 63 weeks in steps that grow), absolute
  (a timestamp), or enhanced (seven octets: a functionality indicator, then relative, seconds or
  hh:mm:ss). A relative period is rounded up to the next step so a message never expires early.
* User data (9.2.3.16, 9.2.3.24): TP-UDL counts septets for GSM 7-bit (header included, in
  septets, rounded up) and octets otherwise. After a user data header, GSM 7-bit text starts on
  the next septet boundary: 0-6 zero fill bits sit between the header and the packed text.

Encoding takes what `gateway.sms.segment.segment` produces: bodies as unpacked septets for GSM
7-bit or octets otherwise, and whole UDHs (UDHL included). `submit_tpdus` is the send path: text
to one SMS-SUBMIT per part. It is kept lean: segmentation, address and header octets are done once
per message, each TPDU is one `bytes.join`, enums are aliased at module level and single octets
come from a table.

Decoding accepts hex (as the modem prints it) or raw octets, with or without the SMSC prefix, and
checks everything it reads: any malformed input raises `TpduError` and nothing else. Octets after
the user data are ignored (SIM storage pads records); `tpdu_length` on the result lets a caller
compare with the length the modem announced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache
from typing import Final, Literal, NamedTuple

from gateway.sms.coding import Encoding, decode_text, encoding_of_dcs
from gateway.sms.errors import SmsError, TpduError, UdhError
from gateway.sms.gsm7 import DEFAULT, Alphabet, pack_septets, unpack_septets
from gateway.sms.national import alphabet as national_alphabet
from gateway.sms.segment import ConcatMethod, plan, segment, udh8_headers
from gateway.sms.udh import (
    IEI_LOCKING_SHIFT,
    IEI_SINGLE_SHIFT,
    Concat,
    InformationElement,
    build_udh,
    concat_of,
    parse_udh,
)

__all__ = [
    "MTI_DELIVER",
    "MTI_STATUS_REPORT",
    "MTI_SUBMIT",
    "TOA_ALPHANUMERIC",
    "TOA_INTERNATIONAL",
    "TOA_UNKNOWN",
    "VPF_ABSOLUTE",
    "VPF_ENHANCED",
    "VPF_NONE",
    "VPF_RELATIVE",
    "Address",
    "DeliverTpdu",
    "DeliveryOutcome",
    "EncodedPdu",
    "SmsDeliver",
    "SmsStatusReport",
    "SmsSubmit",
    "StatusReportTpdu",
    "SubmitTpdu",
    "classify_status",
    "decode_address",
    "decode_pdu",
    "decode_relative_validity",
    "decode_smsc",
    "decode_timestamp",
    "deliver_tpdus",
    "encode_address",
    "encode_relative_validity",
    "encode_sms_deliver",
    "encode_sms_submit",
    "encode_smsc",
    "encode_status_report",
    "encode_timestamp",
    "submit_tpdus",
]

MTI_DELIVER: Final = 0x00  # 9.2.3.1, SC -> MS
MTI_SUBMIT: Final = 0x01  # MS -> SC
MTI_STATUS_REPORT: Final = 0x02  # SC -> MS

VPF_NONE: Final = 0  # 9.2.3.3: TP-VP absent
VPF_ENHANCED: Final = 1  # seven octets, 9.2.3.12.3
VPF_RELATIVE: Final = 2  # one octet, 9.2.3.12.1
VPF_ABSOLUTE: Final = 3  # a timestamp, 9.2.3.12.2

TOA_UNKNOWN: Final = 0x81  # TON unknown, NPI ISDN/telephony (E.164)
TOA_INTERNATIONAL: Final = 0x91  # TON international, NPI ISDN/telephony
TOA_ALPHANUMERIC: Final = 0xD0  # TON alphanumeric, NPI unknown

# First-octet bits (9.2.3.x).
_RD: Final = 0x04  # SUBMIT: reject duplicates
_MMS: Final = 0x04  # DELIVER / STATUS-REPORT: set = no more messages waiting
_LP: Final = 0x08  # DELIVER / STATUS-REPORT: loop prevention
_SRR: Final = 0x20  # SUBMIT: status report request
_SRI: Final = 0x20  # DELIVER: status report indication
_SRQ: Final = 0x20  # STATUS-REPORT: the report is about an SMS-COMMAND
_UDHI: Final = 0x40
_RP: Final = 0x80

_MAX_ADDRESS_DIGITS: Final = 20  # 9.1.2.5: at most 10 octets of semi-octets
_MAX_ALPHANUMERIC: Final = 11  # septets in 20 semi-octets
_MAX_SMSC_OCTETS: Final = 11  # 24.011 8.2.5.1: type-of-address and 10 octets of digits
_MAX_SEPTETS: Final = 160
_MAX_OCTETS: Final = 140

# Enum member lookups cost ~100 ns each on CPython 3.11; the hot path uses these aliases.
_GSM7: Final = Encoding.GSM7
_UCS2: Final = Encoding.UCS2
_BINARY: Final = Encoding.BINARY
_UDH8: Final = ConcatMethod.UDH8
_UDH16: Final = ConcatMethod.UDH16

_BYTE: Final = tuple(bytes((i,)) for i in range(256))
_SWAP: Final = bytes(
    ((i & 0x0F) << 4) | (i >> 4) for i in range(256)
)  # swap the nibbles of an octet
_NO_SMSC: Final = b"\x00"

# Address digits as hex nibbles for bytes.fromhex (9.1.2.3: 1010 '*', 1011 '#', 1100-1110 'a'-'c')
# and back from bytes.hex(), which writes nibbles 10-15 as 'a'-'f'.
_TO_NIBBLE: Final = str.maketrans("*#abc", "ABCDE")
_FROM_NIBBLE: Final = str.maketrans("abcde", "*#abc")
_PLAIN_DIGITS: Final = frozenset("0123456789*#")
_ALL_DIGITS: Final = frozenset("0123456789*#abc")


# -- results ----------------------------------------------------------------------------------


class EncodedPdu:
    """One TPDU ready for a modem.

    A plain class with slots rather than a NamedTuple: the compiled build makes it a native
    class, built by a direct call, where a NamedTuple costs a generic call of tuple.__new__
    per part (about 1,800 instructions; the same in pure Python either way).

    Attributes:
        pdu: the SMSC part (``00`` when the SIM's SMSC is to be used) followed by the TPDU.
        tpdu_length: octets in the TPDU alone, the <length> of AT+CMGS / +CMT / +CDS.
        hex: `pdu` as upper-case hex, what AT+CMGS expects after its prompt.
    """

    __slots__ = ("hex", "pdu", "tpdu_length")

    def __init__(self, pdu: bytes, tpdu_length: int, hex: str) -> None:
        self.pdu = pdu
        self.tpdu_length = tpdu_length
        self.hex = hex

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncodedPdu):
            return NotImplemented
        return self.pdu == other.pdu and self.tpdu_length == other.tpdu_length

    def __hash__(self) -> int:
        return hash((self.pdu, self.tpdu_length))

    def __repr__(self) -> str:
        return f"EncodedPdu(pdu={self.pdu!r}, tpdu_length={self.tpdu_length}, hex={self.hex!r})"


SubmitTpdu = EncodedPdu
DeliverTpdu = EncodedPdu
StatusReportTpdu = EncodedPdu


class Address(NamedTuple):
    """A decoded address field.

    Attributes:
        value: digits (with a leading ``+`` when international) or alphanumeric text.
        toa: the type-of-address octet.
    """

    value: str
    toa: int

    @property
    def ton(self) -> int:
        """Type of number, 9.1.2.5 (0 unknown, 1 international, 2 national, 5 alphanumeric)."""
        return (self.toa >> 4) & 0x07

    @property
    def npi(self) -> int:
        """Numbering plan identification, 9.1.2.5 (1 = ISDN/telephony)."""
        return self.toa & 0x0F


class DeliveryOutcome(StrEnum):
    """What a TP-ST value (9.2.3.15) says became of a message."""

    DELIVERED = "delivered"  # 0x00-0x1F: transaction completed
    PENDING = "pending"  # 0x20-0x3F: temporary error, the SC is still trying
    FAILED = "failed"  # 0x40-0x7F: permanent error, or temporary and no longer trying


_DELIVERED, _PENDING, _FAILED = (
    DeliveryOutcome.DELIVERED,
    DeliveryOutcome.PENDING,
    DeliveryOutcome.FAILED,
)


# First reserved TP-ST value in each group, as an offset within the group. Offsets 0x10-0x1F are
# "values specific to each SC" and keep their group's meaning.
_FIRST_RESERVED = (0x03, 0x06, 0x0A, 0x06)
_OUTCOMES = (_DELIVERED, _PENDING, _FAILED, _FAILED)


def classify_status(status: int) -> DeliveryOutcome:
    """Classify a TP-ST value (TS 23.040 section 9.2.3.15).

    Reserved values (0x03-0x0F, 0x26-0x2F, 0x4A-0x4F, 0x66-0x6F and 0x80-0xFF) count as
    "Service Rejected" (0x63), as the specification tells the MS to interpret them; values
    specific to each SC (0x10-0x1F, 0x30-0x3F, 0x50-0x5F, 0x70-0x7F) keep their group.

    Args:
        status: the TP-ST octet.

    Returns:
        DELIVERED, PENDING (temporary error, the SC is still trying) or FAILED (permanent
        error, or temporary error and the SC has stopped trying).
    """
    if status >= 0x80:
        return _FAILED
    group, offset = status >> 5, status & 0x1F
    if _FIRST_RESERVED[group] <= offset < 0x10:
        return _FAILED
    return _OUTCOMES[group]


@dataclass(frozen=True, slots=True)
class SmsSubmit:
    """A decoded SMS-SUBMIT (TS 23.040 section 9.2.2.2).

    Attributes:
        smsc: the SMSC address before the TPDU; None when absent (``00``) or not expected.
        message_ref: TP-MR.
        destination: TP-DA (``+`` and digits when international).
        validity_format: TP-VPF, one of the VPF_* constants.
        validity: a timedelta (relative or enhanced), an aware datetime (absolute) or None.
        single_shot: the enhanced format's single-shot bit.
        udh: the user data header's elements, empty when there is none.
        concat: the concatenation element, if any well-formed one is there.
        user_data: the body after the UDH: unpacked septets for GSM 7-bit, else octets.
        text: the decoded body; None for 8-bit data. UCS-2 that is not valid UTF-16 (a lone
            surrogate, an odd octet) decodes with U+FFFD in its place; `user_data` keeps the
            octets, for reassembly across parts.
        alphabet: the GSM 7-bit alphabet the text was decoded with.
        tpdu_length: octets in the PDU after the SMSC part.
    """

    smsc: str | None
    smsc_toa: int | None
    message_ref: int
    destination: str
    destination_toa: int
    reject_duplicates: bool
    status_report_request: bool
    reply_path: bool
    validity_format: int
    validity: timedelta | datetime | None
    single_shot: bool
    pid: int
    dcs: int
    message_class: int | None
    encoding: Encoding
    udh: tuple[InformationElement, ...]
    concat: Concat | None
    user_data: bytes
    text: str | None
    alphabet: Alphabet
    tpdu_length: int


@dataclass(frozen=True, slots=True)
class SmsDeliver:
    """A decoded SMS-DELIVER (TS 23.040 section 9.2.2.1).

    Attributes:
        originator: TP-OA: ``+`` and digits, digits, or alphanumeric text (originator_toa 0xD0).
        timestamp: TP-SCTS, aware, in the SC's own offset from UTC.
        more_messages: TP-MMS says more messages are waiting in the SC.
        status_report_indication: TP-SRI, the originator asked for a status report.
        Other attributes as in `SmsSubmit`.
    """

    smsc: str | None
    smsc_toa: int | None
    originator: str
    originator_toa: int
    more_messages: bool
    loop_prevention: bool
    status_report_indication: bool
    reply_path: bool
    pid: int
    dcs: int
    message_class: int | None
    timestamp: datetime
    encoding: Encoding
    udh: tuple[InformationElement, ...]
    concat: Concat | None
    user_data: bytes
    text: str | None
    alphabet: Alphabet
    tpdu_length: int


@dataclass(frozen=True, slots=True)
class SmsStatusReport:
    """A decoded SMS-STATUS-REPORT (TS 23.040 section 9.2.2.3).

    Attributes:
        message_ref: TP-MR of the SMS-SUBMIT this reports on.
        recipient: TP-RA, the submit's destination.
        timestamp: TP-SCTS, when the SC received the submit.
        discharge_time: TP-DT, when the status below was reached.
        status: TP-ST; see `outcome`.
        command: TP-SRQ, the report is about an SMS-COMMAND rather than an SMS-SUBMIT.
        parameter_indicator: TP-PI, None when absent.
        pid, dcs: present when TP-PI says so, else None.
        user_data, text: b"" and None when TP-PI announces no user data.
        Other attributes as in `SmsSubmit`.
    """

    smsc: str | None
    smsc_toa: int | None
    message_ref: int
    recipient: str
    recipient_toa: int
    timestamp: datetime
    discharge_time: datetime
    status: int
    more_messages: bool
    loop_prevention: bool
    command: bool
    parameter_indicator: int | None
    pid: int | None
    dcs: int | None
    message_class: int | None
    encoding: Encoding
    udh: tuple[InformationElement, ...]
    concat: Concat | None
    user_data: bytes
    text: str | None
    alphabet: Alphabet
    tpdu_length: int

    @property
    def outcome(self) -> DeliveryOutcome:
        """DELIVERED, PENDING or FAILED; see `classify_status`."""
        return classify_status(self.status)

    @property
    def delivered(self) -> bool:
        """The message reached the recipient (or the SC completed the transaction)."""
        return classify_status(self.status) is _DELIVERED

    @property
    def pending(self) -> bool:
        """A temporary error; the SC is still trying and another report will follow."""
        return classify_status(self.status) is _PENDING

    @property
    def failed(self) -> bool:
        """The SC has given up: a permanent error, or a temporary one it no longer retries."""
        return classify_status(self.status) is _FAILED


# -- addresses --------------------------------------------------------------------------------


def _semi_octets(digits: str) -> bytes:
    """Digits (already checked) as semi-octets, low nibble first, padded with F."""
    if not digits.isdigit():  # '*', '#', 'a'-'c' (rare): str.translate costs ~1.5 us
        digits = digits.translate(_TO_NIBBLE)
    if len(digits) & 1:
        digits += "F"
    return bytes.fromhex(digits).translate(_SWAP)


def _numeric(digits: str, toa: int, allowed: frozenset[str]) -> bytes:
    if len(digits) > _MAX_ADDRESS_DIGITS:
        raise TpduError(f"address {digits!r} has more than {_MAX_ADDRESS_DIGITS} digits")
    if not (digits.isascii() and digits.isdigit()) and not allowed.issuperset(digits):
        raise TpduError(f"address {digits!r} has a character that is not an address digit")
    return _BYTE[len(digits)] + _BYTE[toa] + _semi_octets(digits)


def _alphanumeric(text: str, toa: int) -> bytes:
    septets = DEFAULT.try_encode(text)
    if septets is None:
        raise TpduError(f"alphanumeric address {text!r} is not in the GSM 7-bit default alphabet")
    if len(septets) > _MAX_ALPHANUMERIC:
        raise TpduError(
            f"alphanumeric address {text!r} needs {len(septets)} septets, at most "
            f"{_MAX_ALPHANUMERIC} fit"
        )
    return bytes(((7 * len(septets) + 3) // 4, toa)) + pack_septets(septets)


def encode_address(address: str, *, toa: int | None = None) -> bytes:
    """An address field: TP-DA, TP-OA or TP-RA (TS 23.040 section 9.1.2.5).

    Args:
        address: ``+`` and digits (international), digits (TON unknown), or anything else,
            which is sent as alphanumeric (TON 5, GSM 7-bit default alphabet, at most 11
            septets). Digits are 0-9, ``*`` and ``#``; ``a``, ``b``, ``c`` too when `toa` is
            given and not alphanumeric.
        toa: the type-of-address octet, to override the choice above. With an international
            TON a leading ``+`` is dropped.

    Returns:
        Length (semi-octets), type-of-address and the address octets.

    Raises:
        TpduError: too long, or a character the address type cannot carry.
    """
    if toa is None:
        if address[:1] == "+":
            return _numeric(address[1:], TOA_INTERNATIONAL, _PLAIN_DIGITS)
        if address.isascii() and (address.isdigit() or _PLAIN_DIGITS.issuperset(address)):
            return _numeric(address, TOA_UNKNOWN, _PLAIN_DIGITS)
        return _alphanumeric(address, TOA_ALPHANUMERIC)
    if not 0 <= toa <= 0xFF:
        raise TpduError(f"type-of-address {toa} is not an octet")
    ton = (toa >> 4) & 0x07
    if ton == 5:
        return _alphanumeric(address, toa)
    if ton == 1 and address[:1] == "+":
        address = address[1:]
    return _numeric(address, toa, _ALL_DIGITS)


def _digits_of(raw: bytes, count: int, what: str) -> str:
    digits = raw.translate(_SWAP).hex()[:count]
    if digits.isdigit():
        return digits
    if digits[-1:] == "f":  # some senders count the filler in the length; tolerate that
        digits = digits[:-1]
    if "f" in digits:
        raise TpduError(f"{what} has the filler F among its {count} digits")
    return digits.translate(_FROM_NIBBLE)


def _read_address(data: bytes, pos: int, what: str) -> tuple[str, int, int]:
    """Value, type-of-address and the position after an address field at `pos`."""
    if pos + 2 > len(data):
        raise TpduError(f"PDU ends in {what}")
    n, toa = data[pos], data[pos + 1]
    if n > _MAX_ADDRESS_DIGITS:
        raise TpduError(f"{what} length {n} exceeds {_MAX_ADDRESS_DIGITS} semi-octets")
    end = pos + 2 + ((n + 1) >> 1)
    if end > len(data):
        raise TpduError(f"PDU ends in {what} ({n} semi-octets announced)")
    raw = data[pos + 2 : end]
    if toa & 0x70 == 0x50:
        return DEFAULT.decode(unpack_septets(raw, (n * 4) // 7)), toa, end
    value = _digits_of(raw, n, what)
    return ("+" + value if toa & 0x70 == 0x10 else value), toa, end


def decode_address(data: bytes, offset: int = 0) -> tuple[Address, int]:
    """Read an address field (TS 23.040 section 9.1.2.5) at `offset`.

    Args:
        data: octets holding the field.
        offset: where the field's length octet is.

    Returns:
        The address and the offset just after the field.

    Raises:
        TpduError: truncated, longer than 20 semi-octets, or a filler among the digits.
    """
    value, toa, end = _read_address(bytes(data), offset, "address")
    return Address(value, toa), end


def encode_smsc(address: str | None, *, toa: int | None = None) -> bytes:
    """The SMSC part of an AT PDU (TS 24.011 section 8.2.5.1, TS 27.005 section 3.1).

    Args:
        address: ``+`` and digits, digits, or None / "" for ``00`` (use the SIM's SMSC).
        toa: type-of-address override; by default 0x91 with ``+``, else 0x81.

    Returns:
        Length in octets (type-of-address plus digits), type-of-address, semi-octets.

    Raises:
        TpduError: not a number, or more than 20 digits.
    """
    if not address:
        return _NO_SMSC
    allowed = _ALL_DIGITS
    if toa is None:
        toa = TOA_INTERNATIONAL if address[:1] == "+" else TOA_UNKNOWN
        allowed = _PLAIN_DIGITS
    elif not 0 <= toa <= 0xFF:
        raise TpduError(f"type-of-address {toa} is not an octet")
    digits = address[1:] if address[:1] == "+" and toa & 0x70 == 0x10 else address
    field = _numeric(digits, toa, allowed)  # TP form: its length octet counts digits
    return bytes((len(field) - 1,)) + field[1:]


def _read_smsc(data: bytes) -> tuple[str | None, int | None, int]:
    if not data:
        raise TpduError("empty PDU")
    n = data[0]
    if n == 0:
        return None, None, 1
    if n > _MAX_SMSC_OCTETS:
        raise TpduError(f"SMSC address length {n} exceeds {_MAX_SMSC_OCTETS} octets")
    end = 1 + n
    if end > len(data):
        raise TpduError(f"PDU ends in the SMSC address ({n} octets announced)")
    toa = data[1]
    raw = data[2:end]
    if toa & 0x70 == 0x50:
        return DEFAULT.decode(unpack_septets(raw, len(raw) * 8 // 7)), toa, end
    count = 2 * len(raw)
    if raw and raw[-1] >> 4 == 0x0F:  # odd number of digits: the last semi-octet is filler
        count -= 1
    value = _digits_of(raw, count, "SMSC address")
    return ("+" + value if toa & 0x70 == 0x10 else value), toa, end


def decode_smsc(data: bytes) -> tuple[Address | None, int]:
    """Read the SMSC part at the start of an AT PDU.

    Returns:
        The address (None for ``00``) and the offset of the TPDU.

    Raises:
        TpduError: empty, truncated or too long.
    """
    value, toa, end = _read_smsc(bytes(data))
    return (None if value is None or toa is None else Address(value, toa)), end


# -- timestamps and validity ------------------------------------------------------------------


@lru_cache(maxsize=256)
def _zone(quarters: int) -> timezone:
    return timezone(timedelta(minutes=15 * quarters))


def encode_timestamp(when: datetime) -> bytes:
    """A TP-SCTS / TP-DT / absolute TP-VP (TS 23.040 section 9.2.3.11).

    Args:
        when: an aware datetime in 1990-2089 whose offset from UTC is a whole number of quarter
            hours within +-19:45; microseconds are dropped.

    Returns:
        Seven octets.

    Raises:
        TpduError: naive, out of range, or an offset the field cannot express.
    """
    offset = when.utcoffset()
    if offset is None:
        raise TpduError("a TPDU timestamp needs a time zone (an aware datetime)")
    seconds = offset.days * 86400 + offset.seconds
    quarters, rest = divmod(abs(seconds), 900)
    if rest or offset.microseconds:
        raise TpduError(f"time zone offset {offset} is not a whole number of quarter hours")
    if quarters > 79:
        raise TpduError(f"time zone offset {offset} exceeds the 19:45 a TPDU can express")
    if not 1990 <= when.year <= 2089:
        raise TpduError(f"year {when.year} is outside the 1990-2089 a TPDU can express")
    digits = (
        f"{when.year % 100:02d}{when.month:02d}{when.day:02d}"
        f"{when.hour:02d}{when.minute:02d}{when.second:02d}"
    )
    zone = ((quarters % 10) << 4) | (quarters // 10) | (0x08 if seconds < 0 else 0)
    return bytes.fromhex(digits).translate(_SWAP) + _BYTE[zone]


def _read_timestamp(data: bytes, pos: int, what: str) -> datetime:
    end = pos + 7
    if end > len(data):
        raise TpduError(f"PDU ends in {what}")
    digits = data[pos : pos + 6].translate(_SWAP).hex()
    if not digits.isdigit():
        raise TpduError(f"{what} {data[pos:end].hex().upper()} is not BCD")
    zone = data[pos + 6]
    units = zone >> 4
    if units > 9:
        raise TpduError(f"{what} time zone octet 0x{zone:02X} is not BCD")
    quarters = (zone & 0x07) * 10 + units
    yy = int(digits[0:2])
    try:
        return datetime(
            1900 + yy if yy >= 90 else 2000 + yy,
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=_zone(-quarters if zone & 0x08 else quarters),
        )
    except ValueError as exc:
        raise TpduError(
            f"{what} {data[pos:end].hex().upper()} is not a valid time: {exc}"
        ) from None


def decode_timestamp(data: bytes, offset: int = 0) -> datetime:
    """Read a seven-octet timestamp (TS 23.040 section 9.2.3.11) at `offset`.

    Returns:
        An aware datetime in the timestamp's own offset from UTC.

    Raises:
        TpduError: truncated, not BCD, or not a valid date and time.
    """
    return _read_timestamp(bytes(data), offset, "timestamp")


def encode_relative_validity(period: timedelta) -> int:
    """The relative TP-VP octet (TS 23.040 section 9.2.3.12.1) for `period`.

    The period is rounded up to the next step the octet can express (5 minutes up to 12 hours,
    30 minutes up to 24 hours, days up to 30 days, weeks up to 63 weeks); longer periods are
    capped at 63 weeks, shorter ones become 5 minutes.

    Raises:
        TpduError: `period` is not positive.
    """
    micro = period // timedelta(microseconds=1)
    if micro <= 0:
        raise TpduError(f"validity period {period} is not positive")
    minutes = -(-micro // 60_000_000)
    if minutes <= 720:
        return max(0, -(-minutes // 5) - 1)
    if minutes <= 1440:
        return 143 + -(-(minutes - 720) // 30)
    days = -(-minutes // 1440)
    if days <= 30:
        return 166 + days
    return min(255, 192 + -(-minutes // 10080))


def decode_relative_validity(vp: int) -> timedelta:
    """The period a relative TP-VP octet (TS 23.040 section 9.2.3.12.1) stands for."""
    if vp <= 143:
        return timedelta(minutes=5 * (vp + 1))
    if vp <= 167:
        return timedelta(minutes=720 + 30 * (vp - 143))
    if vp <= 196:
        return timedelta(days=vp - 166)
    return timedelta(weeks=vp - 192)


def _validity(
    validity: timedelta | datetime | None, enhanced: bool, single_shot: bool
) -> tuple[int, bytes]:
    """TP-VPF (already shifted into the first octet) and TP-VP."""
    if enhanced or single_shot:
        return VPF_ENHANCED << 3, _enhanced_validity(validity, single_shot)
    if validity is None:
        return 0, b""
    if isinstance(validity, datetime):
        return VPF_ABSOLUTE << 3, encode_timestamp(validity)
    if isinstance(validity, timedelta):
        return VPF_RELATIVE << 3, _BYTE[encode_relative_validity(validity)]
    raise TpduError(f"validity must be a timedelta, a datetime or None, not {validity!r}")


def _enhanced_validity(validity: timedelta | datetime | None, single_shot: bool) -> bytes:
    """Seven octets of enhanced TP-VP (9.2.3.12.3)."""
    shot = 0x40 if single_shot else 0
    if validity is None:
        return bytes((shot,)) + bytes(6)
    if not isinstance(validity, timedelta):
        raise TpduError("the enhanced validity format carries relative periods only")
    micro = validity // timedelta(microseconds=1)
    if micro <= 0:
        raise TpduError(f"validity period {validity} is not positive")
    seconds = -(-micro // 1_000_000)
    if seconds <= 255:
        return bytes((shot | 0x02, seconds)) + bytes(5)
    if seconds < 100 * 3600:
        hours, rest = divmod(seconds, 3600)
        hms = bytes.fromhex(f"{hours:02d}{rest // 60:02d}{rest % 60:02d}").translate(_SWAP)
        return bytes((shot | 0x03,)) + hms + bytes(3)
    return bytes((shot | 0x01, encode_relative_validity(validity))) + bytes(5)


def _read_enhanced_validity(raw: bytes) -> tuple[timedelta | None, bool]:
    indicator = raw[0]
    pos = 1
    octet = indicator
    while octet & 0x80:  # extension octets: none is defined yet; skip them
        if pos >= 7:
            raise TpduError("enhanced TP-VP functionality indicator runs past its 7 octets")
        octet = raw[pos]
        pos += 1
    single_shot = bool(indicator & 0x40)
    fmt = indicator & 0x07
    if fmt == 0:
        return None, single_shot
    if fmt == 1:
        if pos >= 7:
            raise TpduError("enhanced TP-VP has no room for its relative value")
        return decode_relative_validity(raw[pos]), single_shot
    if fmt == 2:
        if pos >= 7:
            raise TpduError("enhanced TP-VP has no room for its seconds")
        if raw[pos] == 0:
            raise TpduError("enhanced TP-VP of 0 seconds is reserved")
        return timedelta(seconds=raw[pos]), single_shot
    if fmt == 3:
        if pos + 3 > 7:
            raise TpduError("enhanced TP-VP has no room for its hours, minutes and seconds")
        hms = raw[pos : pos + 3].translate(_SWAP).hex()
        if not hms.isdigit():
            raise TpduError(f"enhanced TP-VP {raw.hex().upper()} is not BCD")
        return (
            timedelta(hours=int(hms[0:2]), minutes=int(hms[2:4]), seconds=int(hms[4:6])),
            single_shot,
        )
    raise TpduError(f"enhanced TP-VP format {fmt} is reserved")


# -- user data --------------------------------------------------------------------------------


def _with_shift_elements(udh: bytes, alphabet: Alphabet) -> bytes:
    """`udh` with the national language shift elements `alphabet` needs, if it lacks them."""
    wanted: list[tuple[int, bytes]] = []
    if alphabet.single_shift:
        wanted.append((IEI_SINGLE_SHIFT, _BYTE[alphabet.single_shift]))
    if alphabet.locking_shift:
        wanted.append((IEI_LOCKING_SHIFT, _BYTE[alphabet.locking_shift]))
    if not wanted:
        return udh
    ies: list[tuple[int, bytes]] = list(_parse_udh(udh)[0]) if udh else []
    present = {iei for iei, _ in ies}
    missing = [ie for ie in wanted if ie[0] not in present]
    if not missing:
        return udh
    try:
        return build_udh(ies + missing)
    except UdhError as exc:
        raise TpduError(str(exc)) from None


def _parse_udh(user_data: bytes) -> tuple[tuple[InformationElement, ...], int]:
    try:
        return parse_udh(user_data)
    except UdhError as exc:
        raise TpduError(f"bad user data header: {exc}") from None


def _user_data(body: bytes, encoding: Encoding, udh: bytes) -> tuple[bytes, bytes]:
    """TP-UDL (one octet) and the body as it follows the UDH in TP-UD."""
    if udh and udh[0] != len(udh) - 1:
        raise TpduError(f"UDHL {udh[0]} does not match the {len(udh)}-octet header")
    if encoding is _GSM7:
        if not body.isascii():
            raise TpduError("a GSM 7-bit body must be unpacked septets (0x00-0x7F)")
        if udh:
            bits = len(udh) * 8
            header_septets = (bits + 6) // 7
            udl = header_septets + len(body)
            packed = pack_septets(body, header_septets * 7 - bits)
        else:
            udl = len(body)
            packed = pack_septets(body)
        if udl > _MAX_SEPTETS:
            raise TpduError(f"user data of {udl} septets exceeds {_MAX_SEPTETS}")
        return _BYTE[udl], packed
    if encoding is not _UCS2 and encoding is not _BINARY:
        raise TpduError(f"{encoding.name} cannot be sent over the air; use GSM7, UCS2 or BINARY")
    udl = len(udh) + len(body)
    if udl > _MAX_OCTETS:
        raise TpduError(f"user data of {udl} octets exceeds {_MAX_OCTETS}")
    return _BYTE[udl], body


def _dcs(encoding: Encoding, message_class: int | None, dcs: int | None) -> int:
    if dcs is not None:
        if not 0 <= dcs <= 0xFF:
            raise TpduError(f"TP-DCS {dcs} is not an octet")
        return dcs
    if encoding is _GSM7:
        value = 0x00
    elif encoding is _UCS2:
        value = 0x08
    elif encoding is _BINARY:
        value = 0x04
    else:
        raise TpduError(f"{encoding.name} cannot be sent over the air; use GSM7, UCS2 or BINARY")
    if message_class is not None:
        if not 0 <= message_class <= 3:
            raise TpduError(f"message class {message_class} is not 0-3")
        value |= 0x10 | message_class
    return value


def _message_class(dcs: int) -> int | None:
    """The message class a TP-DCS (TS 23.038 section 4) gives, if any."""
    group = dcs >> 4
    if group <= 0x07:
        return dcs & 0x03 if dcs & 0x10 else None
    if group == 0x0F:
        return dcs & 0x03
    return None


def _alphabet_of(ies: tuple[InformationElement, ...]) -> Alphabet:
    """The alphabet the national language shift elements name (TS 23.040 9.2.3.24.15-16).

    A table this codec does not have falls back to the default one, as a receiving entity
    that does not support a national language would.
    """
    locking = single = 0
    for iei, data in ies:
        if len(data) == 1:
            if iei == IEI_LOCKING_SHIFT and not locking:
                locking = data[0]
            elif iei == IEI_SINGLE_SHIFT and not single:
                single = data[0]
    if not (locking or single):
        return DEFAULT
    for pair in ((locking, single), (locking, 0), (0, single)):
        try:
            return national_alphabet(*pair)
        except ValueError:
            continue
    return DEFAULT


class _UserData(NamedTuple):
    encoding: Encoding
    udh: tuple[InformationElement, ...]
    concat: Concat | None
    body: bytes
    text: str | None
    alphabet: Alphabet


_NO_IES: tuple[InformationElement, ...] = ()


def _read_user_data(data: bytes, pos: int, udhi: int, dcs: int) -> _UserData:
    """TP-UDL and TP-UD at `pos` (TS 23.040 sections 9.2.3.16 and 9.2.3.24)."""
    if pos >= len(data):
        raise TpduError("PDU ends before TP-UDL")
    udl = data[pos]
    rest = data[pos + 1 :]
    encoding = encoding_of_dcs(dcs)
    ies = _NO_IES
    alphabet = DEFAULT
    if encoding is _GSM7:
        if udl > _MAX_SEPTETS:
            raise TpduError(f"TP-UDL {udl} exceeds {_MAX_SEPTETS} septets")
        need = (udl * 7 + 7) >> 3
        if need > len(rest):
            raise TpduError(
                f"TP-UDL {udl} septets needs {need} octets of user data, only {len(rest)} follow"
            )
        ud = rest[:need]
        if udhi:
            ies, length = _parse_udh(ud)
            header_septets = (length * 8 + 6) // 7
            if header_septets > udl:
                raise TpduError(f"user data header of {length} octets exceeds TP-UDL {udl}")
            body = unpack_septets(
                ud[length:], udl - header_septets, header_septets * 7 - length * 8
            )
            alphabet = _alphabet_of(ies)
        else:
            body = unpack_septets(ud, udl)
        try:
            text: str | None = alphabet.decode(body)
        except SmsError as exc:
            raise TpduError(
                f"user data is not valid {alphabet.name} GSM 7-bit text: {exc}"
            ) from None
    else:
        if udl > _MAX_OCTETS:
            raise TpduError(f"TP-UDL {udl} exceeds {_MAX_OCTETS} octets")
        if udl > len(rest):
            raise TpduError(f"TP-UDL {udl} octets but only {len(rest)} follow")
        body = rest[:udl]
        if udhi:
            ies, length = _parse_udh(body)
            body = body[length:]
        text = None if encoding is _BINARY else decode_text(body, encoding, errors="replace")
    return _UserData(encoding, ies, concat_of(ies) if ies else None, body, text, alphabet)


# -- encoding ---------------------------------------------------------------------------------


def encode_sms_submit(
    *,
    destination: str,
    body: bytes,
    encoding: Encoding,
    udh: bytes = b"",
    alphabet: Alphabet = DEFAULT,
    message_ref: int = 0,
    validity: timedelta | datetime | None = None,
    status_report: bool = False,
    reject_duplicates: bool = False,
    reply_path: bool = False,
    pid: int = 0,
    message_class: int | None = None,
    smsc: str | None = None,
    dcs: int | None = None,
    destination_toa: int | None = None,
    enhanced_validity: bool = False,
    single_shot: bool = False,
) -> SubmitTpdu:
    """One SMS-SUBMIT (TS 23.040 section 9.2.2.2) in the AT PDU form.

    Args:
        destination: TP-DA; see `encode_address`.
        body: one part's body as `segment` gives it: unpacked septets for GSM 7-bit, else octets.
        encoding: GSM7, UCS2 or BINARY.
        udh: the whole user data header (UDHL included), or b"".
        alphabet: the GSM 7-bit alphabet of `body`; a national one's shift elements are added to
            `udh` when it lacks them.
        message_ref: TP-MR, 0-255.
        validity: a timedelta (relative format, rounded up to a step the octet can express), an
            aware datetime (absolute format) or None (no TP-VP).
        status_report: TP-SRR.
        reject_duplicates: TP-RD.
        reply_path: TP-RP.
        pid: TP-PID.
        message_class: 0-3, or None for no class.
        smsc: the SMSC address, or None for ``00`` (the SIM's).
        dcs: a TP-DCS octet to send instead of the one `encoding` and `message_class` give.
        destination_toa: type-of-address override for TP-DA.
        enhanced_validity: send `validity` in the enhanced format (seconds, hh:mm:ss or
            relative, whichever fits) instead of the relative one.
        single_shot: ask the SC for one delivery attempt (enhanced format).

    Returns:
        The PDU, its TPDU length and its hex.

    Raises:
        TpduError: a field out of range, a body that does not fit, a bad address.
    """
    if not 0 <= message_ref <= 0xFF:
        raise TpduError(f"TP-MR {message_ref} is not 0-255")
    if not 0 <= pid <= 0xFF:
        raise TpduError(f"TP-PID {pid} is not an octet")
    smsc_part = encode_smsc(smsc)
    vpf, vp = _validity(validity, enhanced_validity, single_shot)
    if encoding is _GSM7 and alphabet is not DEFAULT:
        udh = _with_shift_elements(udh, alphabet)
    udl, packed = _user_data(body, encoding, udh)
    first = (
        MTI_SUBMIT
        | vpf
        | (_RD if reject_duplicates else 0)
        | (_SRR if status_report else 0)
        | (_UDHI if udh else 0)
        | (_RP if reply_path else 0)
    )
    pdu = b"".join(
        (
            smsc_part,
            bytes((first, message_ref)),
            encode_address(destination, toa=destination_toa),
            bytes((pid, _dcs(encoding, message_class, dcs))),
            vp,
            udl,
            udh,
            packed,
        )
    )
    return EncodedPdu(pdu, len(pdu) - len(smsc_part), pdu.hex().upper())


def submit_tpdus(
    text: str,
    destination: str,
    *,
    ref: int = 0,
    message_ref: int = 0,
    status_report: bool = False,
    validity: timedelta | datetime | None = None,
    smsc: str | None = None,
    encoding: Encoding | None = None,
    max_parts: int = 255,
    alphabets: Sequence[Alphabet] = (),
    method: ConcatMethod = ConcatMethod.UDH8,
) -> list[SubmitTpdu]:
    """A whole text as SMS-SUBMIT TPDUs, one per part.

    Args:
        text: the message.
        destination: TP-DA; see `encode_address`.
        ref: concatenation reference (see `gateway.sms.refs`).
        message_ref: TP-MR of the first part; part i gets message_ref + i modulo 256.
        status_report: TP-SRR on every part.
        validity: as in `encode_sms_submit`.
        smsc: the SMSC address, or None for the SIM's.
        encoding: force an encoding; None picks the cheapest (see `segment`).
        max_parts: the most parts allowed.
        alphabets: national language alphabets to try (see `gateway.sms.national.candidates`).
        method: UDH8 or UDH16 concatenation.

    Returns:
        The parts in order.

    Raises:
        TpduError: a bad destination, SMSC or validity, or a concatenation method that has no
            place in a TPDU (SAR, PAYLOAD).
        MessageTooLong: more than `max_parts` parts.
        UnencodableText: a forced encoding cannot represent the text.
    """
    if method is not _UDH8 and method is not _UDH16:
        raise TpduError(f"{method.name} concatenation has no place in a TPDU; use UDH8 or UDH16")
    if encoding is None and method is _UDH8 and not alphabets:
        return _submit_common(
            text, destination, ref, message_ref, status_report, validity, smsc, max_parts
        )
    seg = segment(
        text, ref=ref, encoding=encoding, method=method, max_parts=max_parts, alphabets=alphabets
    )
    enc = seg.encoding
    smsc_part = encode_smsc(smsc) if smsc else _NO_SMSC
    smsc_len = len(smsc_part)
    vpf, vp = (0, b"") if validity is None else _validity(validity, False, False)
    first = MTI_SUBMIT | vpf | (_SRR if status_report else 0)
    plain, with_udh = _BYTE[first], _BYTE[first | _UDHI]
    byte = _BYTE
    if enc is _GSM7:
        pid_dcs = b"\x00\x00"
    elif enc is _UCS2:
        pid_dcs = b"\x00\x08"
    elif enc is _BINARY:
        pid_dcs = b"\x00\x04"
    else:
        raise TpduError(f"{enc.name} cannot be sent over the air; use GSM7 or UCS2")
    digits = destination[1:]
    if destination[:1] == "+" and digits.isdigit() and digits.isascii() and len(digits) <= 20:
        # The common case, inlined: an international number.
        if len(digits) & 1:
            digits += "F"
        da = byte[len(destination) - 1] + b"\x91" + bytes.fromhex(digits).translate(_SWAP)
    else:
        da = encode_address(destination)
    mid = da + pid_dcs + vp
    bodies, udhs = seg.bodies, seg.udhs
    mr = message_ref
    if enc is _GSM7:
        if not udhs[0]:  # one part, no header: the common case
            body = bodies[0]
            pdu = b"".join(
                (smsc_part, plain, byte[mr & 0xFF], mid, byte[len(body)], pack_septets(body))
            )
            return [EncodedPdu(pdu, len(pdu) - smsc_len, pdu.hex().upper())]
        # Every part's header has the same length (one concatenation element of a fixed size,
        # the same shift elements), so the septet alignment is worked out once.
        bits = len(udhs[0]) << 3
        header_septets = (bits + 6) // 7
        fill = header_septets * 7 - bits
        out = []
        for body, udh in zip(bodies, udhs, strict=True):
            pdu = b"".join(
                (
                    smsc_part,
                    with_udh,
                    byte[mr & 0xFF],
                    mid,
                    byte[header_septets + len(body)],
                    udh,
                    pack_septets(body, fill),
                )
            )
            out.append(EncodedPdu(pdu, len(pdu) - smsc_len, pdu.hex().upper()))
            mr += 1
        return out
    out = []
    for body, udh in zip(bodies, udhs, strict=True):
        pdu = b"".join(
            (
                smsc_part,
                with_udh if udh else plain,
                byte[mr & 0xFF],
                mid,
                byte[len(udh) + len(body)],
                udh,
                body,
            )
        )
        out.append(EncodedPdu(pdu, len(pdu) - smsc_len, pdu.hex().upper()))
        mr += 1
    return out


_UDH8_SEPTETS: Final[dict[int, tuple[bytes, ...]]] = {}  # by ref << 8 | total, as udh8_headers


def _udh8_septets(ref: int, total: int) -> tuple[bytes, ...]:
    """Each part's 8-bit concatenation UDH as the 7 septets it fills: 6 octets and the one
    fill bit are 49 bits, exactly 7 septets."""
    key = (ref << 8) | total
    heads = _UDH8_SEPTETS.get(key)
    if heads is None:
        if len(_UDH8_SEPTETS) >= 8192:
            _UDH8_SEPTETS.clear()
        heads = _UDH8_SEPTETS[key] = tuple(
            [unpack_septets(udh + b"\x00", 7) for udh in udh8_headers(ref, total)]
        )
    return heads


def _submit_common(  # noqa: PLR0917 - the hot path of submit_tpdus, which checked the arguments
    text: str,
    destination: str,
    ref: int,
    message_ref: int,
    status_report: bool,
    validity: timedelta | datetime | None,
    smsc: str | None,
    max_parts: int,
) -> list[SubmitTpdu]:
    """`submit_tpdus` for the default alphabet or UCS-2 with 8-bit references.

    GSM 7-bit parts are packed in one go: with the UDH counted as 7 septets, every part but the
    last is 160 septets (159 when cut short of an escape, padded with a zero septet that packs
    to the same 140 octets), so the packed parts of the concatenation are the concatenation of
    the packed parts, and one pack of the whole message replaces one per part.
    """
    enc, body, ends = plan(text, max_parts)
    smsc_part = encode_smsc(smsc) if smsc else _NO_SMSC
    smsc_len = len(smsc_part)
    vpf, vp = (0, b"") if validity is None else _validity(validity, False, False)
    first = MTI_SUBMIT | vpf | (_SRR if status_report else 0)
    digits = destination[1:]
    if destination[:1] == "+" and digits.isdigit() and digits.isascii() and len(digits) <= 20:
        # The common case, inlined: an international number.
        if len(digits) & 1:
            digits += "F"
        da = _BYTE[len(destination) - 1] + b"\x91" + bytes.fromhex(digits).translate(_SWAP)
    else:
        da = encode_address(destination)
    mid = da + (b"\x00\x00" if enc is _GSM7 else b"\x00\x08") + vp
    total = len(ends)
    if total == 1:
        n = len(body)
        ud = pack_septets(body) if enc is _GSM7 else body
        pdu = b"".join((smsc_part, _BYTE[first], _BYTE[message_ref & 0xFF], mid, _BYTE[n], ud))
        return [EncodedPdu(pdu, len(pdu) - smsc_len, pdu.hex().upper())]
    if not 0 <= ref <= 0xFF:
        raise ValueError(f"concatenation reference {ref} out of range for UDH8")
    udhi = _BYTE[first | _UDHI]
    out = []
    start = 0
    if enc is _GSM7:
        heads = _udh8_septets(ref, total)
        pieces = []
        for i, end in enumerate(ends):
            pieces.append(heads[i])
            pieces.append(body[start:end])
            if end - start == 152 and i < total - 1:
                pieces.append(b"\x00")
            start = end
        packed = pack_septets(b"".join(pieces))
        start = 0
        for i, end in enumerate(ends):
            ud = packed[140 * i : 140 * i + 140]
            pdu = b"".join(
                (
                    smsc_part,
                    udhi,
                    _BYTE[(message_ref + i) & 0xFF],
                    mid,
                    _BYTE[7 + end - start],
                    ud,
                )
            )
            out.append(EncodedPdu(pdu, len(pdu) - smsc_len, pdu.hex().upper()))
            start = end
        return out
    udhs = udh8_headers(ref, total)
    for i, end in enumerate(ends):
        pdu = b"".join(
            (
                smsc_part,
                udhi,
                _BYTE[(message_ref + i) & 0xFF],
                mid,
                _BYTE[6 + end - start],
                udhs[i],
                body[start:end],
            )
        )
        out.append(EncodedPdu(pdu, len(pdu) - smsc_len, pdu.hex().upper()))
        start = end
    return out


def encode_sms_deliver(
    *,
    originator: str,
    body: bytes,
    encoding: Encoding,
    timestamp: datetime,
    udh: bytes = b"",
    alphabet: Alphabet = DEFAULT,
    pid: int = 0,
    message_class: int | None = None,
    dcs: int | None = None,
    more_messages: bool = False,
    loop_prevention: bool = False,
    status_report_indication: bool = False,
    reply_path: bool = False,
    smsc: str | None = None,
    originator_toa: int | None = None,
) -> DeliverTpdu:
    """One SMS-DELIVER (TS 23.040 section 9.2.2.1) in the AT PDU form, as +CMT shows it.

    Args:
        originator: TP-OA: ``+`` and digits, digits, or an alphanumeric sender (<= 11 septets).
        body, encoding, udh, alphabet, pid, message_class, dcs: as in `encode_sms_submit`.
        timestamp: TP-SCTS, an aware datetime.
        more_messages: clear TP-MMS (more messages are waiting in the SC).
        loop_prevention: TP-LP.
        status_report_indication: TP-SRI.
        reply_path: TP-RP.
        smsc: the SMSC address, or None for ``00``.
        originator_toa: type-of-address override for TP-OA.

    Returns:
        The PDU, its TPDU length and its hex.

    Raises:
        TpduError: a field out of range, a body that does not fit, a bad address or timestamp.
    """
    if not 0 <= pid <= 0xFF:
        raise TpduError(f"TP-PID {pid} is not an octet")
    smsc_part = encode_smsc(smsc)
    if encoding is _GSM7 and alphabet is not DEFAULT:
        udh = _with_shift_elements(udh, alphabet)
    udl, packed = _user_data(body, encoding, udh)
    first = (
        MTI_DELIVER
        | (0 if more_messages else _MMS)
        | (_LP if loop_prevention else 0)
        | (_SRI if status_report_indication else 0)
        | (_UDHI if udh else 0)
        | (_RP if reply_path else 0)
    )
    pdu = b"".join(
        (
            smsc_part,
            _BYTE[first],
            encode_address(originator, toa=originator_toa),
            bytes((pid, _dcs(encoding, message_class, dcs))),
            encode_timestamp(timestamp),
            udl,
            udh,
            packed,
        )
    )
    return EncodedPdu(pdu, len(pdu) - len(smsc_part), pdu.hex().upper())


def deliver_tpdus(
    text: str,
    originator: str,
    *,
    timestamp: datetime,
    ref: int = 0,
    smsc: str | None = None,
    encoding: Encoding | None = None,
    max_parts: int = 255,
    alphabets: Sequence[Alphabet] = (),
    method: ConcatMethod = ConcatMethod.UDH8,
    status_report_indication: bool = False,
) -> list[DeliverTpdu]:
    """A whole text as SMS-DELIVER TPDUs, one per part (what an SC would send a handset).

    Args:
        text: the message.
        originator: TP-OA; see `encode_sms_deliver`.
        timestamp: TP-SCTS of every part.
        ref, encoding, max_parts, alphabets, method: as in `submit_tpdus`.
        smsc: the SMSC address, or None for ``00``.
        status_report_indication: TP-SRI on every part.

    Returns:
        The parts in order; TP-MMS says more messages are waiting on all but the last.

    Raises:
        TpduError, MessageTooLong, UnencodableText: as in `submit_tpdus`.
    """
    if method is not _UDH8 and method is not _UDH16:
        raise TpduError(f"{method.name} concatenation has no place in a TPDU; use UDH8 or UDH16")
    seg = segment(
        text, ref=ref, encoding=encoding, method=method, max_parts=max_parts, alphabets=alphabets
    )
    last = seg.total - 1
    return [
        encode_sms_deliver(
            originator=originator,
            body=body,
            encoding=seg.encoding,
            timestamp=timestamp,
            udh=udh,
            more_messages=i < last,
            status_report_indication=status_report_indication,
            smsc=smsc,
        )
        for i, (body, udh) in enumerate(zip(seg.bodies, seg.udhs, strict=True))
    ]


def encode_status_report(
    *,
    message_ref: int,
    recipient: str,
    timestamp: datetime,
    discharge_time: datetime,
    status: int,
    recipient_toa: int | None = None,
    more_messages: bool = False,
    loop_prevention: bool = False,
    command: bool = False,
    pid: int | None = None,
    encoding: Encoding | None = None,
    message_class: int | None = None,
    dcs: int | None = None,
    body: bytes | None = None,
    udh: bytes = b"",
    alphabet: Alphabet = DEFAULT,
    smsc: str | None = None,
) -> StatusReportTpdu:
    """One SMS-STATUS-REPORT (TS 23.040 section 9.2.2.3) in the AT PDU form, as +CDS shows it.

    TP-PI and the optional fields after it are sent only when one of `pid`, `encoding` / `dcs`,
    `body` / `udh` is given. Without a TP-DCS the receiver reads the user data as GSM 7-bit.

    Args:
        message_ref: TP-MR of the SMS-SUBMIT reported on.
        recipient: TP-RA, that submit's destination.
        timestamp: TP-SCTS, when the SC received the submit (aware).
        discharge_time: TP-DT, when `status` was reached (aware).
        status: TP-ST, 0-255 (see `classify_status`).
        recipient_toa: type-of-address override for TP-RA.
        more_messages: clear TP-MMS.
        loop_prevention: TP-LP.
        command: TP-SRQ, the report is about an SMS-COMMAND.
        pid: TP-PID, or None to leave it out.
        encoding, message_class, dcs: TP-DCS, or None for all three to leave it out.
        body: user data as in `encode_sms_submit`, or None for none.
        udh: a user data header, or b"".
        alphabet: as in `encode_sms_submit`.
        smsc: the SMSC address, or None for ``00``.

    Returns:
        The PDU, its TPDU length and its hex.

    Raises:
        TpduError: a field out of range, a body that does not fit, a bad address or timestamp.
    """
    if not 0 <= message_ref <= 0xFF:
        raise TpduError(f"TP-MR {message_ref} is not 0-255")
    if not 0 <= status <= 0xFF:
        raise TpduError(f"TP-ST {status} is not an octet")
    smsc_part = encode_smsc(smsc)
    first = (
        MTI_STATUS_REPORT
        | (0 if more_messages else _MMS)
        | (_LP if loop_prevention else 0)
        | (_SRQ if command else 0)
        | (_UDHI if udh else 0)
    )
    parts = [
        smsc_part,
        bytes((first, message_ref)),
        encode_address(recipient, toa=recipient_toa),
        encode_timestamp(timestamp),
        encode_timestamp(discharge_time),
        _BYTE[status],
    ]
    has_dcs = encoding is not None or dcs is not None or message_class is not None
    has_ud = body is not None or bool(udh)
    indicator = (1 if pid is not None else 0) | (2 if has_dcs else 0) | (4 if has_ud else 0)
    if indicator:
        parts.append(_BYTE[indicator])
        if pid is not None:
            if not 0 <= pid <= 0xFF:
                raise TpduError(f"TP-PID {pid} is not an octet")
            parts.append(_BYTE[pid])
        enc = _GSM7 if encoding is None else encoding
        if has_dcs:
            parts.append(_BYTE[_dcs(enc, message_class, dcs)])
        if has_ud:
            if enc is _GSM7 and alphabet is not DEFAULT:
                udh = _with_shift_elements(udh, alphabet)
            udl, packed = _user_data(b"" if body is None else body, enc, udh)
            parts += (udl, udh, packed)
    pdu = b"".join(parts)
    return EncodedPdu(pdu, len(pdu) - len(smsc_part), pdu.hex().upper())


# -- decoding ---------------------------------------------------------------------------------


def _to_bytes(pdu: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(pdu, str):
        try:
            return bytes.fromhex(pdu)
        except ValueError:
            shown = pdu if len(pdu) <= 40 else pdu[:40] + "..."
            raise TpduError(f"PDU {shown!r} is not an even number of hex digits") from None
    if isinstance(pdu, bytes | bytearray | memoryview):
        return bytes(pdu)
    raise TpduError(f"a PDU is hex text or bytes, not {type(pdu).__name__}")


def decode_pdu(
    pdu: str | bytes | bytearray | memoryview,
    *,
    has_smsc: bool = True,
    direction: Literal["mt", "mo"] | None = None,
) -> SmsDeliver | SmsSubmit | SmsStatusReport:
    """Decode a PDU as AT+CMGR, AT+CMGL, +CMT and +CDS show it, or as AT+CMGS takes it.

    Args:
        pdu: hex (whitespace between octets is ignored) or raw octets.
        has_smsc: the PDU starts with the SMSC address (the AT form). False for a bare TPDU
            (<length> octets with nothing before them).
        direction: None reads TP-MTI as the AT interface shows stored and received messages
            (00 SMS-DELIVER, 01 SMS-SUBMIT, 10 SMS-STATUS-REPORT). "mt" (SC to MS) and "mo"
            (MS to SC) accept only what travels that way; a modem emulator checking what a
            driver sends uses "mo".

    Returns:
        SmsDeliver, SmsSubmit or SmsStatusReport.

    Raises:
        TpduError: bad hex, truncated, a field out of range, a TPDU type not supported
            (SUBMIT-REPORT, DELIVER-REPORT, COMMAND) or reserved (TP-MTI 11).
    """
    data = _to_bytes(pdu)
    if has_smsc:
        smsc, smsc_toa, pos = _read_smsc(data)
    else:
        smsc, smsc_toa, pos = None, None, 0
    if pos >= len(data):
        raise TpduError("PDU has no TPDU" if has_smsc else "empty PDU")
    mti = data[pos] & 0x03
    if mti == MTI_DELIVER:
        if direction == "mo":
            raise TpduError("SMS-DELIVER-REPORT (TP-MTI 00, MS to SC) is not supported")
        return _decode_deliver(data, pos, smsc, smsc_toa)
    if mti == MTI_SUBMIT:
        if direction == "mt":
            raise TpduError("SMS-SUBMIT-REPORT (TP-MTI 01, SC to MS) is not supported")
        return _decode_submit(data, pos, smsc, smsc_toa)
    if mti == MTI_STATUS_REPORT:
        if direction == "mo":
            raise TpduError("SMS-COMMAND (TP-MTI 10, MS to SC) is not supported")
        return _decode_status_report(data, pos, smsc, smsc_toa)
    raise TpduError(f"TP-MTI 11 is reserved (first octet 0x{data[pos]:02X})")


def _decode_submit(data: bytes, start: int, smsc: str | None, smsc_toa: int | None) -> SmsSubmit:
    first = data[start]
    if start + 2 > len(data):
        raise TpduError("PDU ends before TP-MR")
    message_ref = data[start + 1]
    destination, destination_toa, pos = _read_address(data, start + 2, "TP-DA")
    if pos + 2 > len(data):
        raise TpduError("PDU ends before TP-PID / TP-DCS")
    pid, dcs = data[pos], data[pos + 1]
    pos += 2
    vpf = (first >> 3) & 0x03
    validity: timedelta | datetime | None = None
    single_shot = False
    if vpf == VPF_RELATIVE:
        if pos >= len(data):
            raise TpduError("PDU ends in TP-VP")
        validity = decode_relative_validity(data[pos])
        pos += 1
    elif vpf == VPF_ABSOLUTE:
        validity = _read_timestamp(data, pos, "TP-VP")
        pos += 7
    elif vpf == VPF_ENHANCED:
        if pos + 7 > len(data):
            raise TpduError("PDU ends in TP-VP")
        validity, single_shot = _read_enhanced_validity(data[pos : pos + 7])
        pos += 7
    ud = _read_user_data(data, pos, first & _UDHI, dcs)
    return SmsSubmit(
        smsc=smsc,
        smsc_toa=smsc_toa,
        message_ref=message_ref,
        destination=destination,
        destination_toa=destination_toa,
        reject_duplicates=bool(first & _RD),
        status_report_request=bool(first & _SRR),
        reply_path=bool(first & _RP),
        validity_format=vpf,
        validity=validity,
        single_shot=single_shot,
        pid=pid,
        dcs=dcs,
        message_class=_message_class(dcs),
        encoding=ud.encoding,
        udh=ud.udh,
        concat=ud.concat,
        user_data=ud.body,
        text=ud.text,
        alphabet=ud.alphabet,
        tpdu_length=len(data) - start,
    )


def _decode_deliver(data: bytes, start: int, smsc: str | None, smsc_toa: int | None) -> SmsDeliver:
    first = data[start]
    originator, originator_toa, pos = _read_address(data, start + 1, "TP-OA")
    if pos + 2 > len(data):
        raise TpduError("PDU ends before TP-PID / TP-DCS")
    pid, dcs = data[pos], data[pos + 1]
    timestamp = _read_timestamp(data, pos + 2, "TP-SCTS")
    ud = _read_user_data(data, pos + 9, first & _UDHI, dcs)
    return SmsDeliver(
        smsc=smsc,
        smsc_toa=smsc_toa,
        originator=originator,
        originator_toa=originator_toa,
        more_messages=not first & _MMS,
        loop_prevention=bool(first & _LP),
        status_report_indication=bool(first & _SRI),
        reply_path=bool(first & _RP),
        pid=pid,
        dcs=dcs,
        message_class=_message_class(dcs),
        timestamp=timestamp,
        encoding=ud.encoding,
        udh=ud.udh,
        concat=ud.concat,
        user_data=ud.body,
        text=ud.text,
        alphabet=ud.alphabet,
        tpdu_length=len(data) - start,
    )


def _decode_status_report(
    data: bytes, start: int, smsc: str | None, smsc_toa: int | None
) -> SmsStatusReport:
    first = data[start]
    if start + 2 > len(data):
        raise TpduError("PDU ends before TP-MR")
    message_ref = data[start + 1]
    recipient, recipient_toa, pos = _read_address(data, start + 2, "TP-RA")
    timestamp = _read_timestamp(data, pos, "TP-SCTS")
    discharge_time = _read_timestamp(data, pos + 7, "TP-DT")
    pos += 14
    if pos >= len(data):
        raise TpduError("PDU ends before TP-ST")
    status = data[pos]
    pos += 1
    indicator: int | None = None
    pid: int | None = None
    dcs: int | None = None
    ud = _UserData(_GSM7, _NO_IES, None, b"", None, DEFAULT)
    if pos < len(data):  # TP-PI and what it announces (9.2.3.27)
        indicator = octet = data[pos]
        pos += 1
        while octet & 0x80:  # extension octets: all their bits are reserved; skip them
            if pos >= len(data):
                raise TpduError("PDU ends in TP-PI")
            octet = data[pos]
            pos += 1
        if indicator & 0x01:
            if pos >= len(data):
                raise TpduError("PDU ends before TP-PID")
            pid = data[pos]
            pos += 1
        if indicator & 0x02:
            if pos >= len(data):
                raise TpduError("PDU ends before TP-DCS")
            dcs = data[pos]
            pos += 1
        if indicator & 0x04:
            ud = _read_user_data(data, pos, first & _UDHI, 0x00 if dcs is None else dcs)
    return SmsStatusReport(
        smsc=smsc,
        smsc_toa=smsc_toa,
        message_ref=message_ref,
        recipient=recipient,
        recipient_toa=recipient_toa,
        timestamp=timestamp,
        discharge_time=discharge_time,
        status=status,
        more_messages=not first & _MMS,
        loop_prevention=bool(first & _LP),
        command=bool(first & _SRQ),
        parameter_indicator=indicator,
        pid=pid,
        dcs=dcs,
        message_class=None if dcs is None else _message_class(dcs),
        encoding=ud.encoding,
        udh=ud.udh,
        concat=ud.concat,
        user_data=ud.body,
        text=ud.text,
        alphabet=ud.alphabet,
        tpdu_length=len(data) - start,
    )
