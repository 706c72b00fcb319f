"""A fast fake carrier SMSC for `bench/e2e.py`: happy path only, as cheap per message as we can.

Usage (normally started by ``bench/e2e.py``):

    .venv/bin/python bench/fake_carrier.py [--host 127.0.0.1] [--port 0]

It listens on loopback (an ephemeral port by default) and prints one JSON line
``{"port": N}`` on stdout once it accepts connections. Then it reads commands from stdin, one
per line, and answers each with one JSON line on stdout:

    stats     counters so far (binds, submits, duplicates, receipts sent, deliver_sm_resp ...)
    reset     zero the counters and forget the submits seen
    hold      keep receipts from now on instead of sending them (a receipt burst follows)
    release   send every held receipt at once (one write per connection) and stop holding
    probe     from now on send an enquire_link on every connection each 10 ms (for at most
              60 s) and time its answer: how long the gateway's loop takes to read and answer
    mo N TO   send N inbound (MO) deliver_sm to number TO over the bound connections, 500
              per write, each text ``mo <counter>`` from a distinct source_addr (for
              ``bench/backlog.py``); answers once all are written

End of stdin (the parent went away) stops it, so it never outlives the benchmark.

Behaviour: every bind (transmitter, receiver, transceiver) is accepted; enquire_link and unbind
are answered; every submit_sm is answered at once with a submit_sm_resp carrying our own
message id (a decimal counter) and, when registered_delivery asks for one, followed by a
delivery receipt: a deliver_sm with esm_class 4 (SMPP v3.4 5.2.12), the Appendix B text
(``stat:DELIVRD``) and the receipted_message_id and message_state TLVs. Everything one read
produced is answered in one write. A submit's ``source_addr`` and ``short_message`` together
are taken as its identity (``bench/e2e.py`` gives every message a distinct source_addr, and
the parts of one message differ in their UDH), so a part the gateway sends twice is counted
as a duplicate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.smpp import (
    CommandId,
    DeliverSm,
    FrameBuffer,
    RemoteSmppError,
    SubmitSmResp,
    decode_pdu,
    encode_pdu,
    make_tlvs,
)
from gateway.smpp.receipt import Receipt, ReceiptState, format_receipt_bytes

_HEAD = struct.Struct(">IIII")
_RESP = 0x80000000
_SUBMIT_SM = int(CommandId.submit_sm)
_DELIVER_SM_RESP = int(CommandId.deliver_sm_resp)
_ENQUIRE_LINK = int(CommandId.enquire_link)
_UNBIND = int(CommandId.unbind)
_BINDS = {
    int(CommandId.bind_transmitter),
    int(CommandId.bind_receiver),
    int(CommandId.bind_transceiver),
}
_GENERIC_NACK = int(CommandId.generic_nack)
_DELIVERED = ReceiptState.DELIVRD
_STATE_TLV = _DELIVERED.message_state


class Counters:
    """What the carrier saw; `reset` starts a new scenario."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.connections = 0
        self.binds = 0
        self.submits = 0
        self.duplicates = 0
        self.receipts_sent = 0
        self.deliver_sm_resp = 0
        self.deliver_sm_resp_errors = 0
        self.other = 0
        self.undecodable = 0
        self.held = 0
        self.mo_sent = 0
        self.probes = 0
        self.probe_rtt_max = 0.0
        self.probe_rtts: list[float] = []
        self.seen: set[int] = set()

    def as_dict(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "binds": self.binds,
            "submits": self.submits,
            "unique_submits": len(self.seen),
            "duplicates": self.duplicates,
            "receipts_sent": self.receipts_sent,
            "deliver_sm_resp": self.deliver_sm_resp,
            "deliver_sm_resp_errors": self.deliver_sm_resp_errors,
            "other_pdus": self.other,
            "undecodable": self.undecodable,
            "held": self.held,
            "mo_sent": self.mo_sent,
            "enquire_link_probes": self.probes,
            "enquire_link_rtt_max_ms": self.probe_rtt_max * 1000.0,
            "enquire_link_rtt_p99_ms": _p99(self.probe_rtts) * 1000.0,
        }


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _head_only(command_id: int, seq: int, status: int = 0) -> bytes:
    return _HEAD.pack(16, command_id, status, seq)


class CarrierProtocol(asyncio.Protocol):
    """One ESME connection (the gateway's upstream bind, or the load client for the ceiling)."""

    def __init__(self, carrier: FakeCarrier) -> None:
        self.carrier = carrier
        self.frames = FrameBuffer()
        self.transport: asyncio.Transport | None = None
        self.out_seq = 0
        self.bound = False
        self.held: list[bytes] = []  # receipts kept for a burst
        self.probing: dict[int, float] = {}  # enquire_link sequence -> when it was sent

    def probe(self) -> None:
        if self.transport is None:
            return
        self.out_seq = seq = self.out_seq % 0x7FFFFFFF + 1
        self.probing[seq] = time.monotonic()
        self.transport.write(_head_only(_ENQUIRE_LINK, seq))

    def send_mo(self, count: int, to: str, first: int) -> int:
        """`count` MO deliver_sm (texts ``mo <first>`` ...) to `to` in one write."""
        if self.transport is None:
            return 0
        out = []
        for k in range(first, first + count):
            self.out_seq = seq = self.out_seq % 0x7FFFFFFF + 1
            out.append(
                encode_pdu(
                    DeliverSm(
                        source_addr_ton=1,
                        source_addr_npi=1,
                        source_addr=f"49170{k:08d}",
                        dest_addr_ton=1,
                        dest_addr_npi=1,
                        destination_addr=to,
                        short_message=f"mo {k}".encode(),
                        sequence_number=seq,
                    )
                )
            )
        self.transport.write(b"".join(out))
        return count

    def release(self) -> int:
        """Send every held receipt in one write; how many."""
        held, self.held = self.held, []
        if held and self.transport is not None:
            self.transport.write(b"".join(held))
            self.carrier.counters.receipts_sent += len(held)
        return len(held)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self.carrier.counters.connections += 1
        self.carrier.protocols.add(self)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        counters = self.carrier.counters
        frames = self.frames
        frames.feed(data)
        out: list[bytes] = []
        now: datetime | None = None
        try:
            while (raw := frames.next_pdu()) is not None:
                _length, command_id, _status, seq = _HEAD.unpack_from(raw)
                if command_id == _SUBMIT_SM:
                    try:
                        pdu: Any = decode_pdu(raw)
                    except RemoteSmppError as exc:
                        counters.undecodable += 1
                        out.append(_head_only(_SUBMIT_SM | _RESP, seq, int(exc.status)))
                        continue
                    counters.submits += 1
                    key = hash((pdu.source_addr, pdu.short_message))  # parts share a source
                    if key in counters.seen:
                        counters.duplicates += 1
                    else:
                        counters.seen.add(key)
                    message_id = self.carrier.next_id()
                    out.append(encode_pdu(SubmitSmResp(message_id=message_id, sequence_number=seq)))
                    if pdu.registered_delivery & 0x03:
                        if now is None:
                            now = datetime.now()  # one clock read per chunk
                        receipt = self._receipt(pdu, message_id, now)
                        if self.carrier.holding:
                            self.held.append(receipt)
                            counters.held += 1
                        else:
                            out.append(receipt)
                            counters.receipts_sent += 1
                elif command_id == _DELIVER_SM_RESP:
                    counters.deliver_sm_resp += 1
                    if _status:
                        counters.deliver_sm_resp_errors += 1
                elif command_id in _BINDS:
                    counters.binds += 1
                    self.bound = True
                    out.append(_HEAD.pack(16 + 8, command_id | _RESP, 0, seq) + b"carrier\x00")
                elif command_id == _ENQUIRE_LINK:
                    out.append(_head_only(_ENQUIRE_LINK | _RESP, seq))
                elif command_id == _UNBIND:
                    out.append(_head_only(_UNBIND | _RESP, seq))
                    transport.write(b"".join(out))
                    transport.close()
                    return
                elif command_id == _ENQUIRE_LINK | _RESP and seq in self.probing:
                    rtt = time.monotonic() - self.probing.pop(seq)
                    counters.probes += 1
                    counters.probe_rtts.append(rtt)
                    counters.probe_rtt_max = max(counters.probe_rtt_max, rtt)
                elif command_id & _RESP:
                    counters.other += 1  # e.g. enquire_link_resp
                else:
                    counters.other += 1
                    out.append(_head_only(_GENERIC_NACK, seq, 0x00000003))  # ESME_RINVCMDID
        except RemoteSmppError:
            counters.undecodable += 1
            transport.write(b"".join(out))
            transport.close()
            return
        if out:
            transport.write(b"".join(out))

    def _receipt(self, submit: Any, message_id: str, now: datetime) -> bytes:
        self.out_seq = seq = self.out_seq % 0x7FFFFFFF + 1
        text = format_receipt_bytes(
            Receipt(
                message_id=message_id,
                stat=_DELIVERED,
                sub=1,
                dlvrd=1,
                submit_date=now,
                done_date=now,
                err="000",
            ),
            include_text=False,
        )
        return encode_pdu(
            DeliverSm(
                source_addr_ton=submit.dest_addr_ton,
                source_addr_npi=submit.dest_addr_npi,
                source_addr=submit.destination_addr,
                dest_addr_ton=submit.source_addr_ton,
                dest_addr_npi=submit.source_addr_npi,
                destination_addr=submit.source_addr,
                esm_class=0x04,  # SMSC delivery receipt
                short_message=text,
                tlvs=make_tlvs(receipted_message_id=message_id, message_state=_STATE_TLV),
                sequence_number=seq,
            )
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.carrier.protocols.discard(self)


class FakeCarrier:
    """The listener and the counters shared by its connections."""

    def __init__(self) -> None:
        self.counters = Counters()
        self._next = 0
        self._next_mo = 0
        self.server: asyncio.Server | None = None
        self.holding = False
        self.protocols: set[CarrierProtocol] = set()

    async def send_mo(self, count: int, to: str) -> int:
        """`count` MO deliver_sm to `to`, round-robin over the bound connections, 500 a write;
        how many were written."""
        written = 0
        while written < count:
            bound = [p for p in self.protocols if p.bound and p.transport is not None]
            if not bound:
                break
            for protocol in bound:
                chunk = min(500, count - written)
                if chunk <= 0:
                    break
                written += protocol.send_mo(chunk, to, self._next_mo)
                self._next_mo += chunk
            await asyncio.sleep(0)  # the gateway's answers are read meanwhile
        self.counters.mo_sent += written
        return written

    def release(self) -> int:
        self.holding = False
        return sum(protocol.release() for protocol in list(self.protocols))

    async def probe(self, every: float = 0.01, for_at_most: float = 60.0) -> None:
        """An enquire_link on every bound connection each `every` seconds (bounded)."""
        deadline = time.monotonic() + for_at_most
        while time.monotonic() < deadline:
            for protocol in list(self.protocols):
                if protocol.bound:
                    protocol.probe()
            await asyncio.sleep(every)

    def next_id(self) -> str:
        self._next += 1
        return str(self._next)

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: CarrierProtocol(self), host, port)
        return int(self.server.sockets[0].getsockname()[1])


async def _serve(host: str, port: int) -> None:
    carrier = FakeCarrier()
    bound = await carrier.start(host, port)
    print(json.dumps({"port": bound}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    probing: asyncio.Task[None] | None = None
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "stats":
            print(json.dumps(carrier.counters.as_dict()), flush=True)
        elif command == "reset":
            carrier.counters.reset()
            print(json.dumps({"reset": True}), flush=True)
        elif command == "hold":
            carrier.holding = True
            print(json.dumps({"holding": True}), flush=True)
        elif command == "release":
            print(json.dumps({"released": carrier.release()}), flush=True)
        elif command == "probe":
            if probing is not None:
                probing.cancel()
            probing = asyncio.get_running_loop().create_task(carrier.probe())
            print(json.dumps({"probing": True}), flush=True)
        elif command.startswith("mo "):
            _, count, to = command.split()
            sent = await carrier.send_mo(int(count), to)
            print(json.dumps({"mo_sent": sent}), flush=True)
        elif command:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    if carrier.server is not None:
        carrier.server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
