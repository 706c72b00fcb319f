"""What the gateway keeps, and the one interface every backend fills in.

A message is one submit_sm (or data_sm) an application sent us, with our id, its fields as they
came, its route and its state. Its history, the ids upstreams gave it, the receipts for it and
the deliver_sm PDUs queued for applications hang off it. `Store` is that interface as a
`typing.Protocol`; `gateway.store.sqlite` is the embedded backend, `gateway.store.postgres` the
shared one for several nodes.

Every write is durable when its coroutine returns: the accept pipeline answers submit_sm_resp
only after `accept` returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

from gateway.policy.check import StoreCheck
from gateway.policy.rules import Verdict

__all__ = [
    "DELIVERY_LEASE",
    "INBOUND_DONE",
    "INBOUND_TAKEN",
    "LATENCY_BOUNDS",
    "LATENCY_BUCKETS",
    "OUTCOME",
    "PREFIX_DIGITS",
    "STATS_COUNTERS",
    "STATS_GROUPS",
    "SUPPRESS_CHUNK",
    "BatchRecord",
    "BatchState",
    "DeadNumber",
    "Delivery",
    "IncomingReceipt",
    "MessageRecord",
    "MessageState",
    "NewBatch",
    "NewDelivery",
    "NewMessage",
    "OverdueMessage",
    "ReceiptMatch",
    "ReceiptRecord",
    "Settlement",
    "StatsRow",
    "Store",
    "Suppression",
    "Usage",
    "channels_for",
    "latency_bucket",
    "queue_summary",
    "state_of_smpp",
    "unique_suppressions",
    "usage_windows",
]


# Seconds a node keeps the deliveries it offered from other nodes, and how long a node may go
# silent before another takes over its claimed messages: the default of `dispatch.delivery_lease`.
DELIVERY_LEASE = 15.0
# An inbound message's marker row (part 0) in the backends' inbound_parts: taken (whole, being
# handed on) or done (queued for its application). No PDU is this short.
INBOUND_TAKEN = b"taken"
INBOUND_DONE = b"done"


class MessageState(Enum):
    ACCEPTED = "accepted"  # durable, waiting for its schedule or a free upstream
    DISPATCHING = "dispatching"  # claimed by a dispatcher
    SENT = "sent"  # the upstream answered submit_sm_resp OK
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"  # gave up: permanent error, retries exhausted, or no target took it
    UNKNOWN = "unknown"  # ended with no outcome we can read: a vendor stat, no receipt in time

    @property
    def final(self) -> bool:
        return self not in (MessageState.ACCEPTED, MessageState.DISPATCHING, MessageState.SENT)

    @property
    def message_state(self) -> int:
        """The message_state TLV value (SMPP v3.4 5.2.28) a query or receipt reports."""
        return _SMPP_STATE[self]

    @property
    def stat(self) -> str:
        """The Appendix B receipt ``stat`` for this state."""
        return _STAT[_SMPP_STATE[self]]


# The one table between our states and SMPP's message_state (5.2.28) / receipt stat (Table
# B-1); every module that speaks SMPP about a message's state reads it from here.
_SMPP_STATE: dict[MessageState, int] = {
    MessageState.ACCEPTED: 1,  # ENROUTE
    MessageState.DISPATCHING: 1,
    MessageState.SENT: 1,
    MessageState.DELIVERED: 2,
    MessageState.EXPIRED: 3,
    MessageState.CANCELLED: 4,  # DELETED
    MessageState.UNDELIVERABLE: 5,
    MessageState.FAILED: 5,
    MessageState.UNKNOWN: 7,
    MessageState.REJECTED: 8,
}
_STAT = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    7: "UNKNOWN",
    8: "REJECTD",
}
# What an upstream's message_state ends a message as. ENROUTE (1) and ACCEPTED (6: taken by
# the SMSC, or read by its customer service) leave it waiting; any value SMPP v3.4 does not
# define reads as UNKNOWN - still an end, so the application hears one.
_FROM_SMPP = {
    2: MessageState.DELIVERED,
    3: MessageState.EXPIRED,
    4: MessageState.CANCELLED,
    5: MessageState.UNDELIVERABLE,
    7: MessageState.UNKNOWN,
    8: MessageState.REJECTED,
}


def state_of_smpp(message_state: int) -> MessageState | None:
    """The final state an upstream's message_state ends a message in; None: not final."""
    if message_state in (1, 6):
        return None
    return _FROM_SMPP.get(message_state, MessageState.UNKNOWN)


class NewMessage(NamedTuple):
    """A message to store as it was accepted. (A NamedTuple, not a frozen dataclass: one is
    made for every row read, and a tuple is several times cheaper to build.)"""

    id: str
    account: str
    source_addr: str
    destination_addr: str
    short_message: bytes
    data_coding: int = 0
    esm_class: int = 0
    registered_delivery: int = 0
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    service_type: str = ""
    protocol_id: int = 0
    priority_flag: int = 0
    tlvs: bytes = b""  # the request's TLVs, as they came on the wire
    route: str = ""
    schedule_at: float | None = None
    expires_at: float | None = None
    accepted_at: float = 0.0
    msg_class: str = ""  # the sending rules' class (otp, marketing...); "" before issue 11
    campaign: str = ""  # a tag for delivery statistics (A/B)


class BatchState(Enum):
    ACCEPTING = "accepting"  # its recipients are being accepted, chunk by chunk
    DONE = "done"  # every recipient accepted (or refused)
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch to keep (`Store.create_batch`): what `Store.accept_batch` accepts from, kept
    durably so a restart resumes it where it stopped."""

    id: str
    account: str
    created_at: float
    total: int  # rows given
    size: int  # recipients to accept: the rows less duplicates and invalid ones
    duplicates: int
    invalid: int  # rows refused before accepting (not a phone number)
    request: str  # JSON: the send's fields (from, text template, dlr, validity, schedule)
    report: str  # JSON: the first duplicates and bad rows, for the caller
    recipients: bytes  # zlib-compressed JSON: [number, fields] per recipient, in order


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A kept batch and where it stands (`Store.batch`)."""

    id: str
    account: str
    state: BatchState
    created_at: float
    finished_at: float | None  # when accepting ended (done or cancelled)
    total: int
    size: int
    accepted_upto: int  # recipients [0, accepted_upto) were accepted or refused
    accepted: int
    refused: int  # by the accept pipeline (no route, ...) while accepting
    duplicates: int
    invalid: int
    request: str
    report: str
    states: dict[MessageState, int]  # its accepted messages by state

    @classmethod
    def of_row(cls, row: tuple[Any, ...], states: dict[MessageState, int]) -> BatchRecord:
        """From the backends' batch columns in this class's order (`states` aside)."""
        (id_, account, state, created_at, finished_at, total, size, upto, accepted, refused,
         duplicates, invalid, request, report) = row  # fmt: skip
        return cls(
            id_, account, BatchState(state), created_at, finished_at, total, size, upto,
            accepted, refused, duplicates, invalid, request, report, states,
        )  # fmt: skip


class MessageRecord(NamedTuple):
    """A stored message and where it stands."""

    message: NewMessage
    state: MessageState
    updated_at: float
    attempts: int
    error: int | None
    stop_reason: str | None = None  # a sending rule stopped it at accept (`gateway.policy`)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A deliver_sm waiting for one of an account's RX/TRX sessions (a receipt or an MO)."""

    id: int
    account: str
    kind: str  # "receipt" or "mo"
    pdu: bytes  # the deliver_sm, sequence number 0: the session gives it one
    created_at: float
    expires_at: float
    attempts: int
    channel: str = "smpp"  # "smpp": for the account's binds; "webhook": its webhook sender


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A receipt an upstream reported for one part of a message, as it came."""

    message_id: str
    part: int
    upstream: str
    upstream_id: str
    message_state: int  # SMPP v3.4 5.2.28
    error: int
    received_at: float
    raw: bytes = b""  # the receipt's text as it came


@dataclass(frozen=True, slots=True)
class IncomingReceipt:
    """A receipt to match (`Store.match_receipts`): its upstream, the id keys to look it up
    by (in order), and what to keep. `keep_unknown`: when no key matches, keep it among the
    unknown receipts (else it is only looked up: it will be looked up again)."""

    upstream: str
    keys: tuple[str, ...]
    upstream_id: str
    message_state: int
    error: int
    received_at: float
    raw: bytes = b""
    keep_unknown: bool = True


class ReceiptMatch(NamedTuple):
    """The message a receipt matched, as it was before the batch, the receipt's part, and
    every part's latest receipt state once the whole batch was kept (None: none yet)."""

    record: MessageRecord
    part: int
    states: list[int | None]


@dataclass(frozen=True, slots=True)
class Settlement:
    """A message to end (`Store.settle_many`), and the receipt for its application."""

    message_id: str
    state: MessageState
    error: int | None = None
    delivery: NewDelivery | None = None


class OverdueMessage(NamedTuple):
    """A message sent and still waiting for its receipt (`Store.overdue_sent`)."""

    record: MessageRecord
    upstream: str
    part_ids: tuple[str, ...]  # every part's id as the upstream wrote it
    states: list[int | None]  # every part's latest receipt state


class Suppression(NamedTuple):
    """A number that opted out: `scope` "" for everything, else one sender id (source_addr)."""

    number: str  # international digits, no "+", as destination_addr is stored
    scope: str
    created_at: float  # the latest time it was suppressed
    source: str  # what suppressed it last: "mo:<message>", "api:<account>", "cli", "import"


class DeadNumber(NamedTuple):
    """A number whose receipts said it does not exist (`Store.record_dead_failures`)."""

    number: str
    failures: int
    last_at: float
    dead_until: float | None  # not sent to before this; None while only counting


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A deliver_sm to queue for an account (see `Store.settle`)."""

    account: str
    kind: str  # "receipt" or "mo"
    pdu: bytes
    ttl: float
    # One queued row per channel, all in the caller's transaction (both or neither):
    # "smpp" for the account's RX/TRX binds, "webhook" for its webhook (`gateway.http.webhooks`).
    channels: tuple[str, ...] = ("smpp",)


@dataclass(frozen=True, slots=True)
class Usage:
    """Messages one SIM sent in the current calendar minute, day and month (UTC)."""

    minute: int = 0
    day: int = 0
    month: int = 0


def channels_for(
    kind: str, events: frozenset[str], *, smpp: bool = True, intermediate: bool = False
) -> tuple[str, ...]:
    """The queue channels of one delivery of `kind` ("receipt" or "mo") for an account whose
    webhook wants `events` (empty: no webhook). An intermediate notification is a "state"
    event. `smpp`: whether the binds' row is queued too (always, today: an application may
    bind later, and an unwanted row only waits out its ttl)."""
    event = "state" if intermediate else kind
    channels = ("smpp",) if smpp else ()
    return (*channels, "webhook") if event in events else channels


def usage_windows(now: float) -> tuple[int, int, int]:
    """The numbers of the UTC minute, day and month `now` falls in (`Store.count_usage`)."""
    when = datetime.fromtimestamp(now, UTC)
    return int(now // 60), int(now // 86_400), when.year * 12 + when.month - 1


class QueueDepths(NamedTuple):
    """What waits (`Store.queue_depths`): messages to send, and deliveries per account."""

    waiting: int
    oldest: float | None  # accepted_at of the oldest waiting message
    deliveries: dict[str, tuple[int, float]]  # account -> (count, oldest created_at)


def queue_summary(depths: QueueDepths, now: float) -> dict[str, Any]:
    """What waits, as `smsgw status` shows it: messages not yet handed to an upstream and
    deliveries per account, each with its oldest age in seconds (None when nothing waits)."""
    oldest_delivery = min((at for _n, at in depths.deliveries.values()), default=None)
    return {
        "messages_waiting": depths.waiting,
        "oldest_message_age": None if depths.oldest is None else max(0.0, now - depths.oldest),
        "deliveries_waiting": {account: n for account, (n, _at) in depths.deliveries.items()},
        "oldest_delivery_age": None if oldest_delivery is None else max(0.0, now - oldest_delivery),
    }


SUPPRESS_CHUNK = 10_000  # suppressions per transaction in a bulk import


def unique_suppressions(entries: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """`entries` with one per (number, scope), the last given winning (an upsert may not
    touch a row twice in one statement)."""
    kept = {(number, scope): source for number, scope, source in entries}
    return [(number, scope, source) for (number, scope), source in kept.items()]


# -- delivery statistics (issue 11) ----------------------------------------------------------------
# Rows of delivery_stats are counters per (accept hour, account, route, target, class, campaign,
# country, operator, prefix), bumped in the transaction of each state change: never a scan of
# messages. A message counts in the hour it was accepted (a cohort), so an hour's pending count
# falls to 0 as its messages end and its delivery rate is that of one set of messages.

STATS_GROUPS = (
    "hour", "account", "route", "target", "class", "campaign", "country", "operator", "prefix"
)  # fmt: skip
STATS_COUNTERS = ("accepted", "sent", "delivered", "failed", "expired", "rejected", "cancelled")
# Receipt latency (sent -> delivered), seconds: upper bounds of a fixed log-scale histogram;
# the last bucket is open. p50/p95 are read off it at query time, interpolated in a bucket.
LATENCY_BOUNDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LATENCY_BUCKETS = len(LATENCY_BOUNDS) + 1
# Which counter a final state adds to; "failed" takes every end with no delivery we can read.
OUTCOME = {
    MessageState.DELIVERED: "delivered",
    MessageState.UNDELIVERABLE: "failed",
    MessageState.FAILED: "failed",
    MessageState.UNKNOWN: "failed",
    MessageState.EXPIRED: "expired",
    MessageState.REJECTED: "rejected",
    MessageState.CANCELLED: "cancelled",
}
# The first digits of the destination kept as the prefix dimension (`store.stats_prefix_digits`):
# country and operator already split the rows, and each more digit multiplies them - the
# bench corpus's 10,000 numbers make 331 keys with 3 digits, 4,931 with 5 (and upserts cost).
PREFIX_DIGITS = 3


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a receipt latency."""
    for i, bound in enumerate(LATENCY_BOUNDS):
        if seconds <= bound:
            return i
    return len(LATENCY_BOUNDS)


def _quantile(histogram: tuple[int, ...], q: float) -> float | None:
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(histogram):
        if n and seen + n >= rank:
            low = 0.0 if i == 0 else LATENCY_BOUNDS[i - 1]
            if i == len(LATENCY_BOUNDS):
                return low  # the open bucket: "over an hour"
            return low + (LATENCY_BOUNDS[i] - low) * (rank - seen) / n
        seen += n
    return LATENCY_BOUNDS[-1]


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One group of `Store.stats`: its key (the asked groups, in order) and summed counters."""

    key: dict[str, str | int]
    accepted: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    expired: int = 0
    rejected: int = 0
    cancelled: int = 0
    latency: tuple[int, ...] = (0,) * LATENCY_BUCKETS

    @property
    def pending(self) -> int:
        ended = self.delivered + self.failed + self.expired + self.rejected + self.cancelled
        return max(0, self.accepted - ended)

    @property
    def delivery_rate(self) -> float | None:
        """Delivered of the messages that ended after a send was tried (rejected and cancelled
        ones never reached a carrier)."""
        tried = self.delivered + self.failed + self.expired
        return self.delivered / tried if tried else None

    @property
    def latency_p50(self) -> float | None:
        return _quantile(self.latency, 0.5)

    @property
    def latency_p95(self) -> float | None:
        return _quantile(self.latency, 0.95)

    @classmethod
    def of_row(cls, groups: tuple[str, ...], row: Sequence[Any]) -> StatsRow:
        """From a query row: the group columns, the counters, then the latency buckets."""
        n = len(groups)
        counts = [int(v or 0) for v in row[n:]]
        accepted, sent, delivered, failed, expired, rejected, cancelled = counts[:7]
        return cls(
            dict(zip(groups, row[:n], strict=True)),
            accepted,
            sent,
            delivered,
            failed,
            expired,
            rejected,
            cancelled,
            tuple(counts[len(STATS_COUNTERS) :]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.key,
            **{name: getattr(self, name) for name in STATS_COUNTERS},
            "pending": self.pending,
            "delivery_rate": self.delivery_rate,
            "latency_p50": self.latency_p50,
            "latency_p95": self.latency_p95,
        }


class Store(Protocol):
    """The gateway's storage. Every method's writes are durable when it returns."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def accept(self, message: NewMessage) -> None:
        """Store a newly accepted message (group-committed with its neighbours)."""

    async def accept_checked(self, message: NewMessage, check: StoreCheck, now: float) -> Verdict:
        """Store `message` if the sending rules let it (`gateway.policy.check`), deciding in
        the transaction that stores it. Returns the verdict: go (stored; counted for caps and
        dedup), a duplicate (nothing stored: answer with `duplicate_of`), or a stop (stored
        with its `stop_reason`, for the dispatcher to end with a receipt; not stored when
        `check.refuse` holds the reason)."""
        ...

    async def purge_policy(self, sends_before: float, dedup_before: float) -> int:
        """Forget sends older than the longest cap window and texts older than the dedup
        window; returns the rows removed."""
        ...

    async def get(self, message_id: str, *, lagging: bool = False) -> MessageRecord | None:
        """The message, or None. `lagging`: an answer a moment old will do (query_sm, the
        HTTP status): PostgreSQL may read it from `replica_dsn`."""

    async def claim_due(self, now: float, limit: int) -> list[MessageRecord]:
        """Accepted messages whose schedule has come, oldest first, marked dispatching and
        claimed for this store's node (several nodes sharing one database never claim the
        same message)."""

    async def set_state(
        self,
        message_id: str,
        state: MessageState,
        now: float,
        *,
        error: int | None = None,
        retry_at: float | None = None,
        tried: bool = True,
    ) -> bool:
        """Move a message to `state` and record it in its history; False if unknown.
        `retry_at` (with ACCEPTED) makes it due again only then: a retry's backoff.
        `tried=False` (with ACCEPTED, after a claim) says no send was tried - no target was
        usable - so the claim does not count in `attempts`."""

    async def history(self, message_id: str) -> list[tuple[float, MessageState]]: ...

    async def link_upstream_id(
        self, upstream: str, keys: tuple[str, ...], message_id: str, part: int = 0
    ) -> None:
        """Remember the ids (canonical keys, see `receipt.canonical_ids`) an upstream gave
        part `part` (0-based) of a message."""

    async def upstream_ids(self, message_id: str) -> list[tuple[int, str, str]]:
        """(part, upstream, key) of each id linked to the message, by part then upstream: the
        strongest key per part and upstream (``s:...``, the id as indexed)."""
        ...

    async def find_by_upstream_id(self, upstream: str, keys: tuple[str, ...]) -> str | None:
        """Our message id for any of an upstream's id keys, or None."""

    async def find_part(self, upstream: str, keys: tuple[str, ...]) -> tuple[str, int] | None:
        """(message id, part) for any of an upstream's id keys, the first key that matches
        winning and, for one key, the latest link; None when none matches."""

    async def set_parts(self, message_id: str, parts: int) -> None:
        """The message went upstream as `parts` PDUs (1 unless the upstream resegmented it)."""

    async def add_receipt(self, receipt: ReceiptRecord) -> list[int | None]:
        """Keep a receipt for one part of a stored message; returns, for every part of the
        message (its `parts`), the message_state of its latest receipt (None: none yet)."""

    async def receipts(self, message_id: str, *, lagging: bool = False) -> list[ReceiptRecord]:
        """The message's receipts in the order they came (`lagging`: as for `get`)."""

    # Concatenated inbound (MO) messages, kept part by part until whole, and remembered for
    # a while once handed on, so a part sent again is recognised (see `gateway.inbound`):

    async def add_inbound_part(
        self, key: str, seq: int, total: int, pdu: bytes, now: float
    ) -> list[bytes] | None:
        """Keep part `seq` (1-based) of the concatenated message `key` (sender, recipient,
        reference); a repeated part replaces the earlier copy.

        Returns:
            None while parts are missing. When this completes the `total` parts: all of
            them in order, and the message is marked taken in the same write, so a copy of
            the last part coming at the same time gets []. [] also when the message was
            taken already and this part is byte for byte one of its parts (a resend). A
            different part under a taken message's key starts a new message (the sender
            reused the reference)."""

    async def finish_inbound(self, key: str, deliveries: list[NewDelivery], now: float) -> None:
        """Queue the message's deliveries and mark it done (its parts are kept until
        `forget_inbound`), in one write. `key` "" queues only (a message that came whole)."""

    async def stale_inbound(self, before: float) -> list[tuple[str, list[bytes]]]:
        """Messages not done whose first part came before `before`: their parts in order
        (the caller delivers what there is, then `finish_inbound`). A message taken but
        never finished (the process died in between) is among them."""

    async def forget_inbound(self, before: float) -> int:
        """Forget the parts of messages done before `before`; returns rows removed."""

    # The hot paths as one write each (what the steps above do, in one transaction):

    async def record_sent(
        self,
        message_id: str,
        upstream: str,
        part_keys: tuple[tuple[str, ...], ...],
        now: float,
        *,
        part_ids: tuple[str, ...] = (),
    ) -> bool:
        """The upstream took the message as ``len(part_keys)`` parts whose ids have these
        keys (`part_ids`: the ids as written, for `overdue_sent`): `set_parts` (when more than
        one), `link_upstream_id` for each part and `set_state` SENT - unless the message
        already ended (a receipt beat this: its ids are linked all the same). False if the
        message is unknown."""

    async def match_receipts(self, receipts: list[IncomingReceipt]) -> list[ReceiptMatch | None]:
        """Match many receipts in one transaction: for each, `find_part` by its keys and keep
        it (with its raw text) for that part; None for one no key matches, which is kept among
        the unknown receipts when it says `keep_unknown`."""

    async def settle(
        self,
        message_id: str,
        state: MessageState,
        now: float,
        *,
        error: int | None = None,
        delivery: NewDelivery | None = None,
    ) -> bool:
        """End a message that has not ended yet, and `enqueue_delivery` of `delivery` (if
        given) with it, as one conditional step: False (and nothing queued) if it is unknown
        or already final - so no message ever gets two final receipts."""

    async def settle_many(
        self,
        settlements: list[Settlement],
        now: float,
        *,
        deliveries: tuple[NewDelivery, ...] = (),
    ) -> list[bool]:
        """`settle` for each (in order; a second one for the same message finds it final),
        and queue `deliveries` (intermediate notifications), in one transaction."""

    async def overdue_sent(
        self, before: float, limit: int, *, upstream: str | None = None
    ) -> list[OverdueMessage]:
        """Messages still SENT (to `upstream`, if given) whose send was recorded before
        `before`, oldest first."""

    async def unknown_receipts(self, limit: int = 100) -> list[ReceiptRecord]:
        """Receipts no message matched, newest first (message_id "", part -1)."""

    async def id_formats(self) -> dict[str, tuple[str | None, str | None]]:
        """What was learnt of each upstream's id spelling: (responses' base, receipts' base)
        (`gateway.smpp.receipt.IdSpelling`), kept across restarts."""

    async def save_id_format(self, upstream: str, sent: str | None, received: str | None) -> None:
        """Keep what was learnt of an upstream's id spelling (see `id_formats`)."""

    async def enqueue_delivery(
        self, account: str, kind: str, pdu: bytes, now: float, ttl: float
    ) -> int: ...

    async def pending_deliveries(
        self, account: str, now: float, limit: int, *, after: int = 0
    ) -> list[Delivery]:
        """Deliveries for `account` not expired, oldest first; only ids above `after` (ids
        grow, so a caller can page on from the last one it saw). The rows returned are leased
        to this store's node for its `lease` seconds (`DELIVERY_LEASE` unless configured):
        other nodes sharing the database skip them until it ends (`delivery_done` removes
        them for good)."""

    async def delivery_done(self, delivery_id: int) -> None: ...

    async def deliveries_done(self, delivery_ids: Sequence[int]) -> None:
        """`delivery_done` for many (the answers of one read from a draining bind: hundreds)
        in one write: every one is gone once it returns. Unknown ids are ignored."""

    # The webhook channel of the same queue (rows queued with channel "webhook"; the SMPP
    # methods above never see them, nor these the SMPP rows):

    async def pending_webhooks(
        self, account: str, now: float, limit: int, lease: float
    ) -> list[Delivery]:
        """Webhook deliveries of `account` due (not expired, their retry time come, not
        leased), oldest first, each leased to this node for `lease` seconds and its
        `attempts` counted: no other caller gets one until the lease ends or
        `webhook_failed` releases it, so no delivery is ever POSTed twice at once.
        `delivery_done` removes one for good."""

    async def webhook_failed(self, delivery_id: int, retry_at: float, error: str) -> None:
        """A POST failed: release the lease, due again at `retry_at`; `error` is kept."""

    async def release_webhooks(self) -> int:
        """At start-up: end this node's webhook leases (the process stopped mid-POST), so
        those deliveries go again now - at least once; how many."""

    async def queue_depths(self) -> QueueDepths:
        """Counts for the metrics (read every few seconds, not per message)."""
        ...

    async def ping(self) -> bool:
        """Whether the store takes writes now (readiness): its writer answers and the
        database is not read-only."""
        ...

    async def purge(self, before: float) -> int:
        """Forget final messages, expired deliveries and unknown receipts older than `before`;
        how many rows."""

    async def stats(
        self,
        since: float,
        until: float,
        group: tuple[str, ...],
        *,
        where: dict[str, str] | None = None,
    ) -> list[StatsRow]:
        """Delivery statistics of the messages accepted in [since, until), summed per value of
        `group` (names from `STATS_GROUPS`), only rows whose dimensions equal `where`'s."""
        ...

    async def forget_stats(self, before: float) -> int:
        """Drop statistics of hours before `before` (their own retention); how many rows."""
        ...

    async def change_pending(
        self,
        message_id: str,
        account: str,
        now: float,
        *,
        short_message: bytes | None = None,
        times: tuple[float | None, float] | None = None,
    ) -> bool:
        """cancel_sm (no `short_message`) or replace_sm for a message of `account` that no
        upstream has yet; False otherwise. A replace_sm with `times` also sets the message's
        (schedule_at, expires_at)."""

    async def requeue_interrupted(self, now: float) -> int:
        """At start-up: messages this node's dispatcher claimed but never settled (the process
        died) go back to accepted; other nodes' claims are theirs. A message may then reach its
        upstream twice - at most the ones in flight when the process died - but none is lost.
        Returns how many."""

    # Nodes sharing one database (PostgreSQL); a single-node store answers these trivially.

    async def heartbeat(self, now: float) -> bool:
        """This node is alive at `now` (written every lease/4 while it runs). True when its
        row was made afresh: the first beat, or another node took this one for dead."""

    async def take_over(self, now: float, lease: float) -> int:
        """Messages claimed (DISPATCHING) by another node that has written no heartbeat for
        `lease` seconds go back to accepted, as `requeue_interrupted` does for this node's at
        its start: that node is dead, so the same bound on repeats holds (its sends in flight
        when it died). Returns how many."""

    async def release(self, now: float) -> int:
        """A clean stop, after the dispatcher and the server stopped: this node's claimed
        messages go back to accepted and its delivery leases end, so other nodes take them
        at once rather than after the lease; its heartbeat is removed. Returns how many."""

    # Batches (POST /api/v1/batches): a durable recipient list accepted chunk by chunk.

    async def create_batch(self, batch: NewBatch) -> None:
        """Keep a new batch, state accepting, nothing accepted yet."""

    async def accept_batch(
        self,
        batch_id: str,
        messages: list[NewMessage],
        cursor: tuple[int, int, int],
        now: float,
        *,
        report: str | None = None,
        checks: Sequence[StoreCheck] | None = None,
    ) -> bool:
        """Accept a chunk of a batch in one transaction: `messages` (marked as the batch's),
        and the batch's cursor moved from `start` to `upto` with `refused` more refused
        (``cursor = (start, upto, refused)``), done when `upto` reaches its size; `report`
        replaces its report. Only while the batch is accepting and its cursor is at `start`:
        else nothing is written and False returned - a chunk is never accepted twice.
        `checks` (one per message): the sending rules' store side, as `accept_checked`
        decides it; a message they drop (duplicate, refused) counts as refused."""

    async def batch(self, batch_id: str) -> BatchRecord | None:
        """The batch with its messages counted by state; None if unknown."""

    async def batch_recipients(self, batch_id: str) -> bytes:
        """The batch's recipients as `NewBatch.recipients` (empty once it stopped accepting)."""

    async def unfinished_batches(self) -> list[str]:
        """Ids of the batches still accepting (to resume at start-up), oldest first."""

    async def cancel_batch(self, batch_id: str, now: float) -> int:
        """Stop accepting the batch and cancel its messages no upstream has yet, in one
        transaction; how many messages were cancelled."""

    async def count_usage(self, key: str, now: float, count: int = 1) -> Usage:
        """`count` more messages sent by the SIM `key` at `now`; its counters after them.

        One row per key holds the current minute, day and month and their counts; a count
        whose window has passed starts again from zero, so storage stays one row per SIM."""

    async def usage(self, key: str, now: float) -> Usage:
        """The SIM's counters for the windows `now` falls in (zero for a passed window)."""

    # Suppressions (issue 11: opt-out) and dead numbers; the accept pipeline reads both tables
    # in its own transaction.

    async def suppress(self, entries: list[tuple[str, str, str]], now: float) -> int:
        """Suppress (number, scope, source) entries: one that is there already gets the new
        time and source (the latest opt-out is the one that tells why). Any number of
        entries: a large list is written in chunks, each its own transaction. How many."""

    async def unsuppress(self, entries: list[tuple[str, str | None]]) -> int:
        """Remove (number, scope) entries; scope None: every scope of the number. How many."""

    async def suppression(self, number: str) -> list[Suppression]:
        """The number's suppressions, by scope."""

    async def suppressions_page(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[Suppression]:
        """Up to `limit` suppressions after (number, scope) `after`, in that order (keyset
        pages for an export of millions)."""

    async def record_dead_failures(
        self,
        failed: list[str],
        now: float,
        *,
        after: int,
        period: float,
        delivered: list[str] | None = None,
    ) -> list[str]:
        """Receipts of one batch, in one transaction: each number of `delivered` is alive
        (forgotten); each of `failed` (once per receipt) counts a failure, and one that reaches
        `after` failures is dead until `now + period`. Failures keep counting past a dead
        period, so a number still dead is marked again by its next failure. The numbers
        marked dead by this call."""

    async def dead_numbers_page(self, after: str | None, limit: int) -> list[DeadNumber]:
        """Up to `limit` numbers counted or dead, after `after`, in number order."""
