"""Text <-> GSM 7-bit / UCS-2 / Latin-1, user data headers, segmentation and GSM 03.40 TPDUs.
Pure: no I/O, no clock (time is passed in). MO reassembly is durable, so it lives with the
store: `gateway.inbound`."""

from __future__ import annotations

from gateway.sms.coding import (
    Encoding,
    data_coding_of,
    dcs_of,
    decode_text,
    encode_text,
    encoding_of_data_coding,
    encoding_of_dcs,
)
from gateway.sms.errors import MessageTooLong, SmsError, TpduError, UdhError, UnencodableText
from gateway.sms.gsm7 import (
    DEFAULT,
    Alphabet,
    decode_gsm7,
    encode_gsm7,
    gsm7_septets,
    pack_septets,
    try_encode_gsm7,
    unpack_septets,
)
from gateway.sms.refs import ReferenceAllocator, ReferencesExhausted
from gateway.sms.segment import (
    ConcatMethod,
    Segments,
    choose_encoding,
    cut_body,
    part_capacity,
    segment,
    segment_binary,
)
from gateway.sms.udh import Concat, InformationElement, build_udh, concat_of, parse_udh

__all__ = [
    "DEFAULT",
    "Alphabet",
    "Concat",
    "ConcatMethod",
    "Encoding",
    "InformationElement",
    "MessageTooLong",
    "ReferenceAllocator",
    "ReferencesExhausted",
    "Segments",
    "SmsError",
    "TpduError",
    "UdhError",
    "UnencodableText",
    "build_udh",
    "choose_encoding",
    "concat_of",
    "cut_body",
    "data_coding_of",
    "dcs_of",
    "decode_gsm7",
    "decode_text",
    "encode_gsm7",
    "encode_text",
    "encoding_of_data_coding",
    "encoding_of_dcs",
    "gsm7_septets",
    "pack_septets",
    "parse_udh",
    "part_capacity",
    "segment",
    "segment_binary",
    "try_encode_gsm7",
    "unpack_septets",
]
