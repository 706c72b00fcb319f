"""`Metrics`: what the hooks record (the HTTP side is in tests/integration/test_metrics.py)."""

from __future__ import annotations

from gateway.telemetry.metrics import Metrics

REFUSED = "smsgw_messages_refused_total"


def test_refusals_are_labelled_by_status_name() -> None:
    metrics = Metrics()
    metrics.refuse("shop", 0x58)
    metrics.refuse("shop", 0x58)
    metrics.refuse("shop", 0x4242)
    get = metrics.registry.get_sample_value
    assert get(REFUSED, {"account": "shop", "status": "ESME_RTHROTTLED"}) == 2
    assert get(REFUSED, {"account": "shop", "status": "0x00004242"}) == 1


def test_two_gateways_never_share_a_series() -> None:
    a, b = Metrics(), Metrics()
    a.accept("shop")
    assert a.registry.get_sample_value("smsgw_messages_accepted_total", {"account": "shop"}) == 1
    assert b.registry.get_sample_value("smsgw_messages_accepted_total", {"account": "shop"}) is None


def test_reload_done_counts_and_stamps() -> None:
    metrics = Metrics()
    get = metrics.registry.get_sample_value
    metrics.reload_done(False)
    metrics.reload_done(True)
    assert get("smsgw_reload_total", {"result": "failed"}) == 1
    assert get("smsgw_reload_total", {"result": "ok"}) == 1
    assert (get("smsgw_config_reload_last_success_timestamp_seconds") or 0) > 1_700_000_000
