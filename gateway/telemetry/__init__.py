"""Operational telemetry: metrics (and, from another change, logging)."""
