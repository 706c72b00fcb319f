"""Webhooks out: an account's receipts and MO POSTed as signed JSON.

Theory of operation
-------------------
A webhook delivery is a row of the same durable queue as the deliver_sm for the account's
binds, with channel "webhook": the dispatcher and the MO path queue it in the transaction
that queues the SMPP row (`NewDelivery.channels`, chosen by `store.base.channels_for`), so
both exist or neither. The row holds the deliver_sm PDU; the JSON is built from it (and the
stored message and receipts) when it is sent, so nothing else needs storing.

`WebhookSender` runs one task per account with a webhook. It leases due rows
(`Store.pending_webhooks`), at most `max_in_flight` at once, and POSTs each. A lease lasts
longer than a POST may (`timeout` + a margin), so no delivery is ever POSTed twice at once,
across nodes too. Outcomes:

- 2xx: done (the row is removed).
- 4xx other than 408/429: refused for good: logged, counted, removed.
- 5xx, 408, 429, a timeout, a connection error: due again after a backoff - the `n`-th failure
  waits between half and all of ``min(cap, base * 2**(n-1))`` (jitter spreads retries, and
  the lower half keeps the gaps growing); a Retry-After the receiver sent is honoured (up to
  the cap). A retry that would fall after the row's ttl drops it (logged, counted).

At least once: a kill -9 after the receiver answered and before the row was removed sends it
again after the restart (`Store.release_webhooks`); at most the POSTs in flight then
(`max_in_flight` per account). Receivers dedupe on ``X-Smsgw-Delivery``.

Payload (docs/API.md, "Webhooks")::

    {"event": "receipt" | "state" | "mo", "delivery_id": 17, "attempt": 1, "sent_at": 1.7e9,
     "account": "app", "id": "our message id" | null, "route": "all" | null,
     "upstream": "sim" | null,
     "upstream_id": "…" | null, "state": "delivered" | …, "message_state": 2 | null,
     "error": 0 | null, "receipt": "id:… stat:DELIVRD …" | null, "submitted_at": …,
     "done_at": …, "from": "…", "to": "…", "text": "…" | null, "hex": "…" | null,
     "data_coding": 0}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import structlog

from gateway.config import WebhookConfig
from gateway.smpp.codec import decode_pdu
from gateway.smpp.constants import Tag
from gateway.smpp.errors import SmppError
from gateway.smpp.message import message_content
from gateway.smpp.pdu import DeliverSm
from gateway.smpp.tlv import tlv_raw
from gateway.sms.errors import SmsError
from gateway.store.base import Delivery, MessageState, Store, state_of_smpp
from gateway.telemetry.metrics import Metrics

__all__ = ["WebhookSender", "build_payload", "sign"]

log = structlog.get_logger("smsgw.webhooks")

_LEASE_MARGIN = 30.0  # seconds a lease outlives a POST's timeout
_RETRY_STATUSES = frozenset({408, 429})
_TEXT_CODINGS = frozenset({0, 1, 3, 8})  # GSM 7-bit / IA5 / Latin-1 / UCS-2: sent as text


def sign(secret: str, body: bytes) -> str:
    """The X-Smsgw-Signature header value: ``sha256=`` and the hex HMAC-SHA256 of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def build_payload(store: Store, delivery: Delivery, now: float) -> dict[str, Any]:
    """The JSON object of one webhook delivery (see the module docstring).

    Raises:
        SmppError: the queued PDU does not decode (it was written by us: never expected).
    """
    pdu = decode_pdu(delivery.pdu)
    assert isinstance(pdu, DeliverSm)
    payload: dict[str, Any] = {
        "event": delivery.kind,
        "delivery_id": delivery.id,
        "attempt": delivery.attempts,
        "sent_at": now,
        "account": delivery.account,
        "id": None,
        "route": None,
        "upstream": None,
        "upstream_id": None,
        "state": None,
        "message_state": None,
        "error": None,
        "receipt": None,
        "submitted_at": None,
        "done_at": None,
        "from": pdu.source_addr,
        "to": pdu.destination_addr,
    }
    if delivery.kind == "mo":
        payload.update(_mo_body(pdu))
        payload["done_at"] = delivery.created_at
        return payload
    intermediate = bool(pdu.esm_class & 0x20)
    if intermediate:
        payload["event"] = "state"
    # A receipt goes from the recipient back to the sender: the message's own addresses.
    payload["from"], payload["to"] = pdu.destination_addr, pdu.source_addr
    message_id = (tlv_raw(pdu.tlvs, Tag.receipted_message_id) or b"").rstrip(b"\0").decode()
    state_raw = tlv_raw(pdu.tlvs, Tag.message_state)
    error_raw = tlv_raw(pdu.tlvs, Tag.network_error_code)
    message_state = state_raw[0] if state_raw else None
    payload["id"] = message_id or None
    payload["message_state"] = message_state
    payload["error"] = int.from_bytes(error_raw[1:3], "big") if error_raw else None
    final = None if message_state is None else state_of_smpp(message_state)
    payload["state"] = MessageState.SENT.value if intermediate or final is None else final.value
    payload["receipt"] = pdu.short_message.decode("latin-1")
    if message_id:
        record = await store.get(message_id)
        if record is not None:
            payload["submitted_at"] = record.message.accepted_at
            payload["route"] = record.message.route or None
            if not intermediate and record.state.final:
                payload["state"] = record.state.value
                payload["done_at"] = record.updated_at
        receipts = await store.receipts(message_id)
        if receipts:  # the carrier's own: its id and text as they came
            last = receipts[-1]
            payload["upstream"] = last.upstream
            payload["upstream_id"] = last.upstream_id
            payload["receipt"] = last.raw.decode("latin-1") if last.raw else payload["receipt"]
    return payload


def _mo_body(pdu: DeliverSm) -> dict[str, Any]:
    """An MO's body: text when its data_coding is a text alphabet, else hex (UDH included)."""
    out: dict[str, Any] = {"data_coding": pdu.data_coding, "text": None, "hex": None}
    try:
        content = message_content(pdu)
        if pdu.data_coding in _TEXT_CODINGS:
            out["text"] = content.text("replace")
            return out
    except (SmppError, SmsError):
        pass
    body = tlv_raw(pdu.tlvs, Tag.message_payload) or pdu.short_message
    out["hex"] = body.hex()
    return out


def _retry_after(response: httpx.Response, now: float) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    return None


class _Account:
    """One account's sender: its config, the POSTs in flight, its wake-up."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.in_flight: set[int] = set()
        self.posts: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.next_due: float | None = None  # the earliest retry this node scheduled
        self.task: asyncio.Task[None] | None = None


class WebhookSender:
    """POSTs the webhook rows of the queue (see the module docstring).

    Args:
        store: the gateway's store (open before `start`).
        configs: account -> its webhook.
        backoff: (first retry delay, cap) in seconds.
        rescan: seconds between looks at the queue when nothing woke the sender (rows another
            node queued, leases that ended).
    """

    def __init__(
        self,
        store: Store,
        configs: Mapping[str, WebhookConfig],
        *,
        clock: Callable[[], float] = time.time,
        backoff: tuple[float, float] = (1.0, 300.0),
        rescan: float = 1.0,
    ) -> None:
        self.store = store
        self.configs = dict(configs)
        self.clock = clock
        self.backoff = backoff
        self.rescan = rescan
        self.metrics: Metrics | None = None
        self._accounts: dict[str, _Account] = {}
        self._client: httpx.AsyncClient | None = None
        self._random = random.Random()

    def events(self, account: str) -> frozenset[str]:
        """What `account`'s webhook wants (empty: it has none); read at queueing time."""
        config = self.configs.get(account)
        return frozenset(config.events) if config is not None else frozenset()

    async def start(self) -> None:
        """Take back this node's leases (a stop mid-POST), then run every account's sender."""
        released = await self.store.release_webhooks()
        if released:
            log.warning("webhook deliveries interrupted by a stop: sent again", count=released)
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._apply()

    async def stop(self) -> None:
        """Stop the senders; POSTs in flight are abandoned (their rows go again later)."""
        accounts, self._accounts = self._accounts, {}
        tasks = [t for a in accounts.values() for t in (a.task, *a.posts) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def reconfigure(self, configs: Mapping[str, WebhookConfig]) -> None:
        """A reload: accounts whose webhook was added start, removed ones stop (their rows
        wait, until their ttl, for a webhook again), changed ones send with the new one."""
        self.configs = dict(configs)
        if self._client is not None:
            self._apply()

    def wake(self, account: str) -> None:
        """A delivery was queued for `account`."""
        state = self._accounts.get(account)
        if state is not None:
            state.wake.set()

    def _apply(self) -> None:
        for account in list(self._accounts):
            if account not in self.configs:
                gone = self._accounts.pop(account)
                for task in (gone.task, *gone.posts):
                    if task is not None:
                        task.cancel()  # an abandoned POST's lease ends: sent again later
        loop = asyncio.get_running_loop()
        for account, config in self.configs.items():
            state = self._accounts.get(account)
            if state is None:
                state = self._accounts[account] = _Account(config)
                state.task = loop.create_task(self._run(account, state))
            else:
                state.config = config
                state.wake.set()

    async def _run(self, account: str, state: _Account) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self.clock()
            room = state.config.max_in_flight - len(state.in_flight)
            if state.next_due is not None and state.next_due <= now:
                state.next_due = None
            if room > 0:
                try:
                    rows = await self.store.pending_webhooks(
                        account, now, room, state.config.timeout + _LEASE_MARGIN
                    )
                except Exception:
                    log.exception("webhook queue not read", account=account)
                    rows = []
                for row in rows:
                    state.in_flight.add(row.id)
                    task = loop.create_task(self._post(account, state, row))
                    state.posts.add(task)
                    task.add_done_callback(state.posts.discard)
                if len(rows) == room:
                    continue  # there may be more, and room came back meanwhile
            wait = self.rescan
            if state.next_due is not None:
                wait = min(wait, max(0.0, state.next_due - self.clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await state.wake.wait()
            state.wake.clear()

    async def _post(self, account: str, state: _Account, row: Delivery) -> None:
        config = state.config
        try:
            await self._send(account, config, row)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery failed", account=account, delivery_id=row.id)
        finally:
            state.in_flight.discard(row.id)
            state.wake.set()  # room for the next

    async def _send(self, account: str, config: WebhookConfig, row: Delivery) -> None:
        now = self.clock()
        try:
            payload = await build_payload(self.store, row, now)
        except SmppError as exc:
            await self._drop(account, row, "unreadable", f"queued PDU unreadable: {exc}")
            return
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Smsgw-Signature": sign(config.secret, body),
            "X-Smsgw-Delivery": str(row.id),
            "X-Smsgw-Timestamp": str(int(now)),
            "User-Agent": "smsgw-webhooks",
        }
        assert self._client is not None
        started = time.monotonic()
        retry_after: float | None = None
        try:
            async with asyncio.timeout(config.timeout):  # in all: httpx's is per phase
                response = await self._client.post(config.url, content=body, headers=headers)
        except TimeoutError:
            error = f"timed out after {config.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if self.metrics is not None:
                self.metrics.webhook_latency(account, time.monotonic() - started)
            status = response.status_code
            if 200 <= status < 300:
                await self.store.delivery_done(row.id)
                self._count(account, "delivered")
                return
            if 400 <= status < 500 and status not in _RETRY_STATUSES:
                await self._drop(account, row, "rejected", f"HTTP {status}")
                return
            error = f"HTTP {status}"
            retry_after = _retry_after(response, self.clock())
        base, cap = self.backoff
        ceiling = min(cap, base * 2 ** max(0, row.attempts - 1))
        delay = ceiling / 2 + self._random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, cap))
        retry_at = self.clock() + delay
        if retry_at >= row.expires_at:
            await self._drop(account, row, "expired", f"ttl ends before the next try ({error})")
            return
        await self.store.webhook_failed(row.id, retry_at, error)
        waiting = self._accounts.get(account)
        if waiting is not None and (waiting.next_due is None or retry_at < waiting.next_due):
            waiting.next_due = retry_at
        self._count(account, "retry")
        log.info(
            "webhook delivery failed, will retry",
            account=account,
            delivery_id=row.id,
            attempt=row.attempts,
            error=error,
            retry_in=round(delay, 3),
        )

    async def _drop(self, account: str, row: Delivery, outcome: str, reason: str) -> None:
        await self.store.delivery_done(row.id)
        self._count(account, outcome)
        log.warning(
            "webhook delivery dropped",
            account=account,
            delivery_id=row.id,
            kind=row.kind,
            attempt=row.attempts,
            outcome=outcome,
            reason=reason,
        )

    def _count(self, account: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_delivery(account, outcome)
