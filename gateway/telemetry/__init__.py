"""Telemetry declared once: the log pipeline (`logging`), the systemd notify protocol
(`systemd`) and Prometheus metrics (`metrics`). Sans-IO cores never import this package."""

from __future__ import annotations
