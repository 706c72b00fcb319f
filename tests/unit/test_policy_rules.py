"""The verdict on one message: each rule, and their order."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from gateway.policy.numbers import Kind, NumberInfo, number_info
from gateway.policy.quiet import QuietHours
from gateway.policy.rules import Cap, ClassRule, Facts, NumberRules, Reason, decide
from gateway.policy.signature import Signature

CN = number_info("8613800138000")
NOON = datetime(2026, 12, 3, 12, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
NIGHT = datetime(2026, 12, 3, 23, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
MARKETING = ClassRule(
    "marketing",
    opt_out=True,
    quiet=QuietHours(time(21), time(8)),
    caps=(Cap(4, 30 * 86400.0),),
    signature=Signature("【XX商城】", "回T退订"),
)
OTP = ClassRule("otp", dedup=False)
REMINDER = ClassRule("payment_reminder", caps=(Cap(2, 86400.0),))


def test_a_marketing_text_goes_with_its_signature_in_the_day() -> None:
    verdict = decide(MARKETING, CN, Facts(), text="双十一五折", now=NOON)
    assert verdict.go and verdict.hold_until is None
    assert verdict.text == "【XX商城】双十一五折回T退订"


def test_at_night_marketing_waits_for_08_and_otp_does_not() -> None:
    held = decide(MARKETING, CN, Facts(), text="x", now=NIGHT)
    assert held.go and held.hold_until is not None
    assert datetime.fromtimestamp(held.hold_until, ZoneInfo("Asia/Shanghai")).hour == 8
    assert decide(OTP, CN, Facts(), text="123456", now=NIGHT).hold_until is None


def test_opted_out_numbers_get_no_marketing_but_their_otp() -> None:
    suppressed = Facts(suppressed=True)
    assert decide(MARKETING, CN, suppressed, text="x", now=NOON).stop is Reason.OPTED_OUT
    assert decide(OTP, CN, suppressed, text="1234", now=NOON).go


def test_the_third_payment_reminder_in_a_day_is_stopped() -> None:
    assert decide(REMINDER, CN, Facts(sent={REMINDER.caps[0]: 1}), text="x", now=NOON).go
    stopped = decide(REMINDER, CN, Facts(sent={REMINDER.caps[0]: 2}), text="x", now=NOON)
    assert stopped.stop is Reason.FREQUENCY_CAP and stopped.cap == Cap(2, 86400.0)


def test_a_duplicate_answers_with_the_first_id() -> None:
    verdict = decide(REMINDER, CN, Facts(duplicate_of="m1"), text="x", now=NOON)
    assert not verdict.go and verdict.stop is None and verdict.duplicate_of == "m1"


def test_numbers_invalid_fixed_and_dead() -> None:
    invalid = NumberInfo(Kind.INVALID, "CN")
    assert decide(OTP, invalid, Facts(), text="x", now=NOON).stop is Reason.INVALID_NUMBER
    lenient = NumberRules(refuse_invalid=False)
    assert decide(OTP, invalid, Facts(), text="x", now=NOON, numbers=lenient).go
    fixed = number_info("4930123456")
    assert decide(OTP, fixed, Facts(), text="x", now=NOON).go
    strict = NumberRules(refuse_fixed_line=True)
    assert decide(OTP, fixed, Facts(), text="x", now=NOON, numbers=strict).stop is Reason.FIXED_LINE
    assert decide(OTP, CN, Facts(dead=True), text="x", now=NOON).stop is Reason.DEAD_NUMBER


def test_enforced_signature_and_the_order_of_reasons() -> None:
    enforced = ClassRule(
        "m", opt_out=True, signature=Signature("【XX商城】", "回T退订", mode="enforce")
    )
    assert decide(enforced, CN, Facts(), text="五折", now=NOON).stop is Reason.SIGNATURE_MISSING
    assert (
        decide(enforced, CN, Facts(), text="【XX商城】五折", now=NOON).stop is Reason.HINT_MISSING
    )
    # Opted out and unsigned: the recipient's wish is named, whatever the text.
    both = decide(enforced, CN, Facts(suppressed=True), text="五折", now=NOON)
    assert both.stop is Reason.OPTED_OUT


def test_error_codes_are_distinct_and_stable() -> None:
    codes = [r.error_code for r in Reason]
    assert len(set(codes)) == len(codes) and Reason.INVALID_NUMBER.error_code == 0x401
