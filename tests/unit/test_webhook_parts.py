"""The pure parts of webhooks: which channels a delivery is queued on, the signature, and
how a Retry-After is read."""

from __future__ import annotations

import hashlib
import hmac

import httpx

from gateway.http.webhooks import _retry_after, sign
from gateway.store.base import channels_for

ALL = frozenset({"receipt", "mo", "state"})


def test_channels_follow_the_webhooks_events() -> None:
    assert channels_for("receipt", frozenset()) == ("smpp",)
    assert channels_for("receipt", frozenset({"receipt"})) == ("smpp", "webhook")
    assert channels_for("mo", frozenset({"receipt"})) == ("smpp",)
    assert channels_for("mo", ALL) == ("smpp", "webhook")
    # an intermediate notification is a state event
    assert channels_for("receipt", frozenset({"receipt"}), intermediate=True) == ("smpp",)
    assert channels_for("receipt", ALL, intermediate=True) == ("smpp", "webhook")
    assert channels_for("mo", ALL, smpp=False) == ("webhook",)


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"event":"receipt"}'
    want = hmac.new(b"0123456789abcdef", body, hashlib.sha256).hexdigest()
    assert sign("0123456789abcdef", body) == f"sha256={want}"
    assert sign("0123456789abcdef", body + b" ") != sign("0123456789abcdef", body)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    def answer(value: str | None) -> httpx.Response:
        return httpx.Response(503, headers={} if value is None else {"Retry-After": value})

    now = 1_764_779_000.0  # Wed, 03 Dec 2025 16:23:20 GMT
    assert _retry_after(answer("7"), now) == 7.0
    assert _retry_after(answer(None), now) is None
    assert _retry_after(answer("soon"), now) is None
    assert _retry_after(answer("-3"), now) == 0.0
    assert _retry_after(answer("Wed, 03 Dec 2025 16:24:00 GMT"), now) == 40.0
