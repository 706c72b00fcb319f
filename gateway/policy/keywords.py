"""Opt-out and opt-in replies: a keyword alone, or the whole reply (pure).

A reply is folded before it is compared: NFKC (full-width ＳＴＯＰ and ｔｄ become STOP and td,
compatibility forms of CJK too), case-folded, and stripped of white space (including the
ideographic space), punctuation and symbols at both ends and between words - "Stop.",
" 退订！", "T D" and "stop please" are told apart: the first three are the keyword, the last is
not (a keyword must be the whole reply, give or take punctuation, so "do not stop" never
unsubscribes anyone).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "DEFAULT_OPT_IN",
    "DEFAULT_OPT_OUT",
    "Keywords",
    "Reply",
    "fold",
]

DEFAULT_OPT_OUT = ("TD", "T", "N", "退订", "取消", "STOP", "UNSUBSCRIBE", "STOPALL", "END", "QUIT")
DEFAULT_OPT_IN = ("START", "订阅", "UNSTOP", "YES")


class Reply(Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


def fold(text: str) -> str:
    """The reply as compared: NFKC, case-folded, without spaces, punctuation or symbols."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch for ch in normal if unicodedata.category(ch)[0] not in "ZPSC")
    # Dropping a space may leave a combining mark next to a letter: compose them again.
    return unicodedata.normalize("NFKC", kept)


@dataclass(frozen=True)
class Keywords:
    """Folded opt-out and opt-in keywords (a keyword in both lists is refused)."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]

    @classmethod
    def of(cls, opt_out: Iterable[str], opt_in: Iterable[str]) -> Keywords:
        out = {fold(k) for k in opt_out}
        into = {fold(k) for k in opt_in}
        if "" in out or "" in into:
            raise ValueError("a keyword must have a letter, digit or ideograph")
        both = out & into
        if both:
            raise ValueError(f"keywords both opt out and opt in: {', '.join(sorted(both))}")
        return cls(frozenset(out), frozenset(into))

    def classify(self, text: str) -> Reply | None:
        """What the reply asks for, if it is a keyword."""
        folded = fold(text)
        if folded in self.opt_out:
            return Reply.OPT_OUT
        if folded in self.opt_in:
            return Reply.OPT_IN
        return None


DEFAULT = Keywords.of(DEFAULT_OPT_OUT, DEFAULT_OPT_IN)
