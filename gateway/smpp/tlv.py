"""Optional parameters (TLVs), SMPP v3.4 section 5.3.

A PDU keeps its TLVs as a tuple of raw `Tlv(tag, value)` in arrival order, so a TLV we do not
know (vendor tags 0x1400-0x3FFF and anything newer) goes back out byte for byte. The typed view
is by name: `tlv_value(pdu.tlvs, Tag.sar_msg_ref_num)` gives an int, `make_tlvs(
message_payload=b"...")` builds them. Known tags have their length checked on decode
(`check_tlv`), so a bad value is refused at the edge with ESME_RINVPARLEN rather than later.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.errors import LocalSmppError, RemoteSmppError

__all__ = [
    "TLV_SPECS",
    "Tlv",
    "TlvSpec",
    "check_tlv",
    "make_tlv",
    "make_tlvs",
    "tlv_raw",
    "tlv_value",
    "with_tlv",
]


class Tlv(NamedTuple):
    tag: int
    value: bytes


class TlvSpec(NamedTuple):
    """kind: "int" (size octets), "cstr" (max octets incl. NUL), "octets" (min..max), "empty"."""

    kind: str
    min_size: int
    max_size: int


def _int(size: int) -> TlvSpec:
    return TlvSpec("int", size, size)


def _cstr(max_size: int) -> TlvSpec:
    return TlvSpec("cstr", 1, max_size)


def _octets(lo: int, hi: int) -> TlvSpec:
    return TlvSpec("octets", lo, hi)


T = Tag
TLV_SPECS: dict[int, TlvSpec] = {
    T.dest_addr_subunit: _int(1),
    T.dest_network_type: _int(1),
    T.dest_bearer_type: _int(1),
    T.dest_telematics_id: _int(2),
    T.source_addr_subunit: _int(1),
    T.source_network_type: _int(1),
    T.source_bearer_type: _int(1),
    T.source_telematics_id: _int(1),
    T.qos_time_to_live: _int(4),
    T.payload_type: _int(1),
    T.additional_status_info_text: _cstr(256),
    T.receipted_message_id: _cstr(65),
    T.ms_msg_wait_facilities: _int(1),
    T.privacy_indicator: _int(1),
    T.source_subaddress: _octets(2, 23),
    T.dest_subaddress: _octets(2, 23),
    T.user_message_reference: _int(2),
    T.user_response_code: _int(1),
    T.source_port: _int(2),
    T.destination_port: _int(2),
    T.sar_msg_ref_num: _int(2),
    T.language_indicator: _int(1),
    T.sar_total_segments: _int(1),
    T.sar_segment_seqnum: _int(1),
    T.sc_interface_version: _int(1),
    T.callback_num_pres_ind: _int(1),
    T.callback_num_atag: _octets(0, 65),
    T.number_of_messages: _int(1),
    T.callback_num: _octets(4, 19),
    T.dpf_result: _int(1),
    T.set_dpf: _int(1),
    T.ms_availability_status: _int(1),
    T.network_error_code: _octets(3, 3),
    T.message_payload: _octets(0, 65535),
    T.delivery_failure_reason: _int(1),
    T.more_messages_to_send: _int(1),
    T.message_state: _int(1),
    T.ussd_service_op: _int(1),
    T.display_time: _int(1),
    T.sms_signal: _int(2),
    T.ms_validity: _int(1),
    T.alert_on_message_delivery: TlvSpec("empty", 0, 0),
    T.its_reply_type: _int(1),
    T.its_session_info: _octets(2, 2),
}
_BY_NAME = {tag.name: tag for tag in Tag}


def check_tlv(tag: int, value: bytes) -> None:
    """Refuse a known TLV whose length is wrong for its tag.

    Raises:
        RemoteSmppError: ESME_RINVPARLEN.
    """
    spec = TLV_SPECS.get(tag)
    if spec is None:
        return
    n = len(value)
    if spec.kind == "cstr":
        # Carriers often omit the NUL of receipted_message_id; we take it either way.
        ok = n <= spec.max_size and (b"\0" not in value[:-1])
    else:
        ok = spec.min_size <= n <= spec.max_size
    if not ok:
        name = Tag(tag).name
        raise RemoteSmppError(f"TLV {name} has length {n}", CommandStatus.ESME_RINVPARLEN)


def tlv_raw(tlvs: Iterable[Tlv], tag: int) -> bytes | None:
    """The raw value of the first TLV with `tag`, or None."""
    for t, v in tlvs:
        if t == tag:
            return v
    return None


def tlv_value(tlvs: Iterable[Tlv], tag: int) -> int | str | bytes | None:
    """The typed value of the first TLV with `tag`: int, str (C-strings, NUL dropped), bytes
    (octet strings and unknown tags), b"" for alert_on_message_delivery; None when absent."""
    raw = tlv_raw(tlvs, tag)
    if raw is None:
        return None
    spec = TLV_SPECS.get(tag)
    if spec is None or spec.kind in ("octets", "empty"):
        return raw
    if spec.kind == "int":
        return int.from_bytes(raw, "big")
    return raw.split(b"\0", 1)[0].decode("latin-1")


def make_tlv(tag: int, value: int | str | bytes) -> Tlv:
    """One TLV from a typed value, checked against the tag's spec.

    Raises:
        LocalSmppError: the value does not fit the tag.
    """
    spec = TLV_SPECS.get(tag)
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        try:
            raw = value.encode("latin-1") + b"\0"
        except UnicodeEncodeError:
            raise LocalSmppError(
                f"TLV 0x{tag:04X}: {value!r} is not Latin-1", CommandStatus.ESME_RINVOPTPARAMVAL
            ) from None
    elif spec is not None and spec.kind == "int":
        try:
            raw = value.to_bytes(spec.max_size, "big")
        except OverflowError:
            raise LocalSmppError(
                f"TLV {Tag(tag).name} value {value} does not fit {spec.max_size} octets",
                CommandStatus.ESME_RINVOPTPARAMVAL,
            ) from None
    else:
        raise LocalSmppError(
            f"TLV 0x{tag:04X} needs bytes or str, got {type(value).__name__}",
            CommandStatus.ESME_RINVOPTPARAMVAL,
        )
    if not 0 <= tag <= 0xFFFF or len(raw) > 0xFFFF:
        raise LocalSmppError(f"TLV 0x{tag:04X} too long or bad tag", CommandStatus.ESME_RINVPARLEN)
    try:
        check_tlv(tag, raw)
    except RemoteSmppError as exc:
        raise LocalSmppError(str(exc.args[0]), exc.status) from None
    return Tlv(tag, raw)


def make_tlvs(**values: int | str | bytes) -> tuple[Tlv, ...]:
    """TLVs by name: `make_tlvs(sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=1)`.

    Raises:
        LocalSmppError: an unknown name or a value that does not fit.
    """
    out = []
    for name, value in values.items():
        tag = _BY_NAME.get(name)
        if tag is None:
            raise LocalSmppError(f"unknown TLV name {name!r}", CommandStatus.ESME_RINVOPTPARAMVAL)
        out.append(make_tlv(tag, value))
    return tuple(out)


def with_tlv(tlvs: tuple[Tlv, ...], tag: int, value: int | str | bytes) -> tuple[Tlv, ...]:
    """`tlvs` with the TLV `tag` set to `value` (replacing any with that tag)."""
    return (*(t for t in tlvs if t.tag != tag), make_tlv(tag, value))
