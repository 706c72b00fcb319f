"""Encoder and decoder for every PDU, generated from the declarations in `gateway.smpp.pdu`.

Theory of operation
-------------------
At import, each PDU class's annotations are read once and turned into the source of two
straight-line functions (one for each direction), compiled with `exec` - the technique
`dataclasses` and `attrs` use for `__init__`. The functions hold no loop over fields and no
per-field dispatch, which is what makes decoding cost about as much as the Rust-backed
decoders we measure against (see docs/PERFORMANCE.md).

Decoding is strict (SMPP v3.4 section 3.1 and 5):

* a C-octet string must end in NUL within its maximum size: no NUL at all is a truncated PDU
  (ESME_RINVCMDLEN); a NUL past the maximum is answered with the field's own status
  (ESME_RINVSRCADR for source_addr, ESME_RINVSYSID for system_id, ...);
* sm_length must fit the body (ESME_RINVMSGLEN) and be at most 254;
* a TLV header or value running past the end is ESME_RINVOPTPARSTREAM; a known TLV of the wrong
  length is ESME_RINVPARLEN;
* an unknown command_id is ESME_RINVCMDID.

One leniency, because real SMSCs need it: a response with a non-zero command_status may come
with an empty body (many send bind_resp / submit_sm_resp errors that way); it decodes to the
PDU's defaults.

Every error is a `RemoteSmppError` carrying the status to answer, the command_id and the
sequence_number, so the session can reply with the matching `*_resp` or generic_nack. Body
errors are never fatal: the frame boundary is intact. Only framing errors (`framing.py`) are.
"""

from __future__ import annotations

import re
import struct
import typing
from collections.abc import Callable
from typing import Any

from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.errors import LocalSmppError, RemoteSmppError
from gateway.smpp.pdu import (
    COMMAND_IDS,
    PDU_CLASSES,
    CStr,
    DeliverSm,
    DestAddress,
    DestList,
    DistributionList,
    Int,
    Pdu,
    ShortMessage,
    SmeAddress,
    SubmitSm,
    UnsuccessList,
    UnsuccessSme,
)
from gateway.smpp.tlv import Tlv, check_tlv

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "cstring_bytes",
    "decode_body",
    "decode_pdu",
    "encode_pdu",
    "encode_tlvs",
    "peek_header",
]

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
HEADER_SIZE = 16
_unpack_header = HEADER.unpack_from
_TLV_HEAD = struct.Struct(">HH")
_U32 = struct.Struct(">I")
S = CommandStatus


def peek_header(data: bytes) -> tuple[int, int, int, int]:
    """command_length, command_id, command_status, sequence_number of the PDU at `data`'s start.

    Raises:
        RemoteSmppError: fewer than 16 octets (ESME_RINVCMDLEN).
    """
    if len(data) < HEADER_SIZE:
        raise RemoteSmppError(
            f"PDU of {len(data)} octets is shorter than its header", S.ESME_RINVCMDLEN
        )
    length, command_id, status, seq = HEADER.unpack_from(data)
    return length, command_id, status, seq


# -- decoding helpers (the slow paths and the rare structures) ----------------------------------


def _cstr_error(
    b: bytes, p: int, max_size: int, name: str, status: CommandStatus
) -> RemoteSmppError:
    if b.find(0, p) < 0:
        return RemoteSmppError(f"{name} has no terminating NUL", S.ESME_RINVCMDLEN)
    return RemoteSmppError(f"{name} is longer than {max_size - 1} octets", status)


def _cstr(b: bytes, p: int, max_size: int, name: str, status: CommandStatus) -> tuple[str, int]:
    i = b.find(0, p, p + max_size)
    if i < 0:
        raise _cstr_error(b, p, max_size, name, status)
    return b[p:i].decode("latin-1"), i + 1


def _tlvs(b: bytes, p: int, n: int) -> tuple[Tlv, ...]:
    out = []
    unpack = _TLV_HEAD.unpack_from
    while p < n:
        if p + 4 > n:
            raise RemoteSmppError("TLV header runs past the PDU", S.ESME_RINVOPTPARSTREAM)
        tag, length = unpack(b, p)
        p += 4
        end = p + length
        if end > n:
            raise RemoteSmppError(
                f"TLV 0x{tag:04X} of length {length} runs past the PDU", S.ESME_RINVOPTPARSTREAM
            )
        value = b[p:end]
        check_tlv(tag, value)
        out.append(Tlv(tag, value))
        p = end
    return tuple(out)


def _dest_list(b: bytes, p: int) -> tuple[tuple[DestAddress, ...], int]:
    count = b[p]
    p += 1
    if count == 0 or count > 254:
        raise RemoteSmppError(f"number_of_dests is {count}", S.ESME_RINVNUMDESTS)
    out: list[DestAddress] = []
    for _ in range(count):
        flag = b[p]
        p += 1
        if flag == 1:
            ton, npi = b[p], b[p + 1]
            addr, p = _cstr(b, p + 2, 21, "destination_addr", S.ESME_RINVDSTADR)
            out.append(SmeAddress(ton, npi, addr))
        elif flag == 2:
            name, p = _cstr(b, p, 21, "dl_name", S.ESME_RINVDLNAME)
            out.append(DistributionList(name))
        else:
            raise RemoteSmppError(f"dest_flag {flag}", S.ESME_RINVDESTFLAG)
    return tuple(out), p


def _unsuccess_list(b: bytes, p: int) -> tuple[tuple[UnsuccessSme, ...], int]:
    count = b[p]
    p += 1
    out = []
    for _ in range(count):
        ton, npi = b[p], b[p + 1]
        addr, p = _cstr(b, p + 2, 21, "destination_addr", S.ESME_RINVDSTADR)
        (code,) = _U32.unpack_from(b, p)
        p += 4
        out.append(UnsuccessSme(ton, npi, addr, code))
    return tuple(out), p


def _sm_error(k: int, have: int) -> RemoteSmppError:
    if k > 254:
        return RemoteSmppError(f"sm_length {k} is above 254", S.ESME_RINVMSGLEN)
    return RemoteSmppError(
        f"sm_length {k} but only {have} octets of short_message", S.ESME_RINVMSGLEN
    )


# -- encoding helpers ----------------------------------------------------------------------------


def cstring_bytes(value: str, max_size: int, name: str, status: CommandStatus) -> bytes:
    try:
        raw = value.encode("latin-1")
    except (UnicodeEncodeError, AttributeError):
        raise LocalSmppError(f"{name} must be a Latin-1 str, got {value!r}", status) from None
    if len(raw) >= max_size or 0 in raw:
        raise LocalSmppError(
            f"{name} {value!r} is longer than {max_size - 1} octets or holds a NUL", status
        )
    return raw


def _enc_dest_list(dests: tuple[DestAddress, ...]) -> bytes:
    if not 0 < len(dests) <= 254:
        raise LocalSmppError(f"{len(dests)} destinations", S.ESME_RINVNUMDESTS)
    out = bytearray((len(dests),))
    try:
        for d in dests:
            if isinstance(d, SmeAddress):
                out += bytes((1, d.dest_addr_ton, d.dest_addr_npi))
                out += cstring_bytes(d.destination_addr, 21, "destination_addr", S.ESME_RINVDSTADR)
            else:
                out.append(2)
                out += cstring_bytes(d.dl_name, 21, "dl_name", S.ESME_RINVDLNAME)
            out.append(0)
    except LocalSmppError:
        raise
    except (ValueError, TypeError, AttributeError) as exc:
        raise LocalSmppError(f"bad dest_address: {exc}", S.ESME_RINVDSTADR) from None
    return bytes(out)


def _enc_unsuccess_list(items: tuple[UnsuccessSme, ...]) -> bytes:
    if len(items) > 254:
        raise LocalSmppError(f"{len(items)} unsuccess_sme entries", S.ESME_RINVNUMDESTS)
    out = bytearray((len(items),))
    try:
        for u in items:
            out += bytes((u.dest_addr_ton, u.dest_addr_npi))
            out += cstring_bytes(u.destination_addr, 21, "destination_addr", S.ESME_RINVDSTADR)
            out.append(0)
            out += _U32.pack(u.error_status_code)
    except LocalSmppError:
        raise
    except (ValueError, TypeError, AttributeError, struct.error) as exc:
        raise LocalSmppError(f"bad unsuccess_sme: {exc}", S.ESME_RINVPARLEN) from None
    return bytes(out)


def _enc_tlvs(tlvs: tuple[Tlv, ...]) -> bytes:
    """TLVs as on the wire (tag, length, value each), as a PDU and the store carry them."""
    pack = _TLV_HEAD.pack
    try:
        return b"".join([pack(t, len(v)) + v for t, v in tlvs])
    except (struct.error, TypeError, ValueError):
        raise LocalSmppError("TLV tag or length out of range", S.ESME_RINVPARLEN) from None


encode_tlvs = _enc_tlvs


# -- generation ----------------------------------------------------------------------------------

_Decoder = Callable[[bytes, int, int, int], Any]
_Encoder = Callable[[Any], bytes]

_ENV: dict[str, Any] = {
    "_new": tuple.__new__,
    "_cstr": _cstr,
    "_cstr_error": _cstr_error,
    "_tlvs": _tlvs,
    "_dest_list": _dest_list,
    "_unsuccess_list": _unsuccess_list,
    "_sm_error": _sm_error,
    "cstring_bytes": cstring_bytes,
    "_enc_dest_list": _enc_dest_list,
    "_enc_unsuccess_list": _enc_unsuccess_list,
    "_enc_tlvs": _enc_tlvs,
    "S": CommandStatus,
    "LocalSmppError": LocalSmppError,
}


def _spec(cls: type[Any]) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for name in cls._fields:
        if name in ("tlvs", "sequence_number", "command_status"):
            continue
        meta = getattr(hints[name], "__metadata__", (None,))[0]
        out.append((name, meta))
    return out


def _step_lines(v: str, name: str, kind: Any, cls: type[Any]) -> list[str]:
    """Source lines that read one field at `p` and advance `p`, strictly."""
    if isinstance(kind, Int):
        if kind.size == 1:
            return [f"    {v} = b[p]; p += 1"]
        return [
            f"    if p + {kind.size} > n: raise IndexError",
            f"    {v} = int.from_bytes(b[p:p + {kind.size}], 'big'); p += {kind.size}",
        ]
    if isinstance(kind, CStr):
        status = f"S.{kind.status.name}"
        return [
            f"    i = b.find(0, p, p + {kind.max_size})",
            f"    if i < 0: raise _cstr_error(b, p, {kind.max_size}, {name!r}, {status})",
            f"    {v} = b[p:i].decode('latin-1') if i != p else ''; p = i + 1",
        ]
    if isinstance(kind, ShortMessage):
        return [
            "    k = b[p]; p += 1",
            f"    {v} = b[p:p + k]",
            f"    if len({v}) != k or k > {kind.max_size}: raise _sm_error(k, len({v}))",
            "    p += k",
        ]
    if isinstance(kind, DestList):
        return [f"    {v}, p = _dest_list(b, p)"]
    if isinstance(kind, UnsuccessList):
        return [f"    {v}, p = _unsuccess_list(b, p)"]
    raise TypeError(f"{cls.__name__}.{name}: no wire format in its annotation")


def _gen_decoder(cls: type[Any]) -> _Decoder:
    """A strict decoder that reads field by field, and in front of it, when the PDU starts with
    C-strings, a fast one that reads that prefix with one precompiled regex. A body the regex
    does not match (a C-string too long or unterminated, a short body) goes to the strict
    decoder, which says exactly what is wrong."""
    spec = _spec(cls)
    names = [f"v{i}" for i in range(len(spec))]
    values = "".join(f"{v}, " for v in names)
    ret = f"    return _new(cls, ({values}tlvs, seq, status))"
    tail = "    tlvs = _tlvs(b, p, n) if p < n else ()"

    # b: the whole PDU or just its body; p: where the body starts.
    slow = ["def strict(b, p, seq, status):", "    n = len(b)"]
    for (name, kind), v in zip(spec, names, strict=True):
        slow += _step_lines(v, name, kind, cls)
    slow += [tail, ret]
    env = dict(_ENV, cls=cls)
    exec("\n".join(slow), env)
    strict: _Decoder = env["strict"]
    _STRICT[cls] = strict

    # The leading run of one-octet integers and C-strings.
    prefix = []
    for name, kind in spec:
        if isinstance(kind, CStr) or (isinstance(kind, Int) and kind.size == 1):
            prefix.append((name, kind))
        else:
            break
    if not any(isinstance(kind, CStr) for _, kind in prefix):
        return strict

    pattern = b""
    groups: list[str] = []  # per regex group: the source that turns it into field values
    assign: list[str] = []
    ints: list[str] = []

    def flush_ints() -> None:
        nonlocal pattern
        if ints:
            g = f"g{len(groups)}"
            pattern += b"(.{%d})" % len(ints)
            groups.append(g)
            assign.extend(f"    {v} = {g}[{j}]" for j, v in enumerate(ints))
            ints.clear()

    for (_name, kind), v in zip(prefix, names, strict=False):
        if isinstance(kind, Int):
            ints.append(v)
            continue
        flush_ints()
        g = f"g{len(groups)}"
        pattern += b"([^\\x00]{0,%d})\\x00" % (kind.max_size - 1)
        groups.append(g)
        assign.append(f"    {v} = {g}.decode('latin-1') if {g} else ''")
    flush_ints()

    _PREFIX[cls] = pattern
    fast = ["def decode(b, p, seq, status):", "    m = _match(b, p)"]
    fast.append("    if m is None: return strict(b, p, seq, status)")
    fast.append(f"    {', '.join(groups)}, = m.groups()")
    fast += assign
    fast += ["    p = m.end()", "    n = len(b)"]
    for (name, kind), v in list(zip(spec, names, strict=True))[len(prefix) :]:
        fast += _step_lines(v, name, kind, cls)
    fast += [tail, ret]
    env = dict(_ENV, cls=cls, strict=strict, _match=re.compile(pattern, re.DOTALL).match)
    exec("\n".join(fast), env)
    decoder: _Decoder = env["decode"]
    return decoder


def _gen_encoder(cls: type[Any]) -> _Encoder:
    spec = _spec(cls)
    names = [f"v{i}" for i in range(len(spec))]
    lines = ["def encode(pdu):"]
    unpack = "".join(f"{v}, " for v in names)
    lines.append(f"    {unpack}tlvs, _seq, _status = pdu")
    fmt = []
    args = []
    for (name, kind), v in zip(spec, names, strict=True):
        if isinstance(kind, Int):
            if kind.size != 1:  # pragma: no cover - no body integer is wider today
                raise TypeError(f"{cls.__name__}.{name}: only one-octet body integers")
            fmt.append("%c")
            args.append(v)
        elif isinstance(kind, CStr):
            status = f"S.{kind.status.name}"
            lines.append(f"    {v} = cstring_bytes({v}, {kind.max_size}, {name!r}, {status})")
            fmt.append("%s\\x00")
            args.append(v)
        elif isinstance(kind, ShortMessage):
            lines.append(f"    if len({v}) > {kind.max_size}:")
            lines.append(
                f"        raise LocalSmppError('short_message longer than {kind.max_size} "
                "octets; use message_payload', S.ESME_RINVMSGLEN)"
            )
            fmt.append("%c%s")
            args.extend([f"len({v})", v])
        elif isinstance(kind, DestList):
            fmt.append("%s")
            args.append(f"_enc_dest_list({v})")
        elif isinstance(kind, UnsuccessList):
            fmt.append("%s")
            args.append(f"_enc_unsuccess_list({v})")
    fmt.append("%s")
    args.append("_enc_tlvs(tlvs) if tlvs else b''")
    lines.append("    try:")
    lines.append(f"        return b'{''.join(fmt)}' % ({', '.join(args)},)")
    lines.append("    except (OverflowError, TypeError) as exc:")
    lines.append(
        f"        raise LocalSmppError('{cls.__name__}: a field is out of range or of the wrong "
        "type: %s' % exc, S.ESME_RINVPARLEN) from None"
    )
    env = dict(_ENV, cls=cls)
    exec("\n".join(lines), env)
    encoder: _Encoder = env["encode"]
    return encoder


_STRICT: dict[type[Any], _Decoder] = {}  # the field-by-field decoder of each PDU class
_PREFIX: dict[type[Any], bytes] = {}  # the regex of its leading C-strings and octets, if any
_DECODERS: dict[int, _Decoder] = {int(cid): _gen_decoder(c) for cid, c in PDU_CLASSES.items()}


# -- submit_sm and deliver_sm, written out -------------------------------------------------------
# The two PDUs every message crosses twice have one layout. Their decoder is the generated fast
# one written out by hand, on the same regex: the same cost in pure Python, and a function the
# optional compiled build (setup.py) turns into native code, which an exec'd one cannot be.
# tests/unit/test_codec_sm.py holds it equal to the generated decoder, malformed PDUs included.

assert SubmitSm._fields == DeliverSm._fields
assert _PREFIX[SubmitSm] == _PREFIX[DeliverSm]
_sm_match = re.compile(_PREFIX[SubmitSm], re.DOTALL).match
_new = tuple.__new__


def _decode_sm(cls: type[Any], b: bytes, p: int, seq: int, status: int) -> Any:
    m = _sm_match(b, p)
    if m is None:
        return _STRICT[cls](b, p, seq, status)
    # Declared, so that the compiled build indexes their octets natively (no cost here).
    addr1: bytes
    addr2: bytes
    esm_pid_pri: bytes
    flags: bytes
    st, addr1, src, addr2, dst, esm_pid_pri, sched, valid, flags = m.groups()
    p = m.end()
    k: int = b[p]
    p += 1
    sm = b[p : p + k]
    if len(sm) != k or k > 254:
        raise _sm_error(k, len(sm))
    p += k
    n = len(b)
    return _new(
        cls,
        (
            st.decode("latin-1") if st else "",
            addr1[0],
            addr1[1],
            src.decode("latin-1") if src else "",
            addr2[0],
            addr2[1],
            dst.decode("latin-1") if dst else "",
            esm_pid_pri[0],
            esm_pid_pri[1],
            esm_pid_pri[2],
            sched.decode("latin-1") if sched else "",
            valid.decode("latin-1") if valid else "",
            flags[0],
            flags[1],
            flags[2],
            flags[3],
            sm,
            _tlvs(b, p, n) if p < n else (),
            seq,
            status,
        ),
    )


def _decode_submit_sm(b: bytes, p: int, seq: int, status: int) -> Any:
    return _decode_sm(SubmitSm, b, p, seq, status)


def _decode_deliver_sm(b: bytes, p: int, seq: int, status: int) -> Any:
    return _decode_sm(DeliverSm, b, p, seq, status)


_GENERATED: dict[int, _Decoder] = dict(_DECODERS)  # the reference the tests compare with
_DECODERS[int(CommandId.submit_sm)] = _decode_submit_sm
_DECODERS[int(CommandId.deliver_sm)] = _decode_deliver_sm
_ENCODERS: dict[type[Any], tuple[int, _Encoder]] = {
    c: (int(cid), _gen_encoder(c)) for cid, c in PDU_CLASSES.items()
}


# -- public API ----------------------------------------------------------------------------------


def _decode(data: bytes, start: int, command_id: int, status: int, seq: int) -> Pdu:
    decoder = _DECODERS.get(command_id)
    if decoder is None:
        raise RemoteSmppError(
            f"unknown command_id 0x{command_id:08X}",
            S.ESME_RINVCMDID,
            command_id=command_id,
            sequence_number=seq,
        )
    if status and len(data) == start and command_id & 0x80000000:
        empty: Pdu = PDU_CLASSES[CommandId(command_id)](sequence_number=seq, command_status=status)
        return empty
    try:
        pdu: Pdu = decoder(data, start, seq, status)
        return pdu
    except (IndexError, struct.error):
        exc: RemoteSmppError = RemoteSmppError(
            f"{CommandId(command_id).name} body of {len(data) - start} octets is truncated",
            S.ESME_RINVCMDLEN,
        )
    except RemoteSmppError as err:
        exc = err
    exc.command_id = command_id
    exc.sequence_number = seq
    raise exc


def decode_body(command_id: int, status: int, seq: int, body: bytes) -> Pdu:
    """The PDU for a body whose header has already been read.

    Raises:
        RemoteSmppError: unknown command_id or a malformed body; never fatal.
    """
    return _decode(body, 0, command_id, status, seq)


def decode_pdu(data: bytes) -> Pdu:
    """One whole PDU (header and body), as cut by `FrameBuffer`.

    Raises:
        RemoteSmppError: command_length disagrees with `data` (ESME_RINVCMDLEN, fatal), or as
            `decode_body`.
    """
    try:
        length, command_id, status, seq = _unpack_header(data)
    except struct.error:
        raise RemoteSmppError(
            f"PDU of {len(data)} octets is shorter than its header", S.ESME_RINVCMDLEN, fatal=True
        ) from None
    if length != len(data):
        raise RemoteSmppError(
            f"command_length {length} but the PDU has {len(data)} octets",
            S.ESME_RINVCMDLEN,
            fatal=True,
            command_id=command_id,
            sequence_number=seq,
        )
    # The everyday case in one call; anything unusual goes round by _decode, which decodes
    # again and says precisely what is wrong.
    decoder = _DECODERS.get(command_id)
    if decoder is not None and (status == 0 or length > HEADER_SIZE):
        try:
            pdu: Pdu = decoder(data, HEADER_SIZE, seq, status)
            return pdu
        except (IndexError, struct.error, RemoteSmppError):
            pass
    return _decode(data, HEADER_SIZE, command_id, status, seq)


def encode_pdu(pdu: Pdu) -> bytes:
    """The wire bytes of `pdu`, header included (sequence_number and command_status from it).

    Raises:
        LocalSmppError: a field the protocol cannot carry (too long, out of range, not Latin-1).
    """
    try:
        command_id, encoder = _ENCODERS[type(pdu)]
    except KeyError:
        raise TypeError(f"not a PDU: {type(pdu).__name__}") from None
    body = encoder(pdu)
    try:
        head = HEADER.pack(HEADER_SIZE + len(body), command_id, pdu[-1], pdu[-2])
    except struct.error:
        raise LocalSmppError(
            "sequence_number or command_status out of 32-bit range", S.ESME_RINVPARLEN
        ) from None
    return head + body


assert set(COMMAND_IDS) == set(_ENCODERS)
