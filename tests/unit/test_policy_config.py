"""The `policy:` section: classes, caps, quiet hours, signatures, keywords; errors with lines."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from gateway.config import ConfigError, duration, load_config
from gateway.policy.quiet import QuietHours
from gateway.policy.rules import Cap
from gateway.routing import NumberPlan, sender_key
from gateway.server.rules import AcceptRules
from gateway.store.base import NewMessage

BASE = """
accounts: [{system_id: shop, password: secret}]
simulated_carriers: {sim: {}}
routes: [{name: all, targets: [sim]}]
store: {path: gw.sqlite3}
"""

SHOP = (
    BASE
    + """
policy:
  default_class: transactional
  service_types: {OTP: otp, MKT: marketing, PAY: payment_reminder}
  classes:
    marketing:
      quiet_hours: {start: "21:00", end: "08:00"}
      caps: [{count: 4, per: 30d}]
      signature: {signature: "【XX商城】", hint: "回T退订"}
    payment_reminder:
      caps: [{count: 2, per: 24h}]
  opt_out: {keywords: [TD, 退订, STOP], opt_in_keywords: [START, 订阅], confirmation: "您已退订"}
"""
)


def test_a_shops_policy_loads_into_rules() -> None:
    policy = load_config("t.yaml", text=SHOP).policy
    rules = policy.rules()
    assert set(rules) == {"otp", "transactional", "marketing", "payment_reminder"}
    marketing = rules["marketing"]
    assert marketing.opt_out and marketing.quiet == QuietHours(time(21), time(8))
    assert marketing.caps == (Cap(4, 30 * 86400.0),)
    assert marketing.signature is not None and marketing.signature.hint == "回T退订"
    assert rules["payment_reminder"].caps == (Cap(2, 86400.0),)
    assert not rules["payment_reminder"].opt_out and not rules["otp"].opt_out
    assert rules["otp"].quiet is None


def test_otp_never_gets_quiet_hours() -> None:
    text = BASE + "policy: {classes: {otp: {quiet_hours: {start: '22:00', end: '07:00'}}}}\n"
    assert load_config("t.yaml", text=text).policy.rules()["otp"].quiet is None


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("{service_types: {MKT: promo}}", "unknown class 'promo'"),
        ("{default_class: nope}", "unknown class 'nope'"),
        ("{classes: {Promo: {}}}", "lower-case"),
        ("{classes: {m: {caps: [{count: 2, per: 3 days}]}}}", "not a duration"),
        ("{classes: {m: {caps: [{count: 0, per: 1d}]}}}", "greater than or equal to 1"),
        ("{classes: {m: {quiet_hours: {start: '8:00', end: '08:00'}}}}", "differ"),
        ("{classes: {m: {quiet_hours: {start: '25:00', end: '08:00'}}}}", "time of day"),
        ("{classes: {m: {signature: {}}}}", "signature, a hint"),
        ("{opt_out: {keywords: [STOP], opt_in_keywords: [stop]}}", "both opt out and opt in"),
        (
            "{opt_out: {keywords: {en: [STOP]}, confirmation: {de: Tschüss}}}",
            "no keywords of language de",
        ),
        ("{classes: {m: {quiet: 1}}}", "quiet"),
    ],
)
def test_policy_errors_name_their_line(policy: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("t.yaml", text=BASE + f"policy: {policy}\n")
    assert message in str(caught.value) and "line 6" in str(caught.value)


def test_durations() -> None:
    assert [duration(v) for v in ("90s", "15m", "24h", "30d", "2w", 60, "1.5h")] == [
        90.0,
        900.0,
        86400.0,
        2592000.0,
        1209600.0,
        60.0,
        5400.0,
    ]
    for bad in ("0s", "-1h", "1y", "soon"):
        with pytest.raises(ValueError):
            duration(bad)


def test_signatures_per_account_and_country() -> None:
    text = (
        BASE
        + """
policy:
  classes:
    marketing:
      signature: {signature: "Shop:", hint: "STOP to 12345"}
      signatures:
        - {signature: "【XX商城】", hint: "回T退订", countries: [CN]}
        - {signature: "Brand B:", hint: "STOP to 999", accounts: [shop-b]}
"""
    )
    marketing = load_config("t.yaml", text=text).policy.classes["marketing"]
    cn = marketing.signature_for("shop", "CN")
    assert cn is not None and cn.signature == "【XX商城】"
    b = marketing.signature_for("shop-b", "DE")
    assert b is not None and b.signature == "Brand B:"
    default = marketing.signature_for("shop", "DE")
    assert default is not None and default.signature == "Shop:"


def test_a_sender_scope_is_one_sender_however_it_is_written(tmp_path: Path) -> None:
    plan = NumberPlan(country_code="49", national_prefix="0", international_prefix="00")
    assert sender_key("+4930123", plan) == sender_key("004930123", plan) == "4930123"
    assert sender_key("030123", plan) == "4930123"
    assert sender_key(" Shop ", plan) == "Shop"  # alphanumeric: as written
    path = tmp_path / "gw.yaml"
    path.write_text(
        BASE
        + "numbers: {country_code: '49', national_prefix: '0'}\n"
        + "policy: {default_class: marketing, opt_out: {scope: sender}}\n"
    )
    rules = AcceptRules(load_config(path))
    message = NewMessage(
        id="m1", account="shop", source_addr="030123", destination_addr="4915112345678",
        short_message=b"hi", accepted_at=0.0,
    )  # fmt: skip
    checked = rules.check(message, None, 0.0)
    assert isinstance(checked, tuple) and checked[1].scope == "4930123"  # as the MO's "+4930123"
