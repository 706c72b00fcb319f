"""Between text and submit_sm / deliver_sm / data_sm.

`build_sm_pdus` turns a segmented message into the complete wire PDUs, one per part: the
fields common to every part are encoded once per message, and each part costs one header pack
and one bytes formatting. It is the gateway's hot path towards carriers and applications (and
what `bench/codec.py` step (a) measures), so it bypasses the generic encoder on purpose; the
tests check that it produces exactly what `encode_pdu` produces for the same fields.

`message_content` goes the other way: the body of a decoded PDU, from short_message or
message_payload, with its UDH split off and its concatenation position from UDH or SAR TLVs.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from gateway.smpp.codec import cstring_bytes
from gateway.smpp.constants import CommandId, CommandStatus, EsmClass, Tag
from gateway.smpp.errors import LocalSmppError, RemoteSmppError
from gateway.smpp.pdu import DataSm, DeliverSm, SubmitSm
from gateway.smpp.tlv import Tlv, tlv_raw
from gateway.sms.coding import Encoding, decode_text, encoding_of_data_coding
from gateway.sms.errors import SmsError
from gateway.sms.gsm7 import DEFAULT, Alphabet
from gateway.sms.segment import ConcatMethod, Segments, plan
from gateway.sms.udh import (
    IEI_LOCKING_SHIFT,
    IEI_SINGLE_SHIFT,
    Concat,
    InformationElement,
    concat_of,
    parse_udh,
)

__all__ = [
    "MessageContent",
    "SmBuilder",
    "build_sm_pdus",
    "message_content",
    "pdu_text",
    "sm_builder",
]

_HEADER = struct.Struct(">IIII")
_TLV_HEAD = struct.Struct(">HH")
_S = CommandStatus
_UDHI = int(EsmClass.UDHI)
_UDH8, _UDH16, _SAR, _PAYLOAD = (
    ConcatMethod.UDH8,
    ConcatMethod.UDH16,
    ConcatMethod.SAR,
    ConcatMethod.PAYLOAD,
)
_GSM7 = Encoding.GSM7
_UCS2 = Encoding.UCS2
_new = tuple.__new__
# The codec function itself: str.decode("utf-16-be") looks the codec up by name and goes
# through a Python-level wrapper on every call (only utf-8/16/32 and latin-1 have fast paths).
_utf16be_decode = codecs.utf_16_be_decode
_SUBMIT_SM = int(CommandId.submit_sm)


def _escape(fixed: bytes) -> bytes:
    """`fixed` made safe to sit inside a bytes %-format."""
    return fixed.replace(b"%", b"%%")


class SmBuilder:
    """Builds submit_sm (or deliver_sm) PDUs for messages that share a link's settings.

    Everything but the addresses, the parts and the sequence numbers is encoded once, here;
    `build` then costs one bytes formatting per message and one header pack plus one
    formatting per part. The gateway keeps one builder per upstream / settings combination
    (`sm_builder` caches them).

    Args:
        command_id: submit_sm (towards an SMSC) or deliver_sm (towards an application).
        gsm7_data_coding: the data_coding this link uses for GSM 7-bit (0 on most).
        tlvs: extra TLVs for every part (SAR and message_payload TLVs are added by `build`).

    Raises:
        LocalSmppError: a field too long for its C-string, or a value out of range.
    """

    __slots__ = ("_command_id", "_extra", "_fixed", "_formats", "_pieces")
    _formats: dict[Encoding | str, tuple[bytes, bytes]]
    # build_text's form of _formats: the fixed fields around the two addresses, per encoding,
    # without and with the UDHI bit; a bytes join costs less than a %-format.
    _pieces: dict[Encoding | str, tuple[tuple[bytes, bytes, bytes], tuple[bytes, bytes, bytes]]]

    def __init__(
        self,
        *,
        command_id: int = _SUBMIT_SM,
        source_addr_ton: int = 0,
        source_addr_npi: int = 0,
        dest_addr_ton: int = 1,
        dest_addr_npi: int = 1,
        service_type: str = "",
        esm_class: int = 0,
        protocol_id: int = 0,
        priority_flag: int = 0,
        schedule_delivery_time: str = "",
        validity_period: str = "",
        registered_delivery: int = 0,
        gsm7_data_coding: int = 0,
        tlvs: Sequence[Tlv] = (),
    ) -> None:
        self._command_id = command_id
        try:
            st = cstring_bytes(service_type, 6, "service_type", _S.ESME_RINVSERTYP)
            sched = cstring_bytes(
                schedule_delivery_time, 17, "schedule_delivery_time", _S.ESME_RINVSCHED
            )
            valid = cstring_bytes(validity_period, 17, "validity_period", _S.ESME_RINVEXPIRY)
            head = b"%s\x00%c%c" % (st, source_addr_ton, source_addr_npi)
            between = b"\x00%c%c" % (dest_addr_ton, dest_addr_npi)
            formats: dict[Encoding | str, tuple[bytes, bytes]] = {}
            pieces: dict[
                Encoding | str, tuple[tuple[bytes, bytes, bytes], tuple[bytes, bytes, bytes]]
            ] = {}
            for encoding in Encoding:
                data_coding = gsm7_data_coding if encoding is _GSM7 else int(encoding)
                tail = b"%c%c%s\x00%s\x00%c\x00%c\x00" % (
                    protocol_id,
                    priority_flag,
                    sched,
                    valid,
                    registered_delivery,
                    data_coding,
                )
                # One format per encoding, without and with the UDHI bit:
                # head, source_addr, dest ton/npi, destination_addr, esm_class, the rest.
                plain, udhi = (
                    _escape(head)
                    + b"%s"
                    + _escape(between)
                    + b"%s\x00"
                    + _escape(bytes((esm,)))
                    + _escape(tail)
                    for esm in (esm_class, esm_class | _UDHI)
                )
                formats[encoding] = (plain, udhi)
                pieces[encoding] = (
                    (head, between, b"\x00" + bytes((esm_class,)) + tail),
                    (head, between, b"\x00" + bytes((esm_class | _UDHI,)) + tail),
                )
            self._extra = (
                b"".join([_TLV_HEAD.pack(t, len(v)) + v for t, v in tlvs]) if tlvs else b""
            )
        except (OverflowError, TypeError, ValueError, struct.error) as exc:
            if isinstance(exc, LocalSmppError):
                raise
            raise LocalSmppError(f"a field is out of range: {exc}", _S.ESME_RINVPARLEN) from None
        self._formats = formats
        self._pieces = pieces
        # header, the pieces and sm_length: all of a PDU but its addresses, body and TLVs
        self._fixed = 17 + sum(map(len, pieces[_GSM7][0])) + len(self._extra)

    def build(
        self,
        segments: Segments,
        source_addr: str,
        destination_addr: str,
        sequence_numbers: Sequence[int],
    ) -> list[bytes]:
        """The complete PDUs of `segments`, one per part, with `sequence_numbers[i]` each.

        Raises:
            LocalSmppError: an address too long for its C-string, not Latin-1, or with a NUL.
            ValueError: fewer sequence numbers than parts.
        """
        encoding, bodies, udhs, ref, method, _alphabet = segments
        src, dst = _addresses(source_addr, destination_addr)
        udh = udhs[0]
        pre = self._formats[encoding][1 if udh else 0] % (src, dst)
        extra = self._extra
        total = len(bodies)
        if len(sequence_numbers) < total:
            raise ValueError(f"{total} parts need as many sequence numbers")
        try:
            if total == 1 and method is not _PAYLOAD:
                part = bodies[0]
                n = len(udh) + len(part)
                head = _pack(
                    17 + len(pre) + len(extra) + n, self._command_id, 0, sequence_numbers[0]
                )
                return [_PART % (head, pre, n, udh, part, extra)]
            if method is _UDH8 or method is _UDH16:
                fixed = 17 + len(pre) + len(extra)
                cid = self._command_id
                return [
                    _PART
                    % (
                        _pack(fixed + len(u) + len(b), cid, 0, seq),
                        pre,
                        len(u) + len(b),
                        u,
                        b,
                        extra,
                    )
                    for u, b, seq in zip(udhs, bodies, sequence_numbers, strict=False)
                ]
            return self._build_rare(encoding, bodies, udhs, ref, method, pre, sequence_numbers)
        except struct.error:
            raise LocalSmppError(
                "sequence_number out of 32-bit range", _S.ESME_RINVPARLEN
            ) from None

    def build_text(
        self,
        text: str,
        source_addr: str,
        destination_addr: str,
        sequence_numbers: Sequence[int],
        *,
        ref: int = 0,
        max_parts: int = 255,
    ) -> list[bytes]:
        """`build(segment(text, ref=ref, max_parts=max_parts), ...)` in one pass.

        The common case - default alphabet or UCS-2, 8-bit reference UDH - written straight
        into the PDUs from `gateway.sms.segment.plan`, without the intermediate parts; the
        output is byte for byte what `build(segment(...))` gives (the tests hold it to that).

        Raises:
            LocalSmppError, ValueError, MessageTooLong, UnencodableText: as `build` and
                `segment`.
        """
        encoding, body, ends = plan(text, max_parts)
        src, dst = _addresses(source_addr, destination_addr)
        extra = self._extra
        total = len(ends)
        if len(sequence_numbers) < total:
            raise ValueError(f"{total} parts need as many sequence numbers")
        try:
            if total == 1:
                head, between, tail = self._pieces[encoding][0]
                n = len(body)
                return [
                    b"".join(
                        (
                            _pack(
                                self._fixed + len(src) + len(dst) + n,
                                self._command_id,
                                0,
                                sequence_numbers[0],
                            ),
                            head,
                            src,
                            between,
                            dst,
                            tail,
                            _BYTE[n],
                            body,
                            extra,
                        )
                    )
                ]
            if not 0 <= ref <= 0xFF:
                raise ValueError(f"concatenation reference {ref} out of range for UDH8")
            head, between, tail = self._pieces[encoding][1]
            pre = b"".join((head, src, between, dst, tail))
            udh = b"\x05\x00\x03" + _BYTE[ref] + _BYTE[total]
            fixed = self._fixed + len(src) + len(dst) + 6
            cid = self._command_id
            out = []
            start = 0
            for i, end in enumerate(ends):
                n = end - start
                out.append(
                    b"".join(
                        (
                            _pack(fixed + n, cid, 0, sequence_numbers[i]),
                            pre,
                            _BYTE[n + 6],
                            udh,
                            _BYTE[i + 1],
                            body[start:end],
                            extra,
                        )
                    )
                )
                start = end
            return out
        except struct.error:
            raise LocalSmppError(
                "sequence_number out of 32-bit range", _S.ESME_RINVPARLEN
            ) from None

    def _build_rare(  # noqa: PLR0917 - private continuation of build()
        self,
        encoding: Encoding,
        bodies: tuple[bytes, ...],
        udhs: tuple[bytes, ...],
        ref: int,
        method: ConcatMethod,
        pre: bytes,
        sequence_numbers: Sequence[int],
    ) -> list[bytes]:
        """SAR and message_payload."""
        extra = self._extra
        cid = self._command_id
        total = len(bodies)
        if method is _PAYLOAD and (udhs[0] or len(bodies[0]) > (160 if encoding is _GSM7 else 140)):
            payload = udhs[0] + bodies[0]
            body = b"%s\x00%s%s%s" % (
                pre,
                _TLV_HEAD.pack(_MESSAGE_PAYLOAD, len(payload)),
                payload,
                extra,
            )
            return [_pack(16 + len(body), cid, 0, sequence_numbers[0]) + body]
        fixed = 17 + len(pre) + len(extra)
        if method is _SAR and total > 1:
            fixed += 16
            tails = [
                _SAR_FORMAT % (ref >> 8, ref & 0xFF, total, i) + extra for i in range(1, total + 1)
            ]
        else:
            tails = [extra] * total
        return [
            _PART % (_pack(fixed + len(u) + len(b), cid, 0, seq), pre, len(u) + len(b), u, b, tail)
            for u, b, seq, tail in zip(udhs, bodies, sequence_numbers, tails, strict=False)
        ]


_PART = b"%s%s%c%s%s%s"  # header, fixed fields, sm_length, UDH, body, TLVs
_BYTE = tuple(bytes((i,)) for i in range(256))
_pack = _HEADER.pack


def _addresses(source_addr: str, destination_addr: str) -> tuple[bytes, bytes]:
    """The two addresses as C-string octets (without the NUL), checked.

    Raises:
        LocalSmppError: too long for its C-string, not Latin-1, or holding a NUL.
    """
    try:
        src = source_addr.encode("ascii")
        dst = destination_addr.encode("ascii")
    except UnicodeEncodeError:
        src = dst = b"\x00"  # not ASCII: let cstring_bytes below judge it
    if len(src) > 20 or len(dst) > 20 or 0 in src or 0 in dst:
        src = cstring_bytes(source_addr, 21, "source_addr", _S.ESME_RINVSRCADR)
        dst = cstring_bytes(destination_addr, 21, "destination_addr", _S.ESME_RINVDSTADR)
    return src, dst


_SAR_FORMAT = b"\x02\x0c\x00\x02%c%c\x02\x0e\x00\x01%c\x02\x0f\x00\x01%c"
_MESSAGE_PAYLOAD = int(Tag.message_payload)


@lru_cache(maxsize=1024)
def sm_builder(**settings: Any) -> SmBuilder:
    """A cached `SmBuilder` for these settings (keyword arguments of `SmBuilder`)."""
    return SmBuilder(**settings)


def build_sm_pdus(
    segments: Segments,
    *,
    source_addr: str,
    destination_addr: str,
    sequence_numbers: Sequence[int],
    **settings: Any,
) -> list[bytes]:
    """Complete submit_sm (or deliver_sm) PDUs for every part of `segments`.

    `settings` are `SmBuilder`'s keyword arguments; the builder is cached, so repeated calls
    with the same settings cost only `SmBuilder.build`.

    Raises:
        LocalSmppError: a field SMPP cannot carry.
        ValueError: fewer sequence numbers than parts.
    """
    if len(sequence_numbers) < len(segments.bodies):
        raise ValueError(f"{len(segments.bodies)} parts need as many sequence numbers")
    if settings.get("tlvs"):
        settings["tlvs"] = tuple(settings["tlvs"])
    return sm_builder(**settings).build(segments, source_addr, destination_addr, sequence_numbers)


class MessageContent(NamedTuple):
    """The body of a submit_sm / deliver_sm / data_sm.

    Attributes:
        encoding: from data_coding; a Python codec name for the rarer SMPP alphabets.
        body: the body without its UDH (unpacked septets for GSM 7-bit).
        udh: the UDH as it came, UDHL included; b"" when there is none.
        concat: position in a concatenated message (UDH or SAR TLVs), or None.
        alphabet: the GSM 7-bit alphabet the UDH's national language shifts select.
    """

    encoding: Encoding | str
    body: bytes
    udh: bytes
    concat: Concat | None
    alphabet: Alphabet

    @property
    def elements(self) -> tuple[InformationElement, ...]:
        """The UDH's information elements (parsed on demand: most callers need only concat)."""
        return parse_udh(self.udh)[0] if self.udh else ()

    def text(self, errors: str = "strict") -> str:
        """The body as text. Raises `UnencodableText` for a bad body with errors="strict"."""
        encoding, body, _udh, _concat, alphabet = self
        if errors == "strict":
            # The two everyday cases without the general dispatch.
            if encoding is _UCS2 and not len(body) & 1:
                try:
                    return _utf16be_decode(body, "strict", True)[0]
                except UnicodeDecodeError:
                    pass  # a lone surrogate: decode_text says where
            elif encoding is _GSM7:
                return alphabet.decode(body)
        return decode_text(body, encoding, alphabet, errors)


def message_content(
    pdu: SubmitSm | DeliverSm | DataSm, *, gsm7_default: Encoding = _GSM7
) -> MessageContent:
    """Split a PDU's body into UDH and text, and find where it sits in a long message.

    Args:
        gsm7_default: what data_coding 0 means on this link (GSM 7-bit, or Latin-1 / ASCII on
            some carriers).

    Raises:
        RemoteSmppError: both short_message and message_payload (ESME_RINVPARLEN, SMPP v3.4
            5.3.2.32), or a UDH indicator with a UDH that does not parse (ESME_RINVESMCLASS).
    """
    tlvs = pdu.tlvs
    sm = pdu.short_message if type(pdu) is not DataSm else b""  # type: ignore[union-attr]
    if tlvs:
        payload = tlv_raw(tlvs, Tag.message_payload)
        if payload is not None:
            if sm:
                raise RemoteSmppError(
                    "both short_message and message_payload are set", _S.ESME_RINVPARLEN
                )
            sm = payload
    data_coding = pdu.data_coding
    if data_coding == 8:
        encoding: Encoding | str = _UCS2
    elif data_coding == 0:
        encoding = gsm7_default
    else:
        encoding = encoding_of_data_coding(data_coding, gsm7_default)
    if not pdu.esm_class & _UDHI:
        return _new(MessageContent, (encoding, sm, b"", _sar_of(tlvs) if tlvs else None, DEFAULT))
    if len(sm) >= 6 and sm[0] == 5 and sm[1] == 0 and sm[2] == 3 and 0 < sm[5] <= sm[4]:
        # The usual UDH: only an 8-bit concatenation element.
        concat = _new(Concat, (sm[3], sm[4], sm[5], 8))
        return _new(MessageContent, (encoding, sm[6:], sm[:6], concat, DEFAULT))
    try:
        elements, length = parse_udh(sm)
    except SmsError as exc:
        raise RemoteSmppError(f"bad UDH: {exc}", _S.ESME_RINVESMCLASS) from None
    found = concat_of(elements)
    if found is None and tlvs:
        found = _sar_of(tlvs)
    return _new(MessageContent, (encoding, sm[length:], sm[:length], found, _alphabet_of(elements)))


def pdu_text(
    pdu: SubmitSm | DeliverSm | DataSm,
    *,
    gsm7_default: Encoding = _GSM7,
    errors: str = "strict",
) -> str:
    """The text of one PDU (one part of a long message: no reassembly), UDH stripped.

    `message_content(pdu).text()` without building the `MessageContent` in the everyday cases
    (UCS-2, or GSM 7-bit without national shifts): keyword routing and logging read the text
    of every inbound PDU.

    Raises:
        RemoteSmppError, UnencodableText: as `message_content` and `MessageContent.text`.
    """
    if type(pdu) is not DataSm and not pdu.tlvs and errors == "strict":
        sm = pdu.short_message  # type: ignore[union-attr]
        if pdu.esm_class & _UDHI:
            if sm[:3] != b"\x05\x00\x03" or len(sm) < 6:  # not the plain concatenation UDH
                return message_content(pdu, gsm7_default=gsm7_default).text(errors)
            sm = sm[6:]
        data_coding = pdu.data_coding
        if data_coding == 8 and not len(sm) & 1:
            try:
                return _utf16be_decode(sm, "strict", True)[0]
            except UnicodeDecodeError:
                pass  # decode_text says where
        elif data_coding == 0 and gsm7_default is _GSM7:
            return DEFAULT.decode(sm)
    return message_content(pdu, gsm7_default=gsm7_default).text(errors)


def _sar_of(tlvs: tuple[Tlv, ...]) -> Concat | None:
    ref = tlv_raw(tlvs, Tag.sar_msg_ref_num)
    total = tlv_raw(tlvs, Tag.sar_total_segments)
    seq = tlv_raw(tlvs, Tag.sar_segment_seqnum)
    if ref is None or total is None or seq is None:
        return None
    t, s = total[0], seq[0]
    if not 0 < s <= t:
        return None
    return Concat(int.from_bytes(ref, "big"), t, s, 16)


def _alphabet_of(udh: tuple[InformationElement, ...]) -> Alphabet:
    locking = single = 0
    for iei, data in udh:
        if iei == IEI_LOCKING_SHIFT and len(data) == 1:
            locking = data[0]
        elif iei == IEI_SINGLE_SHIFT and len(data) == 1:
            single = data[0]
    if not (locking or single):
        return DEFAULT
    try:
        from gateway.sms.national import alphabet  # noqa: PLC0415 - optional tables
    except ImportError:  # pragma: no cover - tables not built
        return DEFAULT
    try:
        result: Alphabet = alphabet(locking, single)
    except ValueError:
        return DEFAULT  # unknown language: the default table is the best guess
    return result
