"""The asyncio shell for applications' SMPP binds."""

from __future__ import annotations

from gateway.server.auth import Authenticator, hash_password, verify_password
from gateway.server.smpp import SmppServer

__all__ = ["Authenticator", "SmppServer", "hash_password", "verify_password"]
