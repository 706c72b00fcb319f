"""The worked policy examples (config/examples/shop-cn.yaml, shop-eu.yaml) do what their
comments and docs/POLICY.md say, through the same `decide` the accept pipeline calls."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.config import GatewayConfig, load_config
from gateway.policy.keywords import Keywords, Reply
from gateway.policy.numbers import number_info
from gateway.policy.rules import Facts, Reason, decide

EXAMPLES = Path(__file__).parents[2] / "config" / "examples"
CN_MOBILE = "8613800138000"
DE_MOBILE = "4915112345678"
DE_LANDLINE = "493012345678"  # Berlin


def _load(name: str) -> GatewayConfig:
    return load_config(EXAMPLES / name, env={})


def _at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 3, 10, hour, minute, tzinfo=UTC).timestamp()


def test_cn_marketing_gets_signature_and_hint_and_waits_for_morning() -> None:
    policy = _load("shop-cn.yaml").policy
    rule = policy.rules()["marketing"]
    number = number_info(CN_MOBILE)
    # 14:00 UTC is 22:00 in Shanghai: quiet until 08:00 local, 00:00 UTC the next day
    verdict = decide(rule, number, Facts(), text="春季大促全场五折", now=_at(14))
    assert verdict.text == "【XX商城】春季大促全场五折回T退订"
    assert verdict.hold_until == datetime(2026, 3, 11, 0, 0, tzinfo=UTC).timestamp()
    assert decide(rule, number, Facts(suppressed=True), text="x", now=_at(3)).stop is (
        Reason.OPTED_OUT
    )
    capped = decide(rule, number, Facts(sent={rule.caps[0]: 4}), text="x", now=_at(3))
    assert capped.stop is Reason.FREQUENCY_CAP


def test_cn_classes_by_service_type_and_their_caps() -> None:
    policy = _load("shop-cn.yaml").policy
    assert policy.service_types["PAY"] == "payment_reminder"
    rules = policy.rules()
    pay = rules["payment_reminder"]
    verdict = decide(pay, number_info(CN_MOBILE), Facts(sent={pay.caps[0]: 2}), text="x", now=0.0)
    assert verdict.stop is Reason.FREQUENCY_CAP
    # OTP: signed, but never held at night
    otp = decide(rules["otp"], number_info(CN_MOBILE), Facts(), text="验证码 123456", now=_at(14))
    assert (otp.text, otp.hold_until) == ("【XX商城】验证码 123456", None)


def test_cn_opt_out_replies() -> None:
    opt_out = _load("shop-cn.yaml").policy.opt_out
    keywords = Keywords.of(opt_out.keywords, opt_out.opt_in_keywords)
    for reply in ("TD", "td", "ｔｄ", "T", "N", "退订", " 退订！", "取消"):
        assert keywords.classify(reply) is Reply.OPT_OUT, reply
    assert keywords.classify("订阅") is Reply.OPT_IN
    assert keywords.classify("不要退订") is None
    assert opt_out.confirmation is not None and "您已退订" in opt_out.confirmation


def test_eu_marketing_and_fixed_lines() -> None:
    config = _load("shop-eu.yaml")
    policy = config.policy
    rule = policy.rules()["marketing"]
    mobile = number_info(DE_MOBILE)
    # 19:30 UTC in March is 20:30 in Berlin: quiet until 09:00 local (08:00 UTC)
    verdict = decide(rule, mobile, Facts(), text="20% off this weekend", now=_at(19, 30))
    assert verdict.text == "Shop: 20% off this weekend STOP to 12345"
    assert verdict.hold_until == datetime(2026, 3, 11, 8, 0, tzinfo=UTC).timestamp()
    landline = decide(
        policy.rules()["transactional"],
        number_info(DE_LANDLINE),
        Facts(),
        text="x",
        now=_at(12),
        numbers=policy.numbers(),
    )
    assert landline.stop is Reason.FIXED_LINE
    keywords = Keywords.of(policy.opt_out.keywords, policy.opt_out.opt_in_keywords)
    assert keywords.classify("Stop.") is Reply.OPT_OUT
    assert keywords.classify("unsubscribe") is Reply.OPT_OUT
    assert keywords.classify("START") is Reply.OPT_IN
    # Per language: the keyword's language picks the confirmation.
    assert keywords.match("stopp") == (Reply.OPT_OUT, "de")
    assert keywords.match("Arrêt !") == (Reply.OPT_OUT, "fr")
    assert keywords.match("ＳＴＯＰ") == (Reply.OPT_OUT, "en")
    confirm = policy.opt_out.confirmation_for
    assert "ANMELDEN" in (confirm("de") or "") and "REPRISE" in (confirm("fr") or "")
