"""Message drivers: carrier SMPP upstreams and GSM modem banks (see ../shared/DESIGN.md)."""

from __future__ import annotations
