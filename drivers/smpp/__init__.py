"""Carrier SMPP upstreams."""

from __future__ import annotations

from drivers.smpp.upstream import SmppUpstream

__all__ = ["SmppUpstream"]
