"""The suppression list (opt-out) and dead numbers under /api/v1: look up, add, remove, import
and export CSV, list dead numbers.

Admin only, every endpoint (the list is the recipients' wish, not one account's): an admin
account or the node's local token (the `smsgw suppress` CLI, whose changes are recorded with
source "cli"). Numbers are normalised by the number plan, as destinations are, so a lookup of
``+86 138 0013 8000`` finds what an MO from ``8613800138000`` suppressed. Scope "" (the
default) is every sender id; any other scope is one sender id (a numeric one normalised like
a number, so "+4930123" and "004930123" are one sender; an alphanumeric one as written).

Import reads the body as it streams in and writes every `IMPORT_CHUNK` rows, so a file of
millions (up to http.max_body) never sits in memory as rows. Export streams keyset pages.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.http.auth import Caller, admin, gateway_of
from gateway.http.errors import ApiError, errors
from gateway.routing import normalize, sender_key
from gateway.store.base import SUPPRESS_CHUNK, Suppression

__all__ = ["IMPORT_CHUNK", "router"]

router = APIRouter(prefix="/api/v1")

IMPORT_CHUNK = 10 * SUPPRESS_CHUNK  # rows parsed before they are written
_PAGE = 10_000  # rows per export page
_MAX_SCOPE = 21  # a source_addr: C-Octet String of 21
_SHOWN = 10  # refused rows listed in an import's answer


class SuppressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str = Field("", max_length=_MAX_SCOPE, description='"" every sender, else one')


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _entry(s: Suppression) -> dict[str, Any]:
    return {"scope": s.scope, "created_at": _iso(s.created_at), "source": s.source}


def _number(request: Request, number: str) -> str:
    digits = normalize(number, gateway_of(request).config.numbers.plan())
    if digits is None:
        raise ApiError(422, "invalid_number", f"{number!r} is not a phone number", field="number")
    return digits


def _source(who: Caller) -> str:
    return "cli" if who.account is None else f"api:{who.name}"


def _count(request: Request, kind: str, source: str, count: int) -> None:
    metrics = gateway_of(request).metrics
    if metrics is not None and count:
        metrics.optout(kind, source, count)


@router.get(
    "/suppressions/export",
    tags=["suppressions"],
    summary="The whole suppression list as CSV: number,scope,created_at,source",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **errors(401, 403)},
)
async def export(request: Request, _who: Annotated[Caller, Depends(admin)]) -> StreamingResponse:
    store = gateway_of(request).store

    async def lines() -> AsyncIterator[bytes]:
        yield b"number,scope,created_at,source\r\n"
        after: tuple[str, str] | None = None
        while page := await store.suppressions_page(after, _PAGE):
            yield "".join(
                f"{s.number},{_csv(s.scope)},{_iso(s.created_at)},{_csv(s.source)}\r\n"
                for s in page
            ).encode()
            after = (page[-1].number, page[-1].scope)

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8")


def _csv(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


@router.post(
    "/suppressions/import",
    tags=["suppressions"],
    summary="Suppress every number of a CSV body: number[,scope] per line",
    description=(
        "A header row (whose first field is no number) is skipped, as are columns after the "
        "scope, so an export imports again as it is. Rows whose number is not a phone number "
        "are counted under `invalid` (the first few listed with their line)."
    ),
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    responses=errors(401, 403, 413),
)
async def import_csv(request: Request, _who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
    gateway = gateway_of(request)
    plan = gateway.config.numbers.plan()
    now = gateway.server.clock()
    entries: list[tuple[str, str, str]] = []
    written = rows = 0
    invalid: list[dict[str, Any]] = []
    invalid_count = 0
    rest = b""

    def parse(text: str) -> None:
        nonlocal rows, invalid_count
        for fields in csv.reader(text.splitlines()):
            rows += 1
            if not fields or not "".join(fields).strip():
                continue
            number = normalize(fields[0].strip(), plan)
            scope = sender_key(fields[1], plan) if len(fields) > 1 else ""
            if number is None or len(scope) > _MAX_SCOPE:
                if rows == 1:
                    continue  # a header
                invalid_count += 1
                if len(invalid) < _SHOWN:
                    invalid.append({"line": rows, "value": fields[0][:40]})
                continue
            entries.append((number, scope, "import"))

    async for chunk in request.stream():
        rest += chunk
        cut = rest.rfind(b"\n")
        if cut < 0:
            continue
        parse(rest[: cut + 1].decode("utf-8-sig" if rows == 0 else "utf-8", "replace"))
        rest = rest[cut + 1 :]
        if len(entries) >= IMPORT_CHUNK:
            written += await gateway.store.suppress(entries, now)
            entries = []
    if rest:
        parse(rest.decode("utf-8-sig" if rows == 0 else "utf-8", "replace"))
    if entries:
        written += await gateway.store.suppress(entries, now)
    _count(request, "opt_out", "import", written)
    return {"suppressed": written, "invalid": invalid_count, "invalid_rows": invalid}


@router.get(
    "/suppressions/{number}",
    tags=["suppressions"],
    summary="Whether a number is suppressed, and for which sender ids",
    responses=errors(401, 403, 422),
)
async def lookup(
    number: str, request: Request, _who: Annotated[Caller, Depends(admin)]
) -> dict[str, Any]:
    digits = _number(request, number)
    found = await gateway_of(request).store.suppression(digits)
    return {
        "number": digits,
        "suppressed": bool(found),
        "suppressions": [_entry(s) for s in found],
    }


@router.put(
    "/suppressions/{number}",
    tags=["suppressions"],
    summary="Suppress a number (for every sender, or one sender id)",
    responses=errors(401, 403, 422),
)
async def add(
    number: str,
    request: Request,
    who: Annotated[Caller, Depends(admin)],
    body: SuppressRequest | None = None,
) -> dict[str, Any]:
    digits = _number(request, number)
    gateway = gateway_of(request)
    scope = sender_key(body.scope, gateway.config.numbers.plan()) if body is not None else ""
    await gateway.store.suppress([(digits, scope, _source(who))], gateway.server.clock())
    _count(request, "opt_out", _source(who).split(":")[0], 1)
    return await lookup(number, request, who)


@router.delete(
    "/suppressions/{number}",
    tags=["suppressions"],
    summary="Remove a number's suppression (one scope, or all without ?scope)",
    responses=errors(401, 403, 404, 422),
)
async def remove(
    number: str,
    request: Request,
    who: Annotated[Caller, Depends(admin)],
    scope: Annotated[str | None, Query(max_length=_MAX_SCOPE)] = None,
) -> dict[str, Any]:
    digits = _number(request, number)
    gateway = gateway_of(request)
    if scope is not None:
        scope = sender_key(scope, gateway.config.numbers.plan())
    removed = await gateway.store.unsuppress([(digits, scope)])
    if not removed:
        raise ApiError(404, "not_found", f"{digits} is not suppressed", field="number")
    _count(request, "opt_in", _source(who).split(":")[0], removed)
    return {"number": digits, "removed": removed}


@router.get(
    "/dead-numbers",
    tags=["suppressions"],
    summary="Numbers whose receipts said they do not exist: counted, and dead until when",
    responses=errors(401, 403),
)
async def dead_numbers(
    request: Request,
    _who: Annotated[Caller, Depends(admin)],
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    page = await gateway_of(request).store.dead_numbers_page(after, limit)
    return {
        "dead_numbers": [
            {
                "number": d.number,
                "failures": d.failures,
                "last_at": _iso(d.last_at),
                "dead_until": _iso(d.dead_until),
            }
            for d in page
        ],
        "next": page[-1].number if len(page) == limit else None,
    }
