"""The standard codec benchmark: smsgw against the other Python SMS / SMPP codecs.

Usage (from the repository root):

    .venv/bin/python bench/codec.py --repeat 7
    .venv/bin/python bench/codec.py --only a --libs smsgw,smpplib --json /tmp/codec.json

Workload: ``../shared/bench/corpus.json`` relative to the repository root (``--corpus`` to
override), 10,000 mobile-terminated messages; see ``../shared/bench/README.md``.

Steps:

(a) text -> coding -> segments -> complete submit_sm bytes, one PDU per part.
(b) submit_sm bytes -> fields and text (UDH stripped, decoded per data_coding). Every library
    gets the same bytes: the PDUs smsgw produced in (a).
(c) text -> SMS-SUBMIT TPDUs as hex, as a modem takes them after AT+CMGS (SMSC octet ``00``).

For each step and library: one untimed warm-up run over the whole corpus, whose output is what
the correctness column judges, then ``--repeat`` timed runs, round-robin across libraries, on
one pinned core with the garbage collector off. Throughput is reported as the median with the
min-max spread of the runs. A library that raises on a message has that message counted wrong
(every call is wrapped, in timed runs too, so the wrapping costs every library the same).

Correctness is judged by an independent reference checker written below from the
specifications (3GPP TS 23.038 for the alphabet, TS 23.040 for TPDUs and user data headers,
SMPP v3.4 section 4.4.1 for submit_sm); it shares no code with ``gateway``. A message is exactly
right when all its PDUs parse, the parts join (by their concatenation UDH) into exactly the
original text, the encoding is optimal (GSM 7-bit, data_coding / TP-DCS 0, exactly when every
character is in the default alphabet or its extension table, else UCS-2, 8), every part fits
(153 septets / 134 octets beside an 8-bit concatenation UDH, 160 / 140 alone), no part ends
inside an escape pair or a surrogate pair, the concatenation references agree and the sequence
numbers run 1..total, and the addresses and flags asked for are there. Using more parts than
needed is reported as a warning and not counted wrong. The checker tests itself on every run
(on reference-encoded PDUs and a few deliberately broken ones) before judging anyone.
"""

from __future__ import annotations

import argparse
import codecs
import gc
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import platform
import shlex
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = "../shared/bench/corpus.json"  # relative to the repository root
CORPUS_MD5 = "1fdb7d0b380d768c8d6c556b6a3f1cc1"
EXPECTED_SEGMENTS = 21_829

_HEADER = struct.Struct(">IIII")
_SUBMIT_SM = 0x00000004
_UDHI = 0x40
_TON_INTERNATIONAL = 1
_NPI_ISDN = 1
_TOA_INTERNATIONAL = 0x91


class Message(NamedTuple):
    index: int
    text: str
    src: str
    dst: str
    kind: str
    ref: int  # concatenation reference given to the libraries that take one


def load_corpus(path: Path) -> tuple[list[Message], str]:
    raw = path.read_bytes()
    data = json.loads(raw)
    messages = [
        Message(i, m["text"], m["src"], m["dst"], m["kind"], i & 0xFF)
        for i, m in enumerate(data["messages"])
    ]
    return messages, hashlib.md5(raw).hexdigest()


# =============================================================================================
# Reference checker (independent of gateway/)
# =============================================================================================

_ESC = 0x1B

# 3GPP TS 23.038 section 6.2.1, GSM 7-bit default alphabet, as Unicode code points; index =
# septet. 0x1B is the escape to the extension table (-1: no character of its own).
_REF_BASIC_CP: tuple[int, ...] = (
    # 0x00
    0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC,
    0x00F2, 0x00C7, 0x000A, 0x00D8, 0x00F8, 0x000D, 0x00C5, 0x00E5,
    # 0x10
    0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8,
    0x03A3, 0x0398, 0x039E, -1, 0x00C6, 0x00E6, 0x00DF, 0x00C9,
    # 0x20
    0x0020, 0x0021, 0x0022, 0x0023, 0x00A4, 0x0025, 0x0026, 0x0027,
    0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F,
    # 0x30
    0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037,
    0x0038, 0x0039, 0x003A, 0x003B, 0x003C, 0x003D, 0x003E, 0x003F,
    # 0x40
    0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047,
    0x0048, 0x0049, 0x004A, 0x004B, 0x004C, 0x004D, 0x004E, 0x004F,
    # 0x50
    0x0050, 0x0051, 0x0052, 0x0053, 0x0054, 0x0055, 0x0056, 0x0057,
    0x0058, 0x0059, 0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7,
    # 0x60
    0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066, 0x0067,
    0x0068, 0x0069, 0x006A, 0x006B, 0x006C, 0x006D, 0x006E, 0x006F,
    # 0x70
    0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077,
    0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
)  # fmt: skip

# TS 23.038 section 6.2.1.1, the default extension table: code after the escape -> code point.
_REF_EXT_CP: dict[int, int] = {
    0x0A: 0x000C,  # form feed (page break)
    0x14: 0x005E,  # ^
    0x28: 0x007B,  # {
    0x29: 0x007D,  # }
    0x2F: 0x005C,  # backslash
    0x3C: 0x005B,  # [
    0x3D: 0x007E,  # ~
    0x3E: 0x005D,  # ]
    0x40: 0x007C,  # |
    0x65: 0x20AC,  # euro sign
}

REF_BASIC: dict[int, str] = {s: chr(cp) for s, cp in enumerate(_REF_BASIC_CP) if cp >= 0}
REF_EXT: dict[int, str] = {code: chr(cp) for code, cp in _REF_EXT_CP.items()}
REF_ENCODE: dict[str, bytes] = {ch: bytes((code,)) for code, ch in REF_BASIC.items()}
for _code, _ch in REF_EXT.items():
    REF_ENCODE.setdefault(_ch, bytes((_ESC, _code)))
assert len(_REF_BASIC_CP) == 128 and len(REF_BASIC) == 127


class Issue(NamedTuple):
    category: str
    detail: str


class RefError(Exception):
    """A PDU the reference parser cannot read."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.issue = Issue(category, detail)


class Concat(NamedTuple):
    ref: int
    total: int
    seq: int
    bits: int


@dataclass(slots=True)
class Part:
    """One short message as the reference parser read it."""

    coding: int  # 0 GSM 7-bit, 8 UCS-2; anything else is reported as it is
    udh_len: int  # octets of user data header including UDHL; 0 when there is none
    concat: Concat | None
    body: bytes  # unpacked septets for GSM 7-bit, else octets
    where: str  # "part i/n" for messages


def ref_gsm_chunks(text: str) -> list[bytes] | None:
    """Each character's septets (an extension character is two), or None if not representable."""
    enc = REF_ENCODE
    try:
        return [enc[ch] for ch in text]
    except KeyError:
        return None


def ref_split(text: str) -> tuple[int, list[bytes]]:
    """Optimal coding and parts: whole characters, greedily, 160/153 septets or 140/134 octets."""
    chunks = ref_gsm_chunks(text)
    if chunks is not None:
        coding, single, per = 0, 160, 153
    else:
        chunks = [ch.encode("utf-16-be", "surrogatepass") for ch in text]
        coding, single, per = 8, 140, 134
    if sum(map(len, chunks)) <= single:
        return coding, [b"".join(chunks)]
    bodies: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for chunk in chunks:
        if size + len(chunk) > per:
            bodies.append(b"".join(current))
            current, size = [], 0
        current.append(chunk)
        size += len(chunk)
    bodies.append(b"".join(current))
    return coding, bodies


def _parse_ies(udh: bytes, where: str) -> Concat | None:
    """Information elements of a UDH (without its UDHL); the concatenation one, if any."""
    concat = None
    p = 0
    while p < len(udh):
        if p + 2 > len(udh):
            raise RefError("malformed UDH", f"{where}: IE header runs past the UDH")
        iei, length = udh[p], udh[p + 1]
        data = udh[p + 2 : p + 2 + length]
        if len(data) != length:
            raise RefError("malformed UDH", f"{where}: IE 0x{iei:02X} runs past the UDH")
        if iei == 0x00:
            if length != 3:
                raise RefError("malformed UDH", f"{where}: 8-bit concat IE of length {length}")
            concat = Concat(data[0], data[1], data[2], 8)
        elif iei == 0x08:
            if length != 4:
                raise RefError("malformed UDH", f"{where}: 16-bit concat IE of length {length}")
            concat = Concat((data[0] << 8) | data[1], data[2], data[3], 16)
        p += 2 + length
    return concat


def _split_udh(user_data: bytes, where: str) -> tuple[int, Concat | None, bytes]:
    if not user_data:
        raise RefError("malformed UDH", f"{where}: UDHI set but no user data")
    udhl = user_data[0]
    if 1 + udhl > len(user_data):
        raise RefError("malformed UDH", f"{where}: UDHL {udhl} past the user data")
    return 1 + udhl, _parse_ies(user_data[1 : 1 + udhl], where), user_data[1 + udhl :]


class _Cursor:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def octet(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise RefError("malformed PDU", f"ends before {name}")
        self.pos += 1
        return self.data[self.pos - 1]

    def octets(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise RefError("malformed PDU", f"ends inside {name}")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def cstring(self, max_size: int, name: str) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise RefError("malformed PDU", f"{name} has no terminating NUL")
        if end + 1 - self.pos > max_size:
            raise RefError("malformed PDU", f"{name} longer than {max_size} octets")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise RefError("malformed PDU", f"{name} is not ASCII: {raw!r}") from None


def ref_parse_submit_sm(pdu: bytes) -> dict[str, Any]:
    """The fields of one submit_sm (SMPP v3.4 section 4.4.1), read by hand."""
    if not isinstance(pdu, bytes | bytearray):
        raise RefError("malformed PDU", f"a {type(pdu).__name__}, not bytes")
    if len(pdu) < 16:
        raise RefError("malformed PDU", f"{len(pdu)} octets, shorter than a header")
    length, command_id, status, seq = _HEADER.unpack_from(pdu)
    if length != len(pdu):
        raise RefError("malformed PDU", f"command_length {length} but {len(pdu)} octets")
    if command_id != _SUBMIT_SM:
        raise RefError("wrong field", f"command_id 0x{command_id:08X}")
    if status != 0:
        raise RefError("wrong field", f"command_status {status} in a request")
    c = _Cursor(pdu, 16)
    f: dict[str, Any] = {"sequence_number": seq}
    f["service_type"] = c.cstring(6, "service_type")
    f["source_addr_ton"] = c.octet("source_addr_ton")
    f["source_addr_npi"] = c.octet("source_addr_npi")
    f["source_addr"] = c.cstring(21, "source_addr")
    f["dest_addr_ton"] = c.octet("dest_addr_ton")
    f["dest_addr_npi"] = c.octet("dest_addr_npi")
    f["destination_addr"] = c.cstring(21, "destination_addr")
    f["esm_class"] = c.octet("esm_class")
    f["protocol_id"] = c.octet("protocol_id")
    f["priority_flag"] = c.octet("priority_flag")
    f["schedule_delivery_time"] = c.cstring(17, "schedule_delivery_time")
    f["validity_period"] = c.cstring(17, "validity_period")
    f["registered_delivery"] = c.octet("registered_delivery")
    f["replace_if_present_flag"] = c.octet("replace_if_present_flag")
    f["data_coding"] = c.octet("data_coding")
    f["sm_default_msg_id"] = c.octet("sm_default_msg_id")
    sm_length = c.octet("sm_length")
    if sm_length > 254:
        raise RefError("malformed PDU", f"sm_length {sm_length} > 254")
    f["short_message"] = c.octets(sm_length, "short_message")
    tlvs: dict[int, bytes] = {}
    while c.pos < len(pdu):
        tag = int.from_bytes(c.octets(2, "TLV tag"), "big")
        tlvs[tag] = c.octets(int.from_bytes(c.octets(2, "TLV length"), "big"), "TLV value")
    f["tlvs"] = tlvs
    return f


def _decode_gsm(body: bytes, where: str, issues: list[Issue]) -> str:
    out = []
    i, n = 0, len(body)
    while i < n:
        s = body[i]
        if s == _ESC:
            if i + 1 >= n:
                issues.append(Issue("escape split across parts", f"{where} ends with 0x1B"))
                break
            code = body[i + 1]
            ch = REF_EXT.get(code)
            if ch is None:
                issues.append(Issue("bad septet", f"{where}: escape + undefined 0x{code:02X}"))
                ch = REF_BASIC.get(code, "\ufffd")
            out.append(ch)
            i += 2
            continue
        if s > 0x7F:
            issues.append(Issue("bad septet", f"{where}: octet 0x{s:02X} is not a septet"))
            out.append("\ufffd")
        else:
            out.append(REF_BASIC[s])
        i += 1
    return "".join(out)


def _decode_ucs2(body: bytes, where: str, issues: list[Issue]) -> str:
    if len(body) & 1:
        issues.append(Issue("bad UCS-2", f"{where}: odd length {len(body)}"))
    units = struct.unpack(f">{len(body) // 2}H", body[: len(body) & ~1])
    out = []
    i, n = 0, len(units)
    while i < n:
        u = units[i]
        if 0xD800 <= u <= 0xDBFF:
            if i + 1 < n and 0xDC00 <= units[i + 1] <= 0xDFFF:
                out.append(chr(0x10000 + ((u - 0xD800) << 10) + (units[i + 1] - 0xDC00)))
                i += 2
                continue
            if i == n - 1:
                issues.append(Issue("surrogate split across parts", f"{where} ends with U+{u:04X}"))
            else:
                issues.append(Issue("bad UCS-2", f"{where}: lone high surrogate U+{u:04X}"))
            out.append("\ufffd")
        elif 0xDC00 <= u <= 0xDFFF:
            if i == 0:
                issues.append(
                    Issue("surrogate split across parts", f"{where} starts with U+{u:04X}")
                )
            else:
                issues.append(Issue("bad UCS-2", f"{where}: lone low surrogate U+{u:04X}"))
            out.append("\ufffd")
        else:
            out.append(chr(u))
        i += 1
    return "".join(out)


def _first_difference(got: str, want: str) -> str:
    i = next((k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if i is None:
        i = min(len(got), len(want))
    return (
        f"{len(got)} chars vs {len(want)} expected; first difference at {i}: "
        f"got {got[max(0, i - 8) : i + 8]!r}, want {want[max(0, i - 8) : i + 8]!r}"
    )


def ref_check_parts(
    text: str, parts: Sequence[Part], errors: list[Issue], warnings: list[Issue]
) -> None:
    """Message-level checks shared by submit_sm (a) and SMS-SUBMIT (c)."""
    n = len(parts)
    if n == 0:
        errors.append(Issue("no output", "no PDU at all"))
        return
    codings = {p.coding for p in parts}
    coding = parts[0].coding
    if len(codings) > 1:
        errors.append(Issue("non-optimal coding", f"parts disagree: {sorted(codings)}"))
    representable = ref_gsm_chunks(text) is not None
    if coding not in (0, 8):
        what = f"TP-DCS 0x{coding & 0xFF:02X}" if coding > 0xFF else f"data_coding 0x{coding:02X}"
        errors.append(Issue("non-optimal coding", what))
        return
    if coding != (0 if representable else 8):
        errors.append(
            Issue(
                "non-optimal coding",
                f"{'UCS-2' if coding == 8 else 'GSM 7-bit'} for a text "
                f"{'in' if representable else 'not in'} the GSM default alphabet",
            )
        )

    pieces: list[str] = []
    for p in parts:
        if p.coding == 0:
            limit, unit = (1120 - 8 * p.udh_len) // 7, "septets"
        else:
            limit, unit = 140 - p.udh_len, "octets"
        if len(p.body) > limit:
            errors.append(Issue("part over limit", f"{p.where}: {len(p.body)} {unit} > {limit}"))
        if p.coding == 0:
            pieces.append(_decode_gsm(p.body, p.where, errors))
        else:
            pieces.append(_decode_ucs2(p.body, p.where, errors))

    order = list(range(n))
    if n == 1:
        c = parts[0].concat
        if c is not None and (c.total != 1 or c.seq != 1):
            errors.append(Issue("concat UDH wrong", f"single part says {c.seq}/{c.total}"))
        elif c is not None:
            warnings.append(Issue("concat UDH on a single part", "1/1"))
    else:
        concats = [p.concat for p in parts]
        if any(c is None for c in concats):
            missing = [p.where for p in parts if p.concat is None]
            errors.append(Issue("concat UDH wrong", f"no concat IE in {', '.join(missing)}"))
        else:
            cs = [c for c in concats if c is not None]
            if len({(c.ref, c.bits) for c in cs}) != 1:
                errors.append(Issue("concat UDH wrong", f"references differ: {cs}"))
            if {c.total for c in cs} != {n}:
                errors.append(
                    Issue("concat UDH wrong", f"totals {[c.total for c in cs]}, {n} parts")
                )
            if sorted(c.seq for c in cs) != list(range(1, n + 1)):
                errors.append(Issue("concat UDH wrong", f"sequence {[c.seq for c in cs]}"))
            else:
                order = sorted(range(n), key=lambda k: cs[k].seq)
    joined = "".join(pieces[k] for k in order)
    if joined != text:
        errors.append(Issue("text mismatch", _first_difference(joined, text)))
    needed = len(ref_split(text)[1])
    if n > needed:
        warnings.append(Issue("more parts than needed", f"{n} parts, {needed} would do"))


def ref_check_submit_sm(msg: Message, pdus: Any) -> tuple[list[Issue], list[Issue]]:
    """Judge step (a) output for one message: its submit_sm PDUs."""
    errors: list[Issue] = []
    warnings: list[Issue] = []
    if isinstance(pdus, BaseException):
        return [Issue("raised", f"{type(pdus).__name__}: {pdus}"[:300])], warnings
    parts = []
    n = len(pdus)
    for i, pdu in enumerate(pdus):
        where = f"part {i + 1}/{n}"
        try:
            f = ref_parse_submit_sm(pdu)
            sm: bytes = f["short_message"]
            payload = f["tlvs"].get(0x0424)
            if payload is not None:
                if sm:
                    raise RefError("malformed PDU", "short_message and message_payload")
                sm = payload
            wrong = [
                f"{name}={f[name]!r}"
                for name, want in (
                    ("destination_addr", msg.dst),
                    ("dest_addr_ton", _TON_INTERNATIONAL),
                    ("dest_addr_npi", _NPI_ISDN),
                    ("source_addr", msg.src),
                    ("source_addr_ton", _TON_INTERNATIONAL),
                    ("source_addr_npi", _NPI_ISDN),
                    ("registered_delivery", 1),
                )
                if f[name] != want
            ]
            if f["esm_class"] & ~_UDHI:
                wrong.append(f"esm_class=0x{f['esm_class']:02X}")
            if wrong:
                errors.append(Issue("wrong field", f"{where}: {', '.join(wrong)}"))
            if f["esm_class"] & _UDHI:
                udh_len, concat, body = _split_udh(sm, where)
            else:
                udh_len, concat, body = 0, None, sm
            parts.append(Part(f["data_coding"], udh_len, concat, body, where))
        except RefError as exc:
            errors.append(exc.issue)
    if len(parts) == n:
        ref_check_parts(msg.text, parts, errors, warnings)
    return errors, warnings


def _unpack_septets(data: bytes, start_bit: int, count: int) -> bytes:
    x = int.from_bytes(data, "little") >> start_bit
    return bytes((x >> (7 * i)) & 0x7F for i in range(count))


def ref_parse_tpdu(pdu_hex: str, where: str) -> tuple[Part, dict[str, Any]]:
    """One SMS-SUBMIT in the AT PDU form (TS 27.005 section 3.1: SMSC address, then the TPDU
    of TS 23.040 section 9.2.2.2), read by hand."""
    try:
        data = bytes.fromhex(pdu_hex)
    except (TypeError, ValueError):
        raise RefError("malformed PDU", f"{where}: not hex: {pdu_hex!r:.60}") from None
    c = _Cursor(data)
    c.octets(c.octet("SMSC length"), "SMSC address")
    first = c.octet("first octet")
    if first & 0x03 != 0x01:
        raise RefError("malformed PDU", f"{where}: TP-MTI {first & 3} is not SMS-SUBMIT")
    info: dict[str, Any] = {"first": first, "mr": c.octet("TP-MR")}
    digits = c.octet("TP-DA length")
    info["toa"] = c.octet("TP-DA type")
    raw = c.octets((digits + 1) // 2, "TP-DA")
    nibbles = "".join(f"{o & 0x0F:X}{o >> 4:X}" for o in raw)
    if digits & 1 and nibbles[-1] != "F":
        raise RefError("malformed PDU", f"{where}: TP-DA odd filler is {nibbles[-1]}")
    info["da"] = nibbles[:digits]
    info["pid"] = c.octet("TP-PID")
    dcs = c.octet("TP-DCS")
    c.octets((0, 7, 1, 7)[(first >> 3) & 0x03], "TP-VP")
    udl = c.octet("TP-UDL")
    ud = data[c.pos :]
    udhi = first & _UDHI
    coding = 0 if dcs == 0x00 else 8 if dcs == 0x08 else 0x100 | dcs
    if coding == 0:
        if len(ud) != (7 * udl + 7) // 8:
            raise RefError(
                "malformed PDU", f"{where}: TP-UDL {udl} septets but {len(ud)} octets of UD"
            )
        if udhi:
            udh_len, concat, _ = _split_udh(ud, where)
            header_septets = (8 * udh_len + 6) // 7  # the UDH and its fill bits
            if header_septets > udl:
                raise RefError("malformed PDU", f"{where}: UDH longer than TP-UDL")
            body = _unpack_septets(ud, 7 * header_septets, udl - header_septets)
        else:
            udh_len, concat, body = 0, None, _unpack_septets(ud, 0, udl)
    else:
        if len(ud) != udl:
            raise RefError("malformed PDU", f"{where}: TP-UDL {udl} but {len(ud)} octets of UD")
        if udhi:
            udh_len, concat, body = _split_udh(ud, where)
        else:
            udh_len, concat, body = 0, None, ud
    if len(ud) > 140:
        raise RefError("part over limit", f"{where}: {len(ud)} octets of user data")
    return Part(coding, udh_len, concat, body, where), info


def ref_check_tpdus(msg: Message, hexes: Any) -> tuple[list[Issue], list[Issue]]:
    """Judge step (c) output for one message: its SMS-SUBMIT PDUs as hex."""
    errors: list[Issue] = []
    warnings: list[Issue] = []
    if isinstance(hexes, BaseException):
        return [Issue("raised", f"{type(hexes).__name__}: {hexes}"[:300])], warnings
    parts = []
    n = len(hexes)
    for i, h in enumerate(hexes):
        where = f"part {i + 1}/{n}"
        try:
            part, info = ref_parse_tpdu(h, where)
        except RefError as exc:
            errors.append(exc.issue)
            continue
        if info["da"] != msg.dst or info["toa"] != _TOA_INTERNATIONAL:
            errors.append(
                Issue("wrong field", f"{where}: TP-DA {info['da']} type 0x{info['toa']:02X}")
            )
        parts.append(part)
    if len(parts) == n:
        ref_check_parts(msg.text, parts, errors, warnings)
    return errors, warnings


def ref_submit_sm(msg: Message, seq: int, coding: int, bodies: Sequence[bytes]) -> list[bytes]:
    """Reference submit_sm PDUs for given bodies (for the self-test and the floor row)."""
    out = []
    total = len(bodies)
    for i, body in enumerate(bodies):
        udh = bytes((5, 0x00, 3, msg.ref, total, i + 1)) if total > 1 else b""
        sm = udh + body
        fields = b"".join(
            (
                b"\x00\x01\x01",
                msg.src.encode("ascii"),
                b"\x00\x01\x01",
                msg.dst.encode("ascii"),
                b"\x00",
                bytes((_UDHI if udh else 0, 0, 0, 0, 0, 1, 0, coding, 0, len(sm))),
                sm,
            )
        )
        out.append(_HEADER.pack(16 + len(fields), _SUBMIT_SM, 0, seq + i) + fields)
    return out


def ref_tpdus(
    msg: Message, coding: int, bodies: Sequence[bytes], *, fill: bool = True
) -> list[str]:
    """Reference SMS-SUBMIT PDUs as hex (for the self-test)."""
    out = []
    total = len(bodies)
    da = msg.dst + ("F" if len(msg.dst) & 1 else "")
    da_octets = bytes(int(da[k + 1] + da[k], 16) for k in range(0, len(da), 2))
    for i, body in enumerate(bodies):
        udh = bytes((5, 0x00, 3, msg.ref, total, i + 1)) if total > 1 else b""
        first = 0x01 | 0x20 | (_UDHI if udh else 0)
        if coding == 0:
            header_septets = (8 * len(udh) + 6) // 7
            # fill=False is a classic bug for the self-test: text packed right after the UDH.
            start = 7 * header_septets if fill else 8 * len(udh)
            x = int.from_bytes(udh, "little")
            for k, s in enumerate(body):
                x |= s << (start + 7 * k)
            udl = header_septets + len(body)
            ud = x.to_bytes((start + 7 * len(body) + 7) // 8, "little")
            ud += bytes((7 * udl + 7) // 8 - len(ud))
        else:
            ud = udh + body
            udl = len(ud)
        tpdu = bytes((first, 0, len(msg.dst), _TOA_INTERNATIONAL)) + da_octets
        out.append((b"\x00" + tpdu + bytes((0, coding, udl)) + ud).hex().upper())
    return out


def ref_self_test(messages: Sequence[Message]) -> tuple[bool, str]:
    """The checker must pass reference output and catch deliberately broken output."""
    problems = []
    segments = 0
    right_a = right_c = 0
    for m in messages:
        coding, bodies = ref_split(m.text)
        segments += len(bodies)
        errors, _ = ref_check_submit_sm(m, ref_submit_sm(m, 1, coding, bodies))
        right_a += not errors
        errors, _ = ref_check_tpdus(m, ref_tpdus(m, coding, bodies))
        right_c += not errors
    n = len(messages)
    if right_a != n or right_c != n:
        problems.append(f"reference output judged wrong: (a) {n - right_a}, (c) {n - right_c}")
    if n == 10_000 and segments != EXPECTED_SEGMENTS:
        problems.append(f"reference segmentation makes {segments} segments, not 21,829")

    def naive(coding: int, text: str, per: int) -> list[bytes]:
        body = b"".join(ref_gsm_chunks(text) or []) if coding == 0 else text.encode("utf-16-be")
        return [body[k : k + per] for k in range(0, len(body), per)]

    def gsm_escape_on_boundary(m: Message) -> bool:
        chunks = ref_gsm_chunks(m.text)
        return chunks is not None and b"".join(chunks)[152:153] == b"\x1b"

    def ucs2_surrogate_on_boundary(m: Message) -> bool:
        units = m.text.encode("utf-16-be")
        return ref_gsm_chunks(m.text) is None and len(units) > 140 and 0xD8 <= units[132] <= 0xDB

    esc = next((m for m in messages if gsm_escape_on_boundary(m)), None)
    sur = next((m for m in messages if ucs2_surrogate_on_boundary(m)), None)
    gsm = next((m for m in messages if ref_gsm_chunks(m.text) is not None), None)
    # (what is broken, the issue the checker must report, what it reported)
    faults: list[tuple[str, str, list[Issue]]] = []
    if esc is not None:
        split = naive(0, esc.text, 153)
        no_fill = ref_tpdus(esc, 0, ref_split(esc.text)[1], fill=False)
        faults += [
            (
                "escape split",
                "escape split across parts",
                ref_check_submit_sm(esc, ref_submit_sm(esc, 1, 0, split))[0],
            ),
            (
                "TPDU escape split",
                "escape split across parts",
                ref_check_tpdus(esc, ref_tpdus(esc, 0, split))[0],
            ),
            ("TPDU without fill bits", "text mismatch", ref_check_tpdus(esc, no_fill)[0]),
        ]
    if sur is not None:
        split = naive(8, sur.text, 134)
        faults.append(
            (
                "surrogate split",
                "surrogate split across parts",
                ref_check_submit_sm(sur, ref_submit_sm(sur, 1, 8, split))[0],
            )
        )
    if gsm is not None:
        as_ucs2 = ref_submit_sm(gsm, 1, 8, [gsm.text.encode("utf-16-be")])
        right = ref_submit_sm(gsm, 1, *ref_split(gsm.text))
        faults += [
            ("UCS-2 for GSM text", "non-optimal coding", ref_check_submit_sm(gsm, as_ucs2)[0]),
            (
                "wrong destination",
                "wrong field",
                ref_check_submit_sm(gsm._replace(dst=gsm.dst + "1"), right)[0],
            ),
        ]
    caught = 0
    for name, want, errors in faults:
        if any(e.category == want for e in errors):
            caught += 1
        else:
            problems.append(f"broken output not caught: {name} (got {errors})")
    problems.extend(_cross_check_table())
    summary = (
        f"reference output {right_a:,}/{n:,} (a) and {right_c:,}/{n:,} (c) right, "
        f"{segments:,} segments; {caught}/{len(faults)} deliberate faults caught"
    )
    if problems:
        return False, summary + "\n  PROBLEMS: " + "\n  PROBLEMS: ".join(problems)
    return True, summary


def _cross_check_table() -> list[str]:
    """Compare the reference alphabet with a second transcription (aiosmpplib's, if present)."""
    try:
        mod = importlib.import_module("aiosmpplib.codec")
    except Exception:
        return []
    basic: dict[int, str] = mod.GSM_BASIC_DECODE_MAP
    ext: dict[int, str] = mod.GSM_EXTENDED_DECODE_MAP
    diffs = [f"basic 0x{k:02X}" for k in range(128) if k != _ESC and REF_BASIC[k] != basic.get(k)]
    diffs += [f"ext 0x{k:02X}" for k, ch in REF_EXT.items() if ext.get(k) != ch]
    return [f"reference table differs from aiosmpplib's at {', '.join(diffs)}"] if diffs else []


# =============================================================================================
# Glue shared by the decoders that give no text (smpplib, smpp34): strip the UDH, decode per
# data_coding. Same code for both, so their rows compare fairly; the GSM table is theirs where
# they have one.
# =============================================================================================


def make_text_glue(basic: str, ext: dict[int, str]) -> Callable[[bytes, int, int], str]:
    if len(basic) != 128:
        raise ValueError("basic table must have 128 entries")
    ext_table = "".join(ext.get(c, "\ufffd") for c in range(128))
    charmap_decode = codecs.charmap_decode

    def gsm(septets: bytes) -> str:
        if _ESC not in septets:
            return charmap_decode(septets, "strict", basic)[0]
        head, *rest = septets.split(b"\x1b")
        out = [charmap_decode(head, "strict", basic)[0]]
        for chunk in rest:
            if not chunk:
                raise ValueError("escape without a code")
            out.append(ext_table[chunk[0]])
            out.append(charmap_decode(chunk[1:], "strict", basic)[0])
        return "".join(out)

    def text(sm: bytes, esm_class: int, data_coding: int) -> str:
        if esm_class & _UDHI:
            sm = sm[sm[0] + 1 :]
        if data_coding == 8:
            return sm.decode("utf-16-be")
        if data_coding == 0:
            return gsm(sm)
        raise ValueError(f"data_coding {data_coding}")

    return text


def _ref_glue() -> Callable[[bytes, int, int], str]:
    basic = "".join(REF_BASIC.get(s, "\ufffe") for s in range(128))
    return make_text_glue(basic, REF_EXT)


# =============================================================================================
# Adapters: one small function per library and step. Each imports its library (so a missing
# one becomes a row with the error) and returns the per-message callable that gets timed.
#   (a) fn(text, src, dst, ref, seq) -> list[bytes]   complete submit_sm PDUs
#   (b) fn(pdu) -> str                                 the part's text
#   (c) fn(text, "+" dst, ref) -> list[str]            SMS-SUBMIT PDUs as hex
# =============================================================================================

_mod = importlib.import_module


def a_smsgw(_messages: Sequence[Message]) -> Callable[..., list[bytes]]:
    # One SmBuilder per link's settings, built once, as the gateway's upstream driver keeps it;
    # build_text is segment() + build() in one pass (the tests hold the two byte-identical).
    builder = _mod("gateway.smpp.message").SmBuilder(
        source_addr_ton=1,
        source_addr_npi=1,
        dest_addr_ton=1,
        dest_addr_npi=1,
        registered_delivery=1,
    )
    build_text = builder.build_text

    def encode(text: str, src: str, dst: str, ref: int, seq: int) -> list[bytes]:
        return build_text(text, src, dst, range(seq, seq + 255), ref=ref)

    return encode


def a_smpplib(_messages: Sequence[Message]) -> Callable[..., list[bytes]]:
    # What smpplib's README does: gsm.make_parts, then client.send_message per part, which is
    # smpp.make_pdu("submit_sm", client=self, ...) and pdu.generate(); the client is only asked
    # for sequence numbers, so its sequence generator stands in for it.
    make_parts = _mod("smpplib.gsm").make_parts
    make_pdu = _mod("smpplib.smpp").make_pdu
    sequencer = _mod("smpplib.client").SimpleSequenceGenerator()

    def encode(text: str, src: str, dst: str, ref: int, seq: int) -> list[bytes]:
        parts, data_coding, esm_class = make_parts(text)
        return [
            make_pdu(
                "submit_sm",
                client=sequencer,
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=src,
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=dst,
                short_message=part,
                data_coding=data_coding,
                esm_class=esm_class,
                registered_delivery=1,
            ).generate()
            for part in parts
        ]

    return encode


def a_aiosmpplib(_messages: Sequence[Message]) -> Callable[..., list[bytes]]:
    # ESME._dequeue_messages without the socket: a SubmitSm with auto_message_payload=False
    # and the UDHI flag asks for UDH concatenation; detect_format + split_sms_udh cut it, each
    # part is a clone with the encoded part and the SAR TLVs ESME appends (pdu() drops them
    # again because UDHI is set), and pdu() builds the bytes.
    protocol = _mod("aiosmpplib.protocol")
    state = _mod("aiosmpplib.state")
    utils = _mod("aiosmpplib.utils")
    SubmitSm, PhoneNumber, OptionalParam = protocol.SubmitSm, state.PhoneNumber, state.OptionalParam
    ton, npi = state.TON.INTERNATIONAL, state.NPI.ISDN
    sar_ref, sar_seq, sar_total = (
        state.SAR_MSG_REF_NUM,
        state.SAR_SEGMENT_SEQNUM,
        state.SAR_TOTAL_SEGMENTS,
    )
    detect_format, split_sms_udh = utils.detect_format, utils.split_sms_udh

    def encode(text: str, src: str, dst: str, ref: int, seq: int) -> list[bytes]:
        msg = SubmitSm(
            short_message=text,
            source=PhoneNumber(src, ton, npi),
            destination=PhoneNumber(dst, ton, npi),
            esm_class=_UDHI,
            registered_delivery=1,
            auto_message_payload=False,
        )
        msg.set_encoding_info("gsm0338", None)
        encoding = detect_format(text)
        parts = split_sms_udh(text, encoding, ref)
        if len(parts) == 1:
            msg.esm_class &= ~_UDHI
            msg.sequence_num = seq
            return [msg.pdu()]
        msg.encoding = encoding
        out = []
        for i, part in enumerate(parts):
            piece = msg.clone()
            piece.set_encoded_message(part)
            piece.optional_params.append(OptionalParam(sar_ref, ref))
            piece.optional_params.append(OptionalParam(sar_seq, i + 1))
            piece.optional_params.append(OptionalParam(sar_total, len(parts)))
            piece.sequence_num = seq + i
            out.append(piece.pdu())
        return out

    return encode


def a_rusmppyc_smpp34(_messages: Sequence[Message]) -> Callable[..., list[bytes]]:
    # rusmppyc segments (Client.submit_sm_multipart, a classmethod that needs no connection)
    # but exposes no byte encoder to Python; smpp34 encodes but has no text coding or
    # segmentation. Together they do the step: GSM 7-bit first, UCS-2 when that raises.
    # max_short_message_size counts UDH + unpacked septets: 159 gives 153-septet parts, but
    # also cuts a 160-septet text in two, so that case is redone with 160.
    rz = _mod("rusmppyc")
    SubmitSm = _mod("smpp34").SubmitSm
    multipart = rz.Client.submit_sm_multipart
    gsm = rz.Encoder.Gsm7BitUnpacked(rz.Gsm7BitUnpacked())
    ucs2 = rz.Encoder.Ucs2(rz.Ucs2())
    rz_error = rz.exceptions.RusmppycException

    def encode(text: str, src: str, dst: str, ref: int, seq: int) -> list[bytes]:
        try:
            parts = multipart(text, max_short_message_size=159, reference=ref, encoder=gsm)
            data_coding = 0
            if len(parts) == 2 and len(parts[0].short_message) + len(parts[1].short_message) <= 172:
                parts = multipart(text, max_short_message_size=160, reference=ref, encoder=gsm)
        except rz_error:
            parts = multipart(text, max_short_message_size=140, reference=ref, encoder=ucs2)
            data_coding = 8
        esm_class = _UDHI if len(parts) > 1 else 0
        return [
            SubmitSm(
                src,
                dst,
                bytes(part.short_message),
                source_addr_ton=1,
                source_addr_npi=1,
                dest_addr_ton=1,
                dest_addr_npi=1,
                esm_class=esm_class,
                registered_delivery=1,
                data_coding=data_coding,
                sequence_number=seq + i,
            ).encode()
            for i, part in enumerate(parts)
        ]

    return encode


def a_floor(messages: Sequence[Message]) -> Callable[..., list[bytes]]:
    # Not a library: everything but the header pre-encoded (by the reference encoder), so a
    # run is one struct.pack and one concatenation per part plus the harness's own overhead.
    pack = _HEADER.pack
    pre: dict[tuple[str, str, str], list[tuple[int, bytes]]] = {}
    for m in messages:
        pdus = ref_submit_sm(m, 0, *ref_split(m.text))
        pre[m.text, m.src, m.dst] = [(len(p), p[16:]) for p in pdus]

    def encode(text: str, src: str, dst: str, ref: int, seq: int) -> list[bytes]:
        return [
            pack(n, _SUBMIT_SM, 0, seq + i) + body
            for i, (n, body) in enumerate(pre[text, src, dst])
        ]

    return encode


def b_smsgw(_messages: Sequence[Message]) -> Callable[[bytes], str]:
    decode_pdu = _mod("gateway.smpp.codec").decode_pdu
    pdu_text = _mod("gateway.smpp.message").pdu_text

    def decode(pdu: bytes) -> str:
        return pdu_text(decode_pdu(pdu))

    return decode


def b_smpplib(_messages: Sequence[Message]) -> Callable[[bytes], str]:
    # smpp.parse_pdu as smpplib's client calls it (client=..., for the sequence counter a
    # command asks for on construction); text by the shared glue with smpplib's GSM table.
    parse_pdu = _mod("smpplib.smpp").parse_pdu
    sequencer = _mod("smpplib.client").SimpleSequenceGenerator()
    table: str = _mod("smpplib.gsm").GSM_CHARACTER_TABLE
    glue = make_text_glue(table[:128], {c: ch for c, ch in enumerate(table[128:]) if ch != "`"})

    def decode(pdu: bytes) -> str:
        p = parse_pdu(pdu, client=sequencer)
        return glue(p.short_message, p.esm_class, p.data_coding)

    return decode


def b_aiosmpplib(_messages: Sequence[Message]) -> Callable[[bytes], str]:
    # What ESME._handle_request does with a PDU read off the socket.
    protocol = _mod("aiosmpplib.protocol")
    from_pdu, parse_header = protocol.SubmitSm.from_pdu, protocol.SmppMessage.parse_header

    def decode(pdu: bytes) -> str:
        return from_pdu(pdu, parse_header(pdu), "gsm0338").short_message

    return decode


def b_smpp34(_messages: Sequence[Message]) -> Callable[[bytes], str]:
    # smpp34.decode gives an object whose getters build each Python value on access; reading
    # every field once is what "bytes -> fields" means for the others (smsgw and smpplib build
    # all of them eagerly). Text by the shared glue with the reference GSM table.
    decode_pdu = _mod("smpp34").decode
    glue = _ref_glue()

    def decode(pdu: bytes) -> str:
        p = decode_pdu(pdu)
        _fields = (
            p.sequence_number,
            p.service_type,
            p.source_addr_ton,
            p.source_addr_npi,
            p.source_addr,
            p.dest_addr_ton,
            p.dest_addr_npi,
            p.destination_addr,
            p.protocol_id,
            p.priority_flag,
            p.schedule_delivery_time,
            p.validity_period,
            p.registered_delivery,
            p.replace_if_present_flag,
            p.sm_default_msg_id,
            p.tlvs,
        )
        return glue(p.short_message, p.esm_class, p.data_coding)

    return decode


def c_smsgw(_messages: Sequence[Message]) -> Callable[..., list[str]]:
    try:
        submit_tpdus = _mod("gateway.sms.tpdu").submit_tpdus
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(f"gateway.sms.tpdu.submit_tpdus is not available yet ({exc})") from None

    def encode(text: str, number: str, ref: int) -> list[str]:
        return [t.hex for t in submit_tpdus(text, number, ref=ref, status_report=True)]

    return encode


def c_gsmmodem(_messages: Sequence[Message]) -> Callable[..., list[str]]:
    # encodeSmsSubmitPdu uses `reference` for both TP-MR and the concatenation reference;
    # str(Pdu) is the upper-case hex AT+CMGS takes.
    encode_submit = _mod("gsmmodem.pdu").encodeSmsSubmitPdu

    def encode(text: str, number: str, ref: int) -> list[str]:
        return [
            str(p) for p in encode_submit(number, text, reference=ref, requestStatusReport=True)
        ]

    return encode


COMPILED_DIR = REPO_ROOT / "build" / "compiled"  # scripts/build-compiled's default
_remote_options: dict[str, Any] = {"dir": COMPILED_DIR, "build": True, "clock": "wall"}


class RemoteError(Exception):
    """An exception a library raised in the child process, by name (it may not unpickle)."""


class Remote:
    """A library that runs in a child process of its own: smsgw's compiled build, whose
    extension modules carry the same names as the pure modules this process has imported.

    The child is this script with --serve, on a path that starts with the compiled tree; it
    builds the same adapter and runs the same loop and timing code as this process does, on
    the same core (it inherits the affinity), and sends back the outputs of the judged run and
    the CPU or wall time of each timed one.
    """

    def __init__(self, adapter: str) -> None:
        tree: Path = _remote_options["dir"]
        if _remote_options["build"]:
            _build_compiled(tree)
        if not list(tree.glob("gateway/**/*.so")):
            raise RuntimeError(f"no compiled build in {tree} (run scripts/build-compiled)")
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._call("adapter", adapter, _remote_options["clock"])

    def _call(self, *request: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        pickle.dump(request, self.proc.stdin)
        self.proc.stdin.flush()
        status, value = pickle.load(self.proc.stdout)
        if status != "ok":
            raise RuntimeError(value)
        return value

    def run(self, work: Any) -> list[Any]:
        """The judged run (the work is sent once, here)."""
        out: list[Any] = self._call("run", work)
        return out

    def time(self) -> int:
        ns: int = self._call("time")
        return ns

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def _build_compiled(tree: Path) -> None:
    """scripts/build-compiled's build() (a no-op when the tree is current)."""
    from importlib.machinery import SourceFileLoader  # noqa: PLC0415
    from importlib.util import module_from_spec, spec_from_loader  # noqa: PLC0415

    path = REPO_ROOT / "scripts" / "build-compiled"
    loader = SourceFileLoader("smsgw_build_compiled", str(path))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    module.build(tree)


def serve() -> int:
    """The child side of `Remote`: requests in on stdin, pickled answers out on stdout."""
    channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the channel
    fn: Any = None
    loop: Any = None
    work: Any = None
    clock = CLOCKS["wall"]
    while True:
        try:
            request = pickle.load(channel_in)
        except EOFError:
            return 0
        try:
            if request[0] == "adapter":
                name, clock_name = request[1], request[2]
                fn = globals()[name]([])
                loop = {"a": loop_a, "b": loop_b, "c": loop_c}[name[0]]
                clock = CLOCKS[clock_name]
                _check_compiled()
                answer: Any = None
            elif request[0] == "run":
                work = request[1]
                answer = [
                    RemoteError(f"{type(o).__name__}: {o}") if isinstance(o, Exception) else o
                    for o in loop(fn, work)
                ]
            else:
                answer = _time_once(loop, fn, work, clock)
            reply: tuple[str, Any] = ("ok", answer)
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}"[:300])
        pickle.dump(reply, channel_out)
        channel_out.flush()


def _check_compiled() -> None:
    """Every module setup.py compiles is an extension module here."""
    spec = importlib.util.spec_from_file_location("smsgw_setup", REPO_ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    for path in setup.COMPILED:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        if not str(module.__file__).endswith(".so"):
            raise RuntimeError(f"{module.__name__} is not compiled here: {module.__file__}")


def _remote(adapter: str) -> Callable[[Sequence[Message]], Remote]:
    def factory(_messages: Sequence[Message]) -> Remote:
        return Remote(adapter)

    return factory


class Lib(NamedTuple):
    keys: frozenset[str]  # names --libs accepts
    label: str
    dists: tuple[str, ...]  # distributions whose versions go in the label
    factory: Callable[[Sequence[Message]], Callable[..., Any]]
    note: str = ""


def _lib(keys: str, label: str, dists: str, factory: Any, note: str = "") -> Lib:
    return Lib(frozenset(keys.split()), label, tuple(dists.split()), factory, note)


_COMPILED_NOTE = (
    "The same adapter and code as the smsgw row, with the modules setup.py lists compiled by "
    "mypyc (scripts/build-compiled, into build/compiled/), run in a child process on the same "
    "core, round-robin with the others; it times its own loop with the same clock."
)

STEPS: dict[str, tuple[str, str, list[Lib]]] = {
    "a": (
        "text → coding → segments → complete submit_sm bytes",
        "smpplib",
        [
            _lib(
                "smsgw",
                "smsgw",
                "smsgw",
                a_smsgw,
                "SmBuilder(...) made once per link settings, then build_text(text, src, dst, "
                "sequence_numbers, ref=ref): segment() and build() in one pass.",
            ),
            _lib(
                "smsgw-compiled compiled",
                "smsgw compiled",
                "smsgw",
                _remote("a_smsgw"),
                _COMPILED_NOTE,
            ),
            _lib(
                "smpplib",
                "smpplib",
                "smpplib",
                a_smpplib,
                "gsm.make_parts + smpp.make_pdu('submit_sm', client=<sequence generator>)"
                ".generate() per part, as client.send_message does without the socket; "
                "make_parts picks its own random concatenation reference.",
            ),
            _lib(
                "aiosmpplib",
                "aiosmpplib",
                "aiosmpplib",
                a_aiosmpplib,
                "ESME._dequeue_messages' path without the socket: SubmitSm(esm_class=UDHI, "
                "auto_message_payload=False), utils.detect_format + split_sms_udh(text, "
                "encoding, ref), clone() + set_encoded_message + SAR OptionalParams per part, "
                "pdu(). (With the default auto_message_payload=True it does not segment at "
                "all: a long text goes whole into message_payload.)",
            ),
            _lib(
                "rusmppyc smpp34 rusmppyc+smpp34",
                "rusmppyc + smpp34",
                "rusmppyc smpp34",
                a_rusmppyc_smpp34,
                "Neither does the step alone: rusmppyc segments and encodes text "
                "(Client.submit_sm_multipart, no connection needed) but exposes no PDU bytes "
                "to Python; smpp34 builds PDU bytes (SubmitSm(...).encode()) but has no text "
                "coding or segmentation. Encoder.Gsm7BitUnpacked first, Encoder.Ucs2 when it "
                "raises; max_short_message_size 159 (153 septets beside the UDH; 160 when the "
                "text is exactly 160 septets) and 140 for UCS-2. Its Ucs2 encoder is strict "
                "UCS-2: no characters outside the BMP.",
            ),
            _lib(
                "floor",
                "floor: struct.pack + concatenation",
                "",
                a_floor,
                "Not a library: bodies pre-encoded by the reference encoder, only the header "
                "pack and one concatenation per part are timed, plus a dict lookup and the "
                "harness's per-message call and try (which every row pays). Its correctness "
                "column checks the checker.",
            ),
        ],
    ),
    "b": (
        "submit_sm bytes (smsgw's, from (a)) → fields and text",
        "smpplib",
        [
            _lib(
                "smsgw",
                "smsgw",
                "smsgw",
                b_smsgw,
                "decode_pdu(pdu) builds every field eagerly; pdu_text(pdu) is "
                "message_content(pdu).text() without the intermediate object for plain UDH.",
            ),
            _lib(
                "smsgw-compiled compiled",
                "smsgw compiled",
                "smsgw",
                _remote("b_smsgw"),
                _COMPILED_NOTE,
            ),
            _lib(
                "smpplib",
                "smpplib",
                "smpplib",
                b_smpplib,
                "smpp.parse_pdu(pdu, client=<sequence generator>); smpplib decodes no text, so "
                "the bench's glue strips the UDH and decodes with smpplib's own GSM table "
                "(UTF-16BE for data_coding 8).",
            ),
            _lib(
                "aiosmpplib",
                "aiosmpplib",
                "aiosmpplib",
                b_aiosmpplib,
                "SubmitSm.from_pdu(pdu, SmppMessage.parse_header(pdu), 'gsm0338')"
                ".short_message, as ESME._handle_request does.",
            ),
            _lib(
                "smpp34",
                "smpp34",
                "smpp34",
                b_smpp34,
                "smpp34.decode(pdu), then every field read once (its getters build each "
                "Python value on access; smsgw and smpplib build all fields eagerly); smpp34 "
                "decodes no text and has no GSM table, so the same glue as smpplib's row with "
                "the reference table. rusmppyc has no row: it exposes no byte-level decoder "
                "to Python.",
            ),
        ],
    ),
    "c": (
        "text → SMS-SUBMIT TPDU hex parts",
        "gsmmodem",
        [
            _lib("smsgw", "smsgw", "smsgw", c_smsgw),
            _lib(
                "smsgw-compiled compiled",
                "smsgw compiled",
                "smsgw",
                _remote("c_smsgw"),
                _COMPILED_NOTE,
            ),
            _lib(
                "gsmmodem python-gsmmodem-new",
                "python-gsmmodem-new",
                "python-gsmmodem-new",
                c_gsmmodem,
                "gsmmodem.pdu.encodeSmsSubmitPdu('+' + dst, text, reference=ref, "
                "requestStatusReport=True); str() of each Pdu. The SMPP libraries build no "
                "TPDUs.",
            ),
        ],
    ),
}


# =============================================================================================
# Harness
# =============================================================================================


def loop_a(fn: Callable[..., list[bytes]], work: Sequence[tuple[str, str, str, int]]) -> list[Any]:
    out: list[Any] = []
    append = out.append
    seq = 1
    for text, src, dst, ref in work:
        try:
            pdus = fn(text, src, dst, ref, seq)
        except Exception as exc:
            append(exc)
            continue
        seq += len(pdus)
        append(pdus)
    return out


def loop_b(fn: Callable[[bytes], str], work: Sequence[bytes]) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for pdu in work:
        try:
            append(fn(pdu))
        except Exception as exc:
            append(exc)
    return out


def loop_c(fn: Callable[..., list[str]], work: Sequence[tuple[str, str, int]]) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for text, number, ref in work:
        try:
            append(fn(text, number, ref))
        except Exception as exc:
            append(exc)
    return out


@dataclass
class Row:
    step: str
    keys: frozenset[str]
    label: str
    note: str
    error: str | None = None
    fn: Callable[..., Any] | None = None
    runs_ns: list[int] = field(default_factory=list)
    segments: int = 0
    right: int | None = None
    failures: Counter[str] = field(default_factory=Counter)
    failure_kinds: dict[str, Counter[str]] = field(default_factory=dict)
    warnings: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    wrong: list[dict[str, Any]] = field(default_factory=list)

    def rates(self, count: int) -> list[float]:
        return [count * 1e9 / ns for ns in self.runs_ns]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _label(lib: Lib) -> str:
    if not lib.dists:
        return lib.label
    versions = [_version(d) for d in lib.dists]
    if len(lib.dists) == 1:
        return f"{lib.label} {versions[0]}"
    return " + ".join(f"{d} {v}" for d, v in zip(lib.dists, versions, strict=True))


CLOCKS: dict[str, Callable[[], int]] = {
    "wall": time.perf_counter_ns,
    # CPU time of this process: what a busy machine's other processes cannot inflate (they
    # still share caches). Every library here runs in the calling thread.
    "cpu": time.process_time_ns,
}


def _time_once(
    loop: Callable[[Any, Any], list[Any]], fn: Any, work: Any, clock: Callable[[], int]
) -> int:
    gc.collect()
    gc.disable()
    try:
        t0 = clock()
        out = loop(fn, work)
        t1 = clock()
    finally:
        gc.enable()
    del out
    return t1 - t0


def _judge(
    row: Row,
    messages: Sequence[Message],
    per_message: Sequence[Any],
    check: Callable[[Message, Any], tuple[list[Issue], list[Issue]]],
    examples: int,
) -> None:
    right = 0
    per_category: dict[str, int] = Counter()
    for m, out in zip(messages, per_message, strict=True):
        errors, warnings = check(m, out)
        for w in {w.category for w in warnings}:
            row.warnings[w] += 1
        if not errors:
            right += 1
            continue
        # Each wrong message is counted once, under its most basic cause ("text mismatch" is
        # usually the consequence of a split pair, say); every issue is kept in the records.
        cat = min((e.category for e in errors), key=_cause_rank)
        row.failures[cat] += 1
        row.failure_kinds.setdefault(cat, Counter())[m.kind] += 1
        record = _failure_record(m, errors, cat)
        per_category[cat] += 1
        if per_category[cat] <= examples:
            row.examples.append(record)
        row.wrong.append(record)
    row.right = right


_CAUSE_ORDER = [
    "raised",
    "no output",
    "malformed PDU",
    "malformed UDH",
    "wrong field",
    "non-optimal coding",
    "part over limit",
    "escape split across parts",
    "surrogate split across parts",
    "bad septet",
    "bad UCS-2",
    "concat UDH wrong",
    "text mismatch",
]


def _cause_rank(category: str) -> int:
    return _CAUSE_ORDER.index(category) if category in _CAUSE_ORDER else len(_CAUSE_ORDER)


def _failure_record(m: Message, errors: Sequence[Issue], category: str) -> dict[str, Any]:
    return {
        "index": m.index,
        "kind": m.kind,
        "category": category,
        "text": m.text,
        "issues": [f"{e.category}: {e.detail}" for e in errors],
    }


def check_b(m: Message, texts: Any) -> tuple[list[Issue], list[Issue]]:
    """(b) is judged per message: the parts' texts, joined in order, against the original."""
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        return [Issue("raised", f"{type(bad[0]).__name__}: {bad[0]}"[:300])], []
    joined = "".join(texts)
    if joined != m.text:
        return [Issue("text mismatch", _first_difference(joined, m.text))], []
    return [], []


def run_step(
    step: str,
    messages: Sequence[Message],
    *,
    wanted: set[str] | None,
    repeat: int,
    clock: Callable[[], int],
    examples: int,
    b_input: tuple[list[bytes], list[int]] | None,
) -> list[Row]:
    libs = STEPS[step][2]
    rows = []
    for lib in libs:
        if wanted is not None and not (lib.keys & wanted):
            continue
        row = Row(step, lib.keys, _label(lib), lib.note)
        try:
            row.fn = lib.factory(messages)
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(row)

    if step == "a":
        loop: Callable[[Any, Any], list[Any]] = loop_a
        work: Any = [(m.text, m.src, m.dst, m.ref) for m in messages]
    elif step == "b":
        loop = loop_b
        assert b_input is not None
        work = b_input[0]
    else:
        loop = loop_c
        work = [(m.text, "+" + m.dst, m.ref) for m in messages]

    # Warm-up run, which is also the one judged.
    for row in rows:
        if row.error:
            continue
        try:
            out = row.fn.run(work) if isinstance(row.fn, Remote) else loop(row.fn, work)
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}"[:200]
            continue
        raised = [o for o in out if isinstance(o, Exception)]
        if len(raised) == len(out):
            row.error = f"raised on every input, e.g. {type(raised[0]).__name__}: {raised[0]}"
            row.error = row.error[:200]
            continue
        if step == "b":
            assert b_input is not None
            counts = b_input[1]
            row.segments = len(out)
            grouped, k = [], 0
            for c in counts:
                grouped.append(out[k : k + c])
                k += c
            _judge(row, messages, grouped, check_b, examples)
        else:
            row.segments = sum(len(o) for o in out if not isinstance(o, Exception))
            _judge(
                row,
                messages,
                out,
                ref_check_submit_sm if step == "a" else ref_check_tpdus,
                examples,
            )

    # Timed runs, round-robin so that drift in machine load spreads over every library.
    live = [r for r in rows if not r.error]
    for _ in range(repeat):
        for row in live:
            if isinstance(row.fn, Remote):
                if row.error:
                    continue
                try:
                    row.runs_ns.append(row.fn.time())
                except Exception as exc:  # the child died: the row says so, the others go on
                    row.error = f"{type(exc).__name__}: {exc}"[:200]
                    row.runs_ns.clear()
            else:
                row.runs_ns.append(_time_once(loop, row.fn, work, clock))
    for row in rows:
        if isinstance(row.fn, Remote):
            row.fn.close()
        row.fn = None
    return rows


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def _git_revision() -> str:
    """The repository's commit, and whether gateway/ has changes on top (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "gateway"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"commit {head}" + (" with uncommitted changes in gateway/" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render_step(step: str, rows: Sequence[Row], n: int, footnotes: list[str]) -> str:
    title, baseline_key, _libs = STEPS[step]
    base = next((r for r in rows if baseline_key in r.keys and r.runs_ns), None)
    base_rate = statistics.median(base.rates(n)) if base else None
    base_name = base.label.split(" ")[0] if base else baseline_key
    unit = "PDUs/s" if step == "b" else "segments/s"
    lines = [
        f"### ({step}) {title}",
        "",
        f"| library | messages/s (median) [min–max] | {unit} | × {base_name} "
        f"| exactly right /{n:,} |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        mark = ""
        if row.note:
            if row.note not in footnotes:
                footnotes.append(row.note)
            mark = f" [{footnotes.index(row.note) + 1}]"
        if row.error:
            lines.append(f"| {row.label}{mark} | – | – | – | error: {row.error} |")
            continue
        rates = row.rates(n)
        med = statistics.median(rates)
        seg_rate = statistics.median(row.rates(row.segments))
        ratio = f"{med / base_rate:.2f}" if base_rate else "–"
        lines.append(
            f"| {row.label}{mark} | {_fmt(med)} [{_fmt(min(rates))}–{_fmt(max(rates))}] "
            f"| {_fmt(seg_rate)} | {ratio} | {row.right:,} |"
        )
    return "\n".join(lines)


def render_failures(rows: Sequence[Row], n: int, show: int) -> str:
    out = []
    for row in rows:
        if row.error or (row.right == n and not row.warnings):
            continue
        head = f"- {row.label}: {n - (row.right or 0):,} wrong"
        reasons = [
            f"{count:,} {cat} ("
            + ", ".join(f"{k} {v:,}" for k, v in row.failure_kinds[cat].most_common())
            + ")"
            for cat, count in row.failures.most_common()
        ]
        if reasons:
            head += ": " + "; ".join(reasons)
        if row.warnings:
            head += ". Not counted wrong: " + "; ".join(
                f"{c:,} {w}" for w, c in row.warnings.most_common()
            )
        out.append(head)
        for ex in row.examples:
            out.append(
                f"    e.g. #{ex['index']} {ex['kind']} {_short(ex['text'])}: "
                + " | ".join(ex["issues"][:3])
            )
    return "\n".join(out)


def _short(text: str, width: int = 70) -> str:
    r = repr(text)
    return r if len(r) <= width else r[: width - 4] + "...'"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help=f"the workload (default: {DEFAULT_CORPUS} relative to the repository root)",
    )
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per library (default 7)")
    ap.add_argument("--only", default="a,b,c", help="steps to run, e.g. a,c (default a,b,c)")
    ap.add_argument(
        "--libs",
        default="",
        help="comma-separated libraries (smsgw, smsgw-compiled, smpplib, aiosmpplib, rusmppyc, "
        "smpp34, gsmmodem, floor); default all",
    )
    ap.add_argument(
        "--core",
        type=int,
        default=None,
        help="CPU to pin to (default: the highest-numbered one this process may use)",
    )
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, steadier on a busy "
        "machine",
    )
    ap.add_argument(
        "--compiled",
        type=Path,
        default=COMPILED_DIR,
        help="the compiled build for the 'smsgw compiled' rows (default build/compiled; built "
        "by scripts/build-compiled when missing or out of date)",
    )
    ap.add_argument(
        "--no-build", action="store_true", help="use --compiled as it is, do not (re)build it"
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    ap.add_argument(
        "--examples", type=int, default=2, help="failure examples shown per reason (default 2)"
    )
    args = ap.parse_args(argv)
    if args.serve:
        return serve()
    _remote_options.update(dir=args.compiled.resolve(), build=not args.no_build, clock=args.clock)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in steps:
        if s not in STEPS:
            ap.error(f"unknown step {s!r}; steps are a, b, c")
    wanted = {x.strip() for x in args.libs.split(",") if x.strip()} or None
    if wanted:
        known = set().union(*(lib.keys for _, _, libs in STEPS.values() for lib in libs))
        unknown = wanted - known
        if unknown:
            ap.error(f"unknown libraries {sorted(unknown)}; known: {sorted(known)}")

    corpus_path = args.corpus or (REPO_ROOT / DEFAULT_CORPUS)
    messages, md5 = load_corpus(corpus_path)
    n = len(messages)

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    core = args.core if args.core is not None else (allowed[-1] if allowed else None)
    if core is not None and hasattr(os, "sched_setaffinity"):
        if allowed and core not in allowed:
            ap.error(f"--core {core} is not one of the CPUs this process may use: {allowed}")
        os.sched_setaffinity(0, {core})

    env = {
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "core": core,
        "loadavg_start": os.getloadavg(),
        "platform": platform.platform(),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "smsgw_commit": _git_revision(),
        "corpus": str(args.corpus) if args.corpus else DEFAULT_CORPUS,
        "corpus_md5": md5,
        "messages": n,
        "repeat": args.repeat,
        "clock": args.clock,
    }
    print("## smsgw codec benchmark")
    print()
    print(f"- command: `{env['command']}`")
    print(f"- Python {env['python']} ({env['implementation']})")
    print(f"- CPU: {env['cpu']} ({env['cpus']} logical), pinned to core {core}")
    print(f"- smsgw at {env['smsgw_commit']}")
    print("- load average at start: " + ", ".join(f"{x:.2f}" for x in env["loadavg_start"]))
    md5_note = "" if md5 == CORPUS_MD5 else f" — NOT the standard corpus ({CORPUS_MD5})"
    print(f"- corpus: {env['corpus']}, {n:,} messages, md5 {md5}{md5_note}")
    print(
        f"- {args.repeat} timed run(s) per library after one warm-up run (the one judged), "
        f"round-robin, GC off while timing, {args.clock} clock; "
        "throughput = median [min–max] of the runs"
    )
    ok, summary = ref_self_test(messages)
    env["self_test"] = summary
    print(f"- reference checker self-test: {'ok' if ok else 'FAILED'} — {summary}")
    print(flush=True)

    results: dict[str, list[Row]] = {}
    notes: list[str] = []
    b_input: tuple[list[bytes], list[int]] | None = None
    if "b" in steps:
        b_input, b_note = _b_input(messages)
        if b_note:
            notes.append(b_note)
    footnotes: list[str] = []
    for step in steps:
        rows = run_step(
            step,
            messages,
            wanted=wanted,
            repeat=args.repeat,
            clock=CLOCKS[args.clock],
            examples=args.examples,
            b_input=b_input,
        )
        results[step] = rows
        print(render_step(step, rows, n, footnotes))
        print()
        failures = render_failures(rows, n, args.examples)
        if failures:
            print("Not exactly right:")
            print(failures)
            print()
        sys.stdout.flush()
    print("Notes:")
    for i, note in enumerate(footnotes, 1):
        print(f"[{i}] {note}")
    for note in notes:
        print(f"- {note}")
    env["loadavg_end"] = os.getloadavg()
    print(f"- load average at end: {', '.join(f'{x:.2f}' for x in env['loadavg_end'])}")

    smsgw_wrong = [
        (step, row)
        for step, rows in results.items()
        for row in rows
        if row.keys & {"smsgw", "smsgw-compiled"} and row.wrong
    ]
    if smsgw_wrong:
        print()
        print("smsgw messages not exactly right (all of them):")
        for step, row in smsgw_wrong:
            for rec in row.wrong:
                print(
                    f"  ({step}) #{rec['index']} {rec['kind']} {_short(rec['text'], 90)}: "
                    + " | ".join(rec["issues"])
                )

    if args.json:
        dump = {
            "env": env,
            "notes": notes,
            "steps": {
                step: [
                    {
                        "library": r.label,
                        "keys": sorted(r.keys),
                        "note": r.note,
                        "error": r.error,
                        "runs_ns": r.runs_ns,
                        "messages": n,
                        "segments": r.segments,
                        "messages_per_s": r.rates(n),
                        "segments_per_s": r.rates(r.segments) if r.segments else [],
                        "median_messages_per_s": statistics.median(r.rates(n))
                        if r.runs_ns
                        else None,
                        "exactly_right": r.right,
                        "failures": dict(r.failures),
                        "failure_kinds": {k: dict(v) for k, v in r.failure_kinds.items()},
                        "warnings": dict(r.warnings),
                        "wrong": r.wrong,
                    }
                    for r in rows
                ]
                for step, rows in results.items()
            },
        }
        args.json.write_text(json.dumps(dump, indent=1, ensure_ascii=False))
        print(f"- raw figures written to {args.json}")
    return 0


def _b_input(messages: Sequence[Message]) -> tuple[tuple[list[bytes], list[int]], str]:
    """The submit_sm PDUs step (b) decodes: smsgw's, from step (a)'s adapter (untimed). Where
    smsgw is missing or raises, the reference encoder's PDUs stand in, and a note says so."""
    try:
        encode: Callable[..., list[bytes]] | None = a_smsgw(messages)
        note = ""
    except Exception as exc:
        encode = None
        note = f"(b) input: smsgw unavailable ({type(exc).__name__}: {exc}); reference PDUs used"
    pdus: list[bytes] = []
    counts: list[int] = []
    substituted = 0
    seq = 1
    for m in messages:
        try:
            if encode is None:
                raise RuntimeError("no smsgw")
            out = encode(m.text, m.src, m.dst, m.ref, seq)
        except Exception:
            out = ref_submit_sm(m, seq, *ref_split(m.text))
            substituted += 1
        pdus.extend(out)
        counts.append(len(out))
        seq += len(out)
    if substituted and encode is not None:
        note = f"(b) input: smsgw raised on {substituted} messages; reference PDUs stand in"
    if not note:
        note = f"(b) input: the {len(pdus):,} submit_sm PDUs smsgw built in (a)"
    return (pdus, counts), note


if __name__ == "__main__":
    sys.exit(main())
