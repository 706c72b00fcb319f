"""GSM 03.38 (3GPP TS 23.038) 7-bit alphabets and septet packing.

Theory of operation
-------------------
Text is encoded to *unpacked septets*: one septet per byte, an extension character written as
the escape 0x1B followed by its code. That is what SMPP carries in short_message with
data_coding 0, what the segmenter counts (an escape pair costs two) and what `pack_septets`
turns into the packed octets of a GSM 03.40 TP-UD.

Speed comes from doing the per-character work in C:

* ASCII text (most traffic) is one `str.encode('ascii')` plus one `bytes.translate` through a
  256-byte table that maps each byte to its septet, to 0x80 (needs an escape) or to 0xFF (not in
  the alphabet).
* Other text is first stripped of the alphabet's few non-Latin-1 characters (Greek capitals, €)
  by `str.replace`, then encoded as Latin-1 and translated the same way.
* Decoding is `codecs.charmap_decode` through a 256-character table; escapes are rewritten to
  single high bytes first so they decode in the same pass.
* Packing treats the septets as one little-endian integer, squeezes each group of eight 8-bit
  lanes into 56 bits with three mask-and-shift steps, and deletes the empty top octet of each
  group with one slice deletion (3GPP TS 23.038 section 6.1.2.1). Unpacking reverses log2(n) steps.

National language tables (TS 23.038 section 6.2) are `Alphabet` instances built in
`gateway.sms.national`; the default alphabet is `DEFAULT`.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

from gateway.sms.errors import UnencodableText

__all__ = [
    "DEFAULT",
    "DEFAULT_BASIC",
    "DEFAULT_EXTENSION",
    "ESCAPE",
    "Alphabet",
    "decode_gsm7",
    "encode_gsm7",
    "gsm7_septets",
    "pack_septets",
    "try_encode_gsm7",
    "unpack_septets",
]

ESCAPE: Final = 0x1B

# TS 23.038 section 6.2.1, the default alphabet; index = septet. 0x1B is the escape to the
# extension table and stands for no character of its own.
DEFAULT_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

# TS 23.038 section 6.2.1.1, the default extension table: code after 0x1B -> character.
DEFAULT_EXTENSION: Mapping[int, str] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_NEEDS_ESCAPE: Final = 0x80
_NOT_IN_ALPHABET: Final = 0xFF
_UNDEFINED: Final = "\ufffe"  # charmap_decode's "no mapping" marker
_NO_LATIN1: Final = 0x80


class Alphabet:
    """One GSM 7-bit alphabet: a locking-shift (basic) table plus a single-shift table.

    Args:
        basic: 128 characters, index = septet; index 0x1B is the escape and is ignored.
        extension: code after the escape -> character.
        locking_shift: national language identifier of the basic table (0 = default).
        single_shift: national language identifier of the extension table (0 = default).
        name: for messages and repr.
    """

    __slots__ = (
        "_byte_table",
        "_decode_table",
        "_escape_map",
        "_latin1_raw",
        "_latin1_table",
        "_non_latin1",
        "_outside",
        "_subst_table",
        "basic",
        "extension",
        "locking_shift",
        "name",
        "single_shift",
    )

    def __init__(
        self,
        basic: str,
        extension: Mapping[int, str],
        *,
        locking_shift: int = 0,
        single_shift: int = 0,
        name: str = "default",
    ) -> None:
        if len(basic) != 128:
            raise ValueError(f"basic table of {name} has {len(basic)} characters, not 128")
        self.basic = basic
        self.extension = dict(extension)
        self.locking_shift = locking_shift
        self.single_shift = single_shift
        self.name = name

        # char -> septet(s); the basic table wins where a character is in both.
        septets: dict[str, bytes] = {}
        for code, ch in sorted(self.extension.items()):
            septets.setdefault(ch, bytes((ESCAPE, code)))
        for code, ch in enumerate(basic):
            if code != ESCAPE:
                septets[ch] = bytes((code,))

        # Characters outside Latin-1 get a private stand-in from U+0080..U+009F (C1 controls,
        # never in an alphabet), so the rest of the text can go through a byte table.
        outside = sorted(ch for ch in septets if ord(ch) > 0xFF)
        c1 = [chr(c) for c in range(0x80, 0xA0) if chr(c) not in septets]
        if len(outside) > len(c1):
            raise ValueError(f"alphabet {name} has too many characters outside Latin-1")
        self._non_latin1 = tuple(zip(outside, c1, strict=False))
        stand_in = {ch: sub for ch, sub in self._non_latin1}
        # Finds a character that is neither Latin-1 nor one of this alphabet's non-Latin-1 ones;
        # C1 controls count as outside, so a real one is never mistaken for a stand-in.
        self._outside = re.compile("[^\x00-\x7f\xa0-\xff" + re.escape("".join(outside)) + "]")

        table = bytearray([_NOT_IN_ALPHABET]) * 256
        escape_map: dict[int, bytes] = {}
        for ch, sep in septets.items():
            b = ord(stand_in.get(ch, ch))
            if len(sep) == 1:
                table[b] = sep[0]
            else:
                table[b] = _NEEDS_ESCAPE
                escape_map[b] = sep
        # With stand-ins substituted (only after `_outside` found no C1 control in the text).
        self._subst_table = bytes(table)
        # Without: a C1 control in Latin-1 text is just not in the alphabet.
        for _ch, sub in self._non_latin1:
            table[ord(sub)] = _NOT_IN_ALPHABET
        self._byte_table = bytes(table)
        self._escape_map = escape_map

        # Decode table: 0x00-0x7F basic; 0x80|code = extension character, for escapes that
        # were folded into one byte before decoding.
        dec = [_UNDEFINED] * 256
        for code, ch in enumerate(basic):
            dec[code] = ch
        # An escape followed by a code with no extension character shows the basic one
        # (TS 23.038 section 6.2.1.1 note 3).
        for code in range(128):
            dec[0x80 | code] = self.extension.get(code, basic[code])
        dec[0x80 | ESCAPE] = " "  # escape-escape: reserved for a further table; show a space
        self._decode_table = "".join(dec)
        # The same, as Latin-1 octets where the character has one; 0x80 (a C1 control, never
        # in an alphabet) where it has not, to send the text through `_decode_table` instead.
        self._latin1_table = bytes(
            ord(ch) if ord(ch) <= 0xFF and not 0x80 <= ord(ch) <= 0x9F else _NO_LATIN1 for ch in dec
        )
        # For septets as they come: the escape and bytes above 0x7F (not septets) also go to
        # 0x80, so one translate and one search decide whether the fast path applies.
        raw = bytearray(self._latin1_table)
        raw[ESCAPE] = _NO_LATIN1
        raw[0x80:] = bytes([_NO_LATIN1]) * 128
        self._latin1_raw = bytes(raw)

    def __repr__(self) -> str:
        return f"Alphabet({self.name!r})"

    # -- encoding ---------------------------------------------------------------------------

    def try_encode(self, text: str) -> bytes | None:
        """Unpacked septets for `text`, or None when a character is not in this alphabet."""
        table = self._byte_table
        if text.isascii():
            raw = text.encode("ascii")
        else:
            # "ignore" never raises: a failed strict encode costs ~1 us for the exception alone.
            raw = text.encode("latin-1", "ignore")
            if len(raw) != len(text):
                if self._outside.search(text):
                    return None  # CJK, emoji, Cyrillic...: the common way out, and an early one
                for ch, sub in self._non_latin1:
                    if ch in text:
                        text = text.replace(ch, sub)
                raw = text.encode("latin-1")
                table = self._subst_table
        out = raw.translate(table)
        if out.isascii():
            return out  # every character a basic one: one check for the usual case
        if _NOT_IN_ALPHABET in out:
            return None
        if _NEEDS_ESCAPE in out:
            return self._expand_escapes(raw, out)
        return out

    def _expand_escapes(self, raw: bytes, out: bytes) -> bytes:
        # Rare path: rewrite each marked byte as its escape pair.
        esc = self._escape_map
        buf = bytearray()
        start = 0
        pos = out.find(_NEEDS_ESCAPE)
        while pos >= 0:
            buf += out[start:pos]
            buf += esc[raw[pos]]
            start = pos + 1
            pos = out.find(_NEEDS_ESCAPE, start)
        buf += out[start:]
        return bytes(buf)

    def encode(self, text: str) -> bytes:
        """Unpacked septets for `text`.

        Raises:
            UnencodableText: a character is not in this alphabet (its position is given).
        """
        out = self.try_encode(text)
        if out is None:
            for i, ch in enumerate(text):
                if self.try_encode(ch) is None:
                    raise UnencodableText(
                        f"character {ch!r} (U+{ord(ch):04X}) at position {i} is not in the "
                        f"GSM 7-bit {self.name} alphabet",
                        i,
                    )
            raise AssertionError("unreachable")  # pragma: no cover
        return out

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, septets: bytes) -> str:
        """Text for unpacked septets. Bytes above 0x7F are an error (they are not septets).

        Raises:
            UnencodableText: a byte above 0x7F.
        """
        latin1 = septets.translate(self._latin1_raw)
        if _NO_LATIN1 not in latin1:
            return latin1.decode("latin-1")  # no escape, nothing outside Latin-1: the usual
        if not septets.isascii():
            pos = next(i for i, b in enumerate(septets) if b > 0x7F)
            raise UnencodableText(
                f"byte 0x{septets[pos]:02X} at position {pos} is not a septet", pos
            )
        if ESCAPE in septets:
            septets = _fold_escapes(septets)  # escape pairs become single bytes 0x80|code
        # Two passes in C when every character is in Latin-1 (no Greek capital, no €).
        latin1 = septets.translate(self._latin1_table)
        if _NO_LATIN1 not in latin1:
            return latin1.decode("latin-1")
        return codecs.charmap_decode(septets, "strict", self._decode_table)[0]


_FOLDED: Final = tuple(bytes((0x80 | c,)) for c in range(128))
_ESCAPE_ESCAPE: Final = bytes((0x80 | ESCAPE,))


def _fold_escapes(septets: bytes) -> bytes:
    """Rewrite each escape pair (0x1B, c) as the single byte 0x80|c; drop a lone escape at the
    very end. One split and one join, with a step per escape (no per-septet work)."""
    parts = septets.split(b"\x1b")
    out = [parts[0]]
    i, n = 1, len(parts)
    while i < n:
        part = parts[i]
        if part:
            out.append(_FOLDED[part[0]])
            out.append(part[1:])
            i += 1
        elif i + 1 < n:  # escape, escape: a pair of its own, then the next part as it is
            out.append(_ESCAPE_ESCAPE)
            out.append(parts[i + 1])
            i += 2
        else:
            i += 1
    return b"".join(out)


DEFAULT: Final = Alphabet(DEFAULT_BASIC, DEFAULT_EXTENSION)


def try_encode_gsm7(text: str, alphabet: Alphabet = DEFAULT) -> bytes | None:
    """Unpacked septets, or None when `text` is not representable. See `Alphabet.try_encode`."""
    return alphabet.try_encode(text)


def encode_gsm7(text: str, alphabet: Alphabet = DEFAULT) -> bytes:
    """Unpacked septets for `text`. Raises `UnencodableText`. See `Alphabet.encode`."""
    return alphabet.encode(text)


def decode_gsm7(septets: bytes, alphabet: Alphabet = DEFAULT) -> str:
    """Text for unpacked septets. See `Alphabet.decode`."""
    return alphabet.decode(septets)


def gsm7_septets(text: str, alphabet: Alphabet = DEFAULT) -> int | None:
    """How many septets `text` costs (escapes count two), or None when not representable."""
    out = alphabet.try_encode(text)
    return None if out is None else len(out)


# -- packing ----------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _pack_plan(n: int) -> tuple[tuple[int, int, int], ...]:
    """Masks to squeeze n 8-bit lanes holding 7 bits into 7n contiguous bits."""
    steps = []
    width, valid, total = 8, 7, n * 8
    while width < total:
        lanes = (total + 2 * width - 1) // (2 * width)
        unit = (1 << valid) - 1
        low = int.from_bytes(unit.to_bytes(2 * width // 8, "little") * lanes, "little")
        steps.append((low, low << width, width - valid))
        width, valid = width * 2, valid * 2
    return tuple(steps)


@lru_cache(maxsize=512)
def _unpack_plan(n: int) -> tuple[tuple[int, int, int], ...]:
    return tuple(reversed(_pack_plan(n)))


# Lane masks by lane count, for pack_septets. A plain dict (cheaper to query than lru_cache,
# which also thrashed: a four-part message has up to 80 lane counts, the cache held 64) that is
# emptied when full, so it stays small: 256 entries cover every message of up to 12 parts.
_LANE_MASKS: Final[dict[int, tuple[int, int, int, int, int, int]]] = {}
_MAX_LANE_PLANS: Final = 256


def _lane_masks(lanes: int) -> tuple[int, int, int, int, int, int]:
    """For `lanes` groups of 8 septets: the masks that squeeze each 64-bit lane's eight 7-bit
    values into its low 56 bits."""
    masks = _LANE_MASKS.get(lanes)
    if masks is None:
        if len(_LANE_MASKS) >= _MAX_LANE_PLANS:
            _LANE_MASKS.clear()
        masks = _LANE_MASKS[lanes] = (
            _every_lane(0x007F007F007F007F, lanes),
            _every_lane(0x7F007F007F007F00, lanes),
            _every_lane(0x00003FFF00003FFF, lanes),
            _every_lane(0x3FFF00003FFF0000, lanes),
            _every_lane(0x000000000FFFFFFF, lanes),
            _every_lane(0x0FFFFFFF00000000, lanes),
        )
    return masks


def _every_lane(mask: int, lanes: int) -> int:
    return int.from_bytes(mask.to_bytes(8, "little") * lanes, "little")


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets into octets, low bits first, after `fill_bits` zero bits.

    The fill bits align text that follows a user data header to a septet boundary
    (TS 23.040 section 9.2.3.24).
    """
    n = len(septets)
    lanes = (n + 7) >> 3
    # Three mask-and-shift steps pack each group of 8 septets into 7 octets of a 64-bit lane;
    # deleting every eighth octet (a slice deletion, one pass in C) drops each lane's empty top.
    a1, b1, a2, b2, a3, b3 = _lane_masks(lanes)
    x = int.from_bytes(septets, "little")
    x = (x & a1) | ((x & b1) >> 1)
    x = (x & a2) | ((x & b2) >> 2)
    x = (x & a3) | ((x & b3) >> 4)
    buf = bytearray(x.to_bytes(lanes << 3, "little"))
    del buf[7::8]
    size = (7 * n + fill_bits + 7) >> 3
    if fill_bits:
        return (int.from_bytes(buf, "little") << fill_bits).to_bytes(size, "little")
    del buf[size:]
    return bytes(buf)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Unpack `count` septets from packed octets, skipping `fill_bits` leading bits.

    Raises:
        ValueError: `data` holds fewer than `count` septets.
    """
    if 7 * count + fill_bits > 8 * len(data):
        raise ValueError(f"{len(data)} octets hold fewer than {count} septets")
    x = (int.from_bytes(data, "little") >> fill_bits) & ((1 << (7 * count)) - 1)
    for low, high, shift in _unpack_plan(count):
        x = (x & low) | ((x & (high >> shift)) << shift)
    return x.to_bytes(count, "little")
