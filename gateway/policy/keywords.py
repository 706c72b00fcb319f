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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "DEFAULT_OPT_IN",
    "DEFAULT_OPT_OUT",
    "LANGUAGE_OPT_IN",
    "LANGUAGE_OPT_OUT",
    "Keywords",
    "Reply",
    "fold",
]

# Per language: a reply's language picks its confirmation text. TD/T/N are the Chinese
# carriers' convention (退订 in pinyin), the English ones the CTIA/ICO set.
LANGUAGE_OPT_OUT: Mapping[str, tuple[str, ...]] = {
    "zh": ("TD", "T", "N", "退订", "取消"),
    "en": ("STOP", "UNSUBSCRIBE", "STOPALL", "END", "QUIT"),
}
LANGUAGE_OPT_IN: Mapping[str, tuple[str, ...]] = {"zh": ("订阅",), "en": ("START", "UNSTOP", "YES")}
DEFAULT_OPT_OUT = tuple(k for ks in LANGUAGE_OPT_OUT.values() for k in ks)
DEFAULT_OPT_IN = tuple(k for ks in LANGUAGE_OPT_IN.values() for k in ks)


class Reply(Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


def fold(text: str) -> str:
    """The reply as compared: NFKC, case-folded, without spaces, punctuation or symbols."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch for ch in normal if unicodedata.category(ch)[0] not in "ZPSC")
    # Dropping a space may leave a combining mark next to a letter: compose them again.
    return unicodedata.normalize("NFKC", kept)


Lists = Iterable[str] | Mapping[str, Iterable[str]]


def _by_language(lists: Lists) -> dict[str, str]:
    """Folded keyword -> its language ("" for a plain list)."""
    groups = lists.items() if isinstance(lists, Mapping) else [("", lists)]
    found: dict[str, str] = {}
    for language, keywords in groups:
        for keyword in keywords:
            folded = fold(keyword)
            if not folded:
                raise ValueError("a keyword must have a letter, digit or ideograph")
            found.setdefault(folded, language)  # a keyword in two languages: the first
    return found


@dataclass(frozen=True)
class Keywords:
    """Folded opt-out and opt-in keywords (a keyword in both lists is refused), each with
    its language when the lists were given per language."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]
    language: Mapping[str, str] = field(default_factory=dict)  # folded keyword -> language

    @classmethod
    def of(cls, opt_out: Lists, opt_in: Lists) -> Keywords:
        out, into = _by_language(opt_out), _by_language(opt_in)
        both = out.keys() & into.keys()
        if both:
            raise ValueError(f"keywords both opt out and opt in: {', '.join(sorted(both))}")
        return cls(frozenset(out), frozenset(into), {**into, **out})

    def classify(self, text: str) -> Reply | None:
        """What the reply asks for, if it is a keyword."""
        found = self.match(text)
        return None if found is None else found[0]

    def match(self, text: str) -> tuple[Reply, str] | None:
        """What the reply asks for and the language of its keyword ("" if not given)."""
        folded = fold(text)
        if folded in self.opt_out:
            return Reply.OPT_OUT, self.language.get(folded, "")
        if folded in self.opt_in:
            return Reply.OPT_IN, self.language.get(folded, "")
        return None


DEFAULT = Keywords.of(LANGUAGE_OPT_OUT, LANGUAGE_OPT_IN)
