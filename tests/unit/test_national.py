"""Tests of gateway.sms.national: 3GPP TS 23.038 Annex A national language shift tables."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sms.gsm7 import DEFAULT, DEFAULT_BASIC, DEFAULT_EXTENSION, ESCAPE, Alphabet
from gateway.sms.national import (
    LOCKING_SHIFT_TABLES,
    SINGLE_SHIFT_TABLES,
    NationalLanguage,
    alphabet,
    candidates,
)

N = NationalLanguage
CR2 = 0x0D  # control code in every single shift table (6.2.1.1): not a character

LOCKINGS = [0, *LOCKING_SHIFT_TABLES]
SINGLES = [0, *SINGLE_SHIFT_TABLES]

# Pairs whose non-Latin-1 characters do not fit the codec's 32 C1 stand-ins.
TOO_BIG = {
    (N.TURKISH, N.ORIYA),
    (N.TURKISH, N.PUNJABI),
    (N.TURKISH, N.TAMIL),
    (N.TURKISH, N.TELUGU),
}
BUILDABLE = [(lk, ss) for lk in LOCKINGS for ss in SINGLES if (lk, ss) not in TOO_BIG]


def pair_id(pair: tuple[int, int]) -> str:
    return "-".join("default" if code == 0 else N(code).name.lower() for code in pair)


def esc(code: int) -> bytes:
    return bytes((ESCAPE, code))


# --------------------------------------------------------------------------------------------
# Golden cells (TS 23.038 Annex A)


def test_turkish_locking_differs_from_default_exactly_here() -> None:
    # A.3.1: the Turkish letters replace è ì Ø ø Æ æ ¡ ¿ of the default alphabet; € replaces è.
    table = LOCKING_SHIFT_TABLES[N.TURKISH]
    diff = {code: ch for code, ch in enumerate(table) if ch != DEFAULT_BASIC[code]}
    assert diff == {
        0x04: "€",
        0x07: "ı",
        0x0B: "Ğ",
        0x0C: "ğ",
        0x1C: "Ş",
        0x1D: "ş",
        0x40: "İ",
        0x60: "ç",
    }


def test_portuguese_locking_differs_from_default_exactly_here() -> None:
    table = LOCKING_SHIFT_TABLES[N.PORTUGUESE]
    diff = {code: ch for code, ch in enumerate(table) if ch != DEFAULT_BASIC[code]}
    assert diff == {
        0x04: "ê",
        0x06: "ú",
        0x07: "í",
        0x08: "ó",
        0x09: "ç",
        0x0B: "Ô",
        0x0C: "ô",
        0x0E: "Á",
        0x0F: "á",
        0x12: "ª",
        0x13: "Ç",
        0x14: "À",
        0x15: "∞",
        0x16: "^",
        0x17: "\\",
        0x18: "€",
        0x19: "Ó",
        0x1A: "|",
        0x1C: "Â",
        0x1D: "â",
        0x1E: "Ê",
        0x24: "º",
        0x40: "Í",
        0x5B: "Ã",
        0x5C: "Õ",
        0x5D: "Ú",
        0x60: "~",
        0x7B: "ã",
        0x7C: "õ",
        0x7D: "`",
    }


def test_turkish_single_shift() -> None:
    # A.2.1: the default extension characters plus Ğ İ Ş ç ğ ı ş.
    assert dict(SINGLE_SHIFT_TABLES[N.TURKISH]) == {
        **DEFAULT_EXTENSION,
        0x47: "Ğ",
        0x49: "İ",
        0x53: "Ş",
        0x63: "ç",
        0x67: "ğ",
        0x69: "ı",
        0x73: "ş",
    }
    assert SINGLE_SHIFT_TABLES[N.TURKISH][0x65] == "€"


def test_spanish_single_shift() -> None:
    # A.2.2: the accented vowels sit on the code of their base letter.
    assert dict(SINGLE_SHIFT_TABLES[N.SPANISH]) == {
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
    assert SINGLE_SHIFT_TABLES[N.SPANISH][0x65] == "€"


def test_portuguese_single_shift() -> None:
    table = SINGLE_SHIFT_TABLES[N.PORTUGUESE]
    golden = {
        0x05: "ê",
        0x09: "ç",
        0x0A: "\f",
        0x0B: "Ô",
        0x0C: "ô",
        0x0E: "Á",
        0x0F: "á",
        0x12: "Φ",
        0x13: "Γ",
        0x14: "^",
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
        0x65: "€",
        0x69: "í",
        0x6F: "ó",
        0x75: "ú",
        0x7B: "ã",
        0x7C: "õ",
        0x7F: "â",
    }
    for code, ch in golden.items():
        assert table[code] == ch, hex(code)
    # The rest is the default extension table.
    assert {c: ch for c, ch in table.items() if c not in golden} == {
        c: ch for c, ch in DEFAULT_EXTENSION.items() if c not in golden
    }


DIGIT_NAMES = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]

# Language -> (Unicode script name of its digits, has dandas at 0x19/0x1A, other cells by name).
INDIC = {
    N.GUJARATI: ("GUJARATI", True, {}),
    N.KANNADA: (
        "KANNADA",
        True,
        {
            0x26: "KANNADA LETTER FA",
            0x27: "KANNADA SIGN JIHVAMULIYA",
            0x2A: "KANNADA SIGN UPADHMANIYA",
        },
    ),
    N.ORIYA: (
        "ORIYA",
        True,
        {
            0x26: "ORIYA LETTER RRA",
            0x27: "ORIYA LETTER RHA",
            0x2A: "ORIYA LETTER YYA",
            0x2B: "ORIYA ISSHAR",
            0x2C: "ORIYA LETTER WA",
        },
    ),
    N.PUNJABI: (
        "GURMUKHI",
        True,
        {
            0x26: "GURMUKHI LETTER KHHA",
            0x27: "GURMUKHI LETTER GHHA",
            0x2A: "GURMUKHI LETTER ZA",
            0x2B: "GURMUKHI LETTER RRA",
            0x2C: "GURMUKHI LETTER FA",
            0x2D: "GURMUKHI SIGN YAKASH",
        },
    ),
    N.TAMIL: (
        "TAMIL",
        True,
        {
            0x26: "TAMIL DAY SIGN",
            0x27: "TAMIL MONTH SIGN",
            0x2A: "TAMIL YEAR SIGN",
            0x2B: "TAMIL DEBIT SIGN",
            0x2C: "TAMIL CREDIT SIGN",
            0x2D: "TAMIL AS ABOVE SIGN",
            0x2E: "TAMIL NUMBER SIGN",
        },
    ),
    N.TELUGU: (
        "TELUGU",
        False,
        {
            0x26: "TELUGU LETTER TSA",
            0x27: "TELUGU LETTER DZA",
            0x2A: "TELUGU FRACTION DIGIT ZERO FOR ODD POWERS OF FOUR",
            0x2B: "TELUGU FRACTION DIGIT ONE FOR ODD POWERS OF FOUR",
            0x2C: "TELUGU FRACTION DIGIT TWO FOR ODD POWERS OF FOUR",
            0x2D: "TELUGU FRACTION DIGIT THREE FOR ODD POWERS OF FOUR",
            0x2E: "TELUGU FRACTION DIGIT ONE FOR EVEN POWERS OF FOUR",
            0x30: "TELUGU FRACTION DIGIT TWO FOR EVEN POWERS OF FOUR",
            0x31: "TELUGU FRACTION DIGIT THREE FOR EVEN POWERS OF FOUR",
            0x32: "TELUGU SIGN TUUMU",
        },
    ),
}

# The Latin part every Indic single shift table shares (A.2.4-A.2.13), '*' and '¡' twice.
INDIC_LATIN = {
    **dict(enumerate("@£$¥¿\"¤%&'\f*+")),
    **{0x0E + i: ch for i, ch in enumerate("-/<=>¡^¡_#*")},
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    **{0x41 + i: chr(ord("A") + i) for i in range(26)},
    0x65: "€",
}


@pytest.mark.parametrize("lang", list(INDIC), ids=lambda lang: lang.name.lower())
def test_indic_single_shift(lang: NationalLanguage) -> None:
    script, dandas, others = INDIC[lang]
    expected = {code: unicodedata.lookup(name) for code, name in others.items()}
    expected |= {
        0x1C + i: unicodedata.lookup(f"{script} DIGIT {name}") for i, name in enumerate(DIGIT_NAMES)
    }
    if dandas:
        expected |= {0x19: "\N{DEVANAGARI DANDA}", 0x1A: "\N{DEVANAGARI DOUBLE DANDA}"}
    assert dict(SINGLE_SHIFT_TABLES[lang]) == INDIC_LATIN | expected


def test_tamil_eight_is_the_corrected_code_point() -> None:
    # Some printings of A.2.11 show U+0BEF at 0x24 (a duplicate of 0x25).
    tamil = SINGLE_SHIFT_TABLES[N.TAMIL]
    assert tamil[0x24] == "\N{TAMIL DIGIT EIGHT}"
    assert tamil[0x25] == "\N{TAMIL DIGIT NINE}"


@pytest.mark.parametrize(
    ("pair", "text", "septets"),
    [
        ((0, N.TURKISH), "ş", esc(0x73)),
        ((0, N.TURKISH), "Ş", esc(0x53)),
        ((0, N.TURKISH), "ç€", esc(0x63) + esc(0x65)),
        ((N.TURKISH, N.TURKISH), "şŞçı€", b"\x1d\x1c\x60\x07\x04"),
        ((N.TURKISH, 0), "İğ", b"\x40\x0c"),
        ((0, N.SPANISH), "áíóú", esc(0x61) + esc(0x69) + esc(0x6F) + esc(0x75)),
        ((0, N.SPANISH), "ÁÍÓÚ", esc(0x41) + esc(0x49) + esc(0x4F) + esc(0x55)),
        ((0, N.SPANISH), "ç€", esc(0x09) + esc(0x65)),
        ((0, N.SPANISH), "Ñandú", b"\x5dand" + esc(0x75)),
        ((N.PORTUGUESE, N.PORTUGUESE), "ação", b"a\x09\x7bo"),
        ((N.PORTUGUESE, N.PORTUGUESE), "Ω", esc(0x15)),
        ((0, N.PORTUGUESE), "ê", esc(0x05)),
        ((0, N.TAMIL), "௮", esc(0x24)),
        ((0, N.TELUGU), "€", esc(0x65)),
    ],
)
def test_encode_golden(pair: tuple[int, int], text: str, septets: bytes) -> None:
    alpha = alphabet(*pair)
    assert alpha.encode(text) == septets
    assert alpha.decode(septets) == text


# --------------------------------------------------------------------------------------------
# Table structure


@pytest.mark.parametrize("lang", list(LOCKING_SHIFT_TABLES), ids=lambda lang: lang.name.lower())
def test_locking_table_shape(lang: NationalLanguage) -> None:
    table = LOCKING_SHIFT_TABLES[lang]
    assert len(table) == 128
    assert table[ESCAPE] == "\x1b"
    assert table.count("\x1b") == 1
    assert len(set(table)) == 128  # no character twice
    assert all(len(ch) == 1 for ch in table)
    # LF, CR, space and the digits are where the default alphabet has them in every table.
    for code in (0x0A, 0x0D, *range(0x20, 0x24), *range(0x25, 0x40)):
        assert table[code] == DEFAULT_BASIC[code], hex(code)


@pytest.mark.parametrize("lang", list(SINGLE_SHIFT_TABLES), ids=lambda lang: lang.name.lower())
def test_single_shift_table_shape(lang: NationalLanguage) -> None:
    table = SINGLE_SHIFT_TABLES[lang]
    assert ESCAPE not in table
    assert CR2 not in table
    assert all(0 <= code < 128 for code in table)
    assert all(len(ch) == 1 and ch != "\x1b" for ch in table.values())
    assert table[0x0A] == "\f"
    assert table[0x65] == "€"


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        LOCKING_SHIFT_TABLES[N.SPANISH] = DEFAULT_BASIC  # type: ignore[index]
    with pytest.raises(TypeError):
        SINGLE_SHIFT_TABLES[N.TURKISH][0x00] = "x"  # type: ignore[index]


def test_shipped_tables() -> None:
    assert set(LOCKING_SHIFT_TABLES) == {N.TURKISH, N.PORTUGUESE}
    assert set(SINGLE_SHIFT_TABLES) == {
        N.TURKISH,
        N.SPANISH,
        N.PORTUGUESE,
        N.GUJARATI,
        N.KANNADA,
        N.ORIYA,
        N.PUNJABI,
        N.TAMIL,
        N.TELUGU,
    }


def test_identifiers() -> None:
    # TS 23.038 section 6.2.1.2.4.
    assert [(lang.name, int(lang)) for lang in N] == [
        ("TURKISH", 1),
        ("SPANISH", 2),
        ("PORTUGUESE", 3),
        ("BENGALI", 4),
        ("GUJARATI", 5),
        ("HINDI", 6),
        ("KANNADA", 7),
        ("MALAYALAM", 8),
        ("ORIYA", 9),
        ("PUNJABI", 10),
        ("TAMIL", 11),
        ("TELUGU", 12),
        ("URDU", 13),
    ]


# --------------------------------------------------------------------------------------------
# Round trips


def table_chars(alpha: Alphabet) -> list[str]:
    chars = {ch for code, ch in enumerate(alpha.basic) if code != ESCAPE}
    return sorted(chars | set(alpha.extension.values()))


@pytest.mark.parametrize("pair", BUILDABLE, ids=pair_id)
def test_every_cell_decodes_and_encodes(pair: tuple[int, int]) -> None:
    alpha = alphabet(*pair)
    for code, ch in enumerate(alpha.basic):
        if code != ESCAPE:
            assert alpha.decode(bytes((code,))) == ch
            assert alpha.encode(ch) == bytes((code,))
    for code, ch in alpha.extension.items():
        assert alpha.decode(esc(code)) == ch
        out = alpha.encode(ch)
        # The locking table wins over the single shift one; of two equal cells the lower code.
        if ch in alpha.basic:
            assert out == bytes((alpha.basic.index(ch),))
        else:
            assert out == esc(min(c for c, x in alpha.extension.items() if x == ch))


@pytest.mark.parametrize("pair", BUILDABLE, ids=pair_id)
@settings(max_examples=60)
@given(data=st.data())
def test_round_trip(pair: tuple[int, int], data: st.DataObject) -> None:
    alpha = alphabet(*pair)
    text = data.draw(st.text(alphabet=st.sampled_from(table_chars(alpha)), max_size=300))
    septets = alpha.encode(text)
    assert max(septets, default=0) < 0x80
    assert alpha.decode(septets) == text


# --------------------------------------------------------------------------------------------
# alphabet()


def test_default_pair_is_the_default_alphabet() -> None:
    assert alphabet() is DEFAULT
    assert alphabet(0, 0) is DEFAULT


def test_alphabet_attributes_and_cache() -> None:
    alpha = alphabet(N.PORTUGUESE, N.PORTUGUESE)
    assert alpha is alphabet(3, 3)
    assert alpha.locking_shift == 3
    assert alpha.single_shift == 3
    assert alpha.basic == LOCKING_SHIFT_TABLES[N.PORTUGUESE]
    assert alpha.extension == dict(SINGLE_SHIFT_TABLES[N.PORTUGUESE])
    spanish = alphabet(single=N.SPANISH)
    assert (spanish.locking_shift, spanish.single_shift) == (0, 2)
    assert spanish.basic == DEFAULT_BASIC
    assert "Spanish" in spanish.name
    turkish = alphabet(locking=N.TURKISH)
    assert (turkish.locking_shift, turkish.single_shift) == (1, 0)
    assert turkish.extension == dict(DEFAULT_EXTENSION)


@pytest.mark.parametrize("code", [-1, 14, 255])
def test_unknown_identifier(code: int) -> None:
    with pytest.raises(ValueError, match=f"unknown national language identifier {code}"):
        alphabet(code)
    with pytest.raises(ValueError, match=f"unknown national language identifier {code}"):
        alphabet(0, code)


def test_no_spanish_locking_table() -> None:
    with pytest.raises(ValueError, match="Spanish locking"):
        alphabet(N.SPANISH)
    with pytest.raises(ValueError, match="Spanish locking"):
        alphabet(N.SPANISH, N.SPANISH)


@pytest.mark.parametrize("lang", [N.BENGALI, N.GUJARATI, N.HINDI, N.URDU, N.TAMIL])
def test_unsupported_locking_tables_name_the_language(lang: NationalLanguage) -> None:
    with pytest.raises(ValueError, match=f"{lang.label} locking"):
        alphabet(lang)


@pytest.mark.parametrize("lang", [N.BENGALI, N.HINDI, N.MALAYALAM, N.URDU])
def test_unsupported_single_shift_tables_name_the_language(lang: NationalLanguage) -> None:
    with pytest.raises(ValueError, match=f"{lang.label} single"):
        alphabet(0, lang)


@pytest.mark.parametrize("pair", sorted(TOO_BIG), ids=pair_id)
def test_pairs_too_big_for_the_codec(pair: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=f"Turkish locking shift \\+ {N(pair[1]).label}"):
        alphabet(*pair)


def test_non_integer_identifier() -> None:
    with pytest.raises(TypeError):
        alphabet("1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# candidates()


def test_candidates_order() -> None:
    assert candidates([N.TURKISH]) == (alphabet(0, 1), alphabet(1, 0), alphabet(1, 1))
    assert candidates([N.SPANISH]) == (alphabet(0, 2),)
    assert candidates([N.PORTUGUESE, N.TURKISH]) == (
        alphabet(0, 3),
        alphabet(3, 0),
        alphabet(3, 3),
        alphabet(0, 1),
        alphabet(1, 0),
        alphabet(1, 1),
    )
    assert candidates([N.TAMIL]) == (alphabet(0, N.TAMIL),)


def test_candidates_skip_duplicates_and_unshipped() -> None:
    assert candidates([N.TURKISH, N.HINDI, N.TURKISH, N.SPANISH]) == (
        alphabet(0, 1),
        alphabet(1, 0),
        alphabet(1, 1),
        alphabet(0, 2),
    )
    assert candidates([N.HINDI, N.URDU]) == ()
    assert candidates([]) == ()
    assert candidates(iter([N.SPANISH])) == (alphabet(0, 2),)


def test_candidates_unknown_identifier() -> None:
    with pytest.raises(ValueError, match="unknown national language identifier 99"):
        candidates([99])  # type: ignore[list-item]


def test_candidates_choose_the_national_alphabet() -> None:
    # Text the default alphabet cannot hold, but a Turkish one can.
    text = "Işık ğüneş"
    assert DEFAULT.try_encode(text) is None
    fits = [a for a in candidates([N.TURKISH]) if a.try_encode(text) is not None]
    assert fits
    assert all(a.decode(a.encode(text)) == text for a in fits)


# --------------------------------------------------------------------------------------------
# Cross-check against an independent implementation (the `gsmcodecs` package, from TS 23.038
# V18.0.0), when it is installed.


def gsmcodecs_cell(septets: bytes, locking: int, single: int) -> str | None:
    try:
        return septets.decode(f"gsm23.038-{locking}-{single}")
    except UnicodeDecodeError:
        return None


@pytest.mark.parametrize("lang", list(LOCKING_SHIFT_TABLES), ids=lambda lang: lang.name.lower())
def test_locking_table_matches_gsmcodecs(lang: NationalLanguage) -> None:
    pytest.importorskip("gsmcodecs")
    theirs = [gsmcodecs_cell(bytes((code,)), lang, 0) for code in range(128)]
    ours: list[str | None] = list(LOCKING_SHIFT_TABLES[lang])
    theirs[ESCAPE] = ours[ESCAPE] = None
    assert ours == theirs


@pytest.mark.parametrize("lang", list(SINGLE_SHIFT_TABLES), ids=lambda lang: lang.name.lower())
def test_single_shift_table_matches_gsmcodecs(lang: NationalLanguage) -> None:
    pytest.importorskip("gsmcodecs")
    theirs = {}
    for code in range(128):
        if code != ESCAPE:
            ch = gsmcodecs_cell(esc(code), 0, lang)
            if ch is not None:
                theirs[code] = ch
    if lang is N.TELUGU:
        # gsmcodecs 1.0.0 leaves Telugu 0x65 empty; AOSP, CyberChef and warthog618/sms (and every
        # other single shift table) have the euro sign there.
        theirs.setdefault(0x65, "€")
    assert dict(SINGLE_SHIFT_TABLES[lang]) == theirs
