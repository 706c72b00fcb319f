"""The part of a message's verdict that the store decides, inside the accept transaction.

What a rule needs from the store (is the number opted out or dead, how many of its class it
was sent in each cap's window, an identical message within the dedup window) is read and
decided in the transaction that stores the message, so two messages accepted at once - on one
node, or on two sharing PostgreSQL - cannot both pass a cap of one. `StoreCheck` is what the
accept pipeline hands the store for that; `store_verdict` is the decision, pure, run by the
store's writer (a thread or a process: everything here pickles).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from gateway.policy.numbers import Kind, NumberInfo
from gateway.policy.rules import ClassRule, Facts, NumberRules, Reason, Verdict, decide

__all__ = ["StoreCheck", "dedup_key", "store_verdict"]

_ANY = NumberInfo(Kind.UNKNOWN)
_NO_NUMBER_RULES = NumberRules(refuse_invalid=False, refuse_fixed_line=False)


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What the accept transaction checks for one message.

    rule: the class's rules (only opt-out, caps and dedup are read here).
    scope: the sender id an opt-out may be limited to ("" for global opt-outs only).
    dedup_key: `dedup_key` of the message; None: no dedup.
    dedup_window: seconds an identical message is answered with the first one's id.
    refuse: a stop refuses the submit (nothing stored) instead of storing it stopped.
    stopped: a stop the pipeline found before the store (number, signature): store the
        message with it, reading nothing.
    """

    rule: ClassRule
    scope: str = ""
    dedup_key: str | None = None
    dedup_window: float = 0.0
    refuse: frozenset[Reason] = frozenset()
    stopped: Reason | None = None


def dedup_key(account: str, destination: str, data_coding: int, body: bytes) -> str:
    """The same account, recipient and content (body and its coding) make the same key."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (account.encode(), destination.encode(), bytes((data_coding & 0xFF,)), body):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.hexdigest()


_GO = Verdict()


def store_verdict(check: StoreCheck, facts: Facts) -> Verdict:
    """The verdict on what the store knows; number, text and quiet hours were checked before.

    The store side of `decide`, in its order (dead, opted out, duplicate, caps), written out:
    it runs in the store's writer for every checked message, so it allocates nothing when the
    message may go. (`tests/unit/test_policy_check.py` holds it equal to `decide`.)"""
    if check.stopped is not None:
        return Verdict(check.stopped)
    if facts.dead:
        return Verdict(Reason.DEAD_NUMBER)
    rule = check.rule
    if rule.opt_out and facts.suppressed:
        return Verdict(Reason.OPTED_OUT)
    if rule.dedup and facts.duplicate_of is not None:
        return Verdict(duplicate_of=facts.duplicate_of)
    if facts.sent:
        for cap in rule.caps:
            if facts.sent.get(cap, 0) >= cap.count:
                return Verdict(Reason.FREQUENCY_CAP, cap=cap)
    return _GO


def decided(check: StoreCheck, facts: Facts) -> Verdict:
    """`store_verdict` as `decide` gives it (the reference the fast one is tested against)."""
    if check.stopped is not None:
        return Verdict(check.stopped)
    rule = replace(check.rule, quiet=None, signature=None)
    return decide(rule, _ANY, facts, text=None, now=0.0, numbers=_NO_NUMBER_RULES)
