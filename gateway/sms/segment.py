"""Text -> encoded parts of at most one SMS each.

Theory of operation
-------------------
One SMS carries 140 octets of user data (3GPP TS 23.040 section 9.2.3.24). What fits depends on
the encoding and on the header that rides along:

=========  ==========  ======================  ========================
encoding   no UDH      8-bit concat (6 octets)  16-bit concat (7 octets)
=========  ==========  ======================  ========================
GSM 7-bit  160 septets 153 septets              152 septets
UCS-2      70 units    67 units                 66 units
8-bit      140 octets  134 octets               133 octets
=========  ==========  ======================  ========================

National language shift elements add 3 octets each to the header (TS 23.040 9.2.3.24.15/16).

We count what the handset counts: septets (an escape pair is two) and UTF-16 code units (a
character outside the BMP is a surrogate pair, two units). A part never ends between the two
septets of an escape pair nor between the two units of a surrogate pair; the cut moves one unit
back instead. We never truncate: past `max_parts` we raise `MessageTooLong`.

The concatenation reference is the caller's (see `gateway.sms.refs.ReferenceAllocator`): the
segmenter is a pure function of its arguments.

Carrying long messages over SMPP (SMPP v3.4 section 4.4.1 / 5.3.2.22-24): UDH in short_message
with esm_class 0x40, SAR TLVs (the parts carry no UDH, the SMSC builds it), or the whole body in
one message_payload TLV. `ConcatMethod` picks one; the parts' sizes are the same for UDH and SAR,
because the SMSC has to fit its UDH in.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from enum import Enum
from typing import Final, NamedTuple

from gateway.sms.coding import Encoding, encode_text
from gateway.sms.errors import MessageTooLong, SmsError
from gateway.sms.gsm7 import DEFAULT, ESCAPE, Alphabet
from gateway.sms.udh import IEI_LOCKING_SHIFT, IEI_SINGLE_SHIFT, build_udh

__all__ = [
    "MAX_PAYLOAD",
    "ConcatMethod",
    "Segments",
    "choose_encoding",
    "cut_body",
    "part_capacity",
    "plan",
    "segment",
    "segment_binary",
    "udh8_headers",
]

MAX_PAYLOAD: Final = 65535  # message_payload TLV length limit (SMPP v3.4 5.3.2.32)
_USER_DATA: Final = 140


class ConcatMethod(Enum):
    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


# Enum member lookups cost ~100 ns each on CPython 3.11; the hot path uses these aliases.
_GSM7: Final = Encoding.GSM7
_UCS2: Final = Encoding.UCS2
_BINARY: Final = Encoding.BINARY
_UDH8: Final = ConcatMethod.UDH8
_UDH16: Final = ConcatMethod.UDH16
_SAR: Final = ConcatMethod.SAR
_PAYLOAD: Final = ConcatMethod.PAYLOAD
_SEQ: Final = tuple(bytes((i,)) for i in range(256))
_NO_UDH: Final = (b"",)
_new: Final = tuple.__new__
_try_default: Final = DEFAULT.try_encode
# The codec function itself: str.encode("utf-16-be") looks the codec up by name and goes
# through a Python-level wrapper on every call.
_utf16be_encode: Final = codecs.utf_16_be_encode


class Segments(NamedTuple):
    """A message cut into parts.

    Attributes:
        encoding: what the bodies are encoded with.
        bodies: each part's body without any UDH: unpacked septets for GSM 7-bit, else octets.
        udhs: each part's UDH including the UDHL octet; b"" where a part has none.
        ref: the concatenation reference (meaningful when there is more than one part).
        method: how the parts are tied together.
        alphabet: the GSM 7-bit alphabet used (national language shifts), else `DEFAULT`.
    """

    encoding: Encoding
    bodies: tuple[bytes, ...]
    udhs: tuple[bytes, ...]
    ref: int
    method: ConcatMethod
    alphabet: Alphabet = DEFAULT

    @property
    def total(self) -> int:
        return len(self.bodies)

    @property
    def has_udh(self) -> bool:
        return bool(self.udhs[0])

    def short_messages(self) -> list[bytes]:
        """Each part's short_message: UDH followed by the body."""
        return [u + b for u, b in zip(self.udhs, self.bodies, strict=True)]

    def units(self, index: int) -> int:
        """Septets (GSM 7-bit) or octets in part `index`'s body, the UDH not counted."""
        return len(self.bodies[index])


def _shift_ies(alphabet: Alphabet) -> list[tuple[int, bytes]]:
    ies = []
    if alphabet.single_shift:
        ies.append((IEI_SINGLE_SHIFT, bytes((alphabet.single_shift,))))
    if alphabet.locking_shift:
        ies.append((IEI_LOCKING_SHIFT, bytes((alphabet.locking_shift,))))
    return ies


def _capacity(encoding: Encoding, udh_len: int) -> int:
    """Body units that fit beside a UDH of `udh_len` octets (0 = no UDH)."""
    octets = _USER_DATA - udh_len
    if encoding is _GSM7:
        return octets * 8 // 7
    if encoding is _UCS2:
        return octets & ~1
    return octets


def _cuts(body: bytes, encoding: Encoding, per: int) -> list[bytes]:
    """`body` cut into pieces of at most `per` units, never inside an escape or surrogate pair."""
    parts = []
    n = len(body)
    start = 0
    if encoding is _GSM7:
        while n - start > per:
            end = start + per
            if body[end - 1] == ESCAPE:  # the escape's partner would start the next part
                end -= 1
            parts.append(body[start:end])
            start = end
    elif encoding is _UCS2:
        while n - start > per:
            end = start + per
            if 0xD8 <= body[end - 2] <= 0xDB:  # high surrogate: keep it with its low half
                end -= 2
            parts.append(body[start:end])
            start = end
    else:
        while n - start > per:
            parts.append(body[start : start + per])
            start += per
    parts.append(body[start:])
    return parts


def part_capacity(encoding: Encoding, udh_len: int = 0) -> int:
    """Body units (septets for GSM 7-bit, else octets) that fit one SMS beside a UDH of
    `udh_len` octets, UDHL included (0 = no UDH). Encodings other than GSM 7-bit count octets."""
    return _capacity(encoding, udh_len)


def cut_body(body: bytes, encoding: Encoding, udh_len: int) -> list[bytes]:
    """An encoded body cut into pieces that each fit one SMS beside a UDH of `udh_len` octets,
    by the same rules as `segment`: never inside an escape or surrogate pair. For callers that
    hold bytes rather than text (re-cutting a stored message for another carrier).

    Raises:
        SmsError: the header leaves too little room to cut at all.
    """
    per = _capacity(encoding, udh_len)
    if per < 4:  # the pair rules step back one unit; the cut must still move forward
        raise SmsError(f"a UDH of {udh_len} octets leaves no room for the body")
    return _cuts(body, encoding, per)


def choose_encoding(
    text: str, alphabets: Sequence[Alphabet] = ()
) -> tuple[Encoding, bytes, Alphabet]:
    """The cheapest encoding of `text`: GSM 7-bit in the default alphabet, else in one of
    `alphabets` (national language tables, the one giving the fewest septets), else UCS-2.

    Returns:
        The encoding, the encoded body and the alphabet.

    Raises:
        UnencodableText: the text holds a lone surrogate, which UTF-16 cannot carry.
    """
    body = DEFAULT.try_encode(text)
    if body is not None:
        return _GSM7, body, DEFAULT
    best = _best_gsm7(text, alphabets)
    if best is not None:
        ucs2_units = len(text.encode("utf-16-be", "surrogatepass")) // 2
        # A national table is only worth it when it needs no more parts than UCS-2.
        if _parts_needed(best[0], _GSM7, best[1]) <= _parts_needed(
            b"\0\0" * ucs2_units, _UCS2, DEFAULT
        ):
            return _GSM7, best[0], best[1]
    try:
        return _UCS2, _utf16be_encode(text)[0], DEFAULT
    except UnicodeEncodeError:
        return _UCS2, encode_text(text, _UCS2), DEFAULT  # raises UnencodableText, with position


def _best_gsm7(text: str, alphabets: Sequence[Alphabet]) -> tuple[bytes, Alphabet] | None:
    """The GSM 7-bit alphabet among the default one and `alphabets` that sends `text` in the
    fewest parts, then the fewest octets (shift elements cost 3 each); the earliest on a tie."""
    best: tuple[tuple[int, int], bytes, Alphabet] | None = None
    for alphabet in (DEFAULT, *alphabets):
        encoded = alphabet.try_encode(text)
        if encoded is None:
            continue
        shifts = 3 * (bool(alphabet.locking_shift) + bool(alphabet.single_shift))
        cost = (_parts_needed(encoded, _GSM7, alphabet), len(encoded) * 7 + shifts * 8)
        if best is None or cost < best[0]:
            best = (cost, encoded, alphabet)
    return None if best is None else (best[1], best[2])


def _parts_needed(body: bytes, encoding: Encoding, alphabet: Alphabet) -> int:
    shift = 3 * (bool(alphabet.locking_shift) + bool(alphabet.single_shift))
    if len(body) <= _capacity(encoding, shift + 1 if shift else 0):
        return 1
    return len(_cuts(body, encoding, _capacity(encoding, 6 + shift)))


def segment(
    text: str,
    *,
    ref: int = 0,
    encoding: Encoding | None = None,
    method: ConcatMethod = ConcatMethod.UDH8,
    max_parts: int = 255,
    alphabets: Sequence[Alphabet] = (),
) -> Segments:
    """Encode `text` and cut it into SMS-sized parts.

    Args:
        text: the message.
        ref: concatenation reference, 0..255 for UDH8, 0..65535 otherwise.
        encoding: force an encoding; None picks the cheapest that represents the text.
        method: UDH (8- or 16-bit reference), SAR TLVs, or one message_payload.
        max_parts: the most parts allowed (at most 255).
        alphabets: national language alphabets to try when the default one cannot carry the
            text (see `gateway.sms.national.candidates`).

    Returns:
        The parts; a message that fits one SMS has one part and no concatenation UDH.

    Raises:
        MessageTooLong: more than `max_parts` parts would be needed.
        UnencodableText: a forced encoding cannot represent the text.
    """
    if encoding is None and method is _UDH8 and not alphabets:
        # The common case: default alphabet or UCS-2, 8-bit reference.
        encoding, body, ends = plan(text, max_parts)
        if len(ends) == 1:
            return _new(Segments, (encoding, (body,), _NO_UDH, ref, method, DEFAULT))
        if not 0 <= ref <= 0xFF:
            raise ValueError(f"concatenation reference {ref} out of range for UDH8")
        starts = (0, *ends)
        bodies = tuple([body[starts[i] : e] for i, e in enumerate(ends)])
        return _new(
            Segments, (encoding, bodies, udh8_headers(ref, len(ends)), ref, method, DEFAULT)
        )
    if encoding is None:
        encoding, body, alphabet = choose_encoding(text, alphabets)
        return _segment_body(body, encoding, alphabet, ref, method, max_parts)
    if encoding is Encoding.GSM7 and alphabets:
        best = _best_gsm7(text, alphabets)
        if best is None:
            encode_text(text, _GSM7)  # raises UnencodableText, with the position
            raise AssertionError("unreachable")  # pragma: no cover
        body, alphabet = best
    else:
        alphabet = DEFAULT
        body = encode_text(text, encoding, alphabet)
    return _segment_body(body, encoding, alphabet, ref, method, max_parts)


# udh8_headers' results by ref << 8 | total. A dict with an int key rather than lru_cache,
# whose call costs about 1,000 instructions (compiled) against about 150; emptied when full.
_UDH8_HEADERS: Final[dict[int, tuple[bytes, ...]]] = {}
_MAX_CACHED: Final = 8192


def udh8_headers(ref: int, total: int) -> tuple[bytes, ...]:
    """The 8-bit reference concatenation UDH (UDHL included) of each of `total` parts."""
    key = (ref << 8) | total
    udhs = _UDH8_HEADERS.get(key)
    if udhs is None:
        if not (0 <= ref <= 0xFF and 0 <= total <= 0xFF):
            raise ValueError(f"UDH8 reference {ref} or total {total} is not an octet")
        if len(_UDH8_HEADERS) >= _MAX_CACHED:
            _UDH8_HEADERS.clear()
        head = bytes((5, 0x00, 0x03, ref, total))
        udhs = _UDH8_HEADERS[key] = tuple([head + _SEQ[i] for i in range(1, total + 1)])
    return udhs


def plan(text: str, max_parts: int = 255) -> tuple[Encoding, bytes, list[int]]:
    """How `segment` cuts `text` in the common case - default alphabet or UCS-2, 8-bit
    concatenation reference - without building the parts: the encoding, the encoded body and
    the end offset of each part in it (one offset when the text fits one SMS).

    For hot paths that write the parts straight into PDUs (`SmBuilder.build_text`,
    `tpdu.submit_tpdus`); `segment` itself uses it, so the cutting rules live only here.

    Raises:
        MessageTooLong: more than `max_parts` parts.
        UnencodableText: a lone surrogate.
    """
    body = _try_default(text)
    n: int
    if body is not None:
        n = len(body)
        if n <= 160:
            return _GSM7, body, [n]
        ends = []
        start = 0
        while n - start > 153:
            # One septet short when the part would end on an escape, so the pair stays whole.
            start += 153 if body[start + 152] != ESCAPE else 152
            ends.append(start)
        encoding = _GSM7
    else:
        try:
            body = _utf16be_encode(text)[0]
        except UnicodeEncodeError:
            body = encode_text(text, _UCS2)  # raises UnencodableText with the position
        n = len(body)
        if n <= 140:
            return _UCS2, body, [n]
        ends = []
        start = 0
        while n - start > 134:
            # Two octets short when the part would end on a high surrogate.
            start += 134 if not 0xD8 <= body[start + 132] <= 0xDB else 132
            ends.append(start)
        encoding = _UCS2
    ends.append(n)
    if len(ends) > max_parts or len(ends) > 255:
        raise MessageTooLong(len(ends), min(max_parts, 255))
    return encoding, body, ends


def segment_binary(
    data: bytes,
    *,
    ref: int = 0,
    method: ConcatMethod = ConcatMethod.UDH8,
    max_parts: int = 255,
) -> Segments:
    """Cut 8-bit binary data into parts (data_coding 4). See `segment`."""
    return _segment_body(data, Encoding.BINARY, DEFAULT, ref, method, max_parts)


def _segment_body(  # noqa: PLR0917 - internal, called from two places
    body: bytes,
    encoding: Encoding,
    alphabet: Alphabet,
    ref: int,
    method: ConcatMethod,
    max_parts: int,
) -> Segments:
    if alphabet is DEFAULT:
        # The common case: no header unless concatenated.
        if len(body) <= (160 if encoding is _GSM7 else 140):
            return _new(Segments, (encoding, (body,), _NO_UDH, ref, method, alphabet))
        shift_ies: list[tuple[int, bytes]] = []
        shift = b""
    else:
        shift_ies = _shift_ies(alphabet)
        single_udh = build_udh(shift_ies)
        if len(body) <= _capacity(encoding, len(single_udh)):
            return _new(Segments, (encoding, (body,), (single_udh,), ref, method, alphabet))
        shift = single_udh[1:]

    if not 0 <= ref <= (0xFF if method is _UDH8 else 0xFFFF):
        raise ValueError(f"concatenation reference {ref} out of range for {method.name}")
    if method is _PAYLOAD:
        if len(body) > MAX_PAYLOAD:
            raise SmsError(f"message_payload of {len(body)} octets exceeds {MAX_PAYLOAD}")
        udh = build_udh(shift_ies) if shift_ies else b""
        return _new(Segments, (encoding, (body,), (udh,), ref, method, alphabet))

    shift_len = len(shift)
    # SAR: the SMSC writes the UDH, and a reference above 255 needs the 16-bit element.
    wide = method is _UDH16 or (method is _SAR and ref > 0xFF)
    bodies = _cuts(body, encoding, _capacity(encoding, shift_len + (7 if wide else 6)))
    total = len(bodies)
    if total > max_parts or total > 255:
        raise MessageTooLong(total, min(max_parts, 255))

    if method is _SAR:
        # The SMSC writes the concatenation UDH; only shift elements ride in short_message.
        udh = build_udh(shift_ies) if shift_ies else b""
        return _new(Segments, (encoding, tuple(bodies), (udh,) * total, ref, method, alphabet))

    if method is _UDH8:
        head = bytes((5 + shift_len, 0x00, 0x03, ref, total))
    else:
        head = bytes((6 + shift_len, 0x08, 0x04, ref >> 8, ref & 0xFF, total))
    seq = _SEQ
    if shift:
        udhs = tuple([head + seq[i] + shift for i in range(1, total + 1)])
    else:
        udhs = tuple([head + seq[i] for i in range(1, total + 1)])
    return _new(Segments, (encoding, tuple(bodies), udhs, ref, method, alphabet))
