"""Who is calling: the same accounts as SMPP binds.

HTTP Basic with an account's system_id and password, or ``Authorization: Bearer TOKEN`` with
one of its `api_tokens`. The account's allow_cidrs apply to the client's address as they do to
a bind. A wrong password, unknown account or token, or an address outside the CIDRs gets 401
after the same delay as a refused bind (`REJECT_DELAY`), which slows password guessing the
same way on both faces. Accounts with ``admin: true`` may see everything and reload.

The node's own CLI authenticates with the local token (`local_token`): a random secret the
gateway writes, readable by its user only, beside its control socket at start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from gateway.config import AccountConfig
from gateway.http.errors import ApiError

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["REJECT_DELAY", "Caller", "admin", "caller"]

REJECT_DELAY = 1.0  # seconds before a 401, as before closing a refused bind

_LOCAL = "local"  # the caller's name when it used the local token


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request's account (None for the local token, which is admin)."""

    account: AccountConfig | None
    admin: bool

    @property
    def name(self) -> str:
        return self.account.system_id if self.account is not None else _LOCAL

    def owns(self, account: str) -> bool:
        """Whether the caller may see what belongs to `account`."""
        return self.admin or (self.account is not None and self.account.system_id == account)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _refuse(message: str) -> ApiError:
    await asyncio.sleep(REJECT_DELAY)
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Basic realm="smsgw"'}
    )


async def caller(request: Request) -> Caller:
    """The authenticated caller (a FastAPI dependency).

    Raises:
        ApiError: 401 without valid credentials from an allowed address.
    """
    gateway = gateway_of(request)
    auth = gateway.server.auth
    peer = request.client.host if request.client is not None else ""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        local = gateway.local_token
        if local is not None and hmac.compare_digest(value.encode(), local.encode()):
            return Caller(None, admin=True)
        account = auth.by_token(value)
        if account is None or not auth.allowed(account, peer):
            raise await _refuse("unknown API token, or not from an allowed address")
        return Caller(account, admin=account.admin)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
            system_id, sep, password = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            system_id, sep, password = "", "", ""
        if sep:
            verdict = auth.verify(system_id, password, peer)
            if isinstance(verdict, AccountConfig):
                return Caller(verdict, admin=verdict.admin)
        raise await _refuse("wrong system_id or password, or not from an allowed address")
    raise ApiError(
        401,
        "unauthorized",
        "give HTTP Basic credentials (system_id:password) or Authorization: Bearer TOKEN",
        headers={"WWW-Authenticate": 'Basic realm="smsgw"'},
    )


async def admin(request: Request) -> Caller:
    """An admin caller (a FastAPI dependency); 403 for any other account."""
    who = await caller(request)
    if not who.admin:
        raise ApiError(403, "forbidden", f"account {who.name!r} is not an admin")
    return who
