"""The emulated modems' network: the SMSC and what a test sends a modem (see
`drivers.modem.emulator` for the whole picture)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from gateway.sms import Encoding, SmsError, decode_text, encode_gsm7, encode_text
from gateway.sms.segment import udh8_headers
from gateway.sms.tpdu import (
    EncodedPdu,
    SmsSubmit,
    decode_pdu,
    deliver_tpdus,
    encode_sms_deliver,
    encode_status_report,
)

if TYPE_CHECKING:
    from drivers.modem.emulator import ModemEmulator

__all__ = [
    "CME_TEXT",
    "CMS_TEXT",
    "NetworkEvent",
    "ReceivedMessage",
    "SimNetwork",
    "SubmitRejected",
    "SubmittedPart",
]

CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    16: "incorrect password",
    20: "memory full",
    21: "invalid index",
    30: "no network service",
    50: "incorrect parameters",
    100: "unknown",
}
CMS_TEXT = {  # 27.005 3.2.5; 0-127 are TS 24.011 RP causes passed on from the network
    1: "Unassigned (unallocated) number",
    21: "Short message transfer rejected",
    38: "Network out of order",
    42: "Congestion",
    300: "ME failure",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    314: "SIM busy",
    316: "SIM PUK required",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
    512: "MM establishment failure",  # vendor range; the words SIMCom / Wavecom print
}


class SubmitRejected(Exception):
    """The network (or the modem in front of it) refused an SMS-SUBMIT with a +CMS ERROR code."""

    def __init__(self, cms: int, reason: str) -> None:
        super().__init__(f"+CMS ERROR: {cms} ({reason})")
        self.cms = cms
        self.reason = reason


# -- the network ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmittedPart:
    """One SMS-SUBMIT the network accepted."""

    modem: str  # the sending modem's IMEI
    message_ref: int  # the TP-MR the modem reported in +CMGS
    submit: SmsSubmit
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A whole message as the network received it (all its parts, reassembled).

    Attributes:
        modem: IMEI of the modem it came from.
        text: the reassembled text; None for 8-bit data.
        parts: each part's decoded SMS-SUBMIT, in part order.
        message_refs: the TP-MR assigned to each part, in part order.
    """

    modem: str
    destination: str
    text: str | None
    parts: tuple[SmsSubmit, ...]
    message_refs: tuple[int, ...]
    encoding: Encoding
    status_report_request: bool
    received_at: datetime


@dataclass(frozen=True, slots=True)
class NetworkEvent:
    """Something the network hands one modem.

    kind: "deliver" (an SMS-DELIVER in `pdu`), "status_report" (`pdu`), "urc" (`line` written
    as is), "registration" (`value` is the new +CREG <stat>, -1 to stop forcing one) or
    "signal" (`value` is the +CSQ <rssi>).
    """

    kind: Literal["deliver", "status_report", "urc", "registration", "signal"]
    pdu: EncodedPdu | None = None
    line: str = ""
    value: int = 0


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _key(modem: ModemEmulator | str) -> str:
    return modem if isinstance(modem, str) else modem.imei


class SimNetwork:
    """The operator behind one or more emulated modems. Safe to call from any thread.

    Args:
        report_delay: seconds between accepting a submit and sending its status report.
        smsc: the SMSC address the network puts before the PDUs it sends.
        clock: monotonic seconds; the deadlines of `due` / `next_due` are in its units.
        utcnow: the wall clock for timestamps (TP-SCTS, TP-DT), aware.
        ussd: USSD request -> reply text; requests not listed get "+CUSD: 4" (not supported).
    """

    def __init__(
        self,
        *,
        report_delay: float = 0.5,
        smsc: str = "+15550000000",
        clock: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] = _utcnow,
        ussd: Mapping[str, str] | None = None,
    ) -> None:
        self.report_delay = report_delay
        self.smsc = smsc
        self.clock = clock
        self.utcnow = utcnow
        self.ussd: dict[str, str] = dict(
            ussd if ussd is not None else {"*100#": "Your balance is 12.34 EUR"}
        )
        self.received: list[ReceivedMessage] = []
        self.submitted: list[SubmittedPart] = []
        self.undelivered: list[tuple[str, EncodedPdu]] = []  # refused with AT+CNMA=2
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queues: dict[str, list[tuple[float, int, NetworkEvent]]] = {}
        self._wakers: dict[str, Callable[[], None]] = {}
        self._seq = itertools.count()
        self._next_mr: dict[str, int] = {}
        self._statuses: dict[str, tuple[int, ...]] = {}
        self._rejects: dict[str, int] = {}
        self._partial: dict[tuple[str, str, int, int, int], dict[int, tuple[int, SmsSubmit]]] = {}
        self._concat_ref = itertools.count(1)
        # Told of each whole message received (under the lock: keep it short), as a journal.
        self.on_received: Callable[[ReceivedMessage], None] | None = None

    # configuration

    def set_report_status(self, destination: str, *statuses: int) -> None:
        """Reports for `destination`: one per TP-ST given, `report_delay` apart (e.g. 0x30 then
        0x00: pending, then delivered; 0x41 alone: failed). None given: no report at all."""
        with self._lock:
            self._statuses[destination] = tuple(statuses)

    def reject(self, destination: str, cms: int = 21) -> None:
        """Refuse every submit to `destination` with +CMS ERROR `cms` (an RP cause, 0-127)."""
        with self._lock:
            self._rejects[destination] = cms

    def set_next_mr(self, modem: ModemEmulator | str, message_ref: int) -> None:
        """The TP-MR the modem's next accepted submit gets (0-255)."""
        with self._lock:
            self._next_mr[_key(modem)] = message_ref & 0xFF

    # modems

    def attach(self, imei: str, wake: Callable[[], None]) -> None:
        """Called by a modem: `wake` is called (from any thread) when something is queued."""
        with self._lock:
            self._queues.setdefault(imei, [])
            self._wakers[imei] = wake

    def detach(self, imei: str) -> None:
        """Called by a modem that stops; what is queued for it waits for its return."""
        with self._lock:
            self._wakers.pop(imei, None)

    def now(self) -> float:
        return self.clock()

    def due(self, imei: str, now: float) -> list[NetworkEvent]:
        """Events for `imei` whose time has come, oldest first; they are removed."""
        out = []
        with self._lock:
            queue = self._queues.get(imei)
            while queue and queue[0][0] <= now:
                out.append(heapq.heappop(queue)[2])
        return out

    def next_due(self, imei: str) -> float | None:
        """When `due` will next have something for `imei`, or None."""
        with self._lock:
            queue = self._queues.get(imei)
            return queue[0][0] if queue else None

    def last_due(self, imei: str) -> float | None:
        """When the last event now queued for `imei` falls due, or None (a test waits for
        what the network holds for a modem that is away)."""
        with self._lock:
            queue = self._queues.get(imei)
            return max(when for when, _, _ in queue) if queue else None

    def _push(self, imei: str, event: NetworkEvent, delay: float) -> None:
        with self._lock:
            queue = self._queues.setdefault(imei, [])
            heapq.heappush(queue, (self.clock() + delay, next(self._seq), event))
            wake = self._wakers.get(imei)
        if wake is not None:
            wake()

    # the SMSC

    def submit(
        self, imei: str, pdu: bytes, *, length: int | None = None, text_mode: bool = False
    ) -> int:
        """Check and accept one SMS-SUBMIT as the SMSC would.

        Args:
            imei: the sending modem.
            pdu: the SMSC address part and the TPDU, as AT+CMGS takes them.
            length: the <length> given in AT+CMGS (TPDU octets), None in text mode.
            text_mode: errors are 305 (text mode parameter) instead of 304.

        Returns:
            The TP-MR assigned (the modem reports it in +CMGS).

        Raises:
            SubmitRejected: with the +CMS ERROR code a real modem would give.
        """
        bad = 305 if text_mode else 304
        if not pdu or pdu[0] > 11 or 1 + pdu[0] >= len(pdu):
            raise SubmitRejected(bad, "no TPDU after the SMSC address")
        tpdu_octets = len(pdu) - 1 - pdu[0]
        if length is not None and tpdu_octets != length:
            raise SubmitRejected(bad, f"AT+CMGS={length} but the TPDU has {tpdu_octets} octets")
        try:
            decoded = decode_pdu(pdu, direction="mo")
        except SmsError as exc:
            raise SubmitRejected(bad, str(exc)) from None
        if not isinstance(decoded, SmsSubmit):  # pragma: no cover - direction="mo" ensures it
            raise SubmitRejected(bad, "not an SMS-SUBMIT")
        digits = decoded.destination.removeprefix("+")
        if (decoded.destination_toa & 0x70) == 0x50 or not digits.isdigit():
            raise SubmitRejected(bad, f"bad destination {decoded.destination!r}")
        if decoded.encoding not in (Encoding.GSM7, Encoding.UCS2, Encoding.BINARY):
            raise SubmitRejected(bad, "unsupported data coding")
        now = self.utcnow()
        with self._lock:
            cms = self._rejects.get(decoded.destination)
            if cms is not None:
                raise SubmitRejected(cms, CMS_TEXT.get(cms, "rejected by the network"))
            mr = self._next_mr.get(imei, 0)
            self._next_mr[imei] = (mr + 1) & 0xFF
            self.submitted.append(SubmittedPart(imei, mr, decoded, now))
            self._reassemble(imei, mr, decoded, now)
            statuses = self._statuses.get(decoded.destination, (0,))
            self._changed.notify_all()
        if decoded.status_report_request:
            for i, status in enumerate(statuses):
                delay = self.report_delay * (i + 1)
                report = encode_status_report(
                    message_ref=mr,
                    recipient=decoded.destination,
                    recipient_toa=decoded.destination_toa,
                    timestamp=now,
                    discharge_time=now + timedelta(seconds=round(delay)),
                    status=status,
                    smsc=self.smsc,
                )
                self._push(imei, NetworkEvent("status_report", pdu=report), delay)
        return mr

    def _reassemble(self, imei: str, mr: int, part: SmsSubmit, now: datetime) -> None:
        concat = part.concat
        if concat is None or concat.total == 1:
            self._record(imei, [(mr, part)], now)
            return
        key = (imei, part.destination, concat.ref_bits, concat.ref, concat.total)
        got = self._partial.setdefault(key, {})
        got.setdefault(concat.seq, (mr, part))  # a repeated part: the first copy counts
        if len(got) == concat.total:
            del self._partial[key]
            self._record(imei, [got[i] for i in sorted(got)], now)

    def _record(self, imei: str, parts: list[tuple[int, SmsSubmit]], now: datetime) -> None:
        first = parts[0][1]
        body = b"".join(p.user_data for _, p in parts)
        text: str | None = None
        if first.encoding is not Encoding.BINARY:
            text = decode_text(body, first.encoding, first.alphabet, errors="replace")
        message = ReceivedMessage(
            modem=imei,
            destination=first.destination,
            text=text,
            parts=tuple(p for _, p in parts),
            message_refs=tuple(mr for mr, _ in parts),
            encoding=first.encoding,
            status_report_request=any(p.status_report_request for _, p in parts),
            received_at=now,
        )
        self.received.append(message)
        if self.on_received is not None:
            self.on_received(message)

    def refused(self, imei: str, pdu: EncodedPdu) -> None:
        """A modem's TE refused a message (AT+CNMA=2): kept in `undelivered`."""
        with self._lock:
            self.undelivered.append((imei, pdu))

    def wait_received(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until `received` holds at least `count` messages; a copy of it.

        Raises:
            TimeoutError: fewer arrived within `timeout` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(f"{len(self.received)} of {count} messages received")
            return list(self.received)

    # what a test sends the modem

    def inject(
        self,
        to_modem: ModemEmulator | str,
        sender: str,
        text: str,
        *,
        parts: int | None = None,
        ucs2: bool = False,
        delay: float = 0.0,
    ) -> list[EncodedPdu]:
        """Send `text` from `sender` to a modem, as SMS-DELIVERs (concatenated when long).

        Args:
            parts: cut the text into this many parts (concatenation UDH) even when it would
                fit in fewer; None lets the segmenter decide.
            ucs2: encode as UCS-2 even when GSM 7-bit would do.
            delay: seconds before the first part arrives.

        Returns:
            The PDUs sent, in order.
        """
        encoding = Encoding.UCS2 if ucs2 else None
        timestamp = self.utcnow()
        ref = next(self._concat_ref) & 0xFF
        if parts is None or parts <= 1:
            pdus = deliver_tpdus(
                text, sender, timestamp=timestamp, ref=ref, smsc=self.smsc, encoding=encoding
            )
        else:
            pdus = self._deliver_cut(text, sender, timestamp, ref=ref, parts=parts, ucs2=ucs2)
        for pdu in pdus:
            self._push(_key(to_modem), NetworkEvent("deliver", pdu=pdu), delay)
        return pdus

    def _deliver_cut(
        self, text: str, sender: str, timestamp: datetime, *, ref: int, parts: int, ucs2: bool
    ) -> list[EncodedPdu]:
        # Cut by characters, so an escape pair or a surrogate pair is never split.
        chars = list(text)
        per = -(-len(chars) // parts)
        chunks = ["".join(chars[i * per : (i + 1) * per]) for i in range(parts)]
        encoding = Encoding.UCS2 if ucs2 else Encoding.GSM7
        if not ucs2:
            try:
                encode_gsm7(text)
            except SmsError:
                encoding = Encoding.UCS2
        udhs = udh8_headers(ref, parts)
        return [
            encode_sms_deliver(
                originator=sender,
                body=encode_text(chunk, encoding),
                encoding=encoding,
                timestamp=timestamp,
                udh=udhs[i],
                more_messages=i < parts - 1,
                smsc=self.smsc,
            )
            for i, chunk in enumerate(chunks)
        ]

    def inject_pdu(
        self, to_modem: ModemEmulator | str, pdu: EncodedPdu | str, *, delay: float = 0.0
    ) -> None:
        """Deliver a ready-made PDU (hex with the SMSC part, or an EncodedPdu) as is."""
        if isinstance(pdu, str):
            raw = bytes.fromhex(pdu)
            pdu = EncodedPdu(raw, len(raw) - 1 - raw[0], raw.hex().upper())
        self._push(_key(to_modem), NetworkEvent("deliver", pdu=pdu), delay)

    def inject_urc(self, to_modem: ModemEmulator | str, line: str, *, delay: float = 0.0) -> None:
        """Have the modem write `line` as an unsolicited result code."""
        self._push(_key(to_modem), NetworkEvent("urc", line=line), delay)

    def set_registration(
        self, to_modem: ModemEmulator | str, stat: int | None, *, delay: float = 0.0
    ) -> None:
        """Force the modem's +CREG <stat> (0 none, 1 home, 2 searching, 3 denied, 5 roaming);
        None returns it to its own course."""
        value = -1 if stat is None else stat
        self._push(_key(to_modem), NetworkEvent("registration", value=value), delay)

    def set_signal(self, to_modem: ModemEmulator | str, rssi: int, *, delay: float = 0.0) -> None:
        """The modem's +CSQ <rssi> (0-31, 99 unknown)."""
        self._push(_key(to_modem), NetworkEvent("signal", value=rssi), delay)
