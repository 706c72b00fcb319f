"""One SMPP v3.4 session, sans-IO: bytes and the clock in, events and bytes out.

Theory of operation
-------------------
The same `Session` serves both ends: ``Role.SMSC`` (applications bind to us) and ``Role.ESME``
(we bind to a carrier). The shell feeds what the socket read to `receive_data`, drains
`next_event` until it returns None, writes `data_to_send`, and arms a timer for
`next_deadline`, calling `handle_timer` when it fires (see aioquic's ``get_timer`` /
``handle_timer``). No sockets, no asyncio, no clock: `now` is always an argument.

State (SMPP v3.4 section 2.2) lives in two tables. `TRANSITIONS` moves the session on the bind
and unbind exchanges; `ALLOWED` says which requests each side may send in each state. A request
the peer may not send now is answered for us with ESME_RINVBNDSTS (section 2.3), an unknown or
malformed one with generic_nack or the request's own response carrying the error status
(section 4.3), and a framing error (a command_length we cannot trust) closes the session after
the generic_nack. We refuse to *send* what the state forbids (`LocalSmppError`).

Handled here, not by the application: enquire_link answers; an idle link is probed with
enquire_link every `enquire_link_interval` and closed when a probe goes unanswered or nothing
arrives for `inactivity_timeout`; an SMSC session not bound within `bind_timeout` is closed;
requests we sent and that got no response within `response_timeout` come back as
`RequestTimedOut`; a late response for one is dropped (so the shell never acts twice), or, when
the session remembers timed-out requests (`late_response_memory`, bounded in count and age),
handed on once as `LateResponse` - a carrier that accepted a submit_sm after our timeout must
not get it twice; an unbind from the peer is answered and ends the session.

A carrier that sends deliver_sm to a transmitter bind breaks section 2.3; with
`accept_deliver_on_tx` (ESME role) those are handed on as `Request`s instead of refused, so the
receipt they carry is not lost.

Left to the application: authentication (a `BindRequested` event, answered with `accept_bind`
or `reject_bind`), and answering every other request the peer sends (`Request` events).

One read may carry several PDUs; they are taken in order, and the session stops reading where
their order matters. After a `BindRequested` nothing more is read until the bind is answered,
so requests right behind a bind in the same segment are taken as bound (`accept_bind` goes on
with them); after `reject_bind` nothing more is read at all (the shell closes). After a peer's
unbind or a framing error nothing more is read or answered: in the SMSC role the requests
already handed on are answered first (at most `response_timeout`), then the unbind_resp or the
generic_nack goes out and the session closes, so no answer ever follows a closing PDU.

Sequence numbers run 1..0x7FFFFFFF (SMPP v3.4 5.1.4) and wrap, skipping any still waiting for
a response or remembered as timed out. A peer bound with interface_version below 0x34 (v3.3)
is never sent TLVs (optional parameters are new in 3.4): they are stripped at send time, by the
codec (decode, drop, encode: command_length follows), a message_payload moved into an empty
short_message when it fits.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum
from typing import Any, NamedTuple

from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandId, CommandStatus, Tag
from gateway.smpp.errors import LocalSmppError, RemoteSmppError
from gateway.smpp.framing import DEFAULT_MAX_LENGTH, FrameBuffer
from gateway.smpp.pdu import (
    COMMAND_IDS,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    Unbind,
    UnbindResp,
    response_class,
)
from gateway.smpp.tlv import make_tlvs, tlv_raw

__all__ = [
    "ALLOWED",
    "TRANSITIONS",
    "BindRequested",
    "Closed",
    "EncodedRequest",
    "Event",
    "LateResponse",
    "Request",
    "RequestTimedOut",
    "Response",
    "Role",
    "Session",
    "State",
]

_SC_VERSION_34 = make_tlvs(sc_interface_version=0x34)
_PAYLOAD = int(Tag.message_payload)
_SM_MAX = 254  # octets of short_message (SMPP v3.4 5.2.22)
_SEQ_MAX = 0x7FFFFFFF

C = CommandId


class Role(Enum):
    ESME = "esme"
    SMSC = "smsc"


class State(Enum):
    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


_BIND_STATE = {
    C.bind_transmitter_resp: State.BOUND_TX,
    C.bind_receiver_resp: State.BOUND_RX,
    C.bind_transceiver_resp: State.BOUND_TRX,
}
_BOUND = (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)

# A successful response moves both ends the same way, whoever sent it.
TRANSITIONS: dict[tuple[State, CommandId], State] = {
    **{(State.OPEN, resp): state for resp, state in _BIND_STATE.items()},
    **{(bound, C.unbind_resp): State.CLOSED for bound in (*_BOUND, State.UNBINDING)},
}

_ESME_TX = frozenset(
    {C.submit_sm, C.submit_multi, C.data_sm, C.query_sm, C.cancel_sm, C.replace_sm}
)
_SMSC_RX = frozenset({C.deliver_sm, C.data_sm, C.alert_notification})
_BINDS = frozenset({C.bind_transmitter, C.bind_receiver, C.bind_transceiver})
_ALWAYS = frozenset({C.enquire_link, C.generic_nack})

# Requests each role may send in each state (SMPP v3.4 section 2.3, table 2-1).
ALLOWED: dict[tuple[Role, State], frozenset[CommandId]] = {
    (Role.ESME, State.OPEN): _BINDS | _ALWAYS,
    (Role.SMSC, State.OPEN): frozenset({C.outbind}) | _ALWAYS,
    (Role.ESME, State.BOUND_TX): _ESME_TX | _ALWAYS | {C.unbind},
    (Role.SMSC, State.BOUND_TX): _ALWAYS | {C.unbind},
    (Role.ESME, State.BOUND_RX): _ALWAYS | {C.unbind},
    (Role.SMSC, State.BOUND_RX): _SMSC_RX | _ALWAYS | {C.unbind},
    (Role.ESME, State.BOUND_TRX): _ESME_TX | _ALWAYS | {C.unbind},
    (Role.SMSC, State.BOUND_TRX): _SMSC_RX | _ALWAYS | {C.unbind},
    (Role.ESME, State.UNBINDING): _ALWAYS,
    (Role.SMSC, State.UNBINDING): _ALWAYS,
}


# -- events -----------------------------------------------------------------------------------


# Events are NamedTuples rather than frozen dataclasses: one is made for every PDU, and a
# tuple is several times cheaper to build.
class BindRequested(NamedTuple):
    """The peer asks to bind (SMSC role): answer with `accept_bind` or `reject_bind`."""

    pdu: Any


class EncodedRequest(NamedTuple):
    """A request sent with `Session.send_encoded`."""

    command_id: CommandId
    sequence_number: int
    data: bytes  # as given (sequence number 0)


class Request(NamedTuple):
    """A request the application must answer with `send(response)`."""

    pdu: Any


class Response(NamedTuple):
    """The response to one of our requests, with that request."""

    pdu: Any
    request: Any


class RequestTimedOut(NamedTuple):
    """No response to `request` within the response timeout; a late one will be dropped."""

    request: Any


class LateResponse(NamedTuple):
    """The response to `request` after it had timed out (`RequestTimedOut`): the peer did act
    on it. Only from a session that remembers timed-out requests (`late_response_memory`)."""

    pdu: Any
    request: Any


class Closed(NamedTuple):
    """The session is over; the shell closes the socket after writing `data_to_send`."""

    reason: str


Event = BindRequested | Request | Response | RequestTimedOut | LateResponse | Closed


class Session:
    """One SMPP session. See the module docstring.

    Args:
        role: which end we are.
        now: the clock at connection time (seconds, any monotonic origin).
        enquire_link_interval: probe after this long with nothing received.
        response_timeout: how long a request we sent may wait for its response.
        inactivity_timeout: close after this long with nothing received.
        bind_timeout: an SMSC session not bound by then is closed.
        max_pdu_length: the largest command_length accepted.
        late_response_memory: how many timed-out requests to remember so that a late
            response to one comes back as `LateResponse`; 0 drops late responses.
        late_response_window: how long a timed-out request is remembered (default ten
            response timeouts).
        accept_deliver_on_tx: (ESME role) hand on deliver_sm/data_sm the SMSC sends to a
            transmitter bind rather than refuse them with ESME_RINVBNDSTS.
    """

    def __init__(
        self,
        role: Role,
        *,
        now: float,
        enquire_link_interval: float = 30.0,
        response_timeout: float = 10.0,
        inactivity_timeout: float = 120.0,
        bind_timeout: float = 10.0,
        max_pdu_length: int = DEFAULT_MAX_LENGTH,
        late_response_memory: int = 0,
        late_response_window: float | None = None,
        accept_deliver_on_tx: bool = False,
    ) -> None:
        self.role = role
        self.peer = Role.ESME if role is Role.SMSC else Role.SMSC
        self.state = State.OPEN
        self.enquire_link_interval = enquire_link_interval
        self.response_timeout = response_timeout
        self.inactivity_timeout = inactivity_timeout
        self.bind_deadline = now + bind_timeout if role is Role.SMSC else None
        self._frames = FrameBuffer(max_pdu_length)
        self._out = bytearray()
        self._events: list[Event] = []
        self._pending: dict[int, tuple[float, Any]] = {}  # seq -> (deadline, request)
        # With a clock that never goes back, requests time out in the order they were sent,
        # so the earliest deadline is the first entry (no scan of a full window per event).
        self._ordered = True
        self._last_deadline = float("-inf")
        self._next_seq = 1
        self._last_received = now
        self._probe: int | None = None  # sequence number of our enquire_link in flight
        self.late_response_memory = late_response_memory
        self.late_response_window = (
            10 * response_timeout if late_response_window is None else late_response_window
        )
        # seq -> (forget at, request), oldest first: timed-out requests a response may still meet
        self._timed_out: OrderedDict[int, tuple[float, Any]] = OrderedDict()
        self._fed_at = now  # when the bytes still waiting in `_frames` were read
        self._held = False  # a bind is being decided: read no further until it is answered
        # Sequence numbers of the peer's requests handed on as events and not yet answered.
        self._owed: set[int] = set()
        # After a peer's unbind or a framing error, while `_owed` is answered first (SMSC
        # role): (the closing PDU, the reason, when to give up waiting).
        self._closing: tuple[bytes, str, float] | None = None
        self._no_tlvs = False  # the peer bound as v3.3 or older
        # The table itself unless this session widens it (no copy each: binds are many).
        self._allowed_from_peer = ALLOWED
        if accept_deliver_on_tx and role is Role.ESME:
            self._allowed_from_peer = {
                **ALLOWED,
                (Role.SMSC, State.BOUND_TX): ALLOWED[(Role.SMSC, State.BOUND_TX)] | _SMSC_RX,
            }

    def is_open(self) -> bool:
        return self.state is not State.CLOSED

    @property
    def closing(self) -> bool:
        """The peer unbound or broke the framing; only answers to what it asked before go out
        now, then the session closes."""
        return self._closing is not None

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes the socket read; b"" means the peer closed the connection."""
        if self.state is State.CLOSED:
            return
        if not data:
            self._close("connection closed by peer")
            return
        if self._closing is not None:
            return  # nothing after an unbind or a framing error is read
        self._frames.feed(data)
        self._fed_at = now
        self._parse(now)

    def _parse(self, now: float) -> None:
        # A PDU below may close the session, start closing it, or hold it for a bind.
        while self._closing is None and not self._held and self.state is not State.CLOSED:
            try:
                raw = self._frames.next_pdu()
            except RemoteSmppError as exc:
                self._end(self._nack(exc), f"framing error: {exc}", now)
                return
            if raw is None:
                return
            self._last_received = now
            self._receive_pdu(raw, now)

    def next_event(self) -> Event | None:
        """The next event, or None when there is none until more data or a timer."""
        return self._events.pop(0) if self._events else None

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket (automatic answers and what `send` produced)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- output -----------------------------------------------------------------------------

    def send(self, pdu: Pdu, now: float) -> Pdu:
        """Send a request (sequence_number 0 gets the next one) or a response.

        Returns:
            The PDU as sent (with its sequence number).

        Raises:
            LocalSmppError: the state does not allow this request now, or the session is
                closing (ESME_RINVBNDSTS); a v3.3 peer cannot take its message_payload
                (ESME_RINVMSGLEN).
        """
        if self.state is State.CLOSED:
            raise LocalSmppError("session is closed", CommandStatus.ESME_RINVBNDSTS)
        command_id = COMMAND_IDS[type(pdu)]
        if self._no_tlvs:
            pdu = _without_tlvs(pdu)
        if command_id & 0x80000000:
            self._out += encode_pdu(pdu)
            self._owed.discard(pdu.sequence_number)
            self._after_response(command_id, pdu.command_status)
            if self._closing is not None and not self._owed:
                self._finish_closing()
            return pdu
        self._check_may_send(command_id)
        if pdu.sequence_number == 0:
            pdu = pdu._replace(sequence_number=self._allocate_seq())
        self._out += encode_pdu(pdu)
        deadline = now + self.response_timeout
        if deadline < self._last_deadline:
            self._ordered = False  # the clock went back: scan from now on
        self._last_deadline = deadline
        self._pending[pdu.sequence_number] = (deadline, pdu)
        if command_id is C.unbind:
            self.state = State.UNBINDING
        return pdu

    def send_encoded(self, data: bytes, now: float) -> EncodedRequest:
        """Send a request that is already encoded, with sequence number 0 in it: the session
        numbers it. For PDUs kept as bytes (the deliver_sm queue in the store), so they are
        not decoded only to be encoded again. Its `Response` / `RequestTimedOut` carry the
        returned `EncodedRequest`.

        To a v3.3 peer it goes without its TLVs (see the module docstring).

        Raises:
            LocalSmppError: as for `send`; ESME_RINVCMDLEN if `data` is not one whole PDU;
                ESME_RINVMSGLEN if a v3.3 peer cannot take its message_payload.
        """
        if self.state is State.CLOSED:
            raise LocalSmppError("session is closed", CommandStatus.ESME_RINVBNDSTS)
        if len(data) < 16 or int.from_bytes(data[:4], "big") != len(data):
            raise LocalSmppError("not one encoded PDU", CommandStatus.ESME_RINVCMDLEN)
        command_id = CommandId(int.from_bytes(data[4:8], "big"))
        self._check_may_send(command_id)
        if self._no_tlvs:
            data = _encoded_without_tlvs(data)
        seq = self._allocate_seq()
        self._out += data[:12] + seq.to_bytes(4, "big") + data[16:]
        request = EncodedRequest(command_id, seq, data)
        deadline = now + self.response_timeout
        if deadline < self._last_deadline:
            self._ordered = False
        self._last_deadline = deadline
        self._pending[seq] = (deadline, request)
        return request

    def accept_bind(self, request: Any, system_id: str = "smsgw") -> None:
        """Answer a `BindRequested` with success; the session is then bound.

        An ESME of version 3.4 or later (interface_version 0x34, or 0x50 from a v5.0 client)
        is told we speak 3.4 (sc_interface_version, SMPP v3.4 5.3.2.25); an older one is not
        sent TLVs it may not know, in this PDU or any later one. Reading goes on with what came
        behind the bind, now as bound."""
        resp_cls = response_class(COMMAND_IDS[type(request)])
        assert resp_cls is not None
        modern = getattr(request, "interface_version", 0) >= 0x34
        self.send(
            resp_cls(
                system_id=system_id,
                sequence_number=request.sequence_number,
                tlvs=_SC_VERSION_34 if modern else (),
            ),
            0.0,
        )
        self._no_tlvs = not modern
        self._held = False
        self._parse(self._fed_at)  # what came behind the bind, now as bound

    def reject_bind(self, request: Any, status: CommandStatus) -> None:
        """Answer a `BindRequested` with an error status. The session reads nothing more (the
        shell closes it after a short delay); what came behind the bind is never answered."""
        resp_cls = response_class(COMMAND_IDS[type(request)])
        assert resp_cls is not None
        self.send(resp_cls(sequence_number=request.sequence_number, command_status=status), 0.0)

    # -- timers -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `handle_timer` next has work, or None."""
        if self.state is State.CLOSED:
            return None
        candidates = [self._last_received + self.inactivity_timeout]
        if self._closing is not None:
            candidates.append(self._closing[2])
        elif self.state in _BOUND and self._probe is None:
            candidates.append(self._last_received + self.enquire_link_interval)
        if self.bind_deadline is not None and self.state is State.OPEN:
            candidates.append(self.bind_deadline)
        if self._pending:
            if self._ordered:  # insertion order is deadline order: the oldest is first
                candidates.append(next(iter(self._pending.values()))[0])
            else:
                candidates.extend(deadline for deadline, _ in self._pending.values())
        return min(candidates)

    def handle_timer(self, now: float) -> None:
        """Do what is due at `now`: time out requests, probe or close an idle link."""
        if self.state is State.CLOSED:
            return
        if self._closing is not None and now >= self._closing[2]:
            self._finish_closing()  # the application never answered: close anyway
            return
        for seq, (deadline, request) in list(self._pending.items()):
            if deadline > now and self._ordered:
                break  # the rest are later still
            if deadline <= now:
                del self._pending[seq]
                if seq == self._probe:
                    self._close("enquire_link not answered")
                    return
                self._events.append(RequestTimedOut(request))
                self._remember_timed_out(seq, request, now)
        if (
            self.bind_deadline is not None
            and self.state is State.OPEN
            and now >= self.bind_deadline
        ):
            self._close("no bind in time")
        elif now >= self._last_received + self.inactivity_timeout:
            self._close("inactivity")
        elif (
            self.state in _BOUND
            and self._probe is None
            and self._closing is None
            and now >= self._last_received + self.enquire_link_interval
        ):
            self._probe = self.send(EnquireLink(), now).sequence_number

    # -- internals --------------------------------------------------------------------------

    def _allocate_seq(self) -> int:
        # SMPP v3.4 5.1.4: 1..0x7FFFFFFF. After a wrap, a number still waiting for its response
        # (or remembered as timed out) is skipped: its response would settle the wrong request.
        seq = self._next_seq
        while seq in self._pending or seq in self._timed_out:
            seq = seq + 1 if seq < _SEQ_MAX else 1
        self._next_seq = seq + 1 if seq < _SEQ_MAX else 1
        return seq

    def _check_may_send(self, command_id: CommandId) -> None:
        if self._closing is not None:
            raise LocalSmppError(
                f"{command_id.name} not allowed: the session is closing",
                CommandStatus.ESME_RINVBNDSTS,
            )
        if command_id not in ALLOWED.get((self.role, self.state), frozenset()):
            raise LocalSmppError(
                f"{command_id.name} not allowed in {self.state.value}",
                CommandStatus.ESME_RINVBNDSTS,
            )

    def _end(self, last: bytes, reason: str, now: float) -> None:
        """The peer unbound or broke the framing: read nothing more, send `last` (unbind_resp or
        generic_nack) and close - in the SMSC role only once what the peer asked before is
        answered, so no answer follows `last` and none is lost."""
        if self._owed and self.role is Role.SMSC:
            self._closing = (last, reason, now + self.response_timeout)
            return
        self._out += last
        self._close(reason)

    def _finish_closing(self) -> None:
        assert self._closing is not None
        last, reason, _ = self._closing
        self._out += last
        self._close(reason)

    def _receive_pdu(self, raw: bytes, now: float) -> None:
        try:
            pdu: Any = decode_pdu(raw)
        except RemoteSmppError as exc:
            if exc.fatal:
                self._end(self._nack(exc), f"malformed PDU: {exc}", now)
            else:
                self._out += self._nack(exc)
            return
        command_id = COMMAND_IDS[type(pdu)]
        if command_id & 0x80000000:
            self._receive_response(command_id, pdu, now)
            return
        if command_id is C.enquire_link:
            self._out += encode_pdu(EnquireLinkResp(sequence_number=pdu.sequence_number))
            return
        if command_id not in self._allowed_from_peer.get((self.peer, self.state), frozenset()):
            already = command_id in _BINDS and self.state in _BOUND
            status = CommandStatus.ESME_RALYBND if already else CommandStatus.ESME_RINVBNDSTS
            self._answer_error(pdu, command_id, status)
            return
        if command_id is C.unbind:
            self._end(
                encode_pdu(UnbindResp(sequence_number=pdu.sequence_number)), "unbound by peer", now
            )
        elif command_id in _BINDS:
            self._owed.add(pdu.sequence_number)
            self._held = True  # what follows is read as bound or not once this is answered
            self._events.append(BindRequested(pdu))
        else:
            if response_class(command_id) is not None:
                self._owed.add(pdu.sequence_number)
            self._events.append(Request(pdu))

    def _receive_response(self, command_id: CommandId, pdu: Any, now: float) -> None:
        entry = self._pending.pop(pdu.sequence_number, None)
        if entry is None:
            late = self._timed_out.pop(pdu.sequence_number, None)
            if late is not None and now <= late[0]:
                self._events.append(LateResponse(pdu, late[1]))
            return  # otherwise late beyond memory, or unsolicited: never acted on twice
        request = entry[1]
        if pdu.sequence_number == self._probe:
            self._probe = None
            return
        self._events.append(Response(pdu, request))
        self._after_response(command_id, pdu.command_status)

    def _remember_timed_out(self, seq: int, request: Any, now: float) -> None:
        if self.late_response_memory <= 0:
            return
        timed_out = self._timed_out
        while timed_out and next(iter(timed_out.values()))[0] < now:
            timed_out.popitem(last=False)  # forgotten by age (entries are in deadline order)
        timed_out[seq] = (now + self.late_response_window, request)
        timed_out.move_to_end(seq)
        while len(timed_out) > self.late_response_memory:
            timed_out.popitem(last=False)

    def _after_response(self, command_id: CommandId, status: int) -> None:
        if status == 0:
            new_state = TRANSITIONS.get((self.state, command_id))
            if new_state is State.CLOSED:
                self._close("unbound")
            elif new_state is not None:
                self.state = new_state

    def _answer_error(self, pdu: Any, command_id: CommandId, status: CommandStatus) -> None:
        resp_cls = response_class(command_id)
        seq = pdu.sequence_number
        if resp_cls is None:
            self._out += encode_pdu(GenericNack(sequence_number=seq, command_status=status))
        else:
            self._out += encode_pdu(resp_cls(sequence_number=seq, command_status=status))

    @staticmethod
    def _nack(exc: RemoteSmppError) -> bytes:
        seq = exc.sequence_number or 0
        resp_cls = None if exc.command_id is None else response_class(exc.command_id)
        if resp_cls is not None and not exc.fatal:
            reply = resp_cls(sequence_number=seq, command_status=exc.status)
        else:
            reply = GenericNack(sequence_number=seq, command_status=exc.status)
        return encode_pdu(reply)

    def _close(self, reason: str) -> None:
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._events.append(Closed(reason))

    def unbind(self, now: float) -> None:
        """Start an orderly unbind (the shell does this on shutdown)."""
        self.send(Unbind(), now)


def _without_tlvs(pdu: Any) -> Any:
    """`pdu` as a v3.3 peer may get it: no TLVs; a message_payload goes into an empty
    short_message when it fits.

    Raises:
        LocalSmppError: ESME_RINVMSGLEN, the payload does not fit in short_message.
    """
    tlvs = getattr(pdu, "tlvs", None)
    if not tlvs:
        return pdu
    payload = tlv_raw(tlvs, _PAYLOAD)
    if payload is not None and "short_message" in pdu._fields and not pdu.short_message:
        if len(payload) > _SM_MAX:
            raise LocalSmppError(
                f"message_payload of {len(payload)} octets for a v3.3 peer",
                CommandStatus.ESME_RINVMSGLEN,
            )
        return pdu._replace(tlvs=(), short_message=payload)
    return pdu._replace(tlvs=())


def _encoded_without_tlvs(data: bytes) -> bytes:
    """`_without_tlvs` for an encoded PDU (the codec re-encodes it, command_length included).

    Raises:
        LocalSmppError: ESME_RINVCMDLEN, `data` does not decode; as `_without_tlvs`.
    """
    try:
        pdu = decode_pdu(data)
    except RemoteSmppError as exc:
        raise LocalSmppError(f"not one encoded PDU: {exc}", CommandStatus.ESME_RINVCMDLEN) from None
    if not getattr(pdu, "tlvs", None):
        return data
    return encode_pdu(_without_tlvs(pdu))
