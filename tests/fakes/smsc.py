"""A fake carrier SMSC for tests, built on smpplib's PDU classes (not on smsgw's codec), with a
ladder of behaviours a carrier shows: binds of each type (TX, RX, TRX) and refused binds,
slow and late answers, throttling (ESME_RTHROTTLED or ESME_RMSGQFUL), permanent errors for
chosen destinations, a dropped link, malformed replies, receipts sent before the
submit_sm_resp, receipt ids spelled several ways, deliver_sm on a transmitter bind, and a TLS
listener. It records every accepted submit_sm with its esm_class, UDH and TLVs, so tests can
check how long messages were carried.

Receipts and MO go to a receiver-capable session (RX or TRX), round robin; while none is bound
they wait, as a carrier's queue does. A deliver_sm not answered OK (refused, or its link
closed first) is queued and delivered again, as carriers do. Every loop is bounded and the
listener takes an ephemeral port on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
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
    receipt_id: Literal["hex", "decimal", "zeros", "lower"] = "hex"  # the id in the text
    receipt_tlvs: bool = True  # receipted_message_id / message_state TLVs
    receipt_delay: float = 0.0  # send receipts this much after the submit_sm_resp
    refuse_binds: int = 0  # refuse this many binds with `refuse_status`
    refuse_status: int = ESME_RINVPASWD
    deliver_on_tx: bool = False  # send receipts on the transmitter session (carriers do)
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
    queries: list[tuple[str, str]] = field(default_factory=list)  # query_sm (id, source_addr)
    port: int = 0
    _server: asyncio.Server | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0xABC000))
    _peers: list[_Peer] = field(default_factory=list)
    _undelivered: list[Any] = field(default_factory=list)  # deliver_sm waiting for an RX
    _rr: itertools.count[int] = field(default_factory=itertools.count)
    _dropped: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

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
        upstream_id = f"{next(self._ids):X}"
        self.submits.append((destination, pdu.short_message or b""))
        sar = None
        if getattr(pdu, "sar_msg_ref_num", None) is not None:
            sar = (pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum)
        self.records.append(
            Submitted(
                destination,
                pdu.short_message or b"",
                pdu.esm_class,
                pdu.data_coding,
                upstream_id,
                peer.mode,
                sar,
                getattr(pdu, "message_payload", None),
                asyncio.get_running_loop().time(),
            )
        )
        receipt = self._receipt(upstream_id)
        delay = b.response_delay
        if b.late_first and len(self.records) <= b.late_first:
            delay = b.late_delay
            self.answered_late += 1
        if b.receipt_before_response:
            self._send_receipt(peer, receipt)
            await peer.writer.drain()
        if delay:
            self._later(delay, self._answer(peer, pdu.sequence, upstream_id, receipt))
        else:
            self._reply(peer, "submit_sm_resp", pdu.sequence, message_id=upstream_id)
            if not b.receipt_before_response:
                self._send_receipt(peer, receipt)
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

    async def _answer(self, peer: _Peer, sequence: int, upstream_id: str, receipt: Any) -> None:
        self._reply(peer, "submit_sm_resp", sequence, message_id=upstream_id)
        if not self.behaviour.receipt_before_response:
            self._send_receipt(peer, receipt)
        with contextlib.suppress(ConnectionError):
            await peer.writer.drain()

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

    # -- receipts and MO ----------------------------------------------------------------------

    def _receipt(self, upstream_id: str) -> dict[str, Any]:
        b = self.behaviour
        state = b.receipt_state
        stat = "DELIVRD" if state == 2 else "UNDELIV"
        number = int(upstream_id, 16)
        spelled = {
            "hex": upstream_id,
            "decimal": str(number),
            "zeros": f"{number:010X}",
            "lower": upstream_id.lower(),
        }[b.receipt_id]
        text = f"id:{spelled} sub:001 dlvrd:001 stat:{stat} err:000 text:"
        fields: dict[str, Any] = {
            "esm_class": 4,
            "source_addr": "1",
            "destination_addr": "2",
            "short_message": text.encode(),
        }
        if b.receipt_tlvs:
            fields.update(receipted_message_id=upstream_id, message_state=state)
        return fields

    def _send_receipt(self, submitted_on: _Peer, fields: dict[str, Any]) -> None:
        if not self.behaviour.send_receipts:
            return
        delay = self.behaviour.receipt_delay
        if delay and not self.behaviour.receipt_before_response:
            self._later(delay, self._receipt_now(submitted_on, fields))
            return
        self._receipt_now_sync(submitted_on, fields)

    async def _receipt_now(self, submitted_on: _Peer, fields: dict[str, Any]) -> None:
        self._receipt_now_sync(submitted_on, fields)

    def _receipt_now_sync(self, submitted_on: _Peer, fields: dict[str, Any]) -> None:
        if self.behaviour.deliver_on_tx and submitted_on.mode == "tx":
            self._deliver(fields, submitted_on)
        else:
            self._deliver(fields)

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
