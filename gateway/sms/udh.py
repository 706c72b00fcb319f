"""User data headers (3GPP TS 23.040 section 9.2.3.24).

A UDH is UDHL (one octet: the length of what follows) and a run of information elements, each
IEI, IEDL, data. We build only what we send (concatenation, national language shift) and parse
everything, keeping unknown elements as they came.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from gateway.sms.errors import UdhError

__all__ = [
    "IEI_CONCAT_8",
    "IEI_CONCAT_16",
    "IEI_LOCKING_SHIFT",
    "IEI_PORT_8",
    "IEI_PORT_16",
    "IEI_SINGLE_SHIFT",
    "Concat",
    "InformationElement",
    "build_udh",
    "concat_ie",
    "concat_of",
    "parse_udh",
    "split_udh",
]

IEI_CONCAT_8 = 0x00  # 9.2.3.24.1
IEI_PORT_8 = 0x04  # 9.2.3.24.3
IEI_PORT_16 = 0x05  # 9.2.3.24.4
IEI_CONCAT_16 = 0x08  # 9.2.3.24.8
IEI_SINGLE_SHIFT = 0x24  # 9.2.3.24.15
IEI_LOCKING_SHIFT = 0x25  # 9.2.3.24.16


class InformationElement(NamedTuple):
    iei: int
    data: bytes


class Concat(NamedTuple):
    """Where one part sits in a concatenated message."""

    ref: int
    total: int
    seq: int
    ref_bits: int  # 8 or 16


def parse_udh(user_data: bytes) -> tuple[tuple[InformationElement, ...], int]:
    """Information elements of the UDH at the start of `user_data`.

    Returns:
        The elements in order, and the UDH's length in octets including the UDHL octet.

    Raises:
        UdhError: the UDHL or an element's length runs past the data.
    """
    if not user_data:
        raise UdhError("user data header indicated but the user data is empty")
    udhl = user_data[0]
    end = 1 + udhl
    if end > len(user_data):
        raise UdhError(f"UDHL {udhl} runs past the {len(user_data)} octets of user data")
    ies = []
    pos = 1
    while pos < end:
        if pos + 2 > end:
            raise UdhError(f"information element at octet {pos} has no length octet")
        iei, iedl = user_data[pos], user_data[pos + 1]
        data_end = pos + 2 + iedl
        if data_end > end:
            raise UdhError(f"information element 0x{iei:02X} runs past the header")
        ies.append(InformationElement(iei, user_data[pos + 2 : data_end]))
        pos = data_end
    return tuple(ies), end


def split_udh(user_data: bytes) -> tuple[tuple[InformationElement, ...], bytes]:
    """The UDH's elements and the rest of the user data (octets: no septet alignment)."""
    ies, length = parse_udh(user_data)
    return ies, user_data[length:]


def concat_of(ies: Iterable[InformationElement]) -> Concat | None:
    """The concatenation element among `ies`, if any well-formed one is there.

    A part numbered 0 or above its total is malformed and ignored (9.2.3.24.1: "the receiving
    entity shall ignore the entire information element"); when the element is repeated, the
    last occurrence counts (9.2.3.24).
    """
    found = None
    for iei, data in ies:
        if iei == IEI_CONCAT_8 and len(data) == 3:
            ref, total, seq, bits = data[0], data[1], data[2], 8
        elif iei == IEI_CONCAT_16 and len(data) == 4:
            ref, total, seq, bits = (data[0] << 8) | data[1], data[2], data[3], 16
        else:
            continue
        if total and 0 < seq <= total:
            found = Concat(ref, total, seq, bits)
    return found


def concat_ie(ref: int, total: int, seq: int, ref_bits: int = 8) -> InformationElement:
    """The concatenation element for part `seq` of `total`."""
    if ref_bits == 8:
        return InformationElement(IEI_CONCAT_8, bytes((ref & 0xFF, total, seq)))
    return InformationElement(IEI_CONCAT_16, bytes((ref >> 8 & 0xFF, ref & 0xFF, total, seq)))


def build_udh(ies: Iterable[tuple[int, bytes]]) -> bytes:
    """UDHL followed by the elements.

    Raises:
        UdhError: an element or the whole header is too long.
    """
    body = bytearray()
    for iei, data in ies:
        if len(data) > 255:
            raise UdhError(f"information element 0x{iei:02X} is longer than 255 octets")
        body += bytes((iei, len(data)))
        body += data
    if len(body) > 139:
        raise UdhError("user data header longer than the 140 octets of user data")
    return bytes((len(body),)) + bytes(body)
