"""The store contract suite: every test runs against each backend (see conftest.py)."""

from __future__ import annotations

from gateway.store.base import NewMessage

__all__ = ["T0", "msg"]

T0 = 1_780_000_000.0


def msg(i: int, **kw: object) -> NewMessage:
    """Message number `i`: id ``m0001``..., accepted `i` seconds after `T0`."""
    fields: dict[str, object] = {
        "id": f"m{i:04d}",
        "account": "shop",
        "source_addr": "Shop",
        "destination_addr": "4915112345678",
        "short_message": f"hello {i}".encode(),
        "registered_delivery": 1,
        "accepted_at": T0 + i,
    }
    fields.update(kw)
    return NewMessage(**fields)  # type: ignore[arg-type]
