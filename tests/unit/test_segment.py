"""The segmenter (gateway.sms.segment): parts that fit, decode back, and carry the right UDH.

Limits (3GPP TS 23.040 9.2.3.24, 140 octets of TP-UD; SMPP v3.4 5.3.2.22-24 for SAR, where the
SMSC adds the concatenation header itself):

=========  =======  ==================  ===================
encoding   single   8-bit ref (6 oct)   16-bit ref (7 oct)
=========  =======  ==================  ===================
GSM 7-bit  160 sep  153 septets         152 septets
UCS-2      70 units 67 units            66 units
8-bit      140 oct  134 octets          133 octets
=========  =======  ==================  ===================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gateway.sms.coding import Encoding, decode_text
from gateway.sms.errors import MessageTooLong, SmsError, UnencodableText
from gateway.sms.gsm7 import DEFAULT, ESCAPE, pack_septets
from gateway.sms.segment import (
    ConcatMethod,
    Segments,
    choose_encoding,
    cut_body,
    part_capacity,
    segment,
)
from gateway.sms.udh import (
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    IEI_LOCKING_SHIFT,
    IEI_SINGLE_SHIFT,
    Concat,
    concat_of,
    parse_udh,
)

# The GSM 7-bit default alphabet and its extension table (TS 23.038 6.2.1 / 6.2.1.1), written out
# here independently of the module (test_gsm7.py checks them code by code).
GSM_BASIC = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
GSM_EXTENSION = "\f^{}\\[~]|\u20ac"
GSM_CHARS = frozenset(GSM_BASIC + GSM_EXTENSION)
assert len(GSM_BASIC) == 127 and len(GSM_CHARS) == 137

METHODS = list(ConcatMethod)
USER_DATA = 140  # octets of TP-UD in one SMS

# -- strategies -----------------------------------------------------------------------------------

PIECES = [
    "a", "Z", " ", "0", "\n", "@", "\u00e9", "\u00fc", "\u03a9",  # GSM basic
    "\u20ac", "[", "]", "{", "^", "|", "~", "\\", "\f",  # GSM extension: two septets
    "\u00e7", "\u00ea", "\u00b5", "`",  # Latin-1, not GSM
    "\u4e2d", "\u6587", "\u3002", "\u0416", "\u05d0",  # CJK, Cyrillic, Hebrew: one UTF-16 unit
    "\U0001f600", "\U0001f44d", "\U0001f1e9\U0001f1ea", "\U00020000",  # astral: surrogate pairs
    "\u200d", "\ufe0f",  # joiners and selectors
]  # fmt: skip
mixed_text = st.lists(st.sampled_from(PIECES), max_size=450).map("".join)
gsm_alphabet = st.sampled_from(sorted(GSM_CHARS))
gsm_text = st.text(alphabet=gsm_alphabet, max_size=700)


def of_length(
    lo: int, hi: int, make: Callable[[int], st.SearchStrategy[str]]
) -> st.SearchStrategy[str]:
    """Texts of a length drawn from lo..hi (hypothesis alone favours short ones)."""
    return st.integers(lo, hi).flatmap(make)


long_mixed = of_length(
    60, 450, lambda n: st.lists(st.sampled_from(PIECES), min_size=n, max_size=n).map("".join)
)
long_gsm = of_length(150, 700, lambda n: st.text(alphabet=gsm_alphabet, min_size=n, max_size=n))
long_latin1 = of_length(
    130, 600, lambda n: st.text(alphabet=st.characters(max_codepoint=0xFF), min_size=n, max_size=n)
)
any_text = st.one_of(st.text(max_size=500), mixed_text, long_mixed, gsm_text, long_gsm)
latin1_text = st.one_of(st.text(alphabet=st.characters(max_codepoint=0xFF)), long_latin1)


@st.composite
def escape_at_boundary(draw: st.DrawFn) -> str:
    """GSM text with an escape pair starting exactly around the end of a part (152/153/154...)."""
    at = draw(st.sampled_from([151, 152, 153, 154, 158, 159, 160, 304, 305, 306, 307]))
    head = draw(st.text(alphabet=st.sampled_from(GSM_BASIC), min_size=at, max_size=at))
    ext = draw(st.text(alphabet=st.sampled_from(GSM_EXTENSION), min_size=1, max_size=3))
    tail = draw(st.text(alphabet=st.sampled_from(sorted(GSM_CHARS)), min_size=1, max_size=200))
    return head + ext + tail


@st.composite
def surrogate_at_boundary(draw: st.DrawFn) -> str:
    """Non-GSM text with a surrogate pair starting around the end of a part (66/67/68 units)."""
    at = draw(st.sampled_from([65, 66, 67, 68, 69, 70, 132, 133, 134, 135]))
    head = draw(st.text(alphabet=st.sampled_from("\u4e2d\u6587a\u00e7 "), min_size=at, max_size=at))
    astral = draw(st.text(alphabet=st.characters(min_codepoint=0x10000), min_size=1, max_size=3))
    tail = draw(st.text(max_size=100))
    return "\u4e2d" + head[1:] + astral + tail


escape_runs = st.text(alphabet=st.sampled_from(GSM_EXTENSION), min_size=70, max_size=240)
emoji_runs = st.text(alphabet=st.sampled_from("\U0001f600\U0001f680\U0001f9e1"), max_size=120)
boundary_text = st.one_of(escape_at_boundary(), surrogate_at_boundary(), escape_runs, emoji_runs)


def refs_for(method: ConcatMethod) -> st.SearchStrategy[int]:
    return st.integers(0, 0xFF if method is ConcatMethod.UDH8 else 0xFFFF)


method_and_ref = st.sampled_from(METHODS).flatmap(lambda m: st.tuples(st.just(m), refs_for(m)))

# -- independent oracles --------------------------------------------------------------------------


def representable_gsm(text: str) -> bool:
    return set(text) <= GSM_CHARS


def unit_cost(ch: str, encoding: Encoding) -> int:
    """Septets (GSM 7-bit), UTF-16 units (UCS-2) or octets (8-bit) that one character costs."""
    if encoding is Encoding.GSM7:
        return 2 if ch in GSM_EXTENSION else 1
    if encoding is Encoding.UCS2:
        return 2 if ord(ch) > 0xFFFF else 1
    return 1


def expected_chunks(text: str, encoding: Encoding, per_part: int) -> list[str]:
    """Greedy cut by whole characters: as many as fit, never half an escape or surrogate pair."""
    chunks, cur, used = [], [], 0
    for ch in text:
        c = unit_cost(ch, encoding)
        if used + c > per_part:
            chunks.append("".join(cur))
            cur, used = [], 0
        cur.append(ch)
        used += c
    chunks.append("".join(cur))
    return chunks


SINGLE = {Encoding.GSM7: 160, Encoding.UCS2: 70, Encoding.LATIN1: 140}
CONCAT_8 = {Encoding.GSM7: 153, Encoding.UCS2: 67, Encoding.LATIN1: 134}
CONCAT_16 = {Encoding.GSM7: 152, Encoding.UCS2: 66, Encoding.LATIN1: 133}


def per_part(encoding: Encoding, method: ConcatMethod, ref: int = 0) -> int:
    """Units per part of a concatenated message in the default alphabet. With SAR the SMSC
    builds the UDH, and a reference above 255 only fits the 16-bit element."""
    wide = method is ConcatMethod.UDH16 or (method is ConcatMethod.SAR and ref > 0xFF)
    return (CONCAT_16 if wide else CONCAT_8)[encoding]


def units(body: bytes, encoding: Encoding) -> int:
    return len(body) // 2 if encoding is Encoding.UCS2 else len(body)


def header_octets(seg: Segments, i: int) -> int:
    """The UDH that part i travels with: its own, or for SAR the one the SMSC will build."""
    udh = seg.udhs[i]
    if seg.method is ConcatMethod.SAR and seg.total > 1:
        # The concatenation IE the SMSC adds (5 octets, 6 for a 16-bit reference) merged
        # with any shift IEs already there.
        ie = 6 if seg.ref > 0xFF else 5
        return len(udh) + ie if udh else ie + 1
    return len(udh)


def tp_ud(seg: Segments, i: int) -> bytes:
    """The TP-UD part i becomes on the air interface (header + packed or raw body)."""
    body = seg.bodies[i]
    hdr = header_octets(seg, i)
    if seg.encoding is Encoding.GSM7:
        fill = (7 - 8 * hdr % 7) % 7
        return b"H" * hdr + pack_septets(body, fill)
    return b"H" * hdr + body


def decoded_parts(seg: Segments) -> list[str]:
    return [decode_text(b, seg.encoding, seg.alphabet) for b in seg.bodies]


def check_segments(seg: Segments, text: str, method: ConcatMethod, ref: int) -> None:
    """Every property a correct segmentation has, whatever the text and method."""
    enc = seg.encoding
    event(f"{enc.name} {method.name} parts={min(seg.total, 3)}")
    parts = decoded_parts(seg)
    assert "".join(parts) == text
    assert seg.method is method
    assert len(seg.udhs) == seg.total >= 1
    assert seg.short_messages() == [u + b for u, b in zip(seg.udhs, seg.bodies, strict=True)]

    if method is ConcatMethod.PAYLOAD or seg.total == 1:
        if seg.alphabet is DEFAULT:
            assert seg.udhs == (b"",)
        if method is ConcatMethod.PAYLOAD:
            assert seg.total == 1
            return
    for i, body in enumerate(seg.bodies):
        # Within 140 octets of TP-UD, header included.
        assert len(tp_ud(seg, i)) <= USER_DATA, (i, len(body), seg.udhs[i].hex())
        if enc is Encoding.GSM7:
            assert max(body, default=0) < 0x80
            assert not body.endswith(bytes([ESCAPE])), f"part {i + 1} ends with an escape"
        if enc is Encoding.UCS2:
            assert len(body) % 2 == 0
            assert not (len(body) >= 2 and 0xD8 <= body[-2] <= 0xDB), f"part {i + 1} high surrogate"
    if seg.total == 1:
        if seg.alphabet is DEFAULT:
            assert units(seg.bodies[0], enc) <= SINGLE[enc]
        return

    if seg.alphabet is DEFAULT:
        cap = per_part(enc, method, ref)
        assert all(units(b, enc) <= cap for b in seg.bodies)
        assert parts == expected_chunks(text, enc, cap)
    if method is ConcatMethod.SAR:
        assert seg.ref == ref
        if seg.alphabet is DEFAULT:
            assert set(seg.udhs) == {b""}
        return
    for i, udh in enumerate(seg.udhs):
        ies, length = parse_udh(udh)
        assert length == len(udh)
        bits = 16 if method is ConcatMethod.UDH16 else 8
        assert concat_of(ies) == Concat(ref, seg.total, i + 1, bits)
        iei = IEI_CONCAT_16 if bits == 16 else IEI_CONCAT_8
        assert [ie.iei for ie in ies].count(iei) == 1


# -- properties -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(any_text, method_and_ref)
def test_parts_join_back_to_the_text(text: str, mr: tuple[ConcatMethod, int]) -> None:
    method, ref = mr
    seg = segment(text, ref=ref, method=method)
    check_segments(seg, text, method, ref)


@settings(max_examples=150, deadline=None)
@given(boundary_text, method_and_ref)
def test_escape_and_surrogate_pairs_at_part_boundaries(
    text: str, mr: tuple[ConcatMethod, int]
) -> None:
    method, ref = mr
    seg = segment(text, ref=ref, method=method)
    assert seg.encoding is (Encoding.GSM7 if representable_gsm(text) else Encoding.UCS2)
    check_segments(seg, text, method, ref)


@settings(max_examples=150, deadline=None)
@given(st.one_of(gsm_text, long_gsm, escape_at_boundary(), escape_runs), method_and_ref)
def test_forced_gsm7(text: str, mr: tuple[ConcatMethod, int]) -> None:
    method, ref = mr
    seg = segment(text, ref=ref, method=method, encoding=Encoding.GSM7)
    assert seg.encoding is Encoding.GSM7
    check_segments(seg, text, method, ref)


@settings(max_examples=150, deadline=None)
@given(st.one_of(any_text, boundary_text), method_and_ref)
def test_forced_ucs2(text: str, mr: tuple[ConcatMethod, int]) -> None:
    method, ref = mr
    seg = segment(text, ref=ref, method=method, encoding=Encoding.UCS2)
    assert seg.encoding is Encoding.UCS2
    check_segments(seg, text, method, ref)


@settings(max_examples=150, deadline=None)
@given(latin1_text, method_and_ref)
def test_forced_latin1(text: str, mr: tuple[ConcatMethod, int]) -> None:
    method, ref = mr
    seg = segment(text, ref=ref, method=method, encoding=Encoding.LATIN1)
    assert seg.encoding is Encoding.LATIN1
    check_segments(seg, text, method, ref)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), mixed_text, long_mixed, gsm_text))
def test_cheapest_encoding_is_chosen(text: str) -> None:
    # GSM 7-bit whenever the default alphabet has every character, UCS-2 otherwise.
    want = Encoding.GSM7 if representable_gsm(text) else Encoding.UCS2
    seg = segment(text, ref=7)
    assert seg.encoding is want
    assert seg.alphabet is DEFAULT
    encoding, body, alphabet = choose_encoding(text)
    assert (encoding, alphabet) == (want, DEFAULT)
    assert body == b"".join(seg.bodies)


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x8a", "\x9f"])
def test_c1_control_characters_go_as_ucs2(char: str) -> None:
    # U+0080..U+009F are not in the GSM alphabet: the text must travel as UCS-2 and come back.
    text = f"ok {char} done"
    seg = segment(text, ref=1)
    assert seg.encoding is Encoding.UCS2
    assert "".join(decoded_parts(seg)) == text


# -- exact limits, deterministic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "sizes"),
    [
        ("a" * 160, Encoding.GSM7, [160]),
        ("a" * 161, Encoding.GSM7, [153, 8]),
        ("a" * 306, Encoding.GSM7, [153, 153]),
        ("a" * 307, Encoding.GSM7, [153, 153, 1]),
        ("\u20ac" * 80, Encoding.GSM7, [160]),  # 80 escape pairs fill one SMS exactly
        ("a" * 152 + "\u20ac" + "b" * 9, Encoding.GSM7, [152, 11]),  # escape would end part 1
        ("a" * 151 + "\u20ac" + "b" * 9, Encoding.GSM7, [153, 9]),
        ("\u4e2d" * 70, Encoding.UCS2, [140]),
        ("\u4e2d" * 71, Encoding.UCS2, [134, 8]),
        ("\u4e2d" * 66 + "\U0001f600" + "x" * 9, Encoding.UCS2, [132, 22]),  # high surrogate 67th
        ("\u4e2d" * 65 + "\U0001f600" + "x" * 9, Encoding.UCS2, [134, 18]),
        ("\U0001f600" * 35, Encoding.UCS2, [140]),
        ("\U0001f600" * 36, Encoding.UCS2, [132, 12]),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_exact_part_sizes_udh8(text: str, encoding: Encoding, sizes: list[int]) -> None:
    seg = segment(text, ref=9)
    assert seg.encoding is encoding
    assert [len(b) for b in seg.bodies] == sizes
    assert "".join(decoded_parts(seg)) == text


@pytest.mark.parametrize(
    ("method", "encoding", "text", "first"),
    [
        (ConcatMethod.UDH16, None, "a" * 400, 152),
        (ConcatMethod.UDH16, None, "\u4e2d" * 200, 132),
        (ConcatMethod.UDH16, Encoding.LATIN1, "\u00e7" * 400, 133),
        (ConcatMethod.UDH8, Encoding.LATIN1, "\u00e7" * 400, 134),
        (ConcatMethod.SAR, None, "a" * 400, 153),
        (ConcatMethod.SAR, None, "\u4e2d" * 200, 134),
        (ConcatMethod.SAR, Encoding.LATIN1, "\u00e7" * 400, 134),
    ],
)
def test_first_part_is_full(
    method: ConcatMethod, encoding: Encoding | None, text: str, first: int
) -> None:
    seg = segment(text, ref=200, method=method, encoding=encoding)
    assert len(seg.bodies[0]) == first
    assert "".join(decoded_parts(seg)) == text


def test_single_part_has_no_header_and_latin1_single_limit() -> None:
    seg = segment("\u00e7" * 140, encoding=Encoding.LATIN1, ref=3)
    assert (seg.total, seg.udhs, seg.has_udh) == (1, (b"",), False)
    assert segment("\u00e7" * 141, encoding=Encoding.LATIN1, ref=3).total == 2


def test_libosmocore_concatenated_message_golden() -> None:
    # osmocom/libosmocore tests/sms/sms_test.c: the same text cut into 153 + 40 septets with the
    # UDH 05 00 03 6F 02 0x and one fill bit.
    text = (
        "this is a testmessage. this is a testmessage. this is a testmessage. this is a "
        "testmessage. this is a testmessage. this is a testmessage. cut here .....: this is a "
        "second testmessage. end here."
    )
    seg = segment(text, ref=0x6F)
    assert seg.udhs == (bytes.fromhex("0500036F0201"), bytes.fromhex("0500036F0202"))
    assert decoded_parts(seg) == [
        text[:153],
        " this is a second testmessage. end here.",
    ]
    assert pack_septets(seg.bodies[1], 1) == bytes.fromhex(
        "4074747A0E4ACF4161D0BC3C7EBBC9207A794E6F97E7F3F0B9EC0295DD6410BA2C2FBB00"
    )


def test_sar_parts_leave_room_for_a_16bit_reference() -> None:
    # SMPP v3.4 5.3.2.22: sar_msg_ref_num is 2 octets, and ReferenceAllocator(bits=16) hands out
    # SAR references up to 65535. The SMSC can only carry a reference above 255 in the 16-bit
    # concatenation IE (TS 23.040 9.2.3.24.8, 7 octets of UDH), so the parts must be sized for it:
    # 152 septets, or the SMSC's TP-UD would be 7 + ceil(153 * 7 / 8) = 141 octets.
    seg = segment("a" * 400, ref=300, method=ConcatMethod.SAR)
    assert max(len(b) for b in seg.bodies) <= 152


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [ConcatMethod.UDH8, ConcatMethod.UDH16, ConcatMethod.SAR])
def test_message_too_long_is_refused_not_truncated(method: ConcatMethod) -> None:
    per = 152 if method is ConcatMethod.UDH16 else 153
    text = "x" * (per * 4)  # exactly 4 parts
    assert segment(text, ref=1, method=method, max_parts=4).total == 4
    with pytest.raises(MessageTooLong) as exc:
        segment(text + "y", ref=1, method=method, max_parts=4)
    assert (exc.value.parts_needed, exc.value.max_parts) == (5, 4)
    with pytest.raises(MessageTooLong) as exc:
        segment("x" * (per * 255 + 1), ref=1, method=method)
    assert (exc.value.parts_needed, exc.value.max_parts) == (256, 255)
    assert segment("x" * (per * 255), ref=1, method=method).total == 255


def test_max_parts_one() -> None:
    assert segment("a" * 160, max_parts=1).total == 1
    with pytest.raises(MessageTooLong):
        segment("a" * 161, max_parts=1)
    with pytest.raises(MessageTooLong):
        segment("\u4e2d" * 71, max_parts=1)


@pytest.mark.parametrize(
    ("method", "ref"),
    [
        (ConcatMethod.UDH8, 256),
        (ConcatMethod.UDH8, -1),
        (ConcatMethod.UDH16, 65536),
        (ConcatMethod.UDH16, -1),
        (ConcatMethod.SAR, 65536),
        (ConcatMethod.PAYLOAD, 65536),
    ],
)
def test_reference_out_of_range(method: ConcatMethod, ref: int) -> None:
    with pytest.raises(ValueError):
        segment("a" * 200, ref=ref, method=method)


@pytest.mark.parametrize(("method", "ref"), [(ConcatMethod.UDH8, 255), (ConcatMethod.UDH16, 65535)])
def test_reference_at_the_top_of_its_range(method: ConcatMethod, ref: int) -> None:
    seg = segment("a" * 200, ref=ref, method=method)
    bits = 16 if method is ConcatMethod.UDH16 else 8
    assert concat_of(parse_udh(seg.udhs[1])[0]) == Concat(ref, 2, 2, bits)


def test_forced_encoding_that_cannot_carry_the_text() -> None:
    with pytest.raises(UnencodableText) as exc:
        segment("ab\u4e2d", encoding=Encoding.GSM7)
    assert exc.value.position == 2
    with pytest.raises(UnencodableText) as exc:
        segment("abc\u20ac", encoding=Encoding.LATIN1)
    assert exc.value.position == 3


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(UnencodableText) as exc:
        segment("ab\ud83d")
    assert exc.value.position == 2


# -- the benchmark corpus -------------------------------------------------------------------------

CORPUS_MD5 = "1fdb7d0b380d768c8d6c556b6a3f1cc1"  # ../shared/bench/README.md


@pytest.fixture(scope="module")
def corpus(corpus_path: Path) -> list[dict[str, str]]:
    raw = corpus_path.read_bytes()
    assert hashlib.md5(raw).hexdigest() == CORPUS_MD5
    messages: list[dict[str, str]] = json.loads(raw)["messages"]
    return messages


def test_corpus_segment_count(corpus: list[dict[str, str]]) -> None:
    # README: "Encoded optimally (GSM-7 where representable, else UCS-2; 8-bit-reference UDH;
    # 153 septets or 67 UTF-16 units per part) it makes 21,829 segments."
    assert len(corpus) == 10_000
    assert sum(segment(m["text"], ref=1).total for m in corpus) == 21_829


def test_corpus_round_trips(corpus: list[dict[str, str]]) -> None:
    wrong = []
    for n, m in enumerate(corpus):
        seg = segment(m["text"], ref=1)
        want = Encoding.GSM7 if m["kind"].startswith("gsm") else Encoding.UCS2
        if seg.encoding is not want or "".join(decoded_parts(seg)) != m["text"]:
            wrong.append(n)
    assert wrong == []


# -- national language tables ---------------------------------------------------------------------

TURKISH = 0x01  # national language identifier, TS 23.038 6.2.1.2.4


def shift_ies(udh: bytes) -> dict[int, bytes]:
    ies, _ = parse_udh(udh)
    return {ie.iei: ie.data for ie in ies if ie.iei in (IEI_SINGLE_SHIFT, IEI_LOCKING_SHIFT)}


@pytest.mark.parametrize("repeat", [1, 20])
def test_turkish_text_uses_a_national_alphabet(repeat: int) -> None:
    national = pytest.importorskip("gateway.sms.national")
    # 'Şişli'de güzel ğ' with an ASCII apostrophe: every character is in the Turkish tables
    # (TS 23.038 A.2.1 single shift: Ş ş ğ; A.3.1 locking shift: ç ğ ı İ ş Ş ü ...).
    text = "\u015ei\u015fli'de g\u00fczel \u011f\u0131 " * repeat
    alphabets = national.candidates([national.NationalLanguage.TURKISH])
    seg = segment(text, ref=5, alphabets=alphabets)
    assert seg.encoding is Encoding.GSM7
    assert seg.alphabet is not DEFAULT
    expected = {}
    if seg.alphabet.single_shift:
        expected[IEI_SINGLE_SHIFT] = bytes([TURKISH])
    if seg.alphabet.locking_shift:
        expected[IEI_LOCKING_SHIFT] = bytes([TURKISH])
    assert expected, "a national alphabet without a shift IE"
    for i, udh in enumerate(seg.udhs):
        assert shift_ies(udh) == expected
        assert len(tp_ud(seg, i)) <= USER_DATA
        if seg.total > 1:
            assert concat_of(parse_udh(udh)[0]) == Concat(5, seg.total, i + 1, 8)
    assert "".join(decoded_parts(seg)) == text
    # Without the national tables the same text must go as UCS-2.
    assert segment(text, ref=5).encoding is Encoding.UCS2


def test_typographic_apostrophe_is_in_no_turkish_table() -> None:
    national = pytest.importorskip("gateway.sms.national")
    # U+2019 RIGHT SINGLE QUOTATION MARK is in neither the default nor a Turkish table
    # (TS 23.038 A.2.1, A.3.1), so this text can only go as UCS-2.
    text = "\u015ei\u015fli\u2019de \u011f\u00fczel"
    seg = segment(text, ref=5, alphabets=national.candidates([national.NationalLanguage.TURKISH]))
    assert (seg.encoding, seg.alphabet, seg.udhs) == (Encoding.UCS2, DEFAULT, (b"",))
    assert "".join(decoded_parts(seg)) == text


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a" * 160, 1),  # the default alphabet: one SMS, no UDH at all
        ("\u015f" * 100, 1),  # 100 septets with the locking shift, 200 with the single shift
    ],
    ids=["default-alphabet", "turkish-locking-shift"],
)
def test_forced_gsm7_with_national_candidates_is_as_cheap_as_automatic(
    text: str, parts: int
) -> None:
    national = pytest.importorskip("gateway.sms.national")
    alphabets = national.candidates([national.NationalLanguage.TURKISH])
    auto = segment(text, ref=5, alphabets=alphabets)
    forced = segment(text, ref=5, alphabets=alphabets, encoding=Encoding.GSM7)
    assert auto.encoding is forced.encoding is Encoding.GSM7
    assert "".join(decoded_parts(forced)) == text
    assert (auto.total, forced.total) == (parts, parts)
    if representable_gsm(text):
        assert forced.alphabet is DEFAULT
        assert forced.udhs == (b"",)


TURKISH_PIECES = "a Z0@\u00fc\u00e7\u015e\u015f\u011e\u011f\u0130\u0131\u20ac["
turkish_only = of_length(
    0, 500, lambda n: st.text(alphabet=st.sampled_from(TURKISH_PIECES), min_size=n, max_size=n)
)
turkish_text = st.one_of(turkish_only, turkish_only.map(lambda t: t + "\u4e2d"))


@settings(max_examples=100, deadline=None)
@given(turkish_text, method_and_ref)
def test_national_alphabet_parts(text: str, mr: tuple[ConcatMethod, int]) -> None:
    national = pytest.importorskip("gateway.sms.national")
    method, ref = mr
    alphabets = national.candidates([national.NationalLanguage.TURKISH])
    seg = segment(text, ref=ref, method=method, alphabets=alphabets)
    check_segments(seg, text, method, ref)
    if seg.encoding is Encoding.GSM7 and seg.alphabet is not DEFAULT:
        want = {}
        if seg.alphabet.single_shift:
            want[IEI_SINGLE_SHIFT] = bytes([TURKISH])
        if seg.alphabet.locking_shift:
            want[IEI_LOCKING_SHIFT] = bytes([TURKISH])
        assert want
        assert all(shift_ies(u) == want for u in seg.udhs)
    if "\u4e2d" in text:
        assert seg.encoding is Encoding.UCS2


# -- cutting bytes: cut_body / part_capacity ------------------------------------------------------


@given(
    text=st.text(st.sampled_from(list("ab €[]é😀中")), max_size=700),
    method=st.sampled_from([ConcatMethod.UDH8, ConcatMethod.UDH16]),
)
def test_cut_body_cuts_like_segment(text: str, method: ConcatMethod) -> None:
    segs = segment(text, ref=1, method=method)
    body = b"".join(segs.bodies)
    udh_len = 6 if method is ConcatMethod.UDH8 else 7
    if segs.total == 1:
        assert len(body) <= part_capacity(segs.encoding)
    else:
        assert tuple(cut_body(body, segs.encoding, udh_len)) == segs.bodies


def test_part_capacity_table() -> None:
    assert [part_capacity(Encoding.GSM7, n) for n in (0, 6, 7)] == [160, 153, 152]
    assert [part_capacity(Encoding.UCS2, n) for n in (0, 6, 7)] == [140, 134, 132]
    assert [part_capacity(Encoding.BINARY, n) for n in (0, 6, 7)] == [140, 134, 133]


def test_cut_body_refuses_a_header_that_leaves_no_room() -> None:
    with pytest.raises(SmsError):
        cut_body(b"\x1b" * 10, Encoding.GSM7, 138)
