"""Signature and opt-out hint: fixed or enforced."""

from __future__ import annotations

from gateway.policy.signature import Signature, apply_signature

CN = Signature(signature="【XX商城】", hint="回T退订")
EU = Signature(signature="Shop:", hint="STOP to 12345")


def test_a_chinese_text_gets_its_signature_first_and_the_hint_last_without_spaces() -> None:
    out = apply_signature("双十一全场五折", CN)
    assert out.text == "【XX商城】双十一全场五折回T退订" and out.changed and not out.missing


def test_a_text_that_has_them_is_left_alone_whatever_their_width() -> None:
    text = "【ＸＸ商城】双十一全场五折，回Ｔ退订"
    assert apply_signature(text, CN).text == text
    assert not apply_signature(text, CN).changed


def test_a_european_text_gets_spaces() -> None:
    out = apply_signature("20% off this weekend.", EU)
    assert out.text == "Shop: 20% off this weekend. STOP to 12345"


def test_enforce_names_what_is_missing_and_keeps_the_text() -> None:
    rule = Signature(signature="【XX商城】", hint="回T退订", mode="enforce")
    out = apply_signature("双十一全场五折回T退订", rule)
    assert out.missing == ("signature",) and out.text == "双十一全场五折回T退订"
    assert apply_signature("【XX商城】双十一", rule).missing == ("hint",)


def test_a_signature_at_the_end() -> None:
    rule = Signature(signature="[Shop]", hint="Reply STOP to opt out", position="end")
    out = apply_signature("Sale today", rule)
    assert out.text == "Sale today Reply STOP to opt out [Shop]"
    assert apply_signature(out.text, rule).text == out.text  # applying twice changes nothing
