"""What the dispatcher needs from anything that carries messages: a carrier SMPP upstream, a
modem bank, or the simulated carrier.

A driver takes one stored message, sends it, and says what happened; later it reports the
message's delivery receipt through the `ReceiptSink` it was given (the same path for every
driver, so applications get receipts the same way whatever carried the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from gateway.store.base import MessageRecord

__all__ = [
    "Diagnosable",
    "Driver",
    "MultipartReceipts",
    "Queryable",
    "ReceiptPolicy",
    "ReceiptSink",
    "SendResult",
    "UpstreamReceipt",
]

MultipartReceipts = Literal["all", "last", "first", "any"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send.

    Attributes:
        ok: the upstream accepted the message.
        upstream_id: its id for the message (receipts refer to it), when `ok`.
        upstream_ids: when the driver sent the message as several PDUs (it cut a long text
            into parts for this upstream), every part's id in order; empty means just
            `upstream_id`.
        error: the upstream's error code when not `ok`.
        permanent: a failure retrying cannot fix (the message ends failed).
    """

    ok: bool
    upstream_id: str = ""
    error: int = 0
    permanent: bool = False
    upstream_ids: tuple[str, ...] = ()

    @property
    def part_ids(self) -> tuple[str, ...]:
        return self.upstream_ids or (self.upstream_id,)


@dataclass(frozen=True, slots=True)
class UpstreamReceipt:
    """A delivery receipt as an upstream reported it, before we matched it to a message."""

    upstream: str
    upstream_id: str
    message_state: int  # SMPP v3.4 5.2.28: 2 delivered, 5 undeliverable, ...
    error: int = 0
    done_at: float = 0.0
    raw: bytes = b""  # the receipt's text as it came (kept in the store)
    intermediate: bool = False  # an intermediate notification (esm_class 0x20): never final


@dataclass(frozen=True, slots=True)
class ReceiptPolicy:
    """How a driver's upstream reports receipts (a driver may carry one as `receipt_policy`;
    without it the dispatcher assumes these defaults).

    Attributes:
        id_format: how its message ids are spelled (`gateway.smpp.receipt.IdSpelling`).
        multipart_receipts: which parts of a message sent as several report its end.
        receipt_timeout: seconds after the send a message with no final receipt is queried
            (`Queryable`) or settled UNKNOWN.
    """

    id_format: str = "auto"
    multipart_receipts: MultipartReceipts = "all"
    receipt_timeout: float = 72 * 3600.0


class ReceiptSink(Protocol):
    """Where drivers hand what comes back: receipts, and inbound (MO) PDUs."""

    async def receipt(self, receipt: UpstreamReceipt) -> None: ...

    async def inbound(self, pdu: Any) -> int | None:
        """An MO PDU, durable when this returns. Returns the command_status to answer it
        with (None or 0: taken; otherwise a permanent refusal, already logged); raises only
        when it could not be kept now (temporary: the upstream should resend)."""

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        """A submit_sm_resp that came after `send` had given up on it (timeout): if the
        upstream accepted the message after all, the dispatcher records that instead of
        sending it again."""


@runtime_checkable
class Queryable(Protocol):
    """A driver that can ask its upstream where a message stands (SMPP query_sm): an optional
    capability, used for a message whose receipt did not come within `receipt_timeout`."""

    async def query(self, upstream_id: str, record: MessageRecord) -> UpstreamReceipt | None:
        """The upstream's answer as a receipt (its message_state), or None when it could
        not say (unknown id, refused, link down)."""


@runtime_checkable
class Diagnosable(Protocol):
    """A driver that can tell when it will never be usable without an operator (a modem
    bank whose SIMs all want another PIN or have no SMSC address): an optional capability.
    The dispatcher then fails a message whose every target says so at once, with a receipt,
    instead of retrying it until `max_age`."""

    def unusable_reason(self) -> str | None:
        """Why it can never send as it is, or None while it may (down for now included)."""


class Driver(Protocol):
    name: str

    def usable(self) -> bool:
        """Connected, healthy and under its limits now."""

    async def send(self, record: MessageRecord) -> SendResult: ...

    async def start(self, sink: ReceiptSink) -> None: ...

    async def stop(self) -> None: ...
