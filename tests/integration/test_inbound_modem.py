"""The modem path of an MO end to end: an emulated modem receives SMS-DELIVERs from an
alphanumeric sender written with GSM 7-bit Greek capitals (``ΔHMOΣ``), the bank hands them
to the gateway, and smpplib - strict about TLVs, as it is by default - receives them. Today's
failure: the deliver_sm cannot be built, the SMS stays on the SIM and is read again at every
drain until the SIM is full."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import smpplib.client

from gateway.sms import Encoding, decode_text
from tests.integration.test_modem_bank import Running, wait_until


class StrictApp:
    """smpplib as an application that never saw a vendor TLV: an unknown one raises."""

    def __init__(self, port: int) -> None:
        self.c = smpplib.client.Client("127.0.0.1", port, timeout=0.3)
        self.received: list[Any] = []
        self.c.set_message_received_handler(self._received)  # called with pdu=...
        self.c.connect()
        self.c.bind_transceiver(system_id="shop", password="secret")

    def _received(self, pdu: Any) -> None:
        self.received.append(pdu)

    def pump(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} MO came"
            self.c.read_once()

    def close(self) -> None:
        self.c.unbind()
        self.c.disconnect()


def test_a_greek_alphanumeric_sender_reaches_a_strict_smpplib(tmp_path: Path) -> None:
    running = Running(tmp_path)
    try:
        app = StrictApp(running.port)
        try:
            modem = running.emulated.modems["m2"]
            running.network.inject(modem, "ΔHMOΣ", "Your tax refund is ready.")
            running.network.inject(modem, "ΔHMOΣ", "Part one, and part two. " * 6, parts=2)
            app.pump(2, 30)
            single, joined = app.received
            assert single.source_addr == joined.source_addr == b"DHMOS"
            assert single.source_addr_ton == 5  # alphanumeric
            # smpplib reads the subaddress as a C-string: it drops the last octet.
            assert single.source_subaddress == (b"\xa0" + "ΔHMOΣ".encode())[:-1]
            assert decode_text(single.short_message, Encoding.GSM7) == "Your tax refund is ready."
            long_text = decode_text(joined.short_message, Encoding.GSM7)
            assert long_text == "Part one, and part two. " * 6  # one SMS once joined
            # Every SMS was taken and deleted from the SIM: none is read again.
            wait_until(lambda: not modem.stored("SM"), 10, "SIM storage emptied")
            assert running.state()["m2"]["received"] == 3
        finally:
            app.close()
    finally:
        running.close()
