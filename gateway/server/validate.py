"""Accept-time checks of submit_sm, data_sm and submit_multi: the fields every destination
shares, before a message id is spent or the store is touched.

What is refused, and with which status (SMPP v3.4 section 5.1.3):

* registered_delivery with reserved bits (7-5 set, or receipt value 3): ESME_RINVREGDLVFLG.
* a reserved data_coding: ESME_RINVDCS (SMPP v5.0's code: v3.4 has none). SMPP v3.4 5.2.19
  reserves 0x09 (pictogram, which we cannot decode), 0x0B, 0x0C and 0x0F-0xBF; of those we
  accept the GSM TP-DCS general groups 0x10-0x7F that applications use for flash and
  class-n messages, except their reserved alphabet (bits 3-2 = 11), and refuse 0x80-0xBF.
* a source_addr over 20 characters, whatever its ton: ESME_RINVSRCADR. data_sm allows 64, but
  the receipt's destination_addr and an upstream's submit_sm source_addr hold 20 (21 octets
  with the NUL, SMPP v3.4 5.2.8-5.2.9): accepted, such a message could never be finished.
  (The destination is checked after normalisation, by the server: ESME_RINVDSTADR.)
* source_addr against its ton: alphanumeric (ton 5) is 1-11 characters; international (1),
  national (2), subscriber (4) and abbreviated (6) numbers are digits (international may lead
  with '+', at most 15 digits, E.164); ton 0 is a number, or an alphanumeric sender of at most
  11 characters; an empty source_addr (the SMSC's default) is allowed except with ton 5:
  ESME_RINVSRCADR. A ton over 6 is reserved: ESME_RINVSRCTON.
* both short_message and message_payload: ESME_RINVPARLEN (5.3.2.32).
* schedule_delivery_time that does not parse (7.1.1), or further ahead than `max_validity`:
  ESME_RINVSCHED. One in the past means "now".
* validity_period that does not parse, is already past, or ends before the schedule:
  ESME_RINVEXPIRY. data_sm carries its validity as the qos_time_to_live TLV (seconds).

Validity: none given means `default_validity`; any given is capped at `max_validity`; both
are counted from when the message becomes due (its schedule, else its acceptance), so a
message scheduled three days out is not born expired.

replace_sm (`check_replace`) parses its new times the same way; an empty one keeps the
message's (SMPP v3.4 4.10.1). A new schedule with the validity kept moves the expiry with it:
the validity period, counted from when the message is due, is what is kept.

Deliberately allowed: a short_message longer than one SMS without a UDH. SMPP allows 254
octets there, carriers split or refuse such bodies themselves, and refusing them here would
break applications that rely on that; a driver that cannot carry one fails that message.

The everyday submit_sm (no times, no TLVs) costs a handful of integer and string tests:
the time parser is not called for empty fields.
"""

from __future__ import annotations

from typing import Any

from gateway.config import MessagesConfig
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.pdu import DataSm
from gateway.smpp.times import SmppTimeError, parse_smpp_time
from gateway.smpp.tlv import tlv_raw

__all__ = ["ADDRESS_MAX", "Rejected", "check_replace", "check_submit", "source_status"]

_S = CommandStatus
_PAYLOAD = int(Tag.message_payload)
_TTL = int(Tag.qos_time_to_live)

# data_coding values we refuse (see the module docstring).
_BAD_DCS = frozenset(
    {0x09, 0x0B, 0x0C, 0x0F}
    | {dcs for dcs in range(0x10, 0x80) if (dcs >> 2) & 0x03 == 0x03}
    | set(range(0x80, 0xC0))
)
ADDRESS_MAX = 20  # characters of an address every PDU we build can carry (21 octets with NUL)
_ALNUM_MAX = 11  # characters in an alphanumeric sender (3GPP TS 23.040 9.1.2.5: 11 septets)
_E164_MAX = 15


class Rejected(Exception):
    """A request refused at acceptance; `status` is the response's command_status."""

    def __init__(self, status: CommandStatus) -> None:
        super().__init__(status.name)
        self.status = status


def source_status(ton: int, addr: str) -> CommandStatus | None:
    """Why `addr` is not a valid source_addr for `ton`, or None when it is."""
    if len(addr) > ADDRESS_MAX:
        return _S.ESME_RINVSRCADR
    if ton == 5:
        return None if 0 < len(addr) <= _ALNUM_MAX and addr.isprintable() else _S.ESME_RINVSRCADR
    if ton > 6:
        return _S.ESME_RINVSRCTON
    if not addr or ton == 3:  # empty: the SMSC's default; 3: network specific, any form
        return None
    digits = addr[1:] if ton <= 1 and addr[0] == "+" else addr
    if digits.isascii() and digits.isdigit():
        return None if ton != 1 or len(digits) <= _E164_MAX else _S.ESME_RINVSRCADR
    if ton == 0 and len(addr) <= _ALNUM_MAX and addr.isprintable():
        return None  # an alphanumeric sender written with ton 0: common, and harmless
    return _S.ESME_RINVSRCADR


def check_submit(pdu: Any, now: float, limits: MessagesConfig) -> tuple[float | None, float]:
    """Check what a submit_sm / data_sm / submit_multi's destinations share.

    Args:
        pdu: the decoded request.
        now: epoch seconds, the message's acceptance time.
        limits: default and maximum validity.

    Returns:
        (schedule_at, expires_at) in epoch seconds; schedule_at None means "now".

    Raises:
        Rejected: the first problem found, with its status.
    """
    rd = pdu.registered_delivery
    if rd & 0xE0 or rd & 0x03 == 0x03:
        raise Rejected(_S.ESME_RINVREGDLVFLG)
    if pdu.data_coding in _BAD_DCS:
        raise Rejected(_S.ESME_RINVDCS)
    bad_source = source_status(pdu.source_addr_ton, pdu.source_addr)
    if bad_source is not None:
        raise Rejected(bad_source)
    tlvs = pdu.tlvs
    schedule_at = expires_at = None
    if type(pdu) is DataSm:
        ttl = tlv_raw(tlvs, _TTL) if tlvs else None
        if ttl is not None:
            if len(ttl) != 4 or not int.from_bytes(ttl, "big"):
                raise Rejected(_S.ESME_RINVEXPIRY)
            expires_at = now + int.from_bytes(ttl, "big")
    else:
        if tlvs and pdu.short_message and tlv_raw(tlvs, _PAYLOAD) is not None:
            raise Rejected(_S.ESME_RINVPARLEN)
        if pdu.schedule_delivery_time:
            schedule_at = _schedule(pdu.schedule_delivery_time, now, limits)
        if pdu.validity_period:
            expires_at = _expiry(pdu.validity_period, now)
    start = now if schedule_at is None else schedule_at
    if expires_at is None:
        return schedule_at, start + limits.default_validity
    return schedule_at, _capped(expires_at, start, limits)


def check_replace(
    pdu: Any,
    now: float,
    limits: MessagesConfig,
    *,
    schedule_at: float | None,
    expires_at: float | None,
    accepted_at: float,
) -> tuple[float | None, float] | None:
    """The new (schedule_at, expires_at) a replace_sm gives a waiting message.

    Args:
        pdu: the decoded replace_sm.
        now: epoch seconds.
        limits: as for `check_submit`.
        schedule_at, expires_at, accepted_at: the message's, as stored.

    Returns:
        The new times, or None when the request keeps both (both fields empty).

    Raises:
        Rejected: ESME_RINVSCHED or ESME_RINVEXPIRY, as `check_submit`.
    """
    if not pdu.schedule_delivery_time and not pdu.validity_period:
        return None
    if pdu.schedule_delivery_time:
        schedule = _schedule(pdu.schedule_delivery_time, now, limits)
    else:
        schedule = schedule_at if schedule_at is not None and schedule_at > now else None
    start = now if schedule is None else schedule
    if pdu.validity_period:
        return schedule, _capped(_expiry(pdu.validity_period, now), start, limits)
    if expires_at is None:
        return schedule, start + limits.default_validity
    # The validity kept is a period from when the message is due: it moves with the schedule.
    was_due = schedule_at if schedule_at is not None else accepted_at
    return schedule, _capped(expires_at + (start - was_due), start, limits)


def _schedule(text: str, now: float, limits: MessagesConfig) -> float | None:
    try:
        schedule_at = parse_smpp_time(text, now)
    except SmppTimeError:
        raise Rejected(_S.ESME_RINVSCHED) from None
    if schedule_at is not None and schedule_at <= now:
        return None  # already due
    if schedule_at is not None and schedule_at > now + limits.max_validity:
        raise Rejected(_S.ESME_RINVSCHED)
    return schedule_at


def _expiry(text: str, now: float) -> float | None:
    try:
        expires_at = parse_smpp_time(text, now)
    except SmppTimeError:
        raise Rejected(_S.ESME_RINVEXPIRY) from None
    if expires_at is not None and expires_at <= now:
        raise Rejected(_S.ESME_RINVEXPIRY)
    return expires_at


def _capped(expires_at: float | None, start: float, limits: MessagesConfig) -> float:
    if expires_at is None:
        return start + limits.default_validity
    if expires_at <= start:
        raise Rejected(_S.ESME_RINVEXPIRY)
    return min(expires_at, start + limits.max_validity)
