"""The live status page: `GET /` (admin) and the feed it reads.

The page is three static files (`static/status.html`, `.css`, `.js`: no build step, nothing
fetched from elsewhere). It reads `Gateway.status()` from `GET /api/v1/status/events`, a
server-sent event every `EVENT_INTERVAL` seconds, or polls `GET /api/v1/status/live` where
EventSource is missing. A stream ends when its client leaves or the gateway stops
(`Gateway.closing`): uvicorn waits for open responses when it stops, and would otherwise
hold the shutdown until its forced exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, StreamingResponse

from gateway.http.auth import Caller, admin, gateway_of
from gateway.http.errors import ApiError

__all__ = ["EVENT_INTERVAL", "STATIC", "router"]

STATIC = Path(__file__).parent / "static"
EVENT_INTERVAL = 2.0
_RETRY_MS = 3000  # the browser's wait before it reconnects a dropped stream

router = APIRouter()

# The page's own files only; no-store so an upgraded gateway never runs yesterday's script.
_FILES = {
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
}
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("/", include_in_schema=False)
async def page(_who: Annotated[Caller, Depends(admin)]) -> FileResponse:
    return FileResponse(
        STATIC / "status.html", media_type="text/html; charset=utf-8", headers=_NO_STORE
    )


@router.get("/status/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The page's script and style: public, as they hold no data (the feed is admin)."""
    media = _FILES.get(name)
    if media is None:
        raise ApiError(404, "not_found", f"no file {name!r}")
    return FileResponse(STATIC / name, media_type=media, headers=_NO_STORE)


@router.get(
    "/api/v1/status/live",
    tags=["operations"],
    summary="Everything the status page shows, once (uptime, rates, 15-minute history)",
)
async def live(request: Request, _who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
    return await gateway_of(request).status(sampled=True)


@router.get(
    "/api/v1/status/events",
    tags=["operations"],
    summary="The status page's feed: server-sent events, one `status` event every 2 s",
    response_class=StreamingResponse,
)
async def events(request: Request, _who: Annotated[Caller, Depends(admin)]) -> StreamingResponse:
    return StreamingResponse(
        _stream(request),
        media_type="text/event-stream",
        # no-transform / X-Accel-Buffering: a proxy in front must not hold the events back
        headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"},
    )


async def _stream(request: Request) -> AsyncIterator[str]:
    gateway = gateway_of(request)
    closing = gateway.closing
    yield f"retry: {_RETRY_MS}\n\n"
    while not closing.is_set() and not await request.is_disconnected():
        status = await gateway.status(sampled=True)
        yield f"event: status\ndata: {json.dumps(status, separators=(',', ':'))}\n\n"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), EVENT_INTERVAL)
