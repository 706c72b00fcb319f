"""The HTTP API's errors: JSON with a stable code, a message and the field it is about.

Every error an endpoint gives is an `ApiError`; FastAPI's own (validation, bad JSON) are turned
into the same shape by the handlers `install` adds, so a client parses one format:

    {"error": {"code": "invalid_destination", "message": "to[1]: ...", "field": "to[1]"}}

Codes are stable (clients branch on them); messages may be reworded.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.smpp.constants import CommandStatus

__all__ = ["ApiError", "ErrorBody", "error_body", "errors", "install", "status_code"]

_S = CommandStatus

# What an SMPP refusal is called over HTTP: the accept pipeline answers in SMPP statuses.
_CODES: dict[int, tuple[str, int]] = {
    _S.ESME_RINVDSTADR: ("invalid_destination", 422),
    _S.ESME_RINVSRCADR: ("invalid_source", 422),
    _S.ESME_RINVSRCTON: ("invalid_source", 422),
    _S.ESME_RINVSRCNPI: ("invalid_source", 422),
    _S.ESME_RINVMSGLEN: ("invalid_length", 422),
    _S.ESME_RINVDCS: ("invalid_data_coding", 422),
    _S.ESME_RINVEXPIRY: ("invalid_validity", 422),
    _S.ESME_RINVSCHED: ("invalid_schedule", 422),
    _S.ESME_RINVREGDLVFLG: ("invalid_dlr", 422),
    _S.ESME_RINVESMCLASS: ("invalid_udh", 422),
    _S.ESME_RINVPARLEN: ("invalid_length", 422),
    _S.ESME_RTHROTTLED: ("throttled", 429),
    _S.ESME_RMSGQFUL: ("queue_full", 503),
    _S.ESME_RSYSERR: ("system_error", 500),
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: ErrorDetail


_WHY = {
    400: "not valid JSON",
    401: "no or wrong credentials, or not from an allowed address",
    403: "the account may not do this (admin only)",
    404: "no such object of this account",
    409: "the object is past the point where this can be done",
    413: "the request body is over http.max_body",
    422: "the request is invalid, or the gateway refused it (the code says which)",
    429: "over the account's throughput (see Retry-After)",
    502: "the modem answered with an error",
    504: "no answer in time",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses an endpoint may answer with."""
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}


def status_code(status: int) -> tuple[str, int]:
    """(code, HTTP status) for an SMPP command_status the accept pipeline gave."""
    found = _CODES.get(status)
    if found is not None:
        return found
    try:
        name = CommandStatus(status).name
    except ValueError:
        return "refused", 422
    return name.removeprefix("ESME_R").lower(), 422


class ApiError(Exception):
    """An error answer: HTTP status, stable code, message, and the field it is about."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def _field(loc: tuple[Any, ...]) -> str:
    """FastAPI's error location as a field path: ("body", "to", 1) -> "to[1]"."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def install(app: FastAPI) -> None:
    """Answer every error in the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.field), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body("bad_json", f"not valid JSON: {first['msg']}"), 400)
        field = _field(tuple(first.get("loc", ())))
        message = f"{field}: {first.get('msg', 'invalid')}"
        return JSONResponse(error_body("invalid_request", message, field), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)
