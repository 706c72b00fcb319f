"""The emulated network seen through a folder, for tests of a process they cannot reach into
(`smsgw agent`, `smsgw serve` with `emulate:`).

`sent.jsonl` gets one JSON line per whole message the network received, written with one
`write(2)` each (no buffer in this process), so a kill -9 right after loses no line: the file
is what reached the network. An MO is asked for by dropping `mo-<anything>.json`
(``{"modem": "modem1", "sender": "+15551234", "text": "..."}``) in the folder: the network
delivers it to that modem and renames the file ``*.done``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from drivers.modem.emulator_network import ReceivedMessage, SimNetwork

__all__ = ["NetworkJournal"]

_POLL = 0.1  # seconds between looks for MO files


class NetworkJournal:
    """Writes what `network` receives to `folder`/sent.jsonl and delivers the MO files.

    Args:
        network: the emulated network.
        folder: created if missing.
        imei_of: a modem's IMEI by its name in the bank (MO files name modems).
    """

    def __init__(
        self, network: SimNetwork, folder: Path, imei_of: Callable[[str], str | None]
    ) -> None:
        self.network = network
        self.folder = folder
        self.imei_of = imei_of
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(folder / "sent.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="network-journal", daemon=True)
        network.on_received = self._received

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.network.on_received = None
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _received(self, message: ReceivedMessage) -> None:
        line = {
            "modem": message.modem,
            "destination": message.destination,
            "text": message.text,
            "parts": len(message.parts),
            "message_refs": list(message.message_refs),
            "at": message.received_at.isoformat(),
        }
        os.write(self._fd, (json.dumps(line, ensure_ascii=False) + "\n").encode())

    def _poll(self) -> None:
        while not self._stop.wait(_POLL):
            for path in sorted(self.folder.glob("mo-*.json")):
                try:
                    request = json.loads(path.read_text(encoding="utf-8"))
                    imei = self.imei_of(str(request["modem"]))
                    if imei is None:
                        continue  # that modem is not up yet: the file waits
                    self.network.inject(imei, str(request["sender"]), str(request["text"]))
                    path.replace(path.with_suffix(".done"))
                except (OSError, ValueError, KeyError):
                    continue  # half written: read again on the next look
