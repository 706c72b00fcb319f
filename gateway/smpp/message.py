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

import struct
from collections.abc import Sequence
from typing import NamedTuple

from gateway.smpp.codec import cstring_bytes
from gateway.smpp.constants import CommandId, CommandStatus, EsmClass, Tag
from gateway.smpp.errors import LocalSmppError, RemoteSmppError
from gateway.smpp.pdu import DataSm, DeliverSm, SubmitSm
from gateway.smpp.tlv import Tlv, tlv_raw
from gateway.sms.coding import Encoding, decode_text, encoding_of_data_coding
from gateway.sms.errors import SmsError
from gateway.sms.gsm7 import DEFAULT, Alphabet
from gateway.sms.segment import ConcatMethod, Segments
from gateway.sms.udh import (
    IEI_LOCKING_SHIFT,
    IEI_SINGLE_SHIFT,
    Concat,
    InformationElement,
    concat_of,
    parse_udh,
)

__all__ = ["MessageContent", "build_sm_pdus", "message_content"]

_HEADER = struct.Struct(">IIII")
_TLV_HEAD = struct.Struct(">HH")
_S = CommandStatus
_UDHI = int(EsmClass.UDHI)
_SAR, _PAYLOAD = ConcatMethod.SAR, ConcatMethod.PAYLOAD
_GSM7 = Encoding.GSM7
_SUBMIT_SM = int(CommandId.submit_sm)


def build_sm_pdus(
    segments: Segments,
    *,
    source_addr: str,
    destination_addr: str,
    sequence_numbers: Sequence[int],
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
    command_id: int = _SUBMIT_SM,
) -> list[bytes]:
    """Complete submit_sm (or deliver_sm, with `command_id`) PDUs for every part.

    Args:
        segments: the message, from `gateway.sms.segment.segment`.
        sequence_numbers: one per part.
        gsm7_data_coding: the data_coding this link uses for GSM 7-bit (0 on most).
        tlvs: extra TLVs for every part (SAR / message_payload TLVs are added here).

    Raises:
        LocalSmppError: a field too long for its C-string, or a value out of range.
    """
    total = len(segments.bodies)
    if len(sequence_numbers) < total:
        raise ValueError(f"{total} parts need {total} sequence numbers")
    encoding = segments.encoding
    data_coding = gsm7_data_coding if encoding is _GSM7 else int(encoding)
    try:
        head = b"%s\x00%c%c%s\x00%c%c%s\x00" % (
            cstring_bytes(service_type, 6, "service_type", _S.ESME_RINVSERTYP)
            if service_type
            else b"",
            source_addr_ton,
            source_addr_npi,
            cstring_bytes(source_addr, 21, "source_addr", _S.ESME_RINVSRCADR),
            dest_addr_ton,
            dest_addr_npi,
            cstring_bytes(destination_addr, 21, "destination_addr", _S.ESME_RINVDSTADR),
        )
        mid = b"%c%c%s\x00%s\x00%c\x00%c\x00" % (
            protocol_id,
            priority_flag,
            cstring_bytes(schedule_delivery_time, 17, "schedule_delivery_time", _S.ESME_RINVSCHED)
            if schedule_delivery_time
            else b"",
            cstring_bytes(validity_period, 17, "validity_period", _S.ESME_RINVEXPIRY)
            if validity_period
            else b"",
            registered_delivery,
            data_coding,
        )
    except (OverflowError, TypeError) as exc:
        raise LocalSmppError(f"a field is out of range: {exc}", _S.ESME_RINVPARLEN) from None

    pack = _HEADER.pack
    extra = b"".join([_TLV_HEAD.pack(t, len(v)) + v for t, v in tlvs]) if tlvs else b""
    method = segments.method
    out = []
    if method is _PAYLOAD and total == 1 and (segments.udhs[0] or len(segments.bodies[0]) > 254):
        udh = segments.udhs[0]
        payload = udh + segments.bodies[0]
        esm = esm_class | _UDHI if udh else esm_class
        body = b"%s%c%s\x00%s%s%s" % (
            head,
            esm,
            mid,
            _TLV_HEAD.pack(Tag.message_payload, len(payload)),
            payload,
            extra,
        )
        return [pack(16 + len(body), command_id, 0, sequence_numbers[0]) + body]
    if method is _SAR and total > 1:
        ref = segments.ref
        for i, sm in enumerate(segments.short_messages()):
            sar = b"\x02\x0c\x00\x02%c%c\x02\x0e\x00\x01%c\x02\x0f\x00\x01%c" % (
                ref >> 8,
                ref & 0xFF,
                total,
                i + 1,
            )
            esm = esm_class | _UDHI if segments.udhs[i] else esm_class
            body = b"%s%c%s%c%s%s%s" % (head, esm, mid, len(sm), sm, sar, extra)
            out.append(pack(16 + len(body), command_id, 0, sequence_numbers[i]) + body)
        return out
    udhs = segments.udhs
    esm = esm_class | _UDHI if udhs[0] else esm_class
    for i, part in enumerate(segments.bodies):
        sm = udhs[i] + part
        body = b"%s%c%s%c%s%s" % (head, esm, mid, len(sm), sm, extra)
        out.append(pack(16 + len(body), command_id, 0, sequence_numbers[i]) + body)
    return out


class MessageContent(NamedTuple):
    """The body of a submit_sm / deliver_sm / data_sm.

    Attributes:
        encoding: from data_coding; a Python codec name for the rarer SMPP alphabets.
        body: the body without its UDH (unpacked septets for GSM 7-bit).
        udh: information elements of the UDH, empty when there is none.
        concat: position in a concatenated message (UDH or SAR TLVs), or None.
        alphabet: the GSM 7-bit alphabet the UDH's national language shifts select.
    """

    encoding: Encoding | str
    body: bytes
    udh: tuple[InformationElement, ...]
    concat: Concat | None
    alphabet: Alphabet

    def text(self, errors: str = "strict") -> str:
        """The body as text. Raises `UnencodableText` for a bad body with errors="strict"."""
        return decode_text(self.body, self.encoding, self.alphabet, errors)


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
    sm = b"" if isinstance(pdu, DataSm) else pdu.short_message
    payload = tlv_raw(tlvs, Tag.message_payload) if tlvs else None
    if payload is not None:
        if sm:
            raise RemoteSmppError(
                "both short_message and message_payload are set", _S.ESME_RINVPARLEN
            )
        sm = payload
    encoding = encoding_of_data_coding(pdu.data_coding, gsm7_default)
    udh: tuple[InformationElement, ...] = ()
    concat = None
    alphabet = DEFAULT
    if pdu.esm_class & _UDHI:
        try:
            udh, length = parse_udh(sm)
        except SmsError as exc:
            raise RemoteSmppError(f"bad UDH: {exc}", _S.ESME_RINVESMCLASS) from None
        sm = sm[length:]
        concat = concat_of(udh)
        alphabet = _alphabet_of(udh)
    if concat is None and tlvs:
        concat = _sar_of(tlvs)
    return MessageContent(encoding, sm, udh, concat, alphabet)


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
