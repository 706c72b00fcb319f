"""The AT commands the modem driver sends, and readers for their answers. Pure.

Builders return `Command`s for `drivers.modem.at.AtEngine`; readers take the `lines` of a
`CommandDone` (information lines, the final OK already removed) and raise `AnswerError` when the
answer is not what the command gives. Formats: 3GPP TS 27.007 (general, network, SIM) and
TS 27.005 (SMS, PDU mode); vendor variants are named where they are read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from drivers.modem.at import Command, split_fields
from gateway.sms.coding import Encoding, decode_text
from gateway.sms.gsm7 import encode_gsm7, pack_septets, unpack_septets

__all__ = [
    "AnswerError",
    "Operator",
    "RegistrationState",
    "SignalQuality",
    "StorageUse",
    "StoredMessage",
    "ccid",
    "cgsn",
    "cimi",
    "cmgd",
    "cmgl",
    "cmgr",
    "cmgs",
    "cops_query",
    "cpin",
    "cpin_query",
    "cpms",
    "cpms_query",
    "cpms_test",
    "creg_query",
    "csca",
    "csca_query",
    "csq",
    "cusd",
    "decode_ussd",
    "parse_cmgl",
    "parse_cmgr",
    "parse_cmgs",
    "parse_cops",
    "parse_cpin",
    "parse_cpms",
    "parse_cpms_test",
    "parse_creg",
    "parse_csca",
    "parse_csq",
    "parse_iccid",
    "parse_imei",
    "parse_imsi",
    "ussd_encoding",
]


class AnswerError(ValueError):
    """The answer lines are not what the command gives."""


_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")


def _value(lines: Sequence[str], name: str) -> str:
    """The value of the first line named `name` ("+CSQ: 20,99" -> "20,99")."""
    for line in lines:
        head, sep, value = line.partition(":")
        if sep and head.strip().upper() == name:
            return value.strip()
    raise AnswerError(f"no {name} line in {list(lines)!r}")


def _ints(fields: Sequence[str], name: str) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise AnswerError(f"{name}: not numbers: {fields!r}") from None


def _opt_int(field: str, base: int = 10) -> int | None:
    try:
        return int(field, base) if field else None
    except ValueError:
        return None


# -- sending -------------------------------------------------------------------------------------


def cmgs(tpdu: bytes, smsc_len: int, *, timeout: float = 60.0) -> Command:
    """AT+CMGS in PDU mode (TS 27.005 section 3.5.1).

    Args:
        tpdu: the SMSC part (``00`` for the SIM's SMSC) followed by the SMS-SUBMIT TPDU, as
            `gateway.sms.tpdu.EncodedPdu.pdu`.
        smsc_len: octets of the SMSC part, its length octet included.
        timeout: the network answers in seconds, but slow ones take most of a minute.

    Raises:
        ValueError: `smsc_len` does not match the SMSC part's own length octet.
    """
    if not 1 <= smsc_len < len(tpdu) or tpdu[0] + 1 != smsc_len:
        raise ValueError(f"SMSC part of {smsc_len} octets does not match PDU {tpdu[:12].hex()}")
    return Command(
        f"AT+CMGS={len(tpdu) - smsc_len}", timeout, data=tpdu.hex().upper().encode("ascii")
    )


def parse_cmgs(lines: Sequence[str]) -> int:
    """TP-MR from "+CMGS: <mr>[,<scts>]"."""
    fields = split_fields(_value(lines, "+CMGS"))
    mr = _opt_int(fields[0])
    if mr is None or not 0 <= mr <= 255:
        raise AnswerError(f"+CMGS: bad message reference {fields[0]!r}")
    return mr


# -- signal and network --------------------------------------------------------------------------


class SignalQuality(NamedTuple):
    """+CSQ (TS 27.007 section 8.5): `rssi` 0-31 (or 100-191), 99 unknown; `ber` 0-7, 99
    unknown; `dbm` what `rssi` means, None when unknown."""

    rssi: int
    ber: int
    dbm: int | None


def csq() -> Command:
    return Command("AT+CSQ")


def parse_csq(lines: Sequence[str]) -> SignalQuality:
    fields = split_fields(_value(lines, "+CSQ"))
    if len(fields) != 2:
        raise AnswerError(f"+CSQ: expected rssi,ber, got {fields!r}")
    rssi, ber = _ints(fields, "+CSQ")
    if 0 <= rssi <= 31:
        dbm: int | None = -113 + 2 * rssi
    elif 100 <= rssi <= 191:  # TD-SCDMA range: 100 is -116 dBm or less, 191 is -25 dBm
        dbm = rssi - 216
    else:
        dbm = None
    return SignalQuality(rssi, ber, dbm)


class RegistrationState(NamedTuple):
    """The answer to AT+CREG? / AT+CGREG? / AT+CEREG? (TS 27.007 sections 7.2, 10.1.19).

    Attributes:
        n: the unsolicited mode set with AT+CREG=<n>.
        stat: 0 not registered, not searching; 1 home; 2 searching; 3 denied; 4 unknown;
            5 roaming; 6/7 SMS only (home/roaming); 9/10 CSFB not preferred.
    """

    n: int
    stat: int
    lac: int | None
    ci: int | None
    act: int | None

    @property
    def registered(self) -> bool:
        return self.stat in (1, 5, 6, 7, 9, 10)

    @property
    def roaming(self) -> bool:
        return self.stat in (5, 7, 10)


def creg_query(name: str = "+CREG") -> Command:
    return Command(f"AT{name}?")


def parse_creg(lines: Sequence[str], name: str = "+CREG") -> RegistrationState:
    fields = split_fields(_value(lines, name))
    if len(fields) < 2:
        raise AnswerError(f"{name}: expected <n>,<stat>, got {fields!r}")
    n, stat = _ints(fields[:2], name)
    lac = _opt_int(fields[2], 16) if len(fields) > 2 else None
    ci = _opt_int(fields[3], 16) if len(fields) > 3 else None
    act = _opt_int(fields[4]) if len(fields) > 4 else None
    return RegistrationState(n, stat, lac, ci, act)


class Operator(NamedTuple):
    """The answer to AT+COPS? (TS 27.007 section 7.3): `name` in `format` (0 long, 1 short,
    2 numeric MCC+MNC), None when not registered."""

    mode: int
    format: int | None
    name: str | None
    act: int | None


def cops_query() -> Command:
    return Command("AT+COPS?", timeout=10.0)


def parse_cops(lines: Sequence[str]) -> Operator:
    fields = split_fields(_value(lines, "+COPS"))
    mode = _opt_int(fields[0])
    if mode is None:
        raise AnswerError(f"+COPS: bad mode {fields[0]!r}")
    fmt = _opt_int(fields[1]) if len(fields) > 1 else None
    name = fields[2] if len(fields) > 2 and fields[2] else None
    act = _opt_int(fields[3]) if len(fields) > 3 else None
    return Operator(mode, fmt, name, act)


# -- SIM -----------------------------------------------------------------------------------------


def cpin_query() -> Command:
    return Command("AT+CPIN?")


def cpin(pin: str, new_pin: str | None = None) -> Command:
    """Enter the PIN (or the PUK and a new PIN). Raises ValueError if not digits."""
    for code in (pin,) if new_pin is None else (pin, new_pin):
        if not (code.isdigit() and 4 <= len(code) <= 16):
            raise ValueError("PIN and PUK are 4 to 16 digits")
    args = f'"{pin}"' if new_pin is None else f'"{pin}","{new_pin}"'
    return Command(f"AT+CPIN={args}", timeout=10.0)


def parse_cpin(lines: Sequence[str]) -> str:
    """What AT+CPIN? says the SIM waits for: "READY", "SIM PIN", "SIM PUK", "PH-SIM PIN",
    "SIM PIN2", ... (TS 27.007 section 8.3), upper case."""
    return _value(lines, "+CPIN").strip('"').upper()


def _serial(lines: Sequence[str], names: tuple[str, ...], what: str) -> str:
    for line in lines:
        head, sep, value = line.partition(":")
        candidate = (value if sep and head.strip().upper() in names else line).strip()
        candidate = candidate.strip('"').strip()
        if candidate and re.fullmatch(r"[0-9A-Fa-f]+", candidate):
            return candidate
    raise AnswerError(f"no {what} in {list(lines)!r}")


def cgsn() -> Command:
    return Command("AT+CGSN")


def parse_imei(lines: Sequence[str]) -> str:
    """The IMEI from AT+CGSN (bare digits, or "+CGSN: <sn>" on newer modules)."""
    imei = _serial(lines, ("+CGSN", "+GSN"), "IMEI")
    if not imei.isdigit() or not 14 <= len(imei) <= 17:
        raise AnswerError(f"not an IMEI: {imei!r}")
    return imei


def cimi() -> Command:
    return Command("AT+CIMI")


def parse_imsi(lines: Sequence[str]) -> str:
    imsi = _serial(lines, ("+CIMI",), "IMSI")
    if not imsi.isdigit() or not 6 <= len(imsi) <= 15:
        raise AnswerError(f"not an IMSI: {imsi!r}")
    return imsi


# Vendors read the ICCID with different commands; the driver tries them in turn.
ICCID_COMMANDS = ("AT+CCID", "AT+ICCID", "AT^ICCID?", "AT+QCCID", "AT+CRSM=176,12258,0,0,10")


def ccid(text: str = "AT+CCID") -> Command:
    """One of `ICCID_COMMANDS`."""
    return Command(text)


def parse_iccid(lines: Sequence[str]) -> str:
    """The ICCID (ITU-T E.118) from +CCID:, +ICCID:, ^ICCID:, +QCCID:, a bare line, or
    +CRSM: 144,0,<EF-ICCID hex>.

    EF-ICCID stores the digits nibble-swapped and padded with F (TS 11.11 10.1.1); Huawei's
    ^ICCID and +CRSM hand that on raw. Every ICCID starts with the telecom industry id 89, so
    one starting with 98 is swapped back.
    """
    raw: str | None = None
    for line in lines:
        head, sep, value = line.partition(":")
        if sep and head.strip().upper() == "+CRSM":
            fields = split_fields(value)
            if len(fields) == 3 and fields[0] in ("144", "145"):
                raw = fields[2]
                break
    if raw is None:
        raw = _serial(lines, ("+CCID", "+ICCID", "^ICCID", "+QCCID", "^SCID"), "ICCID")
    iccid = raw.strip().strip('"').upper()
    if iccid.startswith("98") and len(iccid) % 2 == 0:
        iccid = "".join(iccid[i + 1] + iccid[i] for i in range(0, len(iccid), 2))
    iccid = iccid.rstrip("F")
    if not iccid.isdigit() or not 18 <= len(iccid) <= 22:
        raise AnswerError(f"not an ICCID: {iccid!r}")
    return iccid


# -- SMS set-up and storage ----------------------------------------------------------------------


class StorageUse(NamedTuple):
    """One of the three stores of AT+CPMS (read/delete, write/send, receive): `mem` is None in
    the answer to AT+CPMS=, which gives only the counts."""

    mem: str | None
    used: int
    total: int


def cpms(mem1: str, mem2: str | None = None, mem3: str | None = None) -> Command:
    mems = [m for m in (mem1, mem2, mem3) if m is not None]
    return Command("AT+CPMS=" + ",".join(f'"{m}"' for m in mems))


def cpms_query() -> Command:
    return Command("AT+CPMS?")


def parse_cpms(lines: Sequence[str]) -> tuple[StorageUse, ...]:
    """+CPMS: "SM",3,20,"SM",3,20,"SM",3,20 (query) or +CPMS: 3,20,3,20,3,20 (set)."""
    fields = split_fields(_value(lines, "+CPMS"))
    if fields and _opt_int(fields[0]) is None:
        if len(fields) % 3:
            raise AnswerError(f"+CPMS: expected <mem>,<used>,<total> triples, got {fields!r}")
        return tuple(
            StorageUse(fields[i], *_ints(fields[i + 1 : i + 3], "+CPMS"))
            for i in range(0, len(fields), 3)
        )
    if len(fields) % 2:
        raise AnswerError(f"+CPMS: expected <used>,<total> pairs, got {fields!r}")
    numbers = _ints(fields, "+CPMS")
    return tuple(StorageUse(None, numbers[i], numbers[i + 1]) for i in range(0, len(fields), 2))


def cpms_test() -> Command:
    return Command("AT+CPMS=?")


def parse_cpms_test(lines: Sequence[str]) -> tuple[str, ...]:
    """The memories AT+CPMS=? offers for reading and deleting (its first list):
    +CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME") -> ("SM", "ME", "SR"). Some modems leave
    out the brackets when each list has one memory."""
    value = _value(lines, "+CPMS")
    first = value[1 : value.index(")")] if value.startswith("(") and ")" in value else value
    mems = tuple(m.upper() for m in split_fields(first) if m and _opt_int(m) is None)
    if not mems:
        raise AnswerError(f"+CPMS: no memories in {value!r}")
    return mems


def csca_query() -> Command:
    return Command("AT+CSCA?")


def csca(address: str, toa: int | None = None) -> Command:
    """Set the SMSC address; `toa` 145 for "+" numbers, 129 otherwise, when not given."""
    if not re.fullmatch(r"\+?[0-9]{1,20}", address):
        raise ValueError(f"not an SMSC address: {address!r}")
    toa = toa if toa is not None else (145 if address.startswith("+") else 129)
    return Command(f'AT+CSCA="{address}",{toa}')


def parse_csca(lines: Sequence[str]) -> tuple[str | None, int | None]:
    """(address, type of address) from +CSCA: "<sca>",<tosca>; address None when unset."""
    fields = split_fields(_value(lines, "+CSCA"))
    address = fields[0] or None
    toa = _opt_int(fields[1]) if len(fields) > 1 else None
    return address, toa


# -- reading and deleting ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message from AT+CMGL / AT+CMGR in PDU mode (a dataclass: a NamedTuple cannot have a
    field called `index`).

    Attributes:
        index: its place in storage (None from AT+CMGR, which does not repeat it).
        stat: 0 received unread, 1 received read, 2 stored unsent, 3 stored sent.
        pdu: the SMSC part and the TPDU.
        length: octets in the TPDU alone.
    """

    index: int | None
    stat: int
    pdu: bytes
    length: int


def cmgl(stat: int = 4) -> Command:
    """List messages: 4 all, 0 unread, 1 read (PDU mode)."""
    return Command(f"AT+CMGL={stat}", timeout=30.0)


def cmgr(index: int) -> Command:
    return Command(f"AT+CMGR={index}", timeout=10.0)


def cmgd(index: int, delflag: int | None = None) -> Command:
    """Delete the message at `index`; `delflag` 1-4 deletes by status instead (27.005 3.5.4)."""
    return Command(f"AT+CMGD={index}" if delflag is None else f"AT+CMGD={index},{delflag}")


def _header_pdu_pairs(lines: Sequence[str], name: str) -> list[tuple[list[str], bytes]]:
    pairs: list[tuple[list[str], bytes]] = []
    for i, line in enumerate(lines):
        head, sep, value = line.partition(":")
        if not sep or head.strip().upper() != name:
            continue
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if _HEX.fullmatch(nxt):
            pairs.append((split_fields(value), bytes.fromhex(nxt)))
    return pairs


def parse_cmgl(lines: Sequence[str]) -> tuple[StoredMessage, ...]:
    """Messages from +CMGL: <index>,<stat>,[<alpha>],<length> lines, each followed by its PDU.

    A header without a PDU line after it is skipped.
    """
    found = []
    for fields, pdu in _header_pdu_pairs(lines, "+CMGL"):
        if len(fields) < 3:
            raise AnswerError(f"+CMGL: expected <index>,<stat>,[<alpha>],<length>: {fields!r}")
        index, stat, length = _ints([fields[0], fields[1], fields[-1]], "+CMGL")
        found.append(StoredMessage(index, stat, pdu, length))
    return tuple(found)


def parse_cmgr(lines: Sequence[str], index: int | None = None) -> StoredMessage | None:
    """The message from +CMGR: <stat>,[<alpha>],<length> and its PDU line; None for an empty
    slot (no +CMGR line, or a header with no PDU after it)."""
    pairs = _header_pdu_pairs(lines, "+CMGR")
    if not pairs:
        return None
    fields, pdu = pairs[0]
    if len(fields) < 2:
        raise AnswerError(f"+CMGR: expected <stat>,[<alpha>],<length>: {fields!r}")
    stat, length = _ints([fields[0], fields[-1]], "+CMGR")
    return StoredMessage(index, stat, pdu, length)


# -- USSD ----------------------------------------------------------------------------------------


def cusd(code: str, *, dcs: int = 15, packed_hex: bool = False, timeout: float = 30.0) -> Command:
    """AT+CUSD=1,"<code>",<dcs> (TS 27.007 section 7.15).

    Args:
        packed_hex: send the code as packed GSM 7-bit in hex, as some Huawei sticks require.
    """
    if not re.fullmatch(r"[0-9*#+]{1,160}", code):
        raise ValueError(f"not a USSD string: {code!r}")
    payload = pack_septets(encode_gsm7(code)).hex().upper() if packed_hex else code
    return Command(f'AT+CUSD=1,"{payload}",{dcs}', timeout=timeout)


def ussd_encoding(dcs: int | None) -> Encoding:
    """The alphabet a USSD / CBS data coding scheme names (TS 23.038 section 5)."""
    if dcs is None:
        return Encoding.GSM7
    group = dcs >> 4
    if dcs == 0x11:
        return Encoding.UCS2
    if group in (0x04, 0x05, 0x06, 0x07, 0x09):  # general data coding, and with UDH
        return (Encoding.GSM7, Encoding.BINARY, Encoding.UCS2, Encoding.GSM7)[(dcs >> 2) & 0x03]
    if group == 0x0F:
        return Encoding.BINARY if dcs & 0x04 else Encoding.GSM7
    return Encoding.GSM7


def decode_ussd(text: str | None, dcs: int | None, *, packed_hex: bool = False) -> str:
    """The text of a +CUSD answer, read by its data coding scheme.

    UCS-2 comes as hex of UTF-16BE; 8-bit as hex octets. GSM 7-bit is usually text already
    (the modem converted it to its character set), or, with `packed_hex` (Huawei), hex of the
    packed septets. DCS 0x10 / 0x11 carry a language indication first, which is dropped.
    Text that is not hex where hex is expected is returned as it is.
    """
    if not text:
        return ""
    encoding = ussd_encoding(dcs)
    is_hex = _HEX.fullmatch(text) is not None
    if encoding is Encoding.UCS2 and is_hex:
        data = bytes.fromhex(text)
        if dcs == 0x11:
            data = data[2:]  # two packed GSM 7-bit characters naming the language
        return decode_text(data[: len(data) & ~1], Encoding.UCS2, errors="replace")
    if encoding is Encoding.BINARY and is_hex:
        return bytes.fromhex(text).decode("latin-1")
    if encoding is Encoding.GSM7 and packed_hex and is_hex:
        data = bytes.fromhex(text)
        septets = unpack_septets(data, len(data) * 8 // 7)
        if len(data) % 7 == 0 and septets.endswith(b"\r"):
            septets = septets[:-1]  # CR fills a last octet with 7 spare bits (23.038 6.1.2.3.1)
        text = decode_text(septets, Encoding.GSM7, errors="replace")
    if dcs == 0x10:
        text = text[3:]  # the language, two characters and a CR
    return text
