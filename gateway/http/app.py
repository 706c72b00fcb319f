"""The one FastAPI app of a gateway: health, metrics, the API, the docs and the status page.

Everything is served by the gateway's own uvicorn in its own event loop (`HttpServer`), so an
HTTP send goes through the same accept pipeline object as an SMPP submit_sm and no state is
shared across threads. The OpenAPI description is at /openapi.json and Swagger UI at /docs,
its files served from the `fastapi_offline` package (nothing is fetched from a CDN).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastapi_offline
from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http import api, batches, errors, stats, status_page, suppressions

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["BodyLimit", "create_app"]

_SWAGGER = Path(fastapi_offline.__file__).parent / "static"

_DESCRIPTION = """Send SMS, follow them, and run the gateway over HTTP.

Authenticate as an SMPP account: HTTP Basic with its system_id and password, or
`Authorization: Bearer <token>` with one of its `api_tokens`. Errors are JSON:
`{"error": {"code": "...", "message": "...", "field": "..."}}` with a stable `code`.
"""


def create_app(gateway: Gateway) -> FastAPI:
    """The app serving `gateway` (its metrics, store, accept pipeline and control)."""
    app = FastAPI(
        title="smsgw",
        version=_version(),
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.gateway = gateway
    errors.install(app)
    app.mount("/_swagger", StaticFiles(directory=_SWAGGER), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="smsgw API",
            swagger_js_url="/_swagger/swagger-ui-bundle.js",
            swagger_css_url="/_swagger/swagger-ui.css",
            swagger_favicon_url="/_swagger/favicon.png",
        )

    @app.get("/healthz", tags=["health"], summary="Alive: the event loop answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Ready: store writable, SMPP listening, a route target usable",
        responses={503: {"description": "not ready; `checks` says what is not"}},
    )
    async def readyz() -> JSONResponse:
        checks = await gateway.readiness()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503
        )

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (text format)",
        response_class=PlainTextResponse,
        responses={404: {"description": "metrics.enabled is false"}},
    )
    async def scrape() -> Response:
        if gateway.metrics is None:
            return Response("metrics are off (metrics.enabled: false)\n", status_code=404)
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api.router)
    app.include_router(batches.router)
    app.include_router(suppressions.router)
    app.include_router(stats.router)
    app.include_router(status_page.router)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("smsgw")
    except PackageNotFoundError:
        return "0"


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 with a JSON error, by its
    Content-Length before reading, or as soon as a chunked body passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(send)
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer now and tell the app the client left: it stops reading, and
                    # whatever it would answer is dropped below.
                    refused = True
                    if not started:
                        await self._too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, tracked)

    async def _too_large(self, send: Send) -> None:
        body = errors.error_body(
            "too_large",
            f"the request body is over {self.limit:,} bytes (http.max_body); "
            "send big recipient lists as a batch in parts",
        )
        import json  # noqa: PLC0415

        data = json.dumps(body).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": data})
