"""smsgw: a self-hosted SMS gateway that speaks SMPP v3.4."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
