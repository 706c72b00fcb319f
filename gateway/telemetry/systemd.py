"""The systemd notify protocol, by hand (an AF_UNIX datagram to $NOTIFY_SOCKET; no dependency).

With `Type=notify` the service manager waits for READY=1 before it counts the gateway as
started, and while it runs:

- `notify_ready()` once listening, and again after a reload has been applied;
- `notify_reloading()` when a reload starts (SIGHUP, `smsgw reload`): RELOADING=1 with
  MONOTONIC_USEC, as `Type=notify-reload` wants; always follow it with `notify_ready()`, also
  when the new file was refused and the old configuration stays;
- `notify_stopping()` when shutdown begins;
- `Watchdog`: WATCHDOG=1 every WATCHDOG_USEC/2 from a loop timer, so a hung event loop stops
  feeding it and systemd (`WatchdogSec=`) kills and restarts the gateway.

Every function is a no-op outside systemd (no NOTIFY_SOCKET), and a send that fails is ignored:
notification must never stop the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

__all__ = [
    "Watchdog",
    "notify",
    "notify_ready",
    "notify_reloading",
    "notify_stopping",
    "watchdog_interval",
]


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to $NOTIFY_SOCKET; False when there is none or it fails."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace: a leading NUL byte instead of '@'
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            return False
    return True


def notify_ready() -> bool:
    return notify("READY=1\nSTATUS=serving")


def notify_reloading() -> bool:
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading")


def notify_stopping() -> bool:
    return notify("STOPPING=1\nSTATUS=stopping")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when systemd asked
    for none, or asked another process (WATCHDOG_PID set and not ours)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


class Watchdog:
    """Pings WATCHDOG=1 from a timer on the running loop: fed only while the loop turns."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._tick()

    def _tick(self) -> None:
        notify("WATCHDOG=1")
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(Exception):
                self._handle.cancel()
            self._handle = None
