"""A fake carrier SMSC for tests, built on smpplib's PDU classes (not on smsgw's codec), with a
ladder of behaviours a carrier shows: binds of each type (TX, RX, TRX) and refused binds,
slow and late answers, throttling (ESME_RTHROTTLED or ESME_RMSGQFUL), permanent errors for
chosen destinations, a dropped link, malformed replies, receipts sent before the
submit_sm_resp, receipt ids spelled several ways, deliver_sm on a transmitter bind, a link
reset (RST) while the gateway still writes, held responses (the window a bind really uses), and
a TLS listener. It records every accepted submit_sm with its esm_class, UDH and TLVs, so tests
can check how long messages were carried.

Receipts as carriers send them (each switch off by default): a delay drawn from a range with a
long tail; a share of failed deliveries (UNDELIV with an err code), decided per destination and
text, so a message sent twice has one true outcome (`outcome_of`); for a multipart message,
receipts for every part, only the last or only the first; an intermediate notification
(esm_class 0x20) before the final receipt; receipts without the receipt bit (esm_class 0, text
only); stat words that are not SMPP's (ACKED, UNDELIVERABLE, lowercase, junk); submit_sm_resp
ids in decimal, hex or UUID form, spelled in the receipt with other case, zero padding, or in
another base; a receipt text that disagrees with its TLVs; no receipt at all. Cases from the
field (public issue trackers): a receipt asked for and sent only on the last part
(jookies/jasmin#1136), receipts per part of which a client reads only the first
(php8-smpp#15), ACCEPTD before DELIVRD (jasmin#885, #916), receipts arriving as MO without the
receipt bit with `stat:FAILED` (jasmin#447, farhadi/node-smpp#140), a UUID id spelled
`0e999f21-...` in the response and `E999F21-...` in the receipt (jasmin#643), hex in the
response and decimal in the receipt (jasmin#586), case (jasmin#514).

Receipts and MO go to a receiver-capable session (RX or TRX), round robin; while none is bound
they wait, as a carrier's queue does. A deliver_sm not answered OK (refused, or its link
closed first) is queued and delivered again, as carriers do. Every loop is bounded and the
listener takes an ephemeral port on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import ssl
import struct
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import smpplib.client
import smpplib.smpp

ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RINVDSTADR = 0x0B
ESME_RINVPASWD = 0x0E

_BIND_MODE = {"bind_transmitter": "tx", "bind_receiver": "rx", "bind_transceiver": "trx"}


@dataclass
class Behaviour:
    throttle_first: int = 0  # answer this many submit_sm with ESME_RTHROTTLED
    throttle_every: int = 0  # and then every Nth submit_sm
    msgqful: bool = False  # throttle with ESME_RMSGQFUL instead
    receipt_before_response: bool = False
    drop_after: int | None = None  # close the link once, after this many accepted submit_sm
    receipt_state: int = 2  # message_state of the receipts (2 delivered, 5 undeliverable)
    response_delay: float = 0.0  # answer every submit_sm this much later (a slow carrier)
    late_first: int = 0  # accept this many submit_sm but answer them `late_delay` later
    late_delay: float = 0.0
    malformed_every: int = 0  # every Nth submit_sm gets no answer but a malformed reply
    malformed: Literal["garbage", "bad_length", "unknown_command"] = "garbage"
    fail_destinations: dict[str, int] = field(default_factory=dict)  # destination -> status
    # The id in the receipt text, against the submit_sm_resp's: as given ("hex" kept for the
    # default), its value in decimal (hex ids), zero-padded to 10 (UUIDs: their first group),
    # lower or upper case, or leading zeros dropped and upper case (0e99..-.. -> E99..-..).
    receipt_id: Literal["hex", "same", "decimal", "zeros", "lower", "upper", "stripped"] = "hex"
    receipt_tlvs: bool = True  # receipted_message_id / message_state TLVs
    receipt_delay: float = 0.0  # send receipts this much after the submit_sm_resp
    refuse_binds: int = 0  # refuse this many binds with `refuse_status`
    refuse_status: int = ESME_RINVPASWD
    deliver_on_tx: bool = False  # send receipts on the transmitter session (carriers do)
    # -- links -------------------------------------------------------------------------------
    reset_after: int | None = None  # reset (RST, SO_LINGER 0) on this accepted submit_sm
    reset_every: int = 0  # and again after every this many more
    hold_responses: bool = False  # answer no submit_sm until `release_responses`
    # -- receipts as carriers send them ------------------------------------------------------
    seed: int = 0  # outcomes and delays are drawn from it: a run can be replayed
    id_format: Literal["hex", "decimal", "uuid"] = "hex"  # submit_sm_resp message_id
    id_start: int = 0xABC000  # the first id (hex/decimal): small ids make spellings collide
    receipt_delays: tuple[float, float] | None = None  # each receipt after a delay in this range
    tail_share: float = 0.0  # this share of receipts comes after a delay in `tail_delays`
    tail_delays: tuple[float, float] = (5.0, 10.0)
    fail_share: float = 0.0  # this share of deliveries fails: UNDELIV with `fail_error`
    fail_error: int = 1  # the err: of a failed delivery (and its network_error_code)
    multipart_receipts: Literal["all", "last", "first"] = "all"  # which parts get a receipt
    intermediate: bool = False  # an esm_class 0x20 notification (ENROUTE) before each receipt
    receipt_flag: bool = True  # False: receipts as esm_class 0, text only (no receipt bit)
    stat_word: str | None = None  # write this stat in the text (ACKED, UNDELIVERABLE, junk...)
    hold_receipts: bool = False  # keep receipts until `release_receipts` (a burst)
    drop_receipts: bool = False  # answer, and never send a receipt (it was lost on their side)
    text_disagrees: bool = False  # the text names the next id and the opposite stat; TLVs true
    send_receipts: bool = True  # False: a carrier that never reports (the link dropped)
    query_state: int | None = None  # answer query_sm with this message_state; None: refuse


@dataclass(frozen=True)
class Submitted:
    """One accepted submit_sm as it came."""

    destination: str
    short_message: bytes
    esm_class: int
    data_coding: int
    upstream_id: str
    mode: str  # the bind it came on: tx or trx
    sar: tuple[int, int, int] | None  # (sar_msg_ref_num, sar_total_segments, seqnum)
    message_payload: bytes | None
    at: float  # loop time it arrived
    delivered: bool = True  # the true outcome the carrier reports for it

    @property
    def udh(self) -> bytes:
        sm = self.short_message
        return sm[: sm[0] + 1] if self.esm_class & 0x40 and sm else b""


@dataclass(eq=False)
class _Peer:
    writer: asyncio.StreamWriter
    seq: Any
    mode: str = ""
    unacked: dict[int, dict[str, Any]] = field(default_factory=dict)  # deliver_sm sent
    outstanding: int = 0  # submit_sm received and not answered yet


@dataclass
class FakeSmsc:
    behaviour: Behaviour = field(default_factory=Behaviour)
    ssl: ssl.SSLContext | None = None
    submits: list[tuple[str, bytes]] = field(default_factory=list)  # (destination, sm) accepted
    records: list[Submitted] = field(default_factory=list)  # the same, with every detail
    binds: int = 0
    delivered_ok: int = 0  # deliver_sm answered with status 0
    bind_counts: Counter[str] = field(default_factory=Counter)  # tx / rx / trx, accepted
    seen: int = 0  # submit_sm received, whatever the answer
    answered_late: int = 0
    unbinds: int = 0
    malformed_sent: int = 0
    resets: int = 0  # links reset (RST) by `reset_after`
    max_outstanding: int = 0  # the most submit_sm one bind had unanswered at once
    receipts_sent: list[dict[str, Any]] = field(default_factory=list)  # every receipt offered
    queries: list[tuple[str, str]] = field(default_factory=list)  # query_sm (id, source_addr)
    port: int = 0
    _server: asyncio.Server | None = None
    outcomes: dict[str, bool] = field(default_factory=dict)  # upstream id -> delivered
    _ids: itertools.count[int] = field(init=False)
    _peers: list[_Peer] = field(default_factory=list)
    _undelivered: list[Any] = field(default_factory=list)  # deliver_sm waiting for an RX
    _rr: itertools.count[int] = field(default_factory=itertools.count)
    _dropped: bool = False
    _next_reset: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _held: list[tuple[_Peer, int, str, list[dict[str, Any]]]] = field(default_factory=list)
    _held_receipts: list[tuple[_Peer, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(self.behaviour.id_start)
        self._next_reset = self.behaviour.reset_after or 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            for peer in list(self._peers):
                peer.writer.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def drop_all(self) -> None:
        """Close every connection now (a carrier restart)."""
        for peer in list(self._peers):
            peer.writer.close()

    def connected(self) -> int:
        return len(self._peers)

    def receivers(self) -> list[_Peer]:
        return [p for p in self._peers if p.mode in ("rx", "trx")]

    # -- the connection -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _Peer(writer, smpplib.client.SimpleSequenceGenerator())
        self._peers.append(peer)
        try:
            for _ in range(100_000):  # bounded
                head = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(head, "big") - 4)
                pdu = smpplib.smpp.parse_pdu(
                    head + body, client=peer.seq, allow_unknown_opt_params=True
                )
                if pdu.command in _BIND_MODE:
                    self._bind(peer, pdu)
                elif pdu.command == "enquire_link":
                    self._reply(peer, "enquire_link_resp", pdu.sequence)
                elif pdu.command == "unbind":
                    self.unbinds += 1
                    self._reply(peer, "unbind_resp", pdu.sequence)
                    await writer.drain()
                    break
                elif pdu.command == "query_sm":
                    self._query(peer, pdu)
                elif pdu.command == "submit_sm" and await self._submit(peer, pdu):
                    await writer.drain()
                    break  # the behaviour drops the link here
                elif pdu.command in ("deliver_sm_resp", "data_sm_resp"):
                    fields = peer.unacked.pop(pdu.sequence, None)
                    if fields is not None:
                        if pdu.status == 0:
                            self.delivered_ok += 1
                        else:
                            self._undelivered.append(fields)  # offered again on a later bind
                # deliver_sm_resp, generic_nack and anything else: nothing to do
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self._peers.remove(peer)
            self._undelivered.extend(peer.unacked.values())  # never answered: deliver again
            peer.unacked.clear()
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)

    def _bind(self, peer: _Peer, pdu: Any) -> None:
        b = self.behaviour
        self.binds += 1
        resp = pdu.command + "_resp"
        if b.refuse_binds > 0:
            b.refuse_binds -= 1
            self._reply(peer, resp, pdu.sequence, status=b.refuse_status)
            return
        peer.mode = _BIND_MODE[pdu.command]
        self.bind_counts[peer.mode] += 1
        self._reply(peer, resp, pdu.sequence, system_id="fake")
        if peer.mode != "tx":
            waiting, self._undelivered = self._undelivered, []
            for deliver in waiting:
                self._deliver(deliver)

    async def _submit(self, peer: _Peer, pdu: Any) -> bool:
        """Answer one submit_sm; True when the link is to be dropped after it."""
        b = self.behaviour
        self.seen += 1
        n = self.seen
        status = 0
        if n <= b.throttle_first or (b.throttle_every and n % b.throttle_every == 0):
            status = ESME_RMSGQFUL if b.msgqful else ESME_RTHROTTLED
        destination = pdu.destination_addr.decode()
        status = b.fail_destinations.get(destination, status)
        if status:
            self._reply(peer, "submit_sm_resp", pdu.sequence, status=status)
            return False
        if b.malformed_every and n % b.malformed_every == 0:
            self.malformed_sent += 1
            peer.writer.write(_malformed(b.malformed, pdu.sequence))
            # After an unframeable reply nothing more on this stream makes sense: hang up.
            return b.malformed != "unknown_command"
        upstream_id = self._next_id()
        short_message = pdu.short_message or b""
        self.submits.append((destination, short_message))
        sar = None
        if getattr(pdu, "sar_msg_ref_num", None) is not None:
            sar = (pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum)
        record = Submitted(
            destination,
            short_message,
            pdu.esm_class,
            pdu.data_coding,
            upstream_id,
            peer.mode,
            sar,
            getattr(pdu, "message_payload", None),
            asyncio.get_running_loop().time(),
            delivered=self.outcome_of(destination, short_message),
        )
        self.records.append(record)
        self.outcomes[upstream_id] = record.delivered
        receipts = self._receipts(record)
        peer.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, peer.outstanding)
        if b.hold_responses:
            self._held.append((peer, pdu.sequence, upstream_id, receipts))
            return False
        delay = b.response_delay
        if b.late_first and len(self.records) <= b.late_first:
            delay = b.late_delay
            self.answered_late += 1
        if b.receipt_before_response:
            self._send_receipts(peer, record, receipts)
            await peer.writer.drain()
        if delay:
            self._later(delay, self._answer(peer, pdu.sequence, record, receipts))
        else:
            self._respond(peer, pdu.sequence, upstream_id)
            if not b.receipt_before_response:
                self._send_receipts(peer, record, receipts)
        if b.reset_after and len(self.records) >= self._next_reset:
            await self._reset_link(peer)
            return True
        if b.drop_after and not self._dropped and len(self.records) >= b.drop_after:
            self._dropped = True
            return True
        return False

    def _query(self, peer: _Peer, pdu: Any) -> None:
        message_id = pdu.message_id.decode()
        self.queries.append((message_id, (pdu.source_addr or b"").decode()))
        state = self.behaviour.query_state
        if state is None:
            self._reply(peer, "query_sm_resp", pdu.sequence, status=0x67)  # ESME_RQUERYFAIL
            return
        self._reply(
            peer,
            "query_sm_resp",
            pdu.sequence,
            message_id=message_id,
            final_date="",
            message_state=state,
            error_code=0,
        )

    async def _answer(
        self, peer: _Peer, sequence: int, record: Submitted, receipts: list[dict[str, Any]]
    ) -> None:
        self._respond(peer, sequence, record.upstream_id)
        if not self.behaviour.receipt_before_response:
            self._send_receipts(peer, record, receipts)
        with contextlib.suppress(ConnectionError):
            await peer.writer.drain()

    async def reset_now(self) -> int:
        """Reset every link now (enquire_link, then RST), as `reset_after` does; how many."""
        peers = list(self._peers)
        for peer in peers:
            await self._reset_link(peer)
        return len(peers)

    async def _reset_link(self, peer: _Peer) -> None:
        """A carrier that crashes mid-window: what it has written reaches the gateway (this
        answer and an enquire_link probe, which the gateway answers at once), then a reset
        (SO_LINGER 0: RST, not FIN) while the gateway has PDUs to write; the submit_sm behind
        this one are never answered."""
        b = self.behaviour
        self._next_reset = len(self.records) + b.reset_every if b.reset_every else 1 << 62
        self.resets += 1
        enquire = smpplib.smpp.make_pdu("enquire_link", client=peer.seq)
        peer.writer.write(enquire.generate())  # the same turn as the reset: one read may see both
        sock = peer.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.writer.transport.abort()

    def _respond(self, peer: _Peer, sequence: int, upstream_id: str) -> None:
        peer.outstanding -= 1
        self._reply(peer, "submit_sm_resp", sequence, message_id=upstream_id)

    async def release_responses(self) -> int:
        """Answer every held submit_sm (with `hold_responses`); how many there were."""
        held, self._held = self._held, []
        for peer, sequence, upstream_id, receipts in held:
            record = next(r for r in reversed(self.records) if r.upstream_id == upstream_id)
            self._respond(peer, sequence, upstream_id)
            self._send_receipts(peer, record, receipts)
        for peer in {id(p): p for p, *_ in held}.values():
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()
        return len(held)

    def outstanding(self) -> int:
        """submit_sm unanswered right now, over every bind."""
        return sum(p.outstanding for p in self._peers)

    def _later(self, delay: float, coro: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reply(
        self, peer: _Peer, name: str, sequence: int, status: int = 0, **fields: object
    ) -> None:
        pdu = smpplib.smpp.make_pdu(name, client=peer.seq, **fields)
        pdu.sequence = sequence
        pdu.status = status
        if not peer.writer.is_closing():
            peer.writer.write(pdu.generate())

    # -- ids, outcomes, delays ----------------------------------------------------------------

    def _next_id(self) -> str:
        n = next(self._ids)
        fmt = self.behaviour.id_format
        if fmt == "uuid":
            # Random-looking, from the seed; the first group starts with 0 ("0e999f21-...", as
            # in jasmin#643), so "stripped" spellings differ from it.
            raw = bytearray(
                hashlib.blake2b(f"{self.behaviour.seed}|{n}".encode(), digest_size=16).digest()
            )
            raw[0] &= 0x0F
            return str(uuid.UUID(bytes=bytes(raw)))
        return str(n) if fmt == "decimal" else f"{n:X}"

    def _id_after(self, upstream_id: str) -> str:
        """The id the carrier gives (or gave) the submit after this one."""
        fmt = self.behaviour.id_format
        if fmt == "uuid":
            return str(uuid.UUID(int=uuid.UUID(upstream_id).int + 1))
        return str(int(upstream_id) + 1) if fmt == "decimal" else f"{int(upstream_id, 16) + 1:X}"

    def _draw(self, salt: str, destination: str, short_message: bytes) -> float:
        """A number in [0, 1) fixed by the seed and the message: a resend draws the same."""
        key = f"{self.behaviour.seed}|{salt}|{destination}|".encode() + short_message
        digest = hashlib.blake2b(key, digest_size=8).digest()  # not a CRC: that is affine
        return int.from_bytes(digest, "big") / 2**64

    def outcome_of(self, destination: str, short_message: bytes) -> bool:
        """Whether the carrier delivers this message (the truth its receipts report)."""
        b = self.behaviour
        if b.receipt_state != 2:
            return False
        return not (b.fail_share and self._draw("fail", destination, short_message) < b.fail_share)

    def _receipt_delay(self, record: Submitted) -> float:
        b = self.behaviour
        span = b.receipt_delays
        if b.tail_share and self._draw("tail", record.destination, record.short_message) < (
            b.tail_share
        ):
            span = b.tail_delays
        if span is None:
            return b.receipt_delay
        low, high = span
        return low + (high - low) * self._draw("delay", record.destination, record.short_message)

    # -- receipts and MO ----------------------------------------------------------------------

    def _spelled(self, upstream_id: str) -> str:
        kind = self.behaviour.receipt_id
        fmt = self.behaviour.id_format
        if kind == "decimal" and fmt == "hex":
            return str(int(upstream_id, 16))
        if kind == "zeros":
            if fmt == "uuid":
                head, _, rest = upstream_id.partition("-")
                return f"{head.zfill(10)}-{rest}"
            return upstream_id.zfill(10)
        if kind == "lower":
            return upstream_id.lower()
        if kind == "upper":
            return upstream_id.upper()
        if kind == "stripped":
            return (upstream_id.lstrip("0") or "0").upper()
        return upstream_id

    def _receipts(self, record: Submitted) -> list[dict[str, Any]]:
        """The deliver_sm (fields) this submit gets back: none for a part the carrier does not
        report, else an optional intermediate notification, then the final receipt."""
        b = self.behaviour
        part = _part_of(record)
        if part is not None and b.multipart_receipts != "all":
            seq, total = part
            if seq != (total if b.multipart_receipts == "last" else 1):
                return []
        if b.drop_receipts or not b.send_receipts:
            return []
        spelled = self._spelled(record.upstream_id)
        out = []
        if b.intermediate:
            out.append(
                self._receipt_fields(record.upstream_id, spelled, "ENROUTE", 1, 0, esm_class=0x20)
            )
        if record.delivered:
            final = ("DELIVRD", 2, 0)
        else:
            # receipt_state: every receipt says so (err 000); fail_share: a failed delivery
            final = (
                ("UNDELIV", 5, b.fail_error)
                if b.receipt_state == 2
                else ("UNDELIV", b.receipt_state, 0)
            )
        stat = b.stat_word if b.stat_word is not None else final[0]
        if b.text_disagrees:  # another message's id, the other outcome: only the TLVs are right
            spelled = self._spelled(self._id_after(record.upstream_id))
            stat = "UNDELIV" if record.delivered else "DELIVRD"
        esm = 0x04 if b.receipt_flag else 0x00
        _, state, error = final
        out.append(
            self._receipt_fields(record.upstream_id, spelled, stat, state, error, esm_class=esm)
        )
        return out

    def _receipt_fields(
        self, upstream_id: str, spelled: str, stat: str, state: int, error: int, *, esm_class: int
    ) -> dict[str, Any]:
        dlvrd = "001" if state == 2 else "000"
        text = f"id:{spelled} sub:001 dlvrd:{dlvrd} stat:{stat} err:{error:03d} text:"
        fields: dict[str, Any] = {
            "esm_class": esm_class,
            "source_addr": "1",
            "destination_addr": "2",
            "short_message": text.encode(),
        }
        if self.behaviour.receipt_tlvs and esm_class:  # a text-only carrier sends no TLVs
            fields.update(receipted_message_id=upstream_id, message_state=state)
        return fields

    def _send_receipts(
        self, submitted_on: _Peer, record: Submitted, receipts: list[dict[str, Any]]
    ) -> None:
        if not receipts:
            return
        *early, final = receipts
        for fields in early:  # intermediate notifications: at once
            self._receipt_now_sync(submitted_on, fields)
        delay = 0.0 if self.behaviour.receipt_before_response else self._receipt_delay(record)
        if delay:
            self._later(delay, self._receipt_now(submitted_on, final))
            return
        self._receipt_now_sync(submitted_on, final)

    async def _receipt_now(self, submitted_on: _Peer, fields: dict[str, Any]) -> None:
        self._receipt_now_sync(submitted_on, fields)
        for peer in self.receivers():
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()

    def _receipt_now_sync(self, submitted_on: _Peer, fields: dict[str, Any]) -> None:
        self.receipts_sent.append(fields)
        if self.behaviour.hold_receipts:
            self._held_receipts.append((submitted_on, fields))
            return
        if self.behaviour.deliver_on_tx and submitted_on.mode == "tx":
            self._deliver(fields, submitted_on)
        else:
            self._deliver(fields)

    async def release_receipts(self) -> int:
        """Send every held receipt at once (with `hold_receipts`); how many there were."""
        held, self._held_receipts = self._held_receipts, []
        for submitted_on, fields in held:
            if self.behaviour.deliver_on_tx and submitted_on.mode == "tx":
                self._deliver(fields, submitted_on)
            else:
                self._deliver(fields)
        for peer in list(self._peers):
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()
        return len(held)

    def pending(self) -> int:
        """Receipts and responses not yet answered by the gateway: scheduled, held, queued
        for a receiver, or sent and not acknowledged. 0 when the carrier has nothing left."""
        return (
            len(self._tasks)
            + len(self._held)
            + len(self._held_receipts)
            + len(self._undelivered)
            + sum(len(p.unacked) for p in self._peers)
        )

    def _deliver(self, fields: dict[str, Any], peer: _Peer | None = None) -> None:
        """A deliver_sm to `peer`, or to a receiver (queued while none is bound)."""
        if peer is None:
            receivers = [p for p in self.receivers() if not p.writer.is_closing()]
            if not receivers:
                self._undelivered.append(fields)
                return
            peer = receivers[next(self._rr) % len(receivers)]
        pdu = smpplib.smpp.make_pdu("deliver_sm", client=peer.seq, **fields)
        peer.unacked[pdu.sequence] = fields
        peer.writer.write(pdu.generate())

    async def send_deliver(self, fields: dict[str, Any]) -> None:
        """Any deliver_sm a carrier may send (receipts in its own words, notifications)."""
        self._deliver(fields)
        for peer in self.receivers():
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()

    async def send_mo(self, source: str, destination: str, parts: list[tuple[bytes, int]]) -> None:
        """Deliver an inbound message to the bound gateway: (short_message, esm_class) parts."""
        for short_message, esm_class in parts:
            self._deliver(
                {
                    "source_addr": source,
                    "destination_addr": destination,
                    "esm_class": esm_class,
                    "data_coding": 8,
                    "short_message": short_message,
                }
            )
        for peer in self.receivers():
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()


def _part_of(record: Submitted) -> tuple[int, int] | None:
    """(seqnum, total) of a part of a concatenated message (UDH or SAR), None for one part."""
    if record.sar is not None:
        return record.sar[2], record.sar[1]
    udh = record.udh
    i = 1
    while i + 1 < len(udh):  # the information elements: (iei, length, data)
        iei, size = udh[i], udh[i + 1]
        data = udh[i + 2 : i + 2 + size]
        if iei == 0x00 and size == 3:
            return data[2], data[1]
        if iei == 0x08 and size == 4:
            return data[3], data[2]
        i += 2 + size
    return None


def _malformed(kind: str, sequence: int) -> bytes:
    """A reply no SMPP peer can take in place of a submit_sm_resp."""
    if kind == "garbage":
        return b"\xde\xad\xbe\xef HTTP/1.1 400 Bad Request\r\n\r\n"
    if kind == "bad_length":  # a submit_sm_resp whose command_length is shorter than a header
        return (10).to_bytes(4, "big") + (0x80000004).to_bytes(4, "big") + bytes(8)
    # A well-framed PDU with a command_id SMPP v3.4 does not have, echoing the sequence.
    return (
        (17).to_bytes(4, "big")
        + (0x80000555).to_bytes(4, "big")
        + bytes(4)
        + sequence.to_bytes(4, "big")
        + b"\x00"
    )
