"""Errors raised by the text codec. All derive from `SmsError`, itself a `ValueError`."""

from __future__ import annotations

__all__ = ["MessageTooLong", "SmsError", "TpduError", "UdhError", "UnencodableText"]


class SmsError(ValueError):
    """Base class of every error the `gateway.sms` package raises."""


class UnencodableText(SmsError):
    """The text has a character the requested coding cannot represent."""

    def __init__(self, message: str, position: int = -1) -> None:
        super().__init__(message)
        self.position = position


class MessageTooLong(SmsError):
    """The text needs more parts than allowed; we refuse rather than truncate."""

    def __init__(self, parts_needed: int, max_parts: int) -> None:
        super().__init__(f"message needs {parts_needed} parts, the limit is {max_parts}")
        self.parts_needed = parts_needed
        self.max_parts = max_parts


class UdhError(SmsError):
    """A user data header that cannot be parsed (length runs past the data, bad IE)."""


class TpduError(SmsError):
    """A GSM 03.40 TPDU that cannot be decoded or encoded."""
