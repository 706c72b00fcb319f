"""GSM 7-bit national language shift tables (3GPP TS 23.038 section 6.2.1.2 and Annex A).

A message in a national language announces its tables in the user data header: IE 0x25 names
a *locking shift* table that replaces the default alphabet, IE 0x24 a *single shift* table that
replaces the default extension table (TS 23.040 sections 9.2.3.24.15-16). Both carry a national
language identifier, TS 23.038 section 6.2.1.2.4, listed here as `NationalLanguage`.

Tables shipped (TS 23.038 Annex A; A.2.x single shift, A.3.x locking shift):

* Turkish: locking A.3.1, single shift A.2.1.
* Spanish: single shift A.2.2 (there is no Spanish locking shift table; A.3.2 is void).
* Portuguese: locking A.3.3, single shift A.2.3.
* Gujarati, Kannada, Oriya, Punjabi, Tamil, Telugu: single shift A.2.5, A.2.7, A.2.9-A.2.12.

Every cell was checked against independent transcriptions of the specification (AOSP
`GsmAlphabet`, CyberChef, warthog618/sms and the `gsmcodecs` package). Some printings of the
specification carry misprints that all of them correct: Tamil single shift 0x24 is U+0BEE
TAMIL DIGIT EIGHT (printed as U+0BEF, a duplicate of 0x25) and Telugu single shift 0x22/0x23 are
U+0C6C/U+0C6D (printed as U+06CC/U+06CD in Rel-9).

Not shipped: the Indic and Urdu locking shift tables (A.3.4-A.3.13) and the Bengali, Hindi,
Malayalam and Urdu single shift tables. `Alphabet` maps characters outside Latin-1 onto the 32
free C1 code points, and those tables have more such characters than that; `alphabet` raises
`ValueError` for them. For the same reason a few mixed pairs (e.g. Turkish locking with the
Oriya single shift) do not build.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from types import MappingProxyType

from gateway.sms.gsm7 import DEFAULT, DEFAULT_BASIC, DEFAULT_EXTENSION, Alphabet

__all__ = [
    "LOCKING_SHIFT_TABLES",
    "SINGLE_SHIFT_TABLES",
    "NationalLanguage",
    "alphabet",
    "candidates",
]


class NationalLanguage(enum.IntEnum):
    """National language identifier, TS 23.038 section 6.2.1.2.4."""

    TURKISH = 1
    SPANISH = 2
    PORTUGUESE = 3
    BENGALI = 4
    GUJARATI = 5
    HINDI = 6
    KANNADA = 7
    MALAYALAM = 8
    ORIYA = 9
    PUNJABI = 10
    TAMIL = 11
    TELUGU = 12
    URDU = 13

    @property
    def label(self) -> str:
        """The language's name for messages, e.g. 'Turkish'."""
        return self.name.capitalize()


# -- locking shift tables: 128 characters, index = septet, 0x1B is the escape -----------------

# A.3.1 Turkish national language locking shift table.
_TURKISH_LOCKING = (
    "@£$¥€éùıòÇ\nĞğ\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "İABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "çabcdefghijklmnopqrstuvwxyzäöñüà"
)

# A.3.3 Portuguese national language locking shift table.
_PORTUGUESE_LOCKING = (
    "@£$¥êéúíóç\nÔô\rÁáΔ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"
    " !\"#º%&'()*+,-./0123456789:;<=>?"
    "ÍABCDEFGHIJKLMNOPQRSTUVWXYZÃÕÚÜ§"
    "~abcdefghijklmnopqrstuvwxyzãõ`üà"
)

# -- single shift tables: code after the escape -> character ------------------------------------
# Like the default extension table (6.2.1.1), code 0x0D is CR2 and 0x1B is reserved for a further
# extension; neither is a character, so neither is listed.

# A.2.1 Turkish national language single shift table.
_TURKISH_SINGLE: Mapping[int, str] = {
    **DEFAULT_EXTENSION,
    0x47: "Ğ",
    0x49: "İ",
    0x53: "Ş",
    0x63: "ç",
    0x67: "ğ",
    0x69: "ı",
    0x73: "ş",
}

# A.2.2 Spanish national language single shift table.
_SPANISH_SINGLE: Mapping[int, str] = {
    **DEFAULT_EXTENSION,
    0x09: "ç",
    0x41: "Á",
    0x49: "Í",
    0x4F: "Ó",
    0x55: "Ú",
    0x61: "á",
    0x69: "í",
    0x6F: "ó",
    0x75: "ú",
}

# A.2.3 Portuguese national language single shift table.
_PORTUGUESE_SINGLE: Mapping[int, str] = {
    **DEFAULT_EXTENSION,
    0x05: "ê",
    0x09: "ç",
    0x0B: "Ô",
    0x0C: "ô",
    0x0E: "Á",
    0x0F: "á",
    0x12: "Φ",
    0x13: "Γ",
    0x15: "Ω",
    0x16: "Π",
    0x17: "Ψ",
    0x18: "Σ",
    0x19: "Θ",
    0x1F: "Ê",
    0x41: "À",
    0x49: "Í",
    0x4F: "Ó",
    0x55: "Ú",
    0x5B: "Ã",
    0x5C: "Õ",
    0x61: "Â",
    0x69: "í",
    0x6F: "ó",
    0x75: "ú",
    0x7B: "ã",
    0x7C: "õ",
    0x7F: "â",
}

# The Indic single shift tables (A.2.4-A.2.12) share one layout of Latin characters. The
# specification lists '*' at both 0x0B and 0x18 and '¡' at both 0x13 and 0x15.
_INDIC_COMMON: Mapping[int, str] = {
    0x00: "@",
    0x01: "£",
    0x02: "$",
    0x03: "¥",
    0x04: "¿",
    0x05: '"',
    0x06: "¤",
    0x07: "%",
    0x08: "&",
    0x09: "'",
    0x0A: "\f",
    0x0B: "*",
    0x0C: "+",
    0x0E: "-",
    0x0F: "/",
    0x10: "<",
    0x11: "=",
    0x12: ">",
    0x13: "¡",
    0x14: "^",
    0x15: "¡",
    0x16: "_",
    0x17: "#",
    0x18: "*",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    **{0x41 + i: chr(ord("A") + i) for i in range(26)},  # 0x41-0x5A: A-Z
    0x65: "€",
}

# 0x19/0x1A: DEVANAGARI DANDA and DOUBLE DANDA (all Indic tables but Telugu).
_DANDAS: Mapping[int, str] = {0x19: "\u0964", 0x1A: "\u0965"}


def _digits(zero: int) -> dict[int, str]:
    """0x1C-0x25: the script's digits zero to nine, given the code point of zero."""
    return {0x1C + i: chr(zero + i) for i in range(10)}


# A.2.5 Gujarati national language single shift table.
_GUJARATI_SINGLE: Mapping[int, str] = {**_INDIC_COMMON, **_DANDAS, **_digits(0x0AE6)}

# A.2.7 Kannada national language single shift table.
_KANNADA_SINGLE: Mapping[int, str] = {
    **_INDIC_COMMON,
    **_DANDAS,
    **_digits(0x0CE6),
    0x26: "\u0cde",  # KANNADA LETTER FA
    0x27: "\u0cf1",  # KANNADA SIGN JIHVAMULIYA
    0x2A: "\u0cf2",  # KANNADA SIGN UPADHMANIYA
}

# A.2.9 Oriya national language single shift table.
_ORIYA_SINGLE: Mapping[int, str] = {
    **_INDIC_COMMON,
    **_DANDAS,
    **_digits(0x0B66),
    0x26: "\u0b5c",  # ORIYA LETTER RRA
    0x27: "\u0b5d",  # ORIYA LETTER RHA
    0x2A: "\u0b5f",  # ORIYA LETTER YYA
    0x2B: "\u0b70",  # ORIYA ISSHAR
    0x2C: "\u0b71",  # ORIYA LETTER WA
}

# A.2.10 Punjabi (Gurmukhi) national language single shift table.
_PUNJABI_SINGLE: Mapping[int, str] = {
    **_INDIC_COMMON,
    **_DANDAS,
    **_digits(0x0A66),
    0x26: "\u0a59",  # GURMUKHI LETTER KHHA
    0x27: "\u0a5a",  # GURMUKHI LETTER GHHA
    0x2A: "\u0a5b",  # GURMUKHI LETTER ZA
    0x2B: "\u0a5c",  # GURMUKHI LETTER RRA
    0x2C: "\u0a5e",  # GURMUKHI LETTER FA
    0x2D: "\u0a75",  # GURMUKHI SIGN YAKASH
}

# A.2.11 Tamil national language single shift table (0x24 corrected to U+0BEE, see above).
_TAMIL_SINGLE: Mapping[int, str] = {
    **_INDIC_COMMON,
    **_DANDAS,
    **_digits(0x0BE6),
    0x26: "\u0bf3",  # TAMIL DAY SIGN
    0x27: "\u0bf4",  # TAMIL MONTH SIGN
    0x2A: "\u0bf5",  # TAMIL YEAR SIGN
    0x2B: "\u0bf6",  # TAMIL DEBIT SIGN
    0x2C: "\u0bf7",  # TAMIL CREDIT SIGN
    0x2D: "\u0bf8",  # TAMIL AS ABOVE SIGN
    0x2E: "\u0bfa",  # TAMIL NUMBER SIGN
}

# A.2.12 Telugu national language single shift table (no dandas; 0x19/0x1A are empty).
_TELUGU_SINGLE: Mapping[int, str] = {
    **_INDIC_COMMON,
    **_digits(0x0C66),
    0x26: "\u0c58",  # TELUGU LETTER TSA
    0x27: "\u0c59",  # TELUGU LETTER DZA
    0x2A: "\u0c78",  # TELUGU FRACTION DIGIT ZERO FOR ODD POWERS OF FOUR
    0x2B: "\u0c79",  # TELUGU FRACTION DIGIT ONE FOR ODD POWERS OF FOUR
    0x2C: "\u0c7a",  # TELUGU FRACTION DIGIT TWO FOR ODD POWERS OF FOUR
    0x2D: "\u0c7b",  # TELUGU FRACTION DIGIT THREE FOR ODD POWERS OF FOUR
    0x2E: "\u0c7c",  # TELUGU FRACTION DIGIT ONE FOR EVEN POWERS OF FOUR
    0x30: "\u0c7d",  # TELUGU FRACTION DIGIT TWO FOR EVEN POWERS OF FOUR
    0x31: "\u0c7e",  # TELUGU FRACTION DIGIT THREE FOR EVEN POWERS OF FOUR
    0x32: "\u0c7f",  # TELUGU SIGN TUUMU
}

LOCKING_SHIFT_TABLES: Mapping[NationalLanguage, str] = MappingProxyType(
    {
        NationalLanguage.TURKISH: _TURKISH_LOCKING,
        NationalLanguage.PORTUGUESE: _PORTUGUESE_LOCKING,
    }
)
"""The shipped locking shift tables: 128 characters each, index = septet, 0x1B the escape."""

SINGLE_SHIFT_TABLES: Mapping[NationalLanguage, Mapping[int, str]] = MappingProxyType(
    {
        lang: MappingProxyType(dict(table))
        for lang, table in (
            (NationalLanguage.TURKISH, _TURKISH_SINGLE),
            (NationalLanguage.SPANISH, _SPANISH_SINGLE),
            (NationalLanguage.PORTUGUESE, _PORTUGUESE_SINGLE),
            (NationalLanguage.GUJARATI, _GUJARATI_SINGLE),
            (NationalLanguage.KANNADA, _KANNADA_SINGLE),
            (NationalLanguage.ORIYA, _ORIYA_SINGLE),
            (NationalLanguage.PUNJABI, _PUNJABI_SINGLE),
            (NationalLanguage.TAMIL, _TAMIL_SINGLE),
            (NationalLanguage.TELUGU, _TELUGU_SINGLE),
        )
    }
)
"""The shipped single shift tables: code after the escape -> character."""


def _table_name(code: int) -> str:
    return "default" if code == 0 else NationalLanguage(code).label


def _alphabet_name(locking: int, single: int) -> str:
    if locking == single:
        return _table_name(locking)
    if single == 0:
        return f"{_table_name(locking)} locking shift"
    if locking == 0:
        return f"{_table_name(single)} single shift"
    return f"{_table_name(locking)} locking shift + {_table_name(single)} single shift"


def _language_code(value: NationalLanguage | int, kind: str) -> int:
    """Check `value` names a shipped table of `kind` ('locking' or 'single'); 0 is the default."""
    code = operator.index(value)
    if code == 0:
        return 0
    try:
        lang = NationalLanguage(code)
    except ValueError:
        raise ValueError(f"unknown national language identifier {code}") from None
    tables: Mapping[NationalLanguage, object]
    tables = LOCKING_SHIFT_TABLES if kind == "locking" else SINGLE_SHIFT_TABLES
    if lang in tables:
        return code
    if lang is NationalLanguage.SPANISH and kind == "locking":
        raise ValueError(
            "there is no Spanish locking shift table (3GPP TS 23.038 defines only a Spanish "
            "single shift table)"
        )
    raise ValueError(
        f"the {lang.label} {kind} shift table is not supported: it has more characters "
        "outside Latin-1 than the GSM 7-bit codec can map"
    )


def alphabet(locking: NationalLanguage | int = 0, single: NationalLanguage | int = 0) -> Alphabet:
    """The alphabet made of `locking`'s locking shift table and `single`'s single shift table.

    0 stands for the default alphabet (6.2.1) and the default extension table (6.2.1.1);
    `alphabet(0, 0)` is `gateway.sms.gsm7.DEFAULT`. Each combination is built once.

    Raises:
        ValueError: an unknown identifier, a table TS 23.038 does not define (Spanish locking),
            or a table or combination the codec cannot represent (see the module docstring).
    """
    return _build(_language_code(locking, "locking"), _language_code(single, "single"))


@cache
def _build(locking: int, single: int) -> Alphabet:
    if locking == 0 and single == 0:
        return DEFAULT
    basic = DEFAULT_BASIC if locking == 0 else LOCKING_SHIFT_TABLES[NationalLanguage(locking)]
    extension = DEFAULT_EXTENSION if single == 0 else SINGLE_SHIFT_TABLES[NationalLanguage(single)]
    name = _alphabet_name(locking, single)
    try:
        return Alphabet(basic, extension, locking_shift=locking, single_shift=single, name=name)
    except ValueError as exc:
        raise ValueError(
            f"the {name} tables together have more characters outside Latin-1 than the "
            "GSM 7-bit codec can map"
        ) from exc


def candidates(languages: Iterable[NationalLanguage]) -> tuple[Alphabet, ...]:
    """The national alphabets worth trying for text in `languages`, cheapest first.

    For each language in order: the default alphabet with the language's single shift table
    (one 3-octet header element), then the language's locking shift table with the default
    extension table (also one element), then the locking with its single shift table (two
    elements) where a locking table is shipped. The segmenter keeps whichever encodes the text
    in the fewest parts, the earliest on a tie. Languages with no shipped table
    (e.g. Hindi) contribute nothing. The default alphabet itself is not included.

    Raises:
        ValueError: an unknown national language identifier.
    """
    return _candidates(tuple(operator.index(lang) for lang in languages))


@lru_cache(maxsize=64)
def _candidates(codes: tuple[int, ...]) -> tuple[Alphabet, ...]:
    pairs: dict[tuple[int, int], None] = {}
    for code in codes:
        try:
            lang = NationalLanguage(code)
        except ValueError:
            raise ValueError(f"unknown national language identifier {code}") from None
        if lang in SINGLE_SHIFT_TABLES:
            pairs[0, code] = None
            if lang in LOCKING_SHIFT_TABLES:
                pairs[code, 0] = None
                pairs[code, code] = None
    return tuple(_build(locking, single) for locking, single in pairs)
