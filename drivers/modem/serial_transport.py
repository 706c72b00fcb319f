"""The serial port of one modem, read and written from the asyncio loop. The only module that
imports `serial`.

pyserial opens and configures the port (baud rate, RTS/CTS, an exclusive lock); after that the
file descriptor is non-blocking and watched with `loop.add_reader`, so an idle port costs
nothing until a byte arrives (no thread per port, no polling). A write that would block is kept
and finished from `loop.add_writer`.

A vanished port (USB unplug: read fails with EIO, or returns end of file; a write fails) is
reported once through `on_lost` and the port is closed. A port another process holds (pyserial's
lock fails with EAGAIN, or the open with EBUSY under TIOCEXCL, as ModemManager does) raises
`PortBusy` naming that process, found by scanning /proc/*/fd for the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import glob
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import serial

__all__ = [
    "PortBusy",
    "PortError",
    "PortMissing",
    "SerialTransport",
    "describe_holders",
    "expand_candidates",
    "port_holders",
    "resolve_port",
]

_READ_SIZE = 4096


class PortError(Exception):
    """The port could not be opened (or configured)."""

    def __init__(self, port: str, reason: str, err: int | None = None) -> None:
        super().__init__(f"port {port}: {reason}")
        self.port = port
        self.reason = reason
        self.errno = err


class PortMissing(PortError):
    """No such device (unplugged, or a /dev/serial/by-id link that points nowhere now)."""


class PortBusy(PortError):
    """Another process holds the port. `holders` are (pid, command name), possibly empty when
    /proc does not tell (another user's process)."""

    def __init__(self, port: str, holders: tuple[tuple[int, str], ...], err: int | None) -> None:
        self.holders = holders
        what = f"is held by {describe_holders(holders)}" if holders else "is busy (locked)"
        super().__init__(port, what, err)
        self.args = (f"port {port} {what}",)

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_port(path: str) -> str:
    """The device a path names now, following links (/dev/serial/by-id/... -> /dev/ttyUSB3)."""
    return os.path.realpath(path)


def expand_candidates(patterns: Iterable[str]) -> list[str]:
    """The devices the glob `patterns` match now, resolved, each once, in pattern order."""
    seen: dict[str, None] = {}
    for pattern in patterns:
        for match in sorted(glob.glob(pattern)):
            device = resolve_port(match)
            if os.path.exists(device):
                seen.setdefault(device, None)
    return list(seen)


def port_holders(device: str) -> list[tuple[int, str]]:
    """Processes with `device` open: (pid, command name), ours last.

    Reads /proc/<pid>/fd/* links; processes we may not inspect are skipped.
    """
    target = resolve_port(device)
    me = os.getpid()
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != target:
                    continue
            except OSError:
                continue
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                name = "?"
            found.append((int(entry.name), name))
            break
    found.sort(key=lambda h: (h[0] == me, h[0]))
    return found


def describe_holders(holders: Iterable[tuple[int, str]]) -> str:
    return ", ".join(f"pid {pid} ({name})" for pid, name in holders)


def _busy(exc: serial.SerialException) -> bool:
    err = exc.errno if isinstance(exc.errno, int) else None
    text = str(exc).lower()
    return err in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text


class SerialTransport:
    """One open serial port.

    Args:
        path: the device, or a link to it (followed at each `open`).
        baudrate, rtscts: line settings (a pty ignores them).
        on_data: called with each chunk read.
        on_lost: called once when the port vanishes, with the error (None: end of file).
    """

    def __init__(
        self,
        path: str,
        *,
        baudrate: int = 115200,
        rtscts: bool = False,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        self.path = path
        self.device = path
        self.baudrate = baudrate
        self.rtscts = rtscts
        self._on_data = on_data
        self._on_lost = on_lost
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._out = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    async def open(self) -> None:
        """Open and lock the port and start reading.

        Raises:
            PortMissing: no such device.
            PortBusy: another process holds it (named when /proc says who).
            PortError: any other failure to open or configure it.
        """
        loop = asyncio.get_running_loop()
        self.device = resolve_port(self.path)
        if not os.path.exists(self.device):
            raise PortMissing(self.path, "no such device", errno.ENOENT)
        # Opening a USB tty can stall for a moment (the driver wakes the device): off the loop.
        port = await loop.run_in_executor(None, self._open_blocking, self.device)
        if port.fd is None:  # pragma: no cover - pyserial always sets it once open
            port.close()
            raise PortError(self.device, "opened without a file descriptor")
        self._serial = port
        self._fd = port.fd
        self._loop = loop
        self._out.clear()
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self._readable)

    def _open_blocking(self, device: str) -> serial.Serial:
        try:
            return serial.Serial(
                device,
                self.baudrate,
                rtscts=self.rtscts,
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )
        except serial.SerialException as exc:
            err = exc.errno if isinstance(exc.errno, int) else None
            if err == errno.ENOENT or not os.path.exists(device):
                raise PortMissing(self.path, "no such device", errno.ENOENT) from exc
            if _busy(exc):
                holders = [h for h in port_holders(device) if h[0] != os.getpid()]
                if not holders:
                    holders = port_holders(device)  # a test, or another part of this process
                raise PortBusy(device, tuple(holders), err) from exc
            raise PortError(device, str(exc), err) from exc
        except (OSError, ValueError) as exc:
            raise PortError(device, str(exc), getattr(exc, "errno", None)) from exc

    def write(self, data: bytes) -> None:
        """Write `data` (what cannot be written now is written when the port takes it)."""
        if not data or self._fd < 0:
            return
        if self._writing:
            self._out += data
            return
        try:
            written = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            self._lost(exc)
            return
        if written < len(data):
            self._out += data[written:]
            self._writing = True
            assert self._loop is not None
            self._loop.add_writer(self._fd, self._writable)

    def close(self) -> None:
        """Stop reading and close the port (no `on_lost`)."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._loop is not None:
            self._loop.remove_reader(fd)
            if self._writing:
                self._loop.remove_writer(fd)
        self._writing = False
        self._out.clear()
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()

    # -- loop callbacks -----------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the device went away (or the pty's other end closed)
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        self._on_data(data)

    def _writable(self) -> None:
        try:
            written = os.write(self._fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        del self._out[:written]
        if not self._out and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _lost(self, exc: Exception | None) -> None:
        if self._fd < 0:
            return
        self.close()
        self._on_lost(exc)
