"""One bounded wait for the integration tests that poll from the test's thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["until"]


def until(check: Callable[[], Any], what: str, timeout: float = 15.0, every: float = 0.05) -> Any:
    """`check()`'s first truthy value, polled every `every` seconds.

    Raises:
        AssertionError: none within `timeout` seconds (naming `what`).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)
