"""A stored message as the submit_sm PDUs one carrier upstream wants, and what it sends back
normalised to the gateway's meaning. Pure: no I/O, no clock.

Theory of operation
-------------------
An application hands us a long text in one of three forms (SMPP v3.4 section 4.4.1 and
5.3.2.22-24, 5.3.2.32): one part of a series with a concatenation UDH (esm_class 0x40), one
part with SAR TLVs, or the whole body in message_payload. Each upstream says which form it
takes (`UpstreamConfig.long_messages`) and what its data_coding 0 means
(`UpstreamConfig.data_coding_0`); ours is GSM 7-bit, one septet per octet.

* A part stays one part: its place in the series is the application's (ref, total, seq), so
  only its carriage changes - concatenation element <-> SAR TLVs. A payload upstream gets a part
  with a UDH: every SMSC passes a UDH through, not every one knows SAR.
* A whole message that fits one SMS goes in short_message. One that does not is cut here for
  UDH / SAR upstreams (`gateway.sms.segment.cut_body`: never inside an escape or surrogate
  pair; reference from the caller's `ReferenceAllocator`, the 16-bit element above 255) or
  sent in one message_payload to payload upstreams.
* Cutting works on the encoded body, so a binary or national-alphabet body goes out byte for
  byte; other UDH elements (ports, shifts) ride in every part.
* data_coding 0 to a Latin-1 / ASCII upstream: a text in the default GSM alphabet that the
  upstream's charset also holds goes with data_coding 0 in that charset (the SMSC sends it as
  GSM 7-bit, so it is cut by septets, escapes counting two); anything else goes as UCS-2 with
  data_coding 8 and is cut again. data_coding 3 is not used: some SMSCs send it as 8-bit data.
  A part of the application's series that needs UCS-2 and then no longer fits one SMS cannot be
  re-cut (the series is the application's): it fails with ESME_RINVMSGLEN.
* ASCII and Latin-1 bodies (data_coding 1 and 3) are sized as octets, 140 a part, as the
  segmenter sizes 8-bit data; how the SMSC carries them on air is its own choice.
* Multi-byte SMPP charsets (JIS, KS C 5601...) cannot be cut on octets; a long one goes as
  UCS-2.

A message that matches its upstream and fits one SMS goes through as it came (a fast path
without parsing). Bad input raises `LocalSmppError` carrying the status to record; the driver
fails the message permanently. `ReferencesExhausted` is not bad input: retry later.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from gateway.config import UpstreamConfig
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.errors import LocalSmppError, RemoteSmppError, SmppError
from gateway.smpp.message import MessageContent, message_content
from gateway.smpp.pdu import DataSm, DeliverSm, SubmitSm
from gateway.smpp.tlv import Tlv, check_tlv, make_tlvs, tlv_raw
from gateway.sms.coding import Encoding
from gateway.sms.errors import SmsError
from gateway.sms.gsm7 import DEFAULT
from gateway.sms.refs import ReferenceAllocator
from gateway.sms.segment import MAX_PAYLOAD, cut_body, part_capacity
from gateway.sms.udh import (
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    IEI_LOCKING_SHIFT,
    IEI_SINGLE_SHIFT,
    Concat,
    InformationElement,
    build_udh,
    concat_ie,
    concat_of,
)
from gateway.store.base import NewMessage

__all__ = ["allocated_reference", "inbound_pdu", "stored_content", "submit_pdus"]

_S = CommandStatus
_UDHI = 0x40
_RECEIPT_MASK = 0x3C
_RECEIPT = 0x04
_GSM7, _UCS2, _BINARY = Encoding.GSM7, Encoding.UCS2, Encoding.BINARY
_PAYLOAD_TAG = int(Tag.message_payload)
_SAR_REF, _SAR_TOTAL, _SAR_SEQ = (
    int(Tag.sar_msg_ref_num),
    int(Tag.sar_total_segments),
    int(Tag.sar_segment_seqnum),
)
_REENCODED = frozenset((_PAYLOAD_TAG, _SAR_REF, _SAR_TOTAL, _SAR_SEQ))
_CONCAT_IEIS = (IEI_CONCAT_8, IEI_CONCAT_16)
_SHIFT_IEIS = (IEI_LOCKING_SHIFT, IEI_SINGLE_SHIFT)
_CODECS = {"latin1": "latin-1", "ascii": "ascii"}
_SINGLE_BYTE_CODECS = frozenset(("iso8859_5", "iso8859_8"))
_TLV_HEAD = struct.Struct(">HH")
_Tlvs = tuple[Tlv, ...]


_WireOf = Callable[[bytes], bytes]
_new = tuple.__new__


def submit_pdus(
    message: NewMessage, config: UpstreamConfig, refs: ReferenceAllocator
) -> list[SubmitSm]:
    """The submit_sm PDUs that carry `message` to this upstream, in order.

    Every PDU has sequence_number 0 (the session numbers them) and registered_delivery 1 (the
    receipt tracks the message's state). The other header fields come from the message, with
    `expires_at` as an absolute validity_period; schedule_delivery_time stays empty (the
    dispatcher holds a message until its schedule). The message's TLVs go along except
    message_payload and sar_*, which are rebuilt here.

    Args:
        message: as the application sent it.
        config: the upstream; `long_messages` and `data_coding_0` matter here.
        refs: concatenation references, taken only when a message is cut here; give the
            reference back with `refs.release(destination, allocated_reference(pdus))` when
            the message is done.

    Returns:
        One PDU, or one per part when the message is cut here.

    Raises:
        LocalSmppError: the message cannot be carried (bad UDH or SAR TLVs, odd-length UCS-2,
            short_message and message_payload both set, too long): a permanent failure.
        ReferencesExhausted: every reference to this destination is in flight: try later.
    """
    mode = config.long_messages
    data_coding = message.data_coding
    charset = None if data_coding or config.data_coding_0 == "gsm7" else config.data_coding_0
    if not message.tlvs and charset is None:
        # The hot path: no TLVs, a single message or the plain 8-bit concatenation UDH.
        sm = message.short_message
        esm_class = message.esm_class
        if not esm_class & _UDHI:
            if _fits_as_is(len(sm), data_coding, 0):
                return [_submit(message, esm_class, data_coding, sm, ())]
        elif (
            mode != "sar"
            and len(sm) >= 6
            and sm[0] == 5
            and sm[1] == 0
            and sm[2] == 3
            and 0 < sm[5] <= sm[4]
            and _fits_as_is(len(sm) - 6, data_coding, 6)
        ):
            return [_submit(message, esm_class, data_coding, sm, ())]
    try:
        return _general(message, mode, charset, refs)
    except SmsError as exc:  # a UDH we cannot rebuild, a text we cannot cut
        raise LocalSmppError(str(exc), _S.ESME_RINVMSGLEN) from None


def allocated_reference(pdus: Sequence[SubmitSm]) -> int | None:
    """The reference `submit_pdus` took from its allocator for these PDUs, or None.

    Only a message cut here has one (it is the only way to get more than one PDU); a part the
    application cut keeps the application's reference, which is not ours to release.
    """
    if len(pdus) < 2:
        return None
    concat = message_content(pdus[0]).concat
    return None if concat is None else concat.ref


def inbound_pdu(pdu: DeliverSm | DataSm, config: UpstreamConfig) -> DeliverSm | DataSm:
    """An MO message from the upstream, its data_coding in the gateway's meaning.

    A Latin-1 or ASCII upstream's data_coding 0 becomes 3 (Latin-1, which holds ASCII too);
    receipts (esm_class message type 0x04) and everything else pass unchanged.
    """
    if (
        pdu.data_coding == 0
        and config.data_coding_0 != "gsm7"
        and pdu.esm_class & _RECEIPT_MASK != _RECEIPT
    ):
        return pdu._replace(data_coding=3)
    return pdu


# -- the general path ----------------------------------------------------------------------------


def _general(
    message: NewMessage, mode: str, charset: str | None, refs: ReferenceAllocator
) -> list[SubmitSm]:
    esm_class = message.esm_class
    data_coding = message.data_coding
    content, tlvs = stored_content(message)
    elements = content.elements
    payloads = sum(t.tag == _PAYLOAD_TAG for t in tlvs)
    if payloads > 1:
        raise LocalSmppError("message_payload is given twice", _S.ESME_RINVOPTPARAMVAL)
    in_payload = payloads == 1
    concat_ies = sum(e.iei in _CONCAT_IEIS for e in elements)
    udh_concat = concat_of(elements)
    if concat_ies > 1 or (concat_ies and udh_concat is None):
        raise LocalSmppError(
            "the UDH's concatenation element is repeated or malformed (length, or a part "
            "number of 0 or past the total)",
            _S.ESME_RINVESMCLASS,
        )
    sar = _sar_position(tlvs)
    if udh_concat is not None and sar is not None:
        raise LocalSmppError(
            "both a concatenation UDH and SAR TLVs are set", _S.ESME_RINVOPTPARAMVAL
        )
    encoding = content.encoding
    body = content.body
    if encoding is _UCS2 and len(body) & 1:
        where = "message_payload" if in_payload else "short_message"
        raise LocalSmppError(
            f"UCS-2 body in {where} has an odd length ({len(body)} octets)",
            _S.ESME_RINVPARLEN if in_payload else _S.ESME_RINVMSGLEN,
        )
    kept = tuple(t for t in tlvs if t.tag not in _REENCODED)
    extra = tuple(e for e in elements if e.iei not in _CONCAT_IEIS)

    concat = udh_concat or sar
    if concat is not None:
        if charset is None and not in_payload and (mode == "sar") is (sar is not None):
            # Already in the form the upstream takes: as it came, if it fits.
            room = len(content.udh)
            if sar is not None:  # the SMSC adds its concatenation element
                room = _with_concat(room, concat.ref > 0xFF)
            if len(body) <= part_capacity(_domain(encoding), room):
                return [_submit(message, esm_class, data_coding, message.short_message, tlvs)]
        return [_part(message, mode, charset, content.text, encoding, body, concat, extra, kept)]

    units, domain, wire_of, dc_out, extra = _recode(
        data_coding, charset, encoding, body, content.text, extra
    )
    udh = build_udh(extra) if extra else b""
    fits = len(units) <= part_capacity(domain, len(udh))
    if not fits and mode != "payload" and charset is None and _multibyte(encoding):
        # Octets of JIS or KS C 5601 cannot be cut safely; UCS-2 can.
        units, domain, wire_of, dc_out, extra = _recode(
            data_coding, charset, encoding, body, content.text, extra, to_ucs2=True
        )
        udh = build_udh(extra) if extra else b""
    esm = esm_class | _UDHI if udh else esm_class & ~_UDHI
    if mode == "payload" and (in_payload or not fits):
        if charset is None and in_payload:
            return [_submit(message, esm_class, data_coding, b"", tlvs)]
        payload = udh + wire_of(units)
        if len(payload) > MAX_PAYLOAD:
            raise LocalSmppError(
                f"message_payload of {len(payload)} octets exceeds {MAX_PAYLOAD}",
                _S.ESME_RINVPARLEN,
            )
        return [_submit(message, esm, dc_out, b"", (*kept, Tlv(_PAYLOAD_TAG, payload)))]
    if fits:
        return [_submit(message, esm, dc_out, udh + wire_of(units), kept)]

    destination = message.destination_addr
    ref = refs.allocate(destination)
    try:
        wide = ref > 0xFF
        # Every part's header: the other elements and the concatenation element (ours, or the
        # one the SMSC writes for SAR).
        pieces = cut_body(units, domain, _with_concat(len(udh), wide))
        total = len(pieces)
        if total > 255:
            raise LocalSmppError(
                f"message needs {total} parts, the limit is 255", _S.ESME_RINVMSGLEN
            )
        out = []
        for seq, piece in enumerate(pieces, 1):
            wire = wire_of(piece)
            if mode == "sar":
                sar_tlvs = make_tlvs(
                    sar_msg_ref_num=ref, sar_total_segments=total, sar_segment_seqnum=seq
                )
                out.append(_submit(message, esm, dc_out, udh + wire, (*kept, *sar_tlvs)))
            else:
                head = build_udh((concat_ie(ref, total, seq, 16 if wide else 8), *extra))
                out.append(_submit(message, esm_class | _UDHI, dc_out, head + wire, kept))
    except BaseException:
        refs.release(destination, ref)
        raise
    return out


def _part(  # noqa: PLR0917 - private continuation of _general
    message: NewMessage,
    mode: str,
    charset: str | None,
    text: Callable[[], str],
    encoding: Encoding | str,
    body: bytes,
    concat: Concat,
    extra: tuple[InformationElement, ...],
    kept: tuple[Tlv, ...],
) -> SubmitSm:
    """One part of the application's series, carried the way the upstream takes parts."""
    units, domain, wire_of, data_coding, extra = _recode(
        message.data_coding, charset, encoding, body, text, extra
    )
    esm_class = message.esm_class
    ref, total, seq, _bits = concat
    wide = ref > 0xFF
    if mode == "sar":
        udh = build_udh(extra) if extra else b""
        room = _with_concat(len(udh), wide)
        sar = make_tlvs(sar_msg_ref_num=ref, sar_total_segments=total, sar_segment_seqnum=seq)
        tlvs = (*kept, *sar)
        esm = esm_class | _UDHI if udh else esm_class & ~_UDHI
    else:
        udh = build_udh((concat_ie(ref, total, seq, 16 if wide else 8), *extra))
        room = len(udh)
        tlvs = kept
        esm = esm_class | _UDHI
    if len(units) > part_capacity(domain, room):
        unit = "septets" if domain is _GSM7 else "octets"
        raise LocalSmppError(
            f"part {seq} of {total} does not fit one SMS for this upstream ({len(units)} "
            f"{unit} beside a {room}-octet header); send the whole message, not parts",
            _S.ESME_RINVMSGLEN,
        )
    return _submit(message, esm, data_coding, udh + wire_of(units), tlvs)


def _recode(  # noqa: PLR0917 - private helper of _general and _part
    data_coding: int,
    charset: str | None,
    encoding: Encoding | str,
    body: bytes,
    text: Callable[[], str],
    extra: tuple[InformationElement, ...],
    *,
    to_ucs2: bool = False,
) -> tuple[bytes, Encoding, _WireOf, int, tuple[InformationElement, ...]]:
    """How to send a body: the units to size and cut it by, their encoding, how a piece
    becomes wire octets, the data_coding, and the UDH elements to keep.

    `text` (`MessageContent.text`) is called only when the body must be re-encoded: for a
    Latin-1 / ASCII upstream (`charset`), or with `to_ucs2`.
    """
    if charset is None and not to_ucs2:
        return body, _domain(encoding), _same, data_coding, extra
    try:
        decoded = text()
    except SmsError as exc:
        raise LocalSmppError(
            f"the body is not valid in data_coding {data_coding}: {exc}", _S.ESME_RINVMSGLEN
        ) from None
    # Shift elements only mean something to GSM 7-bit septets, which we no longer send.
    extra = tuple(e for e in extra if e.iei not in _SHIFT_IEIS)
    if charset is not None:
        codec = _CODECS[charset]
        septets = DEFAULT.try_encode(decoded)
        if septets is not None and _encodable(decoded, codec):
            # The SMSC sends it as GSM 7-bit: sized and cut by septets, sent in its charset.
            def wire_of(piece: bytes) -> bytes:
                return DEFAULT.decode(piece).encode(codec)

            return septets, _GSM7, wire_of, 0, extra
    try:
        ucs2 = decoded.encode("utf-16-be")
    except UnicodeEncodeError:
        raise LocalSmppError("the text holds a lone surrogate", _S.ESME_RINVMSGLEN) from None
    return ucs2, _UCS2, _same, 8, extra


def _same(piece: bytes) -> bytes:
    return piece


def _encodable(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _domain(encoding: Encoding | str) -> Encoding:
    """What a body is sized in: septets for GSM 7-bit, UTF-16 units for UCS-2, else octets."""
    if encoding is _GSM7 or encoding is _UCS2:
        return encoding
    return _BINARY


def _multibyte(encoding: Encoding | str) -> bool:
    return isinstance(encoding, str) and encoding not in _SINGLE_BYTE_CODECS


def _with_concat(udh_len: int, wide: bool) -> int:
    """The length of a UDH of `udh_len` octets (0: none) once a concatenation element is
    added: 5 octets, 6 for a 16-bit reference, and the UDHL octet if there was no UDH."""
    return udh_len + (6 if wide else 5) + (0 if udh_len else 1)


def _fits_as_is(n: int, data_coding: int, udh_len: int) -> bool:
    """A body of `n` octets in `data_coding` fits one SMS beside a UDH of `udh_len` octets
    (the hot path's check: the usual data_codings only, anything else says no)."""
    if data_coding == 0:
        return n <= (140 - udh_len) * 8 // 7
    if data_coding == 8:
        return not n & 1 and n + udh_len <= 140
    if data_coding in (1, 2, 3, 4):
        return n + udh_len <= 140
    return False


def _submit(
    message: NewMessage, esm_class: int, data_coding: int, short_message: bytes, tlvs: _Tlvs
) -> SubmitSm:
    m = message
    validity = "" if m.expires_at is None else _validity(m.expires_at)
    pdu: SubmitSm = _new(
        SubmitSm,
        (
            m.service_type,
            m.source_addr_ton,
            m.source_addr_npi,
            m.source_addr,
            m.dest_addr_ton,
            m.dest_addr_npi,
            m.destination_addr,
            esm_class,
            m.protocol_id,
            m.priority_flag,
            "",  # schedule_delivery_time: the dispatcher already waited for it
            validity,
            1,  # registered_delivery: the receipt is how we track the message
            0,
            data_coding,
            0,
            short_message,
            tlvs,
            0,
            0,
        ),
    )
    return pdu


def _validity(expires_at: float) -> str:
    """SMPP v3.4 7.1.1 absolute time, UTC: YYMMDDhhmmss, tenths, quarter-hours, '+'."""
    try:
        return datetime.fromtimestamp(expires_at, UTC).strftime("%y%m%d%H%M%S") + "000+"
    except (OverflowError, OSError, ValueError):
        raise LocalSmppError(f"expires_at {expires_at} is not a time", _S.ESME_RINVEXPIRY) from None


def _sar_position(tlvs: _Tlvs) -> Concat | None:
    """Where the SAR TLVs put this part, checked: all three or none, 0 < seq <= total."""
    ref = tlv_raw(tlvs, _SAR_REF)
    total = tlv_raw(tlvs, _SAR_TOTAL)
    seq = tlv_raw(tlvs, _SAR_SEQ)
    if ref is None and total is None and seq is None:
        return None
    if ref is None or total is None or seq is None:
        raise LocalSmppError(
            "sar_msg_ref_num, sar_total_segments and sar_segment_seqnum go together",
            _S.ESME_RMISSINGOPTPARAM,
        )
    if not 0 < seq[0] <= total[0]:
        raise LocalSmppError(
            f"sar_segment_seqnum {seq[0]} is not within sar_total_segments {total[0]}",
            _S.ESME_RINVOPTPARAMVAL,
        )
    return Concat(int.from_bytes(ref, "big"), total[0], seq[0], 16)


def stored_content(message: NewMessage) -> tuple[MessageContent, _Tlvs]:
    """What a stored message carries (body, encoding, UDH elements, its place in a series)
    and its TLVs, read back from the store's bytes.

    Raises:
        LocalSmppError: TLVs that do not parse, a bad UDH, a body its data_coding cannot be.
    """
    tlvs = _parse_tlvs(message.tlvs)
    probe = SubmitSm(
        esm_class=message.esm_class,
        data_coding=message.data_coding,
        short_message=message.short_message,
        tlvs=tlvs,
    )
    try:
        return message_content(probe), tlvs
    except SmppError as exc:
        raise LocalSmppError(str(exc.args[0]), exc.status) from None
    except SmsError as exc:
        raise LocalSmppError(f"bad UDH: {exc}", _S.ESME_RINVESMCLASS) from None


def _parse_tlvs(raw: bytes) -> _Tlvs:
    """The stored TLVs (tag, length, value as on the wire), each checked like the decoder does.

    Raises:
        LocalSmppError: a TLV runs past the end, or has the wrong length for its tag.
    """
    out = []
    p, n = 0, len(raw)
    while p < n:
        if p + 4 > n:
            raise LocalSmppError("stored TLVs end inside a TLV header", _S.ESME_RINVOPTPARSTREAM)
        tag, length = _TLV_HEAD.unpack_from(raw, p)
        p += 4
        end = p + length
        if end > n:
            raise LocalSmppError(
                f"stored TLV 0x{tag:04X} of length {length} runs past the end",
                _S.ESME_RINVOPTPARSTREAM,
            )
        value = raw[p:end]
        try:
            check_tlv(tag, value)
        except RemoteSmppError as exc:
            raise LocalSmppError(str(exc.args[0]), exc.status) from None
        out.append(Tlv(tag, value))
        p = end
    return tuple(out)
