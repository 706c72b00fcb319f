"""A fake carrier SMSC for tests, built on smpplib's PDU classes (not on smsgw's codec), with a
ladder of behaviours: happy, throttling the first submits, sending the receipt before the
submit_sm_resp, dropping the link after some submits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

import smpplib.client
import smpplib.smpp


@dataclass
class Behaviour:
    throttle_first: int = 0  # answer this many submit_sm with ESME_RTHROTTLED
    receipt_before_response: bool = False
    drop_after: int | None = None  # close the link after this many submit_sm
    receipt_state: int = 2  # message_state of the receipts (2 delivered, 5 undeliverable)


@dataclass
class FakeSmsc:
    behaviour: Behaviour = field(default_factory=Behaviour)
    submits: list[tuple[str, bytes]] = field(default_factory=list)  # (destination, sm) accepted
    binds: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0x1000))
    _seen: int = 0
    _writer: asyncio.StreamWriter | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seq = smpplib.client.SimpleSequenceGenerator()
        self._writer, self._seq = writer, seq
        try:
            for _ in range(100_000):  # bounded
                head = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(head, "big") - 4)
                pdu = smpplib.smpp.parse_pdu(head + body, client=seq, allow_unknown_opt_params=True)
                if pdu.command == "bind_transceiver":
                    self.binds += 1
                    self._reply(
                        writer, seq, "bind_transceiver_resp", pdu.sequence, system_id="fake"
                    )
                elif pdu.command == "enquire_link":
                    self._reply(writer, seq, "enquire_link_resp", pdu.sequence)
                elif pdu.command == "unbind":
                    self._reply(writer, seq, "unbind_resp", pdu.sequence)
                    break
                elif pdu.command == "submit_sm":
                    self._seen += 1
                    if self._seen <= self.behaviour.throttle_first:
                        self._reply(writer, seq, "submit_sm_resp", pdu.sequence, status=0x58)
                        continue
                    upstream_id = f"{next(self._ids):X}"
                    self.submits.append((pdu.destination_addr.decode(), pdu.short_message))
                    if self.behaviour.receipt_before_response:
                        self._receipt(writer, seq, upstream_id)
                        await writer.drain()
                    self._reply(writer, seq, "submit_sm_resp", pdu.sequence, message_id=upstream_id)
                    if not self.behaviour.receipt_before_response:
                        self._receipt(writer, seq, upstream_id)
                    if self.behaviour.drop_after and self._seen >= self.behaviour.drop_after:
                        await writer.drain()
                        break
                # deliver_sm_resp and anything else: nothing to do
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _reply(
        self,
        writer: asyncio.StreamWriter,
        seq: object,
        name: str,
        sequence: int,
        status: int = 0,
        **fields: object,
    ) -> None:
        pdu = smpplib.smpp.make_pdu(name, client=seq, **fields)
        pdu.sequence = sequence
        pdu.status = status
        writer.write(pdu.generate())

    async def send_mo(self, source: str, destination: str, parts: list[tuple[bytes, int]]) -> None:
        """Deliver an inbound message to the bound gateway: (short_message, esm_class) parts."""
        writer = self._writer
        assert writer is not None, "no gateway bound"
        for short_message, esm_class in parts:
            pdu = smpplib.smpp.make_pdu(
                "deliver_sm",
                client=self._seq,
                source_addr=source,
                destination_addr=destination,
                esm_class=esm_class,
                data_coding=8,
                short_message=short_message,
            )
            writer.write(pdu.generate())
        await writer.drain()

    def _receipt(self, writer: asyncio.StreamWriter, seq: object, upstream_id: str) -> None:
        state = self.behaviour.receipt_state
        stat = "DELIVRD" if state == 2 else "UNDELIV"
        # The text spells the id in decimal, as some carriers do; the TLV keeps the hex.
        text = f"id:{int(upstream_id, 16)} sub:001 dlvrd:001 stat:{stat} err:000 text:"
        pdu = smpplib.smpp.make_pdu(
            "deliver_sm",
            client=seq,
            esm_class=4,
            source_addr="1",
            destination_addr="2",
            short_message=text.encode(),
            receipted_message_id=upstream_id,
            message_state=state,
        )
        writer.write(pdu.generate())
