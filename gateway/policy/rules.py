"""The sending rules of one message class, and the verdict on one message (pure).

`decide` takes what the accept pipeline knows of a message - its class's rules, what
phonenumbers says of the recipient, its text, the time - and what it read from the store in
its batch (`Facts`: is the number suppressed or dead, how many of this class it was sent in
each cap's window, the id of an identical message within the dedup window), and answers with
a `Verdict`: go (perhaps with a fixed text), hold until the recipient's quiet hours end, go
as the duplicate of an earlier message, or stop with a `Reason`. The rules are checked in a
fixed order, so a message stopped for two reasons always names the same one: the number
first (invalid, fixed line, dead), then the recipient's wishes (opted out), then what this
sender did before (duplicate, caps), then the text (signature, hint); quiet hours only delay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from gateway.policy.numbers import Kind, NumberInfo
from gateway.policy.quiet import QuietHours, release_at
from gateway.policy.signature import Signature, apply_signature

__all__ = ["Cap", "ClassRule", "Facts", "NumberRules", "Reason", "Verdict", "decide"]


class Reason(Enum):
    """Why a rule stopped a message: stable codes (logs, the store, HTTP, metrics)."""

    INVALID_NUMBER = "invalid_number"
    FIXED_LINE = "fixed_line"
    DEAD_NUMBER = "dead_number"
    OPTED_OUT = "opted_out"
    FREQUENCY_CAP = "frequency_cap"
    SIGNATURE_MISSING = "signature_missing"
    HINT_MISSING = "opt_out_hint_missing"

    @property
    def error_code(self) -> int:
        """The err: of the REJECTD receipt (0x400 upward: clear of carriers' 0-0xFF)."""
        return 0x400 + list(Reason).index(self) + 1


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `count` messages of a class to one recipient in any `window` seconds; with
    `per_account`, from each account (brand) apart."""

    count: int
    window: float
    per_account: bool = False


@dataclass(frozen=True, slots=True)
class ClassRule:
    name: str
    opt_out: bool = False  # suppressed numbers get nothing of this class (marketing)
    quiet: QuietHours | None = None  # held outside the window, never for OTP
    caps: tuple[Cap, ...] = ()
    signature: Signature | None = None
    dedup: bool = True  # an identical message within the dedup window is sent once


@dataclass(frozen=True, slots=True)
class NumberRules:
    refuse_invalid: bool = True
    refuse_fixed_line: bool = False


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store says of this recipient, read in the accept batch."""

    suppressed: bool = False
    dead: bool = False
    sent: Mapping[Cap, int] = field(default_factory=dict)  # cap -> sent within its window
    duplicate_of: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    stop: Reason | None = None
    hold_until: float | None = None  # epoch seconds: send then, not now
    duplicate_of: str | None = None  # answer with this id; store nothing new
    text: str | None = None  # the text to send, when a rule changed it
    cap: Cap | None = None  # the cap that stopped it

    @property
    def go(self) -> bool:
        return self.stop is None and self.duplicate_of is None


def decide(
    rule: ClassRule,
    number: NumberInfo,
    facts: Facts,
    *,
    text: str | None,
    now: float,
    numbers: NumberRules = NumberRules(),
) -> Verdict:
    """The verdict on one message of class `rule` to a recipient described by `number`.

    `text` is None for a binary message (no signature rule applies to it)."""
    if number.kind is Kind.INVALID and numbers.refuse_invalid:
        return Verdict(Reason.INVALID_NUMBER)
    if number.kind is Kind.FIXED_LINE and numbers.refuse_fixed_line:
        return Verdict(Reason.FIXED_LINE)
    if facts.dead:
        return Verdict(Reason.DEAD_NUMBER)
    if rule.opt_out and facts.suppressed:
        return Verdict(Reason.OPTED_OUT)
    if rule.dedup and facts.duplicate_of is not None:
        return Verdict(duplicate_of=facts.duplicate_of)
    for cap in rule.caps:
        if facts.sent.get(cap, 0) >= cap.count:
            return Verdict(Reason.FREQUENCY_CAP, cap=cap)
    fixed = None
    if rule.signature is not None and text is not None:
        outcome = apply_signature(text, rule.signature)
        if outcome.missing:
            first = outcome.missing[0]
            return Verdict(
                Reason.SIGNATURE_MISSING if first == "signature" else Reason.HINT_MISSING
            )
        if outcome.changed:
            fixed = outcome.text
    hold = None
    if rule.quiet is not None and number.zones:
        hold = release_at(now, number.zones, rule.quiet)
    return Verdict(hold_until=hold, text=fixed)
