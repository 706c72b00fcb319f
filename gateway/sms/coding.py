"""Text encodings and the data_coding / TP-DCS octets that name them.

SMPP v3.4 section 5.2.19 (data_coding) and 3GPP TS 23.038 section 4 (TP-DCS) number the same
alphabets differently: SMPP has ASCII and Latin-1, the air interface has only GSM 7-bit, 8-bit
data and UCS-2. `Encoding` is what we actually encode with; `data_coding_of` / `dcs_of` give the
octets, `encoding_of_data_coding` / `encoding_of_dcs` read them back.

UCS-2 is carried as UTF-16BE so that characters outside the BMP travel as surrogate pairs, which
is what every current handset does.
"""

from __future__ import annotations

import codecs
import re
from enum import IntEnum

from gateway.sms.errors import SmsError, UnencodableText
from gateway.sms.gsm7 import DEFAULT, Alphabet

__all__ = [
    "Encoding",
    "data_coding_of",
    "dcs_of",
    "decode_text",
    "encode_text",
    "encoding_of_data_coding",
    "encoding_of_dcs",
]


class Encoding(IntEnum):
    """What a message body is encoded with. The value is its SMPP data_coding."""

    GSM7 = 0x00  # SMSC default alphabet, one septet per octet in SMPP
    ASCII = 0x01  # IA5
    LATIN1 = 0x03
    BINARY = 0x04
    UCS2 = 0x08

    @property
    def is_octet_text(self) -> bool:
        return self in (Encoding.ASCII, Encoding.LATIN1)


# Enum member lookups cost ~100 ns each on CPython 3.11; hot paths use these aliases.
_GSM7, _UCS2, _LATIN1, _BINARY, _ASCII = (
    Encoding.GSM7,
    Encoding.UCS2,
    Encoding.LATIN1,
    Encoding.BINARY,
    Encoding.ASCII,
)

_NOT_SEPTET = re.compile(rb"[\x80-\xff]")

_SMPP_CODECS = {
    0x05: "shift_jis",  # JIS (X 0208-1990)
    0x06: "iso8859_5",  # Cyrillic
    0x07: "iso8859_8",  # Latin/Hebrew
    0x0A: "iso2022_jp",
    0x0D: "shift_jis",  # extended Kanji JIS (X 0212-1990): Shift-JIS is what carriers send
    0x0E: "euc_kr",  # KS C 5601
}


def data_coding_of(encoding: Encoding, gsm7_data_coding: int = 0x00) -> int:
    """SMPP data_coding for `encoding`; `gsm7_data_coding` is what a link uses for GSM 7-bit."""
    return gsm7_data_coding if encoding is Encoding.GSM7 else int(encoding)


def dcs_of(encoding: Encoding, message_class: int | None = None) -> int:
    """TP-DCS octet (TS 23.038 section 4, general data coding group) for `encoding`.

    Raises:
        SmsError: ASCII and Latin-1 do not exist on the air interface.
    """
    if encoding is Encoding.GSM7:
        dcs = 0x00
    elif encoding is Encoding.BINARY:
        dcs = 0x04
    elif encoding is Encoding.UCS2:
        dcs = 0x08
    else:
        raise SmsError(f"{encoding.name} cannot be sent over the air; use GSM7 or UCS2")
    if message_class is not None:
        dcs |= 0x10 | (message_class & 0x03)
    return dcs


def encoding_of_data_coding(data_coding: int, default: Encoding = Encoding.GSM7) -> Encoding | str:
    """What an SMPP data_coding octet means.

    Returns:
        An `Encoding`, or the name of a Python codec for the other SMPP alphabets (JIS, Cyrillic,
        Hebrew, KS C 5601). `default` is what data_coding 0 means on this link.
    """
    if data_coding == 0x00:
        return default
    if data_coding in (0x01, 0x03, 0x08):
        return Encoding(data_coding)
    if data_coding in (0x02, 0x04):
        return Encoding.BINARY
    if data_coding in _SMPP_CODECS:
        return _SMPP_CODECS[data_coding]
    # Values from the GSM DCS ranges that some SMSCs pass through unchanged.
    return encoding_of_dcs(data_coding)


def encoding_of_dcs(dcs: int) -> Encoding:
    """What a TP-DCS octet (TS 23.038 section 4) says the user data is.

    Reserved values read as GSM 7-bit, as the specification asks of receivers.
    """
    group = dcs >> 4
    if group <= 0x07:  # general data coding (0x00-0x3F) and automatic deletion (0x40-0x7F)
        if dcs & 0x20:  # compressed: we cannot decompress, hand the octets on
            return Encoding.BINARY
        alphabet = (dcs >> 2) & 0x03
        return (Encoding.GSM7, Encoding.BINARY, Encoding.UCS2, Encoding.GSM7)[alphabet]
    if group in (0x0C, 0x0D):  # message waiting, GSM 7-bit
        return Encoding.GSM7
    if group == 0x0E:  # message waiting, UCS-2
        return Encoding.UCS2
    if group == 0x0F:
        return Encoding.BINARY if dcs & 0x04 else Encoding.GSM7
    return Encoding.GSM7


def encode_text(text: str, encoding: Encoding, alphabet: Alphabet = DEFAULT) -> bytes:
    """`text` encoded as `encoding` (GSM 7-bit as unpacked septets).

    Raises:
        UnencodableText: a character the encoding cannot represent.
    """
    if encoding is Encoding.GSM7:
        return alphabet.encode(text)
    if encoding is Encoding.BINARY:
        raise SmsError("binary messages are bytes, not text")
    codec = {Encoding.UCS2: "utf-16-be", Encoding.LATIN1: "latin-1", Encoding.ASCII: "ascii"}
    try:
        return text.encode(codec[encoding])
    except UnicodeEncodeError as exc:
        raise UnencodableText(
            f"character {text[exc.start]!r} at position {exc.start} cannot be encoded as "
            f"{encoding.name}",
            exc.start,
        ) from None


def decode_text(
    data: bytes,
    encoding: Encoding | str,
    alphabet: Alphabet = DEFAULT,
    errors: str = "strict",
) -> str:
    """Text from a body encoded as `encoding` (GSM 7-bit as unpacked septets).

    Args:
        errors: "strict" raises on bad input; "replace" gives U+FFFD instead, for text that must
            be delivered whatever a sender did (a lone surrogate, a byte that is not a septet).

    Raises:
        UnencodableText: with errors="strict", bytes that are not valid in the encoding.
    """
    try:
        if encoding is _GSM7:
            if errors == "strict" or data.isascii():
                return alphabet.decode(data)
            # Each byte that is not a septet becomes U+FFFD; the rest decodes as usual.
            return "\ufffd".join(alphabet.decode(chunk) for chunk in _NOT_SEPTET.split(data))
        if encoding is _UCS2:
            if len(data) & 1 and errors == "strict":
                raise UnencodableText(f"UCS-2 body has an odd length ({len(data)} octets)")
            return codecs.utf_16_be_decode(data, errors, True)[0]
        if encoding is _LATIN1 or encoding is _BINARY:
            return data.decode("latin-1")
        if encoding is _ASCII:
            return data.decode("ascii", errors)
        return data.decode(str(encoding), errors)
    except UnicodeDecodeError as exc:
        raise UnencodableText(f"body is not valid {encoding!s}: {exc.reason}", exc.start) from None
