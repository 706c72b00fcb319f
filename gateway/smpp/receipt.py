"""SMPP delivery receipts (SMPP v3.4 Appendix B) and message-id canonicalisation.

Theory of operation
-------------------
A delivery receipt is a deliver_sm (esm_class bit 2 set, or recognised by `looks_like_receipt`)
whose short_message is a line of ``key:value`` fields. SMPP v3.4 Appendix B gives the format::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:E Text: . . . . . . . . .

(one line; wrapped here). Table B-2 says ``sub``/``dlvrd``/``err`` are three digits and
``Text`` the first 20 characters of the original message; Table B-1 gives the seven-letter
``stat`` codes. Carriers follow it loosely, so `parse_receipt` is tolerant:

* **Keys** are found by one precompiled regex (`_KEY_RE`): a word at the start of the text or
  after whitespace, optionally followed by ``date`` (``submit date``), then ``:``. Keys are
  matched case-insensitively and with spaces/underscores removed, so ``ID:``, ``Stat:``,
  ``DONE DATE:``, ``submit_date:`` and ``submitdate:`` all work. A field's value is the text
  between its key and the next key; the order of fields does not matter; unknown keys
  (``imsi:``, ``mccmnc:``) are skipped; the first occurrence of a key wins.
* ``text:`` runs to the end of the receipt (it may contain colons and words that look like
  keys), with surrounding whitespace stripped (Kannel pads it to 12 characters with spaces).
* Values that do not parse become ``None`` rather than errors: garbage or impossible dates,
  non-numeric counts. Only a missing/empty ``id`` or an unrecognisable ``stat`` raises
  `ReceiptParseError`.
* Dates are ``YYMMDDhhmm`` (Appendix B), ``YYMMDDhhmmss`` (the common 12-digit variant) or
  ``YYYYMMDDhhmmss``; ``-``, ``:``, ``/``, ``.``, ``T`` and spaces between the digits are
  ignored. Receipts carry no time zone: the result is a **naive** datetime in the carrier's
  local time (whatever the SMSC's clock says); two-digit years are 20YY.
* ``stat`` is mapped to `ReceiptState` through a table of the spellings carriers use
  (``DELIVERED``, ``UNDELIVERABLE``, ``FAILED`` -> UNDELIV, Kannel's ``BUFFRED``/``ACKED`` ->
  ENROUTE, ...); a bare number 1-8 is read as the message_state TLV value (SMPP v3.4 5.2.28).
* ``err`` is kept as the carrier wrote it (``"000"``, ``"1"``, ``"0x1F"``): its meaning is
  network/SMSC specific (Table B-2), so the text is the faithful record. `Receipt.error_code`
  gives an int for decimal digits or an explicit ``0x`` hex prefix, else ``None`` (a bare
  ``1F`` is ambiguous and is not guessed).
* Bytes are decoded as UTF-8, falling back to Latin-1 (never fails); a body that is visibly
  UCS-2/UTF-16BE (it starts with ASCII code units ``00 xx``, or a byte-order mark) is decoded
  as such. NULs count as whitespace.

Message ids
-----------
Carriers do not always spell a message id the same way in submit_sm_resp and in the receipt
(``0A1B2C`` vs ``662316``, ``000123`` vs ``123``, ``abc123`` vs ``ABC123``). `canonical_ids`
returns the keys under which an id is indexed; two spellings of one id share a key. The rule
(the same one Kannel applies, see its ``msg-id-type``):

1. ``s:`` + the id with whitespace/NULs stripped and lower-cased - always, and first.
2. At most one numeric key ``n:`` + the value in decimal:

   * all ASCII decimal digits -> read as **decimal** (so leading zeros do not matter);
   * otherwise all hex digits, or ``0x`` + hex digits -> read as **hexadecimal**;
   * anything else (UUIDs with dashes, other letters, non-ASCII) -> no numeric key.

   Leading zeros are ignored; ids with more than `MAX_NUMERIC_DIGITS` significant digits get
   no numeric key, so a hostile id cannot cost big-integer time.

Trade-offs (why an all-digit id is *not* also read as hex):

* If all-digit ids also got a hex reading, two *different* decimal ids would collide whenever
  one's hex reading equals the other's value: ``10`` (hex reading 16) and ``16``. With
  sequential decimal ids (the most common kind) every id X would collide with the later id
  int(X, 16), so the symmetric rule trades a rare miss for routine false matches.
* The price is that a hex id that happens to contain no letter (``100000`` meaning 0x100000)
  is read as decimal and will not match the receipt's decimal ``1048576``. For an upstream
  known to spell ids in hex, pass ``assume_hex=True`` when indexing its ids.
* A hex id with letters and a decimal id of the same value share a key (``0a`` and ``10``
  both give ``n:10``). That is inherent: it is exactly the relation that lets ``0A1B2C``
  match ``662316``, and nothing in the strings tells a coincidence from a re-spelling.
  A carrier's ids live in one namespace and it spells them consistently per PDU type, so two
  *different* live messages of one upstream hitting this are rare. Stores must match on
  ``(upstream, key)`` - never on the key alone - and should prefer earlier keys of the tuple
  (the exact ``s:`` key) when several stored messages answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

__all__ = [
    "ID_FORMATS",
    "MAX_NUMERIC_DIGITS",
    "IdFormat",
    "IdSpelling",
    "Receipt",
    "ReceiptParseError",
    "ReceiptState",
    "canonical_ids",
    "format_receipt",
    "format_receipt_bytes",
    "ids_match",
    "looks_like_receipt",
    "parse_receipt",
    "parse_state",
]

MAX_NUMERIC_DIGITS: Final = 32
"""Ids with more significant digits than this get only a string key from `canonical_ids`."""

_MAX_COUNT_DIGITS: Final = 18  # sub/dlvrd/err longer than this are not numbers we believe


class ReceiptParseError(ValueError):
    """Text that cannot be read as a delivery receipt: no ``id:`` or no recognisable ``stat:``."""


class ReceiptState(StrEnum):
    """The ``stat`` of a receipt: the seven-letter codes of SMPP v3.4 Table B-1 (plus ENROUTE).

    The value is the code written in the receipt; `message_state` is the matching value of the
    message_state TLV (SMPP v3.4 section 5.2.28).
    """

    ENROUTE = "ENROUTE"
    DELIVRD = "DELIVRD"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"
    UNDELIV = "UNDELIV"
    ACCEPTD = "ACCEPTD"
    UNKNOWN = "UNKNOWN"
    REJECTD = "REJECTD"

    @property
    def message_state(self) -> int:
        """The message_state TLV value: ENROUTE 1, DELIVERED 2, ... REJECTED 8."""
        return _MESSAGE_STATE[self]

    @classmethod
    def from_message_state(cls, value: int) -> ReceiptState:
        """The state for a message_state TLV value.

        Args:
            value: 1 (ENROUTE) to 8 (REJECTED).

        Returns:
            The matching `ReceiptState`.

        Raises:
            ValueError: `value` is not a message_state of SMPP v3.4.
        """
        try:
            return _BY_MESSAGE_STATE[value]
        except KeyError:
            raise ValueError(f"not an SMPP v3.4 message_state: {value!r}") from None


_MESSAGE_STATE: Final[dict[ReceiptState, int]] = {
    state: number for number, state in enumerate(ReceiptState, start=1)
}
_BY_MESSAGE_STATE: Final[dict[int, ReceiptState]] = {n: s for s, n in _MESSAGE_STATE.items()}

# Spellings seen in the wild, after upper-casing and removing "_", "-" and spaces.
_STATE_ALIASES: Final[dict[str, ReceiptState]] = {
    **{state.value: state for state in ReceiptState},
    # delivered
    "DELIVERED": ReceiptState.DELIVRD,
    "DELIVERD": ReceiptState.DELIVRD,
    "DELIVR": ReceiptState.DELIVRD,
    # expired / deleted
    "EXPIRD": ReceiptState.EXPIRED,
    "EXPIRE": ReceiptState.EXPIRED,
    "DELETD": ReceiptState.DELETED,
    "DELETE": ReceiptState.DELETED,
    # undeliverable / failed
    "UNDELIVERABLE": ReceiptState.UNDELIV,
    "UNDELIVERED": ReceiptState.UNDELIV,
    "UNDELIVRD": ReceiptState.UNDELIV,
    "UNDELIVD": ReceiptState.UNDELIV,
    "UNDELIVR": ReceiptState.UNDELIV,
    "UNDELV": ReceiptState.UNDELIV,
    "FAILED": ReceiptState.UNDELIV,
    "FAILD": ReceiptState.UNDELIV,
    "FAIL": ReceiptState.UNDELIV,
    "FAILURE": ReceiptState.UNDELIV,
    # accepted / rejected / unknown
    "ACCEPTED": ReceiptState.ACCEPTD,
    "ACCEPT": ReceiptState.ACCEPTD,
    "REJECTED": ReceiptState.REJECTD,
    "REJECT": ReceiptState.REJECTD,
    "REJCTD": ReceiptState.REJECTD,
    "UNKNWN": ReceiptState.UNKNOWN,
    "UNKNOW": ReceiptState.UNKNOWN,
    # intermediate states (Kannel treats these as "buffered")
    "BUFFRED": ReceiptState.ENROUTE,
    "BUFFERD": ReceiptState.ENROUTE,
    "BUFFERED": ReceiptState.ENROUTE,
    "ACKED": ReceiptState.ENROUTE,
    "SUBMITD": ReceiptState.ENROUTE,
    "SUBMITTED": ReceiptState.ENROUTE,
    "SENT": ReceiptState.ENROUTE,
    # message_state TLV numbers
    **{str(number): state for state, number in _MESSAGE_STATE.items()},
}
_STATE_SEPARATORS: Final = str.maketrans("", "", "_- ")


def parse_state(token: str) -> ReceiptState | None:
    """Read a ``stat`` value as carriers write it.

    Args:
        token: ``DELIVRD``, ``Delivered``, ``UNDELIVERABLE``, ``FAILED``, ``en_route``, ``2``...

    Returns:
        The state, or ``None`` if the spelling is not one we know.
    """
    return _STATE_ALIASES.get(token.strip().upper().translate(_STATE_SEPARATORS))


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """One delivery receipt (SMPP v3.4 Appendix B).

    Attributes:
        message_id: The ``id`` field as written (stripped); match it with `canonical_ids`.
        stat: The final (or intermediate, ENROUTE) state.
        sub: Number of short messages originally submitted, if given and numeric.
        dlvrd: Number of short messages delivered, if given and numeric.
        submit_date: When the message was submitted - naive, carrier's local time.
        done_date: When it reached `stat` - naive, carrier's local time.
        err: The carrier's error code exactly as written (``"000"``, ``"0x1F"``), or ``None``.
        text: The ``text`` field (first characters of the message), ``None`` if absent.
    """

    message_id: str
    stat: ReceiptState
    sub: int | None = None
    dlvrd: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    err: str | None = None
    text: str | None = None

    @property
    def message_state(self) -> int:
        """The message_state TLV value for `stat` (ENROUTE 1 ... REJECTED 8)."""
        return _MESSAGE_STATE[self.stat]

    @property
    def error_code(self) -> int | None:
        """`err` as a number: decimal digits, or ``0x`` + hex digits; otherwise ``None``."""
        err = self.err
        if err is None or len(err) > _MAX_COUNT_DIGITS or not err.isascii():
            return None
        if err.isdigit():
            return int(err)
        if err[:2] in ("0x", "0X") and len(err) > 2 and not err[2:].lower().strip(_HEX_DIGITS):
            return int(err[2:], 16)
        return None


# --------------------------------------------------------------------------------------------
# Parsing

# A key: a word at the start or after whitespace, optionally "<space(s)>date", then ":".
_KEY_RE: Final = re.compile(r"(?<!\S)([a-z][a-z0-9_]*(?:[ \t]+date)?)[ \t]*:", re.I | re.A)
_KEY_SEPARATORS: Final = str.maketrans("", "", " \t_")
_FIELDS: Final[dict[str, str]] = {
    "id": "id",
    "sub": "sub",
    "dlvrd": "dlvrd",
    "submitdate": "submit_date",
    "donedate": "done_date",
    "submit date": "submit_date",  # the usual spellings, found without normalising
    "done date": "done_date",
    "submit_date": "submit_date",
    "done_date": "done_date",
    "stat": "stat",
    "err": "err",
    "text": "text",
}
_DATE_SEPARATORS: Final = str.maketrans("", "", " \t-:/.T")
_HEX_DIGITS: Final = "0123456789abcdef"
_WHITESPACE_AND_NUL: Final = "\x00 \t\r\n\x0b\x0c"


def _decode(data: bytes | bytearray | memoryview) -> str:
    raw = bytes(data)
    if raw.startswith((b"\xfe\xff", b"\xff\xfe")):
        return raw.decode("utf-16", "replace")
    # UCS-2/UTF-16BE: the receipt starts with ASCII keys, so the first code units are 00 xx.
    if len(raw) % 2 == 0 and len(raw) >= 8 and not raw[0:8:2].strip(b"\x00") and all(raw[1:8:2]):
        return raw.decode("utf-16-be", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _fields(text: str) -> dict[str, str]:
    """The known fields of a receipt, values stripped; ``text`` runs to the end."""
    fields: dict[str, str] = {}
    name: str | None = None
    start = 0
    for match in _KEY_RE.finditer(text):
        if name is not None and name not in fields:
            fields[name] = text[start : match.start()].strip()
        key = match.group(1).lower()
        name = _FIELDS.get(key) or _FIELDS.get(key.translate(_KEY_SEPARATORS))
        start = match.end()
        if name == "text":
            break
    if name is not None and name not in fields:
        fields[name] = text[start:].strip()
    return fields


def _first_token(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(None, 1)[0]


def _parse_count(value: str | None) -> int | None:
    token = _first_token(value)
    if token is None or len(token) > _MAX_COUNT_DIGITS:
        return None
    if token.isascii() and token.isdigit():
        return int(token)
    return None


def _parse_date_digits(value: str) -> datetime | None:
    digits = value.translate(_DATE_SEPARATORS)
    if not (digits.isascii() and digits.isdigit()):
        return None
    size = len(digits)
    if size in (10, 12):
        year, rest = 2000 + int(digits[:2]), digits[2:]
    elif size == 14:
        year, rest = int(digits[:4]), digits[4:]
    else:
        return None
    second = int(rest[8:10]) if len(rest) == 10 else 0
    try:
        return datetime(
            year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]), second
        )
    except ValueError:  # month 13, 30 February, hour 24...
        return None


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    result = _parse_date_digits(value)
    if result is None and " " in value:  # "2301011200 junk": fall back to the first token
        result = _parse_date_digits(value.split(None, 1)[0])
    return result


def parse_receipt(text: str | bytes | bytearray | memoryview, *, lenient: bool = False) -> Receipt:
    """Parse the text of a delivery receipt, tolerating what carriers really send.

    Args:
        text: The short_message (or message_payload) of the deliver_sm, as text or raw bytes
            (UTF-8, Latin-1 or UCS-2 are recognised).

    Returns:
        The `Receipt`. Fields that are missing or unreadable are ``None``; dates are naive
        datetimes in the carrier's local time.

        lenient: Read a missing or unrecognised ``stat`` (vendor states, junk) as UNKNOWN
            instead of raising: for a PDU that says it is a receipt, whose outcome must be
            recorded even when we cannot read it.

    Raises:
        ReceiptParseError: There is no (non-empty) ``id`` field, or (unless `lenient`) no
            ``stat`` field with a state we recognise (see `parse_state`).
    """
    if not isinstance(text, str):
        text = _decode(text)
    body = text.replace("\x00", " ").strip()
    fields = _fields(body)
    message_id = _first_token(fields.get("id"))
    if message_id is None:
        raise ReceiptParseError(f"no message id in receipt {body[:80]!r}")
    stat_token = _first_token(fields.get("stat"))
    stat = parse_state(stat_token) if stat_token is not None else None
    if stat is None and lenient:
        stat = ReceiptState.UNKNOWN
    if stat is None:
        raise ReceiptParseError(f"no recognisable stat in receipt {body[:80]!r}")
    return Receipt(
        message_id=message_id,
        stat=stat,
        sub=_parse_count(fields.get("sub")),
        dlvrd=_parse_count(fields.get("dlvrd")),
        submit_date=_parse_date(fields.get("submit_date")),
        done_date=_parse_date(fields.get("done_date")),
        err=_first_token(fields.get("err")),
        text=fields.get("text"),
    )


def looks_like_receipt(text: str | bytes | bytearray | memoryview) -> bool:
    """Whether a deliver_sm body is a delivery receipt, for SMSCs that do not set esm_class.

    This is exactly "`parse_receipt` would succeed" (a non-empty ``id:`` and a recognised
    ``stat:``), behind a fast rejection of bodies without a colon. A person texting
    ``id:5 stat:failed`` would be taken for a receipt; prefer the esm_class bit when present.

    Args:
        text: The short_message, as text or bytes.

    Returns:
        ``True`` if it parses as a receipt.
    """
    if isinstance(text, str):
        if ":" not in text:
            return False
    else:
        text = bytes(text)  # `b":" in memoryview` compares ints with bytes: always False
        if b":" not in text:
            return False
    try:
        parse_receipt(text)
    except ReceiptParseError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Formatting


def _format_date(value: datetime | None, date_digits: Literal[10, 12]) -> str:
    if value is None:
        return "0" * date_digits  # reads back as None
    return value.strftime("%y%m%d%H%M%S" if date_digits == 12 else "%y%m%d%H%M")


def _format_count(name: str, value: int | None) -> str:
    if value is None:
        return "000"
    if value < 0:
        raise ValueError(f"{name} must not be negative: {value}")
    return f"{value:03d}"


def format_receipt(
    receipt: Receipt,
    *,
    date_digits: Literal[10, 12] = 10,
    include_text: bool = True,
    text_label: Literal["Text", "text"] = "Text",
    text_length: int = 20,
) -> str:
    """Write a receipt in the format of SMPP v3.4 Appendix B.

    ``id:<id> sub:SSS dlvrd:DDD submit date:<date> done date:<date> stat:<STAT> err:EEE
    Text:<text>`` - counts zero-padded to three digits, a numeric `err` zero-padded to three
    digits (other codes such as ``0x1F`` written as they are; ``None`` as ``000``), a missing
    count as ``000`` and a missing date as zeros (which `parse_receipt` reads back as
    ``None``). Datetimes are written as their wall-clock time; convert them to the zone your
    clients expect first.

    Args:
        receipt: What to write.
        date_digits: 10 for ``YYMMDDhhmm`` (Appendix B) or 12 for ``YYMMDDhhmmss``.
        include_text: Whether to write the ``Text:`` field; it is also left out when
            ``receipt.text`` is ``None``.
        text_label: ``"Text"`` as in Appendix B, or ``"text"`` for ESMEs that look for the
            lower-case key only.
        text_length: How many characters of `receipt.text` to write (Appendix B: 20).

    Returns:
        The receipt text.

    Raises:
        ValueError: The message id or err is empty or contains whitespace, a count is
            negative, or `text_length` is negative.
    """
    message_id = receipt.message_id
    if message_id.split() != [message_id]:
        raise ValueError(f"message id must be non-empty without whitespace: {message_id!r}")
    err = receipt.err or "000"
    if err.split() != [err]:
        raise ValueError(f"err must not contain whitespace: {err!r}")
    if err.isascii() and err.isdigit():
        err = err.zfill(3)
    if text_length < 0:
        raise ValueError(f"text_length must not be negative: {text_length}")
    out = (
        f"id:{message_id}"
        f" sub:{_format_count('sub', receipt.sub)}"
        f" dlvrd:{_format_count('dlvrd', receipt.dlvrd)}"
        f" submit date:{_format_date(receipt.submit_date, date_digits)}"
        f" done date:{_format_date(receipt.done_date, date_digits)}"
        f" stat:{receipt.stat.value}"
        f" err:{err}"
    )
    if include_text and receipt.text is not None:
        out += f" {text_label}:{receipt.text[:text_length]}"
    return out


def format_receipt_bytes(
    receipt: Receipt,
    *,
    encoding: str = "latin-1",
    errors: str = "replace",
    date_digits: Literal[10, 12] = 10,
    include_text: bool = True,
    text_label: Literal["Text", "text"] = "Text",
    text_length: int = 20,
) -> bytes:
    """`format_receipt`, encoded for a short_message.

    Args:
        receipt: What to write.
        encoding: A Python codec matching the data_coding you send (Latin-1 for 3, UTF-16-BE
            for 8...). For the GSM default alphabet, encode `format_receipt` with the GSM codec.
        errors: The codec's error handler; ``"replace"`` turns unencodable text into ``?``.
        date_digits: As for `format_receipt`.
        include_text: As for `format_receipt`.
        text_label: As for `format_receipt`.
        text_length: As for `format_receipt`.

    Returns:
        The encoded receipt.

    Raises:
        ValueError: As for `format_receipt`, or the text cannot be encoded with ``"strict"``.
    """
    text = format_receipt(
        receipt,
        date_digits=date_digits,
        include_text=include_text,
        text_label=text_label,
        text_length=text_length,
    )
    return text.encode(encoding, errors)


# --------------------------------------------------------------------------------------------
# Message ids


_LEADING_ZEROS: Final = re.compile(r"(?<![0-9a-z])0+(?=[0-9a-z])", re.A)


def _spelling(lowered: str, *, hex_base: bool = False) -> str:
    """The id without the leading zeros of each alphanumeric run (``0e999f21-00ab`` and
    ``e999f21-ab`` are one id) - the same in any base, so it never makes two different ids
    meet - and, in a base known to be hex, without a ``0x`` prefix."""
    body = lowered
    if hex_base and lowered.startswith("0x") and len(lowered) > 2:
        body = lowered[2:]
    return _LEADING_ZEROS.sub("", body) if "0" in body else body


def _number(lowered: str, base: Literal["decimal", "hex"] | None) -> str | None:
    """``n:`` + the id's value in decimal when it reads as a number in `base` (None: the
    letterless-is-decimal heuristic of `canonical_ids`)."""
    body = lowered[2:] if lowered.startswith("0x") else lowered
    explicit_hex = len(body) != len(lowered)
    if not body or not body.isascii() or not body.isalnum():
        return None
    significant = body.lstrip("0") or "0"
    if len(significant) > MAX_NUMERIC_DIGITS:
        return None
    if base is None:
        base = "decimal" if body.isdigit() and not explicit_hex else "hex"
    if base == "decimal":
        return "n:" + significant if body.isdigit() and not explicit_hex else None
    if not body.strip(_HEX_DIGITS):
        return "n:" + str(int(significant, 16))
    return None


def canonical_ids(message_id: str, *, assume_hex: bool = False) -> tuple[str, ...]:
    """The keys under which a message id is indexed, so re-spellings of one id meet.

    ``s:<id stripped of whitespace/NULs, lower-cased, without the leading zeros of each
    alphanumeric run>`` always comes first; then, if the id is a number,
    ``n:<its value in decimal>``: all decimal digits are read as decimal, hex digits with at
    least one letter (or a ``0x`` prefix) as hexadecimal. Ids with dashes or other letters
    (UUIDs, alphanumerics), non-ASCII ids and ids with more than `MAX_NUMERIC_DIGITS`
    significant digits only get the ``s:`` key. See the module docstring for the trade-offs;
    match on ``(upstream, key)`` and prefer earlier keys. Once an upstream's format is known,
    use `IdSpelling`, which reads an id in no other base.

    Args:
        message_id: The id as received (submit_sm_resp message_id, receipt ``id``,
            receipted_message_id TLV).
        assume_hex: Read all-digit ids as hexadecimal - for an upstream known to spell ids in
            hex, where an id may happen to contain no letter.

    Returns:
        The keys, strongest first; empty for an empty id (which matches nothing).
    """
    lowered = message_id.replace("\x00", " ").strip().lower()
    if not lowered:
        return ()
    numeric = _number(lowered, "hex" if assume_hex else None)
    spelled = "s:" + _spelling(lowered)
    return (spelled,) if numeric is None else (spelled, numeric)


IdFormat = Literal["auto", "decimal", "hex", "uuid", "string", "hex_decimal"]
ID_FORMATS: Final[tuple[str, ...]] = ("auto", "decimal", "hex", "uuid", "string", "hex_decimal")
_Base = Literal["decimal", "hex", "text"]
_LEARN_DECIMAL: Final = 32  # letterless ids in a row before a base is taken to be decimal
_CONFIGURED: Final[dict[str, tuple[_Base, _Base]]] = {
    "decimal": ("decimal", "decimal"),
    "hex": ("hex", "hex"),
    "uuid": ("text", "text"),
    "string": ("text", "text"),
    "hex_decimal": ("hex", "decimal"),  # Kannel's msg-id-type 1: hex responses, decimal texts
}


class _BaseLearner:
    """The base one stream of ids is written in, learnt from the ids themselves: hex at the
    first id with a letter a-f (and only hex digits), text at the first id that is no number,
    decimal after `_LEARN_DECIMAL` letterless ids (sequential hex ids cannot run that long
    without a letter, random 8-digit ones hardly: 0.625^8 each)."""

    __slots__ = ("_letterless", "base")

    def __init__(self, base: _Base | None) -> None:
        self.base = base
        self._letterless = 0

    def see(self, lowered: str) -> None:
        if self.base == "text" or not lowered:
            return
        body = lowered[2:] if lowered.startswith("0x") else lowered
        if not (body.isascii() and body.isalnum()) or body.strip(_HEX_DIGITS):
            self.base = "text"
        elif not body.isdigit() or len(body) != len(lowered):
            self.base = "hex"
        elif self.base is None:
            self._letterless += 1
            if self._letterless >= _LEARN_DECIMAL:
                self.base = "decimal"


class IdSpelling:
    """How one upstream spells its message ids, configured (`id_format`) or learnt.

    Every id is kept under its spelling key (`canonical_ids`'s ``s:`` key: case, a ``0x``
    prefix and leading zeros ignored, whatever the format) and, when it is a number, under
    ``n:`` + its value. A receipt's id is looked up by its spelling key first; by value only
    when the receipts are written in another base than the responses (``hex_decimal``, or
    learnt so) or while the bases are not known yet. Once both are known and equal, an id is
    never read in another base: the unknown hex id ``484`` never meets the message the
    carrier numbered ``1E4`` (decimal 484).

    `auto` learns the base of the submit_sm_resp ids (`sent`) and of the receipts' ids
    (`received`) separately: hex at the first id with a letter a-f, text (uuid, string) at the
    first id that is no number, decimal after 32 letterless ids.
    """

    __slots__ = ("_received", "_sent", "id_format")

    def __init__(self, id_format: str = "auto") -> None:
        if id_format not in ID_FORMATS:
            raise ValueError(f"id_format must be one of {', '.join(ID_FORMATS)}")
        self.id_format = id_format
        sent, received = _CONFIGURED.get(id_format, (None, None))
        self._sent = _BaseLearner(sent)
        self._received = _BaseLearner(received)

    @property
    def known(self) -> bool:
        """Both bases are known (configured, or learnt)."""
        return self._sent.base is not None and self._received.base is not None

    @property
    def bases(self) -> tuple[str | None, str | None]:
        """(the submit_sm_resp ids' base, the receipts' ids' base); None while not known."""
        return self._sent.base, self._received.base

    def restore(self, sent: str | None, received: str | None) -> None:
        """Take up what an earlier run learnt (auto only: a configured format stands), so
        the receipts that come right after a restart are read as the ones before it."""
        if self.id_format != "auto":
            return
        for learner, base in ((self._sent, sent), (self._received, received)):
            if base in ("decimal", "hex", "text") and learner.base is None:
                learner.base = base  # type: ignore[assignment]

    def sent(self, upstream_id: str) -> tuple[str, ...]:
        """The keys to store an id from a submit_sm_resp under (and learn from it)."""
        lowered = upstream_id.replace("\x00", " ").strip().lower()
        if not lowered:
            return ()
        if self.id_format == "auto":
            self._sent.see(lowered)
        base = self._sent.base
        numeric = None if base == "text" else _number(lowered, base)
        spelled = "s:" + _spelling(lowered, hex_base=base == "hex")
        return (spelled,) if numeric is None else (spelled, numeric)

    def received(self, upstream_id: str, *, widened: bool, learn: bool = True) -> tuple[str, ...]:
        """The keys to look a receipt's id up by (and, with `learn`, learn from it).
        `widened`: the second look, once every send that started before the receipt came
        has been recorded - only then may the value in the receipts' base match, and only
        where that is needed."""
        lowered = upstream_id.replace("\x00", " ").strip().lower()
        if not lowered:
            return ()
        if learn and self.id_format == "auto":
            self._received.see(lowered)
        sent, received = self._sent.base, self._received.base
        spelled = "s:" + _spelling(lowered, hex_base=received == "hex")
        if not widened or received == "text" or (sent is not None and sent == received):
            return (spelled,)  # one base: the spelling key is the whole truth
        numeric = _number(lowered, received)
        return (spelled,) if numeric is None else (spelled, numeric)


def ids_match(a: str, b: str) -> bool:
    """Whether two spellings may denote the same message id (they share a canonical key).

    Args:
        a: One id, e.g. from submit_sm_resp.
        b: The other, e.g. from a receipt.

    Returns:
        ``True`` if `canonical_ids` of both share a key: ``0A1B2C``/``662316``,
        ``000123``/``123``, ``abc123``/``ABC123`` match; ``10``/``16`` do not.
    """
    keys = canonical_ids(a)
    return any(key in keys for key in canonical_ids(b))
