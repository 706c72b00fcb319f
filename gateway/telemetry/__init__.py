"""Telemetry declared once: the log pipeline (`logging`) and the systemd notify protocol
(`systemd`). Sans-IO cores never import this package."""

from __future__ import annotations
