"""Batches: one text (a template with per-row ``{placeholders}``) to up to 100,000 recipients.

``POST /api/v1/batches`` reads the list (JSON, or CSV as the body or a multipart upload, read
by `gateway.recipients` as ``smsgw send --to-file`` reads it), drops duplicates (by the number
as the gateway normalises it: sent once, reported) and rows that are no phone number (skipped,
reported by row), keeps the batch with its remaining recipients durably, and answers 202 with
its id. A text using a placeholder some row lacks refuses the whole batch (422): every message
would otherwise go out half-written.

`BatchRunner` then accepts the recipients in chunks, each through `SmppServer.prepare` - the
SMPP accept pipeline's validation and routing - and `Store.accept_batch`, which stores the
chunk and moves the batch's cursor in one transaction. A kill -9 loses no chunk that was
accepted and accepts none twice: at start-up every batch still accepting resumes at its
cursor. The account's throughput limit is not taken per recipient: a batch is accepted whole
into the store and its sending is paced by the dispatcher and the upstreams' own throughput
and windows, as any queued message is.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import uuid
import zlib
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import recipients
from gateway.http.api import SendRequest, submit_pdu
from gateway.http.auth import Caller, caller, gateway_of
from gateway.http.errors import ApiError, ErrorBody, errors
from gateway.policy.check import StoreCheck
from gateway.routing.numbers import NumberPlan, normalize
from gateway.server.rules import Refused
from gateway.store.base import BatchRecord, BatchState, MessageState, NewBatch, NewMessage

if TYPE_CHECKING:
    from gateway.config import AccountConfig
    from gateway.server.smpp import SmppServer
    from gateway.store.base import Store
    from gateway.telemetry.metrics import Metrics

__all__ = ["MAX_BATCH", "BatchRunner", "router"]

log = structlog.get_logger("gateway.batches")
router = APIRouter(prefix="/api/v1")

MAX_BATCH = 100_000  # recipients (rows) per batch
CHUNK = 1000  # recipients per transaction: ~30 ms of the loop's time per chunk
_REPORTED = 20  # duplicates, bad rows and refusals listed (all are counted)
_FINAL_FAILED = (
    MessageState.UNDELIVERABLE,
    MessageState.EXPIRED,
    MessageState.REJECTED,
    MessageState.FAILED,
    MessageState.UNKNOWN,
)


class BatchRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(max_length=32)
    fields: dict[str, str] = Field(default_factory=dict)


class BatchRequest(BaseModel):
    """A batch as JSON. (As CSV: the same fields as query or form fields.)"""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    recipients: list[BatchRecipient | str] = Field(
        min_length=1, description='numbers, or {"to": number, "fields": {name: value}}'
    )
    from_: str = Field("", alias="from", max_length=21)
    text: str = Field(min_length=1, description="the text; {name} is the row's field `name`")
    dlr: bool = True
    validity: float | None = Field(None, gt=0)
    schedule: str | None = Field(None, description="ISO 8601 with its zone")
    class_: str | None = Field(None, alias="class", max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    campaign: str | None = Field(None, max_length=64)


# -- reading the request ------------------------------------------------------------------------


async def _read(request: Request) -> tuple[dict[str, Any], list[recipients.Row]]:
    """The send's fields and the rows, whatever the body's type."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if kind in ("", "application/json"):
        try:
            raw = await asyncio.to_thread(json.loads, body)
        except ValueError as exc:
            raise ApiError(422, "invalid", f"the body is not JSON: {exc}") from None
        listed = raw.get("recipients") if isinstance(raw, dict) else None
        if isinstance(listed, list) and len(listed) > MAX_BATCH:
            raise _too_many(len(listed))
        parsed = await asyncio.to_thread(_validated, raw)
        rows = [
            recipients.Row(i, r, {}) if isinstance(r, str) else recipients.Row(i, r.to, r.fields)
            for i, r in enumerate(parsed.recipients, start=1)
        ]
        return parsed.model_dump(by_alias=True, exclude={"recipients"}), rows
    if kind in ("text/csv", "text/plain"):
        fields: dict[str, Any] = dict(request.query_params)
        text = body.decode("utf-8-sig", errors="replace")
    elif kind == "multipart/form-data":
        fields, text = _form(request.headers["content-type"], body)
        fields = {**request.query_params, **fields}
    else:
        raise ApiError(415, "unsupported_media_type", f"send JSON or CSV, not {kind}")
    try:
        rows = await asyncio.to_thread(recipients.read_csv, text, "csv")
    except recipients.RecipientError as exc:
        raise ApiError(422, "invalid", str(exc), field="file") from None
    if len(rows) > MAX_BATCH:
        raise _too_many(len(rows))
    parsed = _validated({**fields, "recipients": ["0"]})  # the rows are checked below
    return parsed.model_dump(by_alias=True, exclude={"recipients"}), rows


def _form(content_type: str, body: bytes) -> tuple[dict[str, Any], str]:
    """The fields and the CSV file of a multipart/form-data body (stdlib MIME parser)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(422, "invalid", "multipart body without parts")
    fields: dict[str, Any] = {}
    csv_text: str | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        value = payload.decode("utf-8-sig", errors="replace")
        if name == "file" or part.get_filename():
            csv_text = value
        else:
            fields[name] = value
    if csv_text is None:
        raise ApiError(422, "invalid", "no CSV file: upload it as the form field `file`")
    return fields, csv_text


def _validated(raw: object) -> BatchRequest:
    try:
        return BatchRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid", f"{where}: {first['msg']}", field=where) from None


def _too_many(count: int) -> ApiError:
    return ApiError(
        413,
        "too_many_recipients",
        f"{count:,} recipients: a batch takes at most {MAX_BATCH:,}; split it",
        field="recipients",
    )


# -- the endpoints ------------------------------------------------------------------------------


def _account(who: Caller) -> AccountConfig:
    if who.account is None:
        raise ApiError(403, "forbidden", "send as an account, not with the local token")
    return who.account


@router.post(
    "/batches",
    status_code=202,
    tags=["batches"],
    summary="Send one text to up to 100,000 recipients (JSON, or a CSV upload)",
    description=(
        "Answers 202 with the batch's id once the batch is kept durably; its recipients are "
        "then accepted in the background (follow GET /api/v1/batches/{id}). A number given "
        "twice (after normalising) is sent once and listed under `report.duplicates`; a row "
        "that is no phone number is skipped and listed under `report.invalid` with its row; a "
        "text using a `{field}` some row lacks refuses the whole batch (422 `missing_field`). "
        "Recipients the gateway refuses while accepting (no route, ...) are counted in "
        "`refused` and the first listed under `report.refused`. The account's throughput "
        "limit does not apply per recipient: sending is paced by the upstreams."
    ),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": BatchRequest.model_json_schema(by_alias=True)},
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
            "description": "CSV: a header row names the columns (the number in to/number/"
            "phone/msisdn/..., else the first); from, text, dlr, validity, schedule as query "
            "or form fields",
        }
    },
    responses={
        202: {"description": "kept: its recipients are being accepted"},
        **errors(400, 401, 403),
        413: {"model": ErrorBody, "description": "more than 100,000 recipients, or the body"},
        422: {"model": ErrorBody, "description": "invalid, or the text uses a field a row lacks"},
    },
)
async def create(request: Request, who: Annotated[Caller, Depends(caller)]) -> JSONResponse:
    gateway = gateway_of(request)
    account = _account(who)
    server = gateway.server
    send, rows = await _read(request)
    template = str(send["text"])
    try:
        needed = recipients.placeholders(template)
    except recipients.RecipientError as exc:
        raise ApiError(422, "invalid", str(exc), field="text") from None
    # A thread, so a list of 100,000 does not hold the event loop for its whole check.
    keep, duplicates, invalid = await asyncio.to_thread(_sort, rows, needed, server.plan)
    if not keep:
        raise ApiError(422, "no_recipients", "no row has a phone number", field="recipients")
    # One check of the text and options for the whole batch, on its first recipient.
    try:
        submit_pdu(_request(send, _fill(template, keep[0][1])), keep[0][0], server.clock())
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc), field="text") from None
    report = {
        "duplicates": duplicates[:_REPORTED],
        "invalid": invalid[:_REPORTED],
        "refused": [],
    }
    batch = NewBatch(
        id=uuid.uuid4().hex,
        account=account.system_id,
        created_at=server.clock(),
        total=len(rows),
        size=len(keep),
        duplicates=len(duplicates),
        invalid=len(invalid),
        request=json.dumps(send, default=str),
        report=json.dumps(report),
        recipients=await asyncio.to_thread(_pack, keep),
    )
    await gateway.store.create_batch(batch)  # durable before the answer
    gateway.batches.run(batch.id)
    return JSONResponse(
        {
            "id": batch.id,
            "state": BatchState.ACCEPTING.value,
            "total": batch.total,
            "to_accept": batch.size,
            "duplicates": batch.duplicates,
            "invalid": batch.invalid,
            "report": report,
        },
        status_code=202,
        headers={"Location": f"/api/v1/batches/{batch.id}"},
    )


def _pack(keep: list[tuple[str, dict[str, str]]]) -> bytes:
    return zlib.compress(json.dumps(keep, separators=(",", ":")).encode(), 1)


def _sort(
    rows: list[recipients.Row], needed: set[str], plan: NumberPlan
) -> tuple[list[tuple[str, dict[str, str]]], list[str], list[dict[str, Any]]]:
    """(recipients to accept with the fields the text uses, duplicates as written, invalid
    rows). A duplicate is the same number once normalised by the gateway's numbering plan.

    Raises:
        ApiError: a row lacks a field the text uses (422 missing_field).
    """
    keep: list[tuple[str, dict[str, str]]] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    invalid: list[dict[str, Any]] = []
    for row in rows:
        missing = needed.difference(row.fields)
        if missing:
            raise ApiError(
                422,
                "missing_field",
                f"row {row.line}: the text uses {{{sorted(missing)[0]}}} but the row has no "
                f"such field (it has {', '.join(row.fields) or 'none'})",
                field="text",
            )
        number = recipients.clean_number(row.number)
        if number is None:
            invalid.append({"row": row.line, "to": row.number, "message": "not a phone number"})
            continue
        key = normalize(number, plan) or number
        if key in seen:
            duplicates.append(row.number)
            continue
        seen.add(key)
        keep.append((number, {k: row.fields[k] for k in needed}))
    return keep, duplicates, invalid


async def _owned(request: Request, who: Caller, batch_id: str) -> BatchRecord:
    record = await gateway_of(request).store.batch(batch_id)
    if record is None or not who.owns(record.account):
        raise ApiError(404, "not_found", f"no batch {batch_id!r}", field="batch_id")
    return record


@router.get(
    "/batches/{batch_id}",
    tags=["batches"],
    summary="A batch's progress: accepted, sent, delivered, failed, pending",
    responses=errors(401, 404),
)
async def progress(
    batch_id: str, request: Request, who: Annotated[Caller, Depends(caller)]
) -> dict[str, Any]:
    return describe(await _owned(request, who, batch_id))


@router.delete(
    "/batches/{batch_id}",
    tags=["batches"],
    summary="Cancel what of a batch is not yet sent",
    responses=errors(401, 404),
)
async def cancel(
    batch_id: str, request: Request, who: Annotated[Caller, Depends(caller)]
) -> dict[str, Any]:
    gateway = gateway_of(request)
    await _owned(request, who, batch_id)
    await gateway.batches.halt(batch_id)  # its current chunk lands first, then no more
    cancelled = await gateway.store.cancel_batch(batch_id, gateway.server.clock())
    after = await gateway.store.batch(batch_id)
    assert after is not None
    # cancelled_now: by this call; not_accepted: recipients it stopped before accepting.
    return {
        **describe(after),
        "cancelled_now": cancelled,
        "not_accepted": after.size - after.accepted_upto,
    }


def describe(record: BatchRecord) -> dict[str, Any]:
    """A batch as GET shows it. States are exclusive: pending (accepted, not yet handed to
    an upstream, or not yet accepted), sent (with an upstream, no receipt yet), delivered,
    failed, cancelled; accepted is every message the batch stored."""
    states = record.states
    waiting = 0 if record.state is not BatchState.ACCEPTING else record.size - record.accepted_upto
    report = json.loads(record.report)
    return {
        "id": record.id,
        "state": record.state.value,
        "total": record.total,
        "accepted": record.accepted,
        "refused": record.refused + record.invalid,
        "duplicates": record.duplicates,
        "invalid": record.invalid,
        "pending": states.get(MessageState.ACCEPTED, 0)
        + states.get(MessageState.DISPATCHING, 0)
        + waiting,
        "sent": states.get(MessageState.SENT, 0),
        "delivered": states.get(MessageState.DELIVERED, 0),
        "failed": sum(states.get(s, 0) for s in _FINAL_FAILED),
        "cancelled": states.get(MessageState.CANCELLED, 0),
        "created_at": record.created_at,
        "finished_accepting_at": record.finished_at,
        "report": report,
    }


# -- accepting in the background -------------------------------------------------------------


def _request(send: dict[str, Any], text: str) -> SendRequest:
    return SendRequest.model_validate({**send, "text": text, "to": ["000"]})


def _fill(template: str, fields: dict[str, str]) -> str:
    return recipients.render(template, fields) if fields else template


class BatchRunner:
    """Accepts kept batches' recipients, chunk by chunk, one task per batch.

    Args:
        store: where batches and their messages are kept.
        server: the accept pipeline (`prepare`, then `stored`).
        metrics: the gateway's, when on.
    """

    def __init__(self, store: Store, server: SmppServer, metrics: Metrics | None = None) -> None:
        self.store, self.server, self.metrics = store, server, metrics
        self.chunk = CHUNK
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._halting: set[str] = set()

    async def start(self) -> None:
        """Resume every batch still accepting (the process stopped or died meanwhile)."""
        for batch_id in await self.store.unfinished_batches():
            log.info("resuming a batch", batch=batch_id)
            self.run(batch_id)

    def run(self, batch_id: str) -> None:
        if batch_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._accept(batch_id))
            self._tasks[batch_id] = task
            task.add_done_callback(lambda _t: self._tasks.pop(batch_id, None))

    async def halt(self, batch_id: str) -> None:
        """Stop accepting `batch_id` once its current chunk is stored."""
        task = self._tasks.get(batch_id)
        if task is None:
            return
        self._halting.add(batch_id)
        try:
            await asyncio.wait([task])
        finally:
            self._halting.discard(batch_id)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _accept(self, batch_id: str) -> None:
        try:
            await self._accept_all(batch_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next start resumes it at its cursor
            log.error("batch stopped accepting", batch=batch_id, error=str(exc))

    async def _accept_all(self, batch_id: str) -> None:
        record = await self.store.batch(batch_id)
        if record is None or record.state is not BatchState.ACCEPTING:
            return
        rows: list[list[Any]] = json.loads(
            zlib.decompress(await self.store.batch_recipients(batch_id))
        )
        send = json.loads(record.request)
        template = str(send["text"])
        report = json.loads(record.report)
        account = self.server.auth.accounts.get(record.account)
        same = _request(send, template)  # a text without placeholders: one for every row
        pending: asyncio.Task[bool] | None = None
        rules = self.server.rules
        tags = {"msg_class": same.class_ or "", "campaign": same.campaign or ""}
        for start in range(record.accepted_upto, record.size, self.chunk):
            now = self.server.clock()
            messages: list[NewMessage] = []
            checks: list[StoreCheck] | None = [] if rules.active else None
            refused = 0
            changed = False
            for number, fields in rows[start : start + self.chunk]:
                if account is None:  # the account was removed by a reload
                    refused += 1
                    continue
                body = _request(send, recipients.render(template, fields)) if fields else same
                pdu = submit_pdu(body, number, now)
                message = self.server.prepare(pdu, account, now, **tags)
                reason = None
                if isinstance(message, NewMessage) and checks is not None:
                    checked = rules.check(message, pdu, now)
                    if isinstance(checked, Refused):
                        message, reason = checked.status, checked.reason.value
                    else:
                        message, check = checked
                        checks.append(check)
                if isinstance(message, NewMessage):
                    messages.append(message)
                    continue
                refused += 1
                if self.metrics is not None:
                    self.metrics.refuse(record.account, message)
                if len(report["refused"]) < _REPORTED:
                    entry: dict[str, Any] = {"to": number, "status": int(message)}
                    if reason is not None:
                        entry["rule"] = reason
                    report["refused"].append(entry)
                    changed = True
            if pending is not None and not await pending:
                return  # cancelled (or another node took it on)
            if batch_id in self._halting:
                return
            cursor = (start, min(start + self.chunk, record.size), refused)
            kept = json.dumps(report) if changed else None
            pending = asyncio.ensure_future(
                self._store_chunk(batch_id, messages, cursor, kept, checks)
            )
        if pending is not None:
            await pending

    async def _store_chunk(
        self,
        batch_id: str,
        messages: list[NewMessage],
        cursor: tuple[int, int, int],
        report: str | None,
        checks: list[StoreCheck] | None = None,
    ) -> bool:
        ok = await self.store.accept_batch(
            batch_id, messages, cursor, self.server.clock(), report=report, checks=checks
        )
        if ok:
            self.server.stored(messages)
            if self.metrics is not None and messages:
                self.metrics.accept(messages[0].account, len(messages))
        return ok
