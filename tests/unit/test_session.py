"""The SMPP session state machine, two peers in memory (no sockets, the clock passed in)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import (
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    LocalSmppError,
    QuerySm,
    QuerySmResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    decode_pdu,
    encode_pdu,
    make_tlvs,
)
from gateway.smpp.framing import FrameBuffer
from gateway.smpp.session import (
    ALLOWED,
    BindRequested,
    Closed,
    EncodedRequest,
    Event,
    LateResponse,
    Request,
    RequestTimedOut,
    Response,
    Role,
    Session,
    State,
)


def drain(session: Session) -> list[Event]:
    return list(iter(session.next_event, None))


def pdus(data: bytes) -> list[object]:
    frames = FrameBuffer()
    frames.feed(data)
    return [decode_pdu(raw) for raw in frames.pdus()]


class Pair:
    """An ESME and an SMSC session joined in memory."""

    def __init__(self) -> None:
        self.esme = Session(Role.ESME, now=0.0)
        self.smsc = Session(Role.SMSC, now=0.0)

    def flush(self, now: float = 0.0) -> tuple[list[Event], list[Event]]:
        """Move bytes both ways until quiet; the events each side saw."""
        seen_esme: list[Event] = []
        seen_smsc: list[Event] = []
        for _ in range(20):
            a, b = self.esme.data_to_send(), self.smsc.data_to_send()
            if not a and not b:
                break
            if a:
                self.smsc.receive_data(a, now)
            if b:
                self.esme.receive_data(b, now)
            seen_esme += drain(self.esme)
            seen_smsc += drain(self.smsc)
        return seen_esme, seen_smsc

    def bind(self) -> None:
        self.esme.send(BindTransceiver(system_id="app", password="pw"), 0.0)
        _, smsc_events = self.flush()
        (bind,) = smsc_events
        assert isinstance(bind, BindRequested)
        self.smsc.accept_bind(bind.pdu)
        esme_events, _ = self.flush()
        (resp,) = esme_events
        assert isinstance(resp, Response)
        assert isinstance(resp.pdu, BindTransceiverResp)


def test_bind_submit_deliver_unbind() -> None:
    pair = Pair()
    pair.bind()
    assert pair.esme.state is pair.smsc.state is State.BOUND_TRX

    sent = pair.esme.send(SubmitSm(destination_addr="4915", short_message=b"hi"), 1.0)
    assert sent.sequence_number == 2  # the bind took 1
    _, smsc_events = pair.flush(1.0)
    (req,) = smsc_events
    assert isinstance(req, Request)
    assert req.pdu == sent
    pair.smsc.send(SubmitSmResp(message_id="m1", sequence_number=sent.sequence_number), 1.0)
    (resp,), _ = pair.flush(1.0)
    assert isinstance(resp, Response)
    assert resp.pdu.message_id == "m1"
    assert resp.request == sent

    mo = pair.smsc.send(DeliverSm(source_addr="4915", short_message=b"yo"), 2.0)
    (req,), _ = pair.flush(2.0)
    assert isinstance(req, Request)
    assert req.pdu == mo
    pair.esme.send(DeliverSmResp(sequence_number=mo.sequence_number), 2.0)
    _, (resp,) = pair.flush(2.0)
    assert isinstance(resp, Response)

    pair.esme.unbind(3.0)
    esme_events, smsc_events = pair.flush(3.0)
    assert smsc_events == [Closed("unbound by peer")]
    resp, closed = esme_events
    assert isinstance(resp, Response)
    assert isinstance(resp.request, Unbind)
    assert closed == Closed("unbound")
    assert pair.esme.state is pair.smsc.state is State.CLOSED


def test_rejected_bind_stays_open() -> None:
    pair = Pair()
    pair.esme.send(BindTransmitter(system_id="app", password="bad"), 0.0)
    _, (bind,) = pair.flush()
    assert isinstance(bind, BindRequested)
    pair.smsc.reject_bind(bind.pdu, CommandStatus.ESME_RINVPASWD)
    (resp,), _ = pair.flush()
    assert isinstance(resp, Response)
    assert resp.pdu.command_status == CommandStatus.ESME_RINVPASWD
    assert pair.esme.state is pair.smsc.state is State.OPEN


def test_wrong_state_request_is_answered_for_the_application() -> None:
    smsc = Session(Role.SMSC, now=0.0)
    smsc.receive_data(encode_pdu(SubmitSm(sequence_number=7, destination_addr="1")), 0.0)
    assert drain(smsc) == []  # the application never sees it
    (answer,) = pdus(smsc.data_to_send())
    assert answer == SubmitSmResp(sequence_number=7, command_status=CommandStatus.ESME_RINVBNDSTS)


def test_bind_when_bound_is_already_bound() -> None:
    pair = Pair()
    pair.bind()
    pair.smsc.receive_data(encode_pdu(BindTransceiver(sequence_number=9)), 0.0)
    (answer,) = pdus(pair.smsc.data_to_send())
    assert answer == BindTransceiverResp(
        sequence_number=9, command_status=CommandStatus.ESME_RALYBND
    )


def test_we_refuse_to_send_what_the_state_forbids() -> None:
    esme = Session(Role.ESME, now=0.0)
    with pytest.raises(LocalSmppError) as err:
        esme.send(SubmitSm(destination_addr="1"), 0.0)
    assert err.value.status == CommandStatus.ESME_RINVBNDSTS
    smsc = Session(Role.SMSC, now=0.0)
    with pytest.raises(LocalSmppError):
        smsc.send(DeliverSm(), 0.0)


def test_enquire_link_is_answered_in_any_state() -> None:
    smsc = Session(Role.SMSC, now=0.0)
    smsc.receive_data(encode_pdu(EnquireLink(sequence_number=5)), 0.0)
    assert drain(smsc) == []
    assert pdus(smsc.data_to_send()) == [EnquireLinkResp(sequence_number=5)]


def test_malformed_and_unknown_pdus_get_nacks_and_the_session_lives() -> None:
    pair = Pair()
    pair.bind()
    unknown = bytes.fromhex("0000001000000777000000000000000b")
    truncated = encode_pdu(SubmitSm(sequence_number=12, source_addr="123"))[:-5]
    truncated = len(truncated).to_bytes(4, "big") + truncated[4:]
    pair.smsc.receive_data(unknown + truncated, 0.0)
    replies = pdus(pair.smsc.data_to_send())
    assert replies == [
        GenericNack(sequence_number=11, command_status=CommandStatus.ESME_RINVCMDID),
        SubmitSmResp(sequence_number=12, command_status=CommandStatus.ESME_RINVCMDLEN),
    ]
    assert pair.smsc.state is State.BOUND_TRX


def test_framing_error_nacks_and_closes() -> None:
    smsc = Session(Role.SMSC, now=0.0)
    smsc.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert drain(smsc) == [Closed(f"framing error: {_framing_message()}")]
    (nack,) = pdus(smsc.data_to_send())
    assert isinstance(nack, GenericNack)
    assert nack.command_status == CommandStatus.ESME_RINVCMDLEN


def _framing_message() -> str:
    frames = FrameBuffer()
    frames.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        frames.next_pdu()
    except Exception as exc:
        return str(exc)
    raise AssertionError("no framing error")


def test_idle_link_is_probed_then_closed_when_the_probe_is_not_answered() -> None:
    pair = Pair()
    pair.bind()
    esme = pair.esme
    assert esme.next_deadline() == esme.enquire_link_interval
    esme.handle_timer(30.0)
    (probe,) = pdus(esme.data_to_send())
    assert isinstance(probe, EnquireLink)
    assert esme.next_deadline() == 30.0 + esme.response_timeout
    esme.handle_timer(40.0)
    assert drain(esme) == [Closed("enquire_link not answered")]


def test_answered_probe_keeps_the_link() -> None:
    pair = Pair()
    pair.bind()
    pair.esme.handle_timer(30.0)
    esme_events, smsc_events = pair.flush(31.0)
    assert esme_events == smsc_events == []  # the probe and its answer are handled inside
    pair.esme.handle_timer(41.0)
    assert pair.esme.is_open()


def test_request_timeout_and_late_response_dropped() -> None:
    pair = Pair()
    pair.bind()
    sent = pair.esme.send(SubmitSm(destination_addr="1"), 0.0)
    pair.flush(0.0)
    pair.esme.handle_timer(10.0)
    assert drain(pair.esme) == [RequestTimedOut(sent)]
    pair.smsc.send(SubmitSmResp(message_id="late", sequence_number=sent.sequence_number), 11.0)
    esme_events, _ = pair.flush(11.0)
    assert esme_events == []  # never acted on twice


def _late_pair(**options: object) -> Pair:
    pair = Pair()
    pair.esme = Session(Role.ESME, now=0.0, **options)  # type: ignore[arg-type]
    pair.bind()
    return pair


def test_late_response_handed_on_once_when_remembered() -> None:
    pair = _late_pair(late_response_memory=10)
    sent = pair.esme.send(SubmitSm(destination_addr="1"), 0.0)
    pair.flush(0.0)
    pair.esme.handle_timer(10.0)
    assert drain(pair.esme) == [RequestTimedOut(sent)]
    resp = SubmitSmResp(message_id="late", sequence_number=sent.sequence_number)
    pair.smsc.send(resp, 11.0)
    esme_events, _ = pair.flush(11.0)
    assert esme_events == [LateResponse(resp, sent)]
    pair.smsc.send(resp, 12.0)  # the same response again: not a second time
    esme_events, _ = pair.flush(12.0)
    assert esme_events == []


def test_late_responses_forgotten_by_age_and_by_count() -> None:
    pair = _late_pair(late_response_memory=2, late_response_window=50.0)
    sent = [pair.esme.send(SubmitSm(destination_addr=str(i)), 0.0) for i in range(3)]
    pair.flush(0.0)
    pair.esme.handle_timer(10.0)
    assert drain(pair.esme) == [RequestTimedOut(s) for s in sent]
    # The oldest fell out of the memory of two; the others are answered too late (age).
    for s, now in zip(sent, (11.0, 61.0, 61.0), strict=True):
        pair.smsc.send(SubmitSmResp(message_id="x", sequence_number=s.sequence_number), now)
    esme_events, _ = pair.flush(61.0)
    assert esme_events == []
    # Within the window, the ones still remembered come through.
    pair2 = _late_pair(late_response_memory=2, late_response_window=50.0)
    sent2 = [pair2.esme.send(SubmitSm(destination_addr=str(i)), 0.0) for i in range(3)]
    pair2.flush(0.0)
    pair2.esme.handle_timer(10.0)
    drain(pair2.esme)
    for s in sent2:
        pair2.smsc.send(SubmitSmResp(message_id="x", sequence_number=s.sequence_number), 20.0)
    esme_events, _ = pair2.flush(20.0)
    assert [e.request for e in esme_events if isinstance(e, LateResponse)] == sent2[1:]


def test_deliver_on_transmitter_bind_refused_or_accepted_by_option() -> None:
    for lenient in (False, True):
        esme = Session(Role.ESME, now=0.0, accept_deliver_on_tx=lenient)
        smsc = Session(Role.SMSC, now=0.0)
        esme.send(BindTransmitter(system_id="app", password="pw"), 0.0)
        smsc.receive_data(esme.data_to_send(), 0.0)
        (bind,) = drain(smsc)
        assert isinstance(bind, BindRequested)
        smsc.accept_bind(bind.pdu)
        esme.receive_data(smsc.data_to_send(), 0.0)
        drain(esme)
        assert esme.state is State.BOUND_TX
        # A carrier that breaks section 2.3: the SMSC side refuses to send it, so raw bytes.
        esme.receive_data(encode_pdu(DeliverSm(esm_class=4, sequence_number=7)), 1.0)
        events = drain(esme)
        replies = pdus(esme.data_to_send())
        if lenient:
            assert [type(e.pdu) for e in events if isinstance(e, Request)] == [DeliverSm]
            assert replies == []  # the application answers it
        else:
            assert events == []
            assert [(type(r), r.command_status) for r in replies] == [  # type: ignore[attr-defined]
                (DeliverSmResp, CommandStatus.ESME_RINVBNDSTS)
            ]


def test_smsc_closes_a_connection_that_never_binds() -> None:
    smsc = Session(Role.SMSC, now=0.0, bind_timeout=5.0)
    assert smsc.next_deadline() == 5.0
    smsc.handle_timer(5.0)
    assert drain(smsc) == [Closed("no bind in time")]
    assert smsc.next_deadline() is None


def test_peer_hang_up() -> None:
    smsc = Session(Role.SMSC, now=0.0)
    smsc.receive_data(b"", 1.0)
    assert drain(smsc) == [Closed("connection closed by peer")]


def test_sequence_numbers_wrap_within_range() -> None:
    pair = Pair()
    pair.bind()
    pair.esme._next_seq = 0x7FFFFFFF
    first = pair.esme.send(EnquireLink(), 0.0)
    second = pair.esme.send(EnquireLink(), 0.0)
    assert (first.sequence_number, second.sequence_number) == (0x7FFFFFFF, 1)


def test_allowed_table_covers_every_live_state() -> None:
    for role, state in itertools.product(Role, State):
        if state is not State.CLOSED:
            assert (role, state) in ALLOWED


@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=10))
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    smsc = Session(Role.SMSC, now=0.0)
    pos = 0
    for cut in [*cuts, len(data)]:
        smsc.receive_data(data[pos : pos + cut] or b"x", 0.0)
        pos += cut
    drain(smsc)
    pdus(smsc.data_to_send())  # whatever we answered is well-formed SMPP


def test_unbind_request_is_answered() -> None:
    pair = Pair()
    pair.bind()
    pair.smsc.receive_data(encode_pdu(Unbind(sequence_number=40)), 0.0)
    assert drain(pair.smsc) == [Closed("unbound by peer")]


def test_send_encoded_numbers_the_pdu_and_matches_its_response() -> None:
    esme = Session(Role.ESME, now=0.0)
    smsc = Session(Role.SMSC, now=0.0, response_timeout=5.0)
    with pytest.raises(LocalSmppError):
        smsc.send_encoded(encode_pdu(DeliverSm(short_message=b"x")), 0.0)  # not bound yet
    esme.send(BindTransceiver(system_id="a", password="b"), 0.0)
    smsc.receive_data(esme.data_to_send(), 0.0)
    smsc.accept_bind(smsc.next_event().pdu)  # type: ignore[union-attr]
    raw = encode_pdu(DeliverSm(source_addr="1", short_message=b"hello"))
    first = smsc.send_encoded(raw, 1.0)
    second = smsc.send_encoded(raw, 1.0)
    assert isinstance(first, EncodedRequest)
    assert first.sequence_number != second.sequence_number
    esme.receive_data(smsc.data_to_send(), 1.0)
    assert isinstance(esme.next_event(), Response)  # the bind_resp
    got = esme.next_event()
    assert got is not None and decode_pdu(encode_pdu(got.pdu)).short_message == b"hello"
    assert got.pdu.sequence_number == first.sequence_number
    smsc.receive_data(encode_pdu(DeliverSmResp(sequence_number=first.sequence_number)), 2.0)
    event = smsc.next_event()
    assert isinstance(event, Response) and event.request == first
    smsc.handle_timer(10.0)  # the second was never answered
    timed_out = smsc.next_event()
    assert isinstance(timed_out, RequestTimedOut) and timed_out.request == second
    with pytest.raises(LocalSmppError):
        smsc.send_encoded(raw[:-1], 10.0)


# -- one read carrying several PDUs (issue 8, item 9) --------------------------------------------


def bound_smsc(*, response_timeout: float = 10.0) -> Session:
    smsc = Session(Role.SMSC, now=0.0, response_timeout=response_timeout)
    smsc.receive_data(
        encode_pdu(BindTransceiver(system_id="a", password="b", sequence_number=1)), 0.0
    )
    (bind,) = drain(smsc)
    assert isinstance(bind, BindRequested)
    smsc.accept_bind(bind.pdu)
    smsc.data_to_send()
    return smsc


def test_requests_behind_a_bind_are_taken_as_bound_after_it() -> None:
    smsc = Session(Role.SMSC, now=0.0)
    segment = b"".join(
        encode_pdu(p)
        for p in (
            BindTransceiver(system_id="a", password="b", sequence_number=1),
            SubmitSm(destination_addr="4915", short_message=b"hi", sequence_number=2),
            EnquireLink(sequence_number=3),
        )
    )
    smsc.receive_data(segment, 0.0)
    (bind,) = drain(smsc)  # nothing behind the bind is read before it is answered
    assert isinstance(bind, BindRequested)
    assert smsc.data_to_send() == b""
    smsc.accept_bind(bind.pdu)
    (submit,) = drain(smsc)
    assert isinstance(submit, Request) and submit.pdu.sequence_number == 2
    resp, link = pdus(smsc.data_to_send())
    assert isinstance(resp, BindTransceiverResp) and resp.command_status == 0
    assert link == EnquireLinkResp(sequence_number=3)


def test_nothing_behind_a_refused_bind_is_read() -> None:
    smsc = Session(Role.SMSC, now=0.0)
    smsc.receive_data(
        encode_pdu(BindTransceiver(system_id="a", password="x", sequence_number=1))
        + encode_pdu(SubmitSm(destination_addr="4915", sequence_number=2))
        + encode_pdu(EnquireLink(sequence_number=3)),
        0.0,
    )
    (bind,) = drain(smsc)
    smsc.reject_bind(bind.pdu, CommandStatus.ESME_RINVPASWD)
    smsc.receive_data(encode_pdu(EnquireLink(sequence_number=4)), 0.0)
    assert drain(smsc) == []
    (resp,) = pdus(smsc.data_to_send())
    assert resp == BindTransceiverResp(
        sequence_number=1, command_status=CommandStatus.ESME_RINVPASWD
    )


def test_unbind_is_answered_after_what_was_asked_before_it_and_nothing_after() -> None:
    smsc = bound_smsc()
    smsc.receive_data(
        encode_pdu(SubmitSm(destination_addr="4915", sequence_number=5))
        + encode_pdu(QuerySm(message_id="m1", sequence_number=6))
        + encode_pdu(Unbind(sequence_number=7))
        + encode_pdu(SubmitSm(destination_addr="4915", sequence_number=8))
        + encode_pdu(EnquireLink(sequence_number=9)),
        0.0,
    )
    submit, query = drain(smsc)
    assert (submit.pdu.sequence_number, query.pdu.sequence_number) == (5, 6)
    assert smsc.data_to_send() == b"" and smsc.is_open() and smsc.closing
    with pytest.raises(LocalSmppError):  # no new request (a deliver_sm) while closing
        smsc.send_encoded(encode_pdu(DeliverSm(short_message=b"x")), 0.0)
    smsc.receive_data(encode_pdu(EnquireLink(sequence_number=10)), 0.0)  # not read either
    smsc.send(QuerySmResp(message_id="m1", sequence_number=6), 0.0)
    assert drain(smsc) == [] and smsc.is_open()
    smsc.send(SubmitSmResp(message_id="m2", sequence_number=5), 0.0)
    assert drain(smsc) == [Closed("unbound by peer")]
    assert pdus(smsc.data_to_send()) == [
        QuerySmResp(message_id="m1", sequence_number=6),
        SubmitSmResp(message_id="m2", sequence_number=5),
        UnbindResp(sequence_number=7),
    ]


def test_framing_error_is_nacked_after_what_was_asked_before_it() -> None:
    smsc = bound_smsc()
    bad_length = bytes.fromhex("0000000800000004000000000000000c")
    smsc.receive_data(
        encode_pdu(SubmitSm(destination_addr="4915", sequence_number=11))
        + bad_length
        + encode_pdu(EnquireLink(sequence_number=13)),
        0.0,
    )
    (submit,) = drain(smsc)
    assert submit.pdu.sequence_number == 11  # type: ignore[union-attr]
    smsc.send(SubmitSmResp(message_id="m", sequence_number=11), 0.0)
    (closed,) = drain(smsc)
    assert isinstance(closed, Closed) and closed.reason.startswith("framing error")
    resp, nack = pdus(smsc.data_to_send())
    assert resp == SubmitSmResp(message_id="m", sequence_number=11)
    assert nack == GenericNack(sequence_number=12, command_status=CommandStatus.ESME_RINVCMDLEN)


def test_closing_gives_up_on_answers_after_the_response_timeout() -> None:
    smsc = bound_smsc(response_timeout=5.0)
    smsc.receive_data(
        encode_pdu(SubmitSm(destination_addr="4915", sequence_number=5))
        + encode_pdu(Unbind(sequence_number=6)),
        1.0,
    )
    drain(smsc)
    assert smsc.next_deadline() == 6.0
    smsc.handle_timer(6.0)
    assert drain(smsc) == [Closed("unbound by peer")]
    assert pdus(smsc.data_to_send()) == [UnbindResp(sequence_number=6)]
    with pytest.raises(LocalSmppError):  # too late: the session is closed
        smsc.send(SubmitSmResp(sequence_number=5), 7.0)


# -- sequence numbers (item 10) -------------------------------------------------------------------


def test_wrapping_sequence_numbers_skip_those_still_in_flight() -> None:
    esme = Session(Role.ESME, now=0.0, late_response_memory=10, response_timeout=5.0)
    esme._next_seq = 2
    assert esme.send(EnquireLink(), 0.0).sequence_number == 2
    esme.handle_timer(5.0)  # 2 times out and is remembered for a late response
    assert [type(e) for e in drain(esme)] == [RequestTimedOut]
    esme._next_seq = 1
    assert esme.send(BindTransceiver(system_id="a", password="b"), 5.0).sequence_number == 1
    esme._next_seq = 0x7FFFFFFF
    numbers = [esme.send(EnquireLink(), 5.0).sequence_number for _ in range(2)]
    assert numbers == [0x7FFFFFFF, 3]  # 1 waits for its bind_resp, 2 for a late response


# -- v3.3 peers get no TLVs (item 10b) -----------------------------------------------------------


_RECEIPT_TLVS = (
    *make_tlvs(receipted_message_id="m1", message_state=2),
    (int(Tag.network_error_code), b"\x03\x00\x00"),
)


@pytest.mark.parametrize("version", [0x33, 0x34])
def test_a_v3_3_receiver_gets_no_tlvs(version: int) -> None:
    smsc = Session(Role.SMSC, now=0.0)
    smsc.receive_data(
        encode_pdu(BindTransceiver(interface_version=version, sequence_number=1)), 0.0
    )
    smsc.accept_bind(drain(smsc)[0].pdu)  # type: ignore[union-attr]
    smsc.data_to_send()
    receipt = DeliverSm(esm_class=0x04, short_message=b"id:m1 stat:DELIVRD", tlvs=_RECEIPT_TLVS)
    smsc.send_encoded(encode_pdu(receipt), 0.0)
    smsc.send(DeliverSm(tlvs=make_tlvs(message_payload=b"long body")), 0.0)
    encoded, built = pdus(smsc.data_to_send())  # decoding checks each command_length
    if version == 0x33:
        assert encoded == receipt._replace(tlvs=(), sequence_number=1)
        assert built == DeliverSm(short_message=b"long body", sequence_number=2)
    else:
        assert encoded == receipt._replace(sequence_number=1)
        assert built.tlvs == make_tlvs(message_payload=b"long body")  # type: ignore[attr-defined]


_ASKED = [
    SubmitSm(destination_addr="4915", short_message=b"x"),
    QuerySm(message_id="m"),
    EnquireLink(),
    BindTransceiver(system_id="a", password="b"),  # already bound: ESME_RALYBND
    Unbind(),
]
_BAD_LENGTH = bytes.fromhex("00000004")


@given(st.lists(st.sampled_from([*_ASKED, _BAD_LENGTH]), min_size=1, max_size=12))
def test_every_request_before_a_closing_pdu_is_answered_and_none_after(items: list[object]) -> None:
    """One read of requests, perhaps with an unbind or a bad command_length among them; the
    application answers each request it is handed. Each request up to the first closing PDU is
    answered once, the closing PDU's answer comes last, and nothing after it is answered."""
    smsc = bound_smsc()
    segment = b"".join(
        item if isinstance(item, bytes) else encode_pdu(item._replace(sequence_number=i + 2))  # type: ignore[attr-defined]
        for i, item in enumerate(items)
    )
    smsc.receive_data(segment, 1.0)
    for _ in range(len(items) + 1):  # bounded: every event is answered at once
        events = drain(smsc)
        if not events:
            break
        for event in events:
            if isinstance(event, Request):
                smsc.send(
                    SubmitSmResp(sequence_number=event.pdu.sequence_number)
                    if isinstance(event.pdu, SubmitSm)
                    else QuerySmResp(sequence_number=event.pdu.sequence_number),
                    1.0,
                )
    answers = pdus(smsc.data_to_send())
    end = next(
        (i for i, item in enumerate(items) if item is _BAD_LENGTH or isinstance(item, Unbind)),
        None,
    )
    asked = items if end is None else items[:end]
    answered = sorted(a.sequence_number for a in answers[: len(asked)])  # type: ignore[attr-defined]
    assert answered == [i + 2 for i in range(len(asked))]
    if end is None:
        assert len(answers) == len(asked) and smsc.state is State.BOUND_TRX
    else:
        (last,) = answers[len(asked) :]  # the unbind_resp or the generic_nack, and nothing more
        assert isinstance(last, UnbindResp if isinstance(items[end], Unbind) else GenericNack)
        assert smsc.state is State.CLOSED
