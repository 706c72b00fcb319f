"""Errors that carry their SMPP answer.

`SmppError.status` is the command_status to answer with; `fatal` says the byte stream can no
longer be trusted (a framing error) and the link must be closed after answering. `command_id`
and `sequence_number` are what the header said, when it could be read, so the session can send
the matching `*_resp` (or generic_nack, SMPP v3.4 section 4.3).

`RemoteSmppError` is the peer's fault (bad bytes in); `LocalSmppError` is ours (asked to encode
something the protocol cannot carry).
"""

from __future__ import annotations

from gateway.smpp.constants import CommandStatus

__all__ = ["LocalSmppError", "RemoteSmppError", "SmppError"]


class SmppError(Exception):
    def __init__(
        self,
        message: str,
        status: CommandStatus,
        *,
        fatal: bool = False,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.fatal = fatal
        self.command_id = command_id
        self.sequence_number = sequence_number

    def __str__(self) -> str:
        return f"{self.args[0]} ({self.status.name})"


class RemoteSmppError(SmppError):
    """The peer sent something we cannot accept."""


class LocalSmppError(SmppError, ValueError):
    """We were asked to build something SMPP cannot carry."""
