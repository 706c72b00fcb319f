"""GSM modems driven with AT commands: the sans-IO AT engine (`at`) and command builders and
answer parsers (`commands`); the serial shell, bank and emulator build on them."""

from __future__ import annotations

from drivers.modem.at import (
    AtEngine,
    AtError,
    Command,
    CommandAborted,
    CommandDone,
    CommandFailed,
    CommandTimedOut,
    Event,
    Garbage,
    IncomingSms,
    NewMessage,
    Registration,
    Ring,
    StaleAnswer,
    StatusReport,
    StatusReportStored,
    Ussd,
    VendorUrc,
)

__all__ = [
    "AtEngine",
    "AtError",
    "Command",
    "CommandAborted",
    "CommandDone",
    "CommandFailed",
    "CommandTimedOut",
    "Event",
    "Garbage",
    "IncomingSms",
    "NewMessage",
    "Registration",
    "Ring",
    "StaleAnswer",
    "StatusReport",
    "StatusReportStored",
    "Ussd",
    "VendorUrc",
]
