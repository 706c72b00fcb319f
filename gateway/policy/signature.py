"""The brand signature and the opt-out hint a marketing text must carry (pure).

Chinese carriers want the signature in 【】 at the start and "回T退订" at the end; European
shops put the brand first and "STOP to 12345" last. A rule either enforces them (a text
without them is stopped) or fixes the text (the signature put where it belongs, the hint
appended). The check ignores width and case, so 【ＸＸ商城】 counts as 【XX商城】; the part
count and the UCS-2 choice are made afterwards, on the fixed text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = ["Signature", "SignatureOutcome", "apply_signature"]


def _loose(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True, slots=True)
class Signature:
    """What a marketing text must carry: `signature` (at `position`) and `hint` (at the end)."""

    signature: str = ""
    hint: str = ""
    position: Literal["start", "end"] = "start"
    mode: Literal["fix", "enforce"] = "fix"
    separator: str = " "  # between the text and what is added (none for CJK texts)


@dataclass(frozen=True, slots=True)
class SignatureOutcome:
    text: str
    missing: tuple[str, ...] = ()  # "signature", "hint": stopped when enforcing
    changed: bool = False


def _sep(rule: Signature, a: str, b: str) -> str:
    if not a or not b:
        return ""
    # No space between ideographs: 【XX商城】您的订单, not 【XX商城】 您的订单.
    wide = unicodedata.east_asian_width(a[-1]) in "WF" or unicodedata.east_asian_width(b[0]) in "WF"
    return "" if wide else rule.separator


def apply_signature(text: str, rule: Signature) -> SignatureOutcome:
    """`text` with the signature and hint the rule asks for, or what is missing from it."""
    loose = _loose(text).strip()
    sig = _loose(rule.signature)
    if not sig:
        has_sig = True
    elif rule.position == "start":
        has_sig = loose.startswith(sig)
    else:  # last, or just before the hint
        has_sig = sig in loose[-(len(sig) + len(rule.hint) + 4) :]
    has_hint = not rule.hint or _loose(rule.hint) in loose
    missing = tuple(
        name for name, present in (("signature", has_sig), ("hint", has_hint)) if not present
    )
    if not missing:
        return SignatureOutcome(text)
    if rule.mode == "enforce":
        return SignatureOutcome(text, missing)
    fixed = text.strip()
    if not has_sig and rule.position == "start":
        fixed = rule.signature + _sep(rule, rule.signature, fixed) + fixed
    if not has_hint:
        fixed = fixed + _sep(rule, fixed, rule.hint) + rule.hint
    if not has_sig and rule.position == "end":
        fixed = fixed + _sep(rule, fixed, rule.signature) + rule.signature
    return SignatureOutcome(fixed, changed=True)
