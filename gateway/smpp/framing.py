"""Cutting a byte stream into PDUs (SMPP v3.4 section 3.2: command_length counts itself).

Feed whatever the socket gave, then take whole PDUs out until `next_pdu` says None. Octets
already returned are dropped when the buffer empties, or once they pass 64 KiB and half the
buffer (compacting on every PDU would copy the rest each time). A command_length below 16 or
above `max_length` is refused as soon as its four octets arrive, before anything is allocated
for it: after such a length the stream has no trustworthy boundary left, so the error is fatal
(answer generic_nack, then close the link).
"""

from __future__ import annotations

import struct

from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import RemoteSmppError

__all__ = ["DEFAULT_MAX_LENGTH", "FrameBuffer"]

# A submit_sm with a 64 KiB message_payload and every other TLV fits in well under this.
DEFAULT_MAX_LENGTH = 70_000
_HEAD = struct.Struct(">IIII")


class FrameBuffer:
    """Accumulates bytes and yields whole PDUs.

    Args:
        max_length: the largest command_length accepted.
    """

    __slots__ = ("_buf", "_pos", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 16:
            raise ValueError("max_length must be at least 16")
        self.max_length = max_length
        self._buf = bytearray()
        self._pos = 0

    def __len__(self) -> int:
        """Octets held that are not yet part of a returned PDU."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Add bytes read from the link."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_pdu(self) -> bytes | None:
        """The next whole PDU (header included), or None until more bytes are fed.

        Raises:
            RemoteSmppError: fatal ESME_RINVCMDLEN for a command_length below 16 or above
                `max_length`; `command_id` and `sequence_number` are set when the 16 header
                octets are already here, so the generic_nack can echo them.
        """
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 4:
            return None
        length = int.from_bytes(buf[pos : pos + 4], "big")
        if length < 16 or length > self.max_length:
            command_id = seq = None
            if avail >= 16:
                _, command_id, _, seq = _HEAD.unpack_from(buf, pos)
            raise RemoteSmppError(
                f"command_length {length} outside 16..{self.max_length}",
                CommandStatus.ESME_RINVCMDLEN,
                fatal=True,
                command_id=command_id,
                sequence_number=seq,
            )
        if avail < length:
            return None
        pdu = bytes(buf[pos : pos + length])
        pos += length
        if pos == len(buf):
            buf.clear()
            pos = 0
        elif pos > 65536 and pos * 2 > len(buf):
            del buf[:pos]  # compact now and then, not on every PDU
            pos = 0
        self._pos = pos
        return pdu

    def pdus(self) -> list[bytes]:
        """Every whole PDU now in the buffer. Raises as `next_pdu`."""
        out = []
        while (pdu := self.next_pdu()) is not None:
            out.append(pdu)
        return out
