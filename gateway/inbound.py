"""Inbound (MO) messages: from an upstream's deliver_sm / data_sm to an application's queue.

Theory of operation
-------------------
`Inbound.take` gets one PDU from a driver (a carrier's deliver_sm or data_sm, or the deliver_sm
a modem bank made of an SMS-DELIVER) and answers with the command_status the driver should
send back: ESME_ROK once what it carries is durable (queued for an application, or kept as a
part until its message is whole), or a *permanent* refusal with a logged reason - never a
temporary one, which would make a carrier resend the same PDU for ever. Only the store failing
raises: that is temporary, and the carrier (or the modem's SIM) keeps the message for later.

1. Addresses. An application's deliver_sm has C-Octet String addresses of at most 20
   characters (SMPP v3.4 4.6.1), ASCII. What comes in may not fit: a modem's alphanumeric
   TP-OA is GSM 7-bit and can hold Greek capitals and symbols (``ΔHMOΣ``), a carrier's C-Octet
   String may hold Latin-1, a data_sm address may be 64 characters (5.2.8). Such an address is
   *transliterated and truncated*: Greek capitals to their Latin look-alikes, the others as
   ELOT 743 writes them (Δ→D, Σ→S, Ψ→PS; so ``ΔHMOΣ`` becomes ``DHMOS``), accents dropped,
   anything else ``?``, then the first 20 characters (`app_address`). The address exactly as
   it came rides along in the standard source_subaddress (or dest_subaddress) TLV, type
   0xA0 "user specified" and the UTF-8 octets (SMPP v3.4 5.3.2.15), when it fits its 22
   octets and the upstream sent none of its own; a longer one is only logged. Not a vendor
   TLV: smpplib, by default, fails on a TLV it does not know, and an application whose
   client library fails on a deliver_sm would be offered the same one for ever. Delivering
   beats refusing here: the sender's text is intact, and a refusal would lose it for a
   cosmetic reason.
2. Parts. A part of a concatenated message (UDH 8- or 16-bit reference, or SAR TLVs) is kept
   in the store (`Store.add_inbound_part`) until its message is whole; after `mo_timeout` what
   came is delivered, marked partial in the log. This store path is the one MO reassembly (it
   survives a restart: an acknowledged part is never lost). The store remembers a finished
   message's parts for `repeat_window` seconds: a part that comes again byte for byte (the
   carrier lost our deliver_sm_resp and resends) is acknowledged and dropped, not delivered a
   second time. A *different* part under a finished message's key is a new message that reuses
   the reference: the old one is forgotten.
3. Form. The application gets the message in one of three forms:

   - **text** (the common case: GSM 7-bit, UCS-2, Latin-1 and the other SMPP alphabets, with
     at most concatenation and national-language-shift UDH elements): the parts' text is
     joined and cut again for the application, GSM 7-bit or UCS-2 with an 8-bit concatenation
     UDH, so every SMPP client can read it whatever the upstream used (SAR, 16-bit reference,
     a national table, Latin-1).
   - **kept form** (8-bit data - data_coding 2, 4, 0xF4-0xF7... - or a UDH with any other
     element: application ports 0x04/0x05 for WAP push and app-directed SMS, EMS
     formatting...): the data_coding, protocol_id and the UDH's other elements reach the
     application unchanged, with esm_class 0x40. Nothing is decoded into text and rebuilt.
     A multipart one is reassembled too - the body octets joined in order - and cut again
     with the other elements (the port) in front of a new 8-bit concatenation element in
     every part, as WAP push over SMS is sent (WDP), so the application sees one series
     with our reference whatever concatenation the upstream used, and gets it once.
   - **one message_payload** (SMPP v3.4 5.3.2.32): when cutting again would need more than 255
     parts (a 34,172-octet UCS-2 payload) or the UDH leaves no room, the whole body goes in
     one deliver_sm's message_payload, in the kept form (data_coding and UDH as they came,
     esm_class 0x40 when there is a UDH). Over 65,535 octets it cannot be carried at all:
     refused.

   A reassembled text is cut with a reference from `ReferenceAllocator.rotate` per sender:
   consecutive long MOs from one sender get consecutive references, and nothing is held, so
   no sender ever runs out (the allocator used to be `allocate`d and never released, and the
   257th MO from one number failed) and memory stays at `max_senders` entries however many
   senders there are. A forgotten sender restarts at a spread-out point; the application
   would mix two messages only if 256 long ones from one sender were in its hands unassembled
   at once.
4. Refusals, each logged with its reason: a PDU that does not parse as a message (a UDH
   indicator with a UDH that does not parse: ESME_RINVESMCLASS; short_message and
   message_payload both set: ESME_RINVPARLEN), no mo_route for the number it was sent to, a
   body too big for any deliver_sm (ESME_RX_P_APPN: the carrier stops resending). A message
   refused once whole is marked done like a delivered one, so its parts sent again are still
   recognised; a part refused on its own is not kept, and its message goes out partial at
   the timeout.

Crash safety: the store marks a message *taken* in the same write that completes it (so a
copy of its last part arriving meanwhile gets nothing), and *done* in the write that queues
its deliveries. A message taken but never done - the process died in between, before the
last part was answered - is delivered by the timeout path, so it is never lost.

Opt-out: an MO whose whole text is an opt-out keyword (`gateway.policy.keywords`) suppresses
its sender's number - for every sender id, or with ``scope: sender`` only for the address it
replied to - and an opt-in keyword removes that; before the MO is queued, so a crash between
the two only repeats an idempotent write when the upstream resends. The application still
gets the MO. The confirmation reply (if configured) goes out after, through the accept
pipeline (`OptOutRule.confirm`); it failing never fails the MO.

Deliberately left out: duplicates of a single-part MO (a repeated ``YES`` is a legitimate
second message), and cross-node claiming of timed-out partial messages (two nodes sharing a
PostgreSQL store may both deliver one partial message).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from gateway.policy.keywords import Keywords, Reply
from gateway.routing import NumberPlan, normalize, sender_key
from gateway.routing.mo import MoRouter
from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandId, CommandStatus, Tag
from gateway.smpp.errors import SmppError
from gateway.smpp.message import MessageContent, SmBuilder, message_content, sm_builder
from gateway.smpp.pdu import DataSm, DeliverSm
from gateway.smpp.tlv import Tlv
from gateway.sms import Encoding, MessageTooLong, ReferenceAllocator, SmsError, segment
from gateway.sms.coding import decode_text
from gateway.sms.segment import MAX_PAYLOAD, cut_body, udh8_headers
from gateway.sms.udh import (
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    IEI_LOCKING_SHIFT,
    IEI_SINGLE_SHIFT,
    build_udh,
    concat_ie,
)
from gateway.store.base import NewDelivery, Store
from gateway.telemetry.events import Events

if TYPE_CHECKING:
    from gateway.telemetry.metrics import Metrics

__all__ = ["MAX_ADDRESS", "Inbound", "OptOutRule", "app_address"]

log = structlog.get_logger("smsgw.inbound")

MAX_ADDRESS = 20  # deliver_sm source_addr / destination_addr: C-Octet String of 21 (4.6.1)

_S = CommandStatus
_OK = CommandStatus.ESME_ROK
_UDHI = 0x40
_DELIVER_SM = int(CommandId.deliver_sm)
_TEXT_IEIS = frozenset((IEI_CONCAT_8, IEI_CONCAT_16, IEI_SINGLE_SHIFT, IEI_LOCKING_SHIFT))
_CONCAT_IEIS = frozenset((IEI_CONCAT_8, IEI_CONCAT_16))
# The MO's TLVs the application gets with its text: the subaddresses (ours or the upstream's).
_PASSED_TAGS = frozenset((int(Tag.source_subaddress), int(Tag.dest_subaddress)))
_USER_SPECIFIED = b"\xa0"  # subaddress type tag (SMPP v3.4 5.3.2.15)
_SHORT_MESSAGE_MAX = 254  # sm_length is one octet, 255 is reserved (5.2.21)

# Greek capitals: a Latin look-alike where there is one (GSM 7-bit itself writes those as
# Latin, TS 23.038 6.2.1), ELOT 743 for the ten it has as Greek; then the rest of GSM 7-bit
# that has no ASCII decomposition.
_TRANSLITERATION = str.maketrans(
    {
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
        "Γ": "G", "Δ": "D", "Θ": "TH", "Λ": "L", "Ξ": "X", "Π": "P", "Σ": "S", "Φ": "F",
        "Ψ": "PS", "Ω": "O",
        "Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "ß": "ss", "€": "E", "£": "L", "¥": "Y",
        "§": "S", "¤": "?", "¡": "!", "¿": "?",
    }
)  # fmt: skip


def app_address(address: str) -> str:
    """`address` as an application's deliver_sm can carry it: printable ASCII, at most 20
    characters (see the module docstring, point 1). An address that already fits is returned
    as it is."""
    if len(address) <= MAX_ADDRESS and address.isascii() and address.isprintable():
        return address
    folded = unicodedata.normalize("NFKD", address.translate(_TRANSLITERATION))
    out = []
    for char in folded:
        if char.isascii():
            out.append(char if char.isprintable() else "?")
        elif not unicodedata.combining(char):  # an accent that NFKD split off goes
            out.append("?")
    return "".join(out)[:MAX_ADDRESS]


# (account, to: the MO's sender, from: the address it was sent to, text): accept a reply.
Confirm = Callable[[str, str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class OptOutRule:
    """What MO replies opt out (`policy.opt_out`), compiled once per configuration."""

    keywords: Keywords
    per_sender: bool = False  # scope: sender - only what comes from the address replied to
    # The reply to an opt-out: one text, or one per keyword language ("*": any other).
    confirmation: str | Mapping[str, str] | None = None
    confirm: Confirm | None = None

    def confirmation_for(self, language: str) -> str | None:
        if isinstance(self.confirmation, Mapping):
            return self.confirmation.get(language) or self.confirmation.get("*")
        return self.confirmation


class _Refused(Exception):
    """An MO that cannot be handed on: its reason is logged, its status goes to the upstream."""

    def __init__(self, reason: str, status: CommandStatus = _S.ESME_RX_P_APPN) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Message:
    """A whole (or timed-out) MO: its parts in order, and what the application gets."""

    first: DeliverSm | DataSm  # the earliest part that came (addresses, TON/NPI, TLVs)
    parts: tuple[MessageContent, ...]
    data_codings: tuple[int, ...]
    total: int  # parts the upstream said there were (1 when it came whole)
    key: str  # the store's key for its parts; "" when it came whole

    @property
    def partial(self) -> bool:
        return len(self.parts) < self.total

    @property
    def kept_form(self) -> bool:
        """8-bit data, or a UDH element that only means something where it is (ports)."""
        return any(
            p.encoding is Encoding.BINARY or any(e.iei not in _TEXT_IEIS for e in p.elements)
            for p in self.parts
        )

    def text(self) -> str:
        """The parts' text: runs of parts in one encoding are joined before decoding, so a
        pair split across parts by a careless sender still decodes; what does not decode is
        replaced (U+FFFD), never an error."""
        runs: list[tuple[MessageContent, list[bytes]]] = []
        for part in self.parts:
            if runs and (
                part.encoding == runs[-1][0].encoding and part.alphabet is runs[-1][0].alphabet
            ):
                runs[-1][1].append(part.body)
            else:
                runs.append((part, [part.body]))
        return "".join(
            decode_text(b"".join(bodies), head.encoding, head.alphabet, "replace")
            for head, bodies in runs
        )


class Inbound:
    """The MO path; the `Dispatcher` holds one and hands it every inbound PDU.

    Args:
        store: where parts wait and deliveries are queued.
        router: which account gets an MO.
        plan: how destination numbers are normalised for `router`.
        notify: called with an account when a deliver_sm was queued for it.
        clock: wall-clock seconds.
        delivery_ttl: seconds a queued deliver_sm waits for the application.
        mo_timeout: seconds from a message's first part until what came is delivered.
        repeat_window: seconds a finished message's parts are remembered, so a part sent
            again is not delivered again.
        max_senders: senders whose reference rotation is remembered.
        webhook_events: what an account's webhook wants; with "mo" the whole message is
            queued for it too (one deliver_sm, in the same write as the binds' ones).
    """

    def __init__(
        self,
        store: Store,
        *,
        router: MoRouter,
        plan: NumberPlan,
        notify: Callable[[str], None],
        clock: Callable[[], float],
        delivery_ttl: float,
        mo_timeout: float = 300.0,
        repeat_window: float = 3600.0,
        max_senders: int = 10_000,
        seed: int = 0,
        webhook_events: Callable[[str], frozenset[str]] = lambda _account: frozenset(),
    ) -> None:
        self.webhook_events = webhook_events
        self.store = store
        self.router = router
        self.plan = plan
        self.notify = notify
        self.clock = clock
        self.delivery_ttl = delivery_ttl
        self.mo_timeout = mo_timeout
        self.repeat_window = repeat_window
        self.refs = ReferenceAllocator(max_destinations=max_senders, seed=seed)
        self.opt_out: OptOutRule | None = None  # set from the policy (and on reload)
        self.metrics: Metrics | None = None
        self.events = Events.off()

    async def take(self, pdu: Any) -> CommandStatus:
        """One inbound PDU; durable when this returns ESME_ROK.

        Returns:
            ESME_ROK, or the permanent status of a refusal (logged).

        Raises:
            Exception: only from the store (temporary: the upstream should resend).
        """
        originals = (getattr(pdu, "source_addr", ""), getattr(pdu, "destination_addr", ""))
        try:
            pdu = _app_addresses(pdu)
            content = message_content(pdu)
        except _Refused as exc:
            return _refused(pdu, exc)
        except SmppError as exc:
            return _refused(pdu, _Refused(f"unreadable: {exc}", exc.status))
        concat = content.concat
        if concat is None or concat.total == 1:
            message = _Message(pdu, (content,), (pdu.data_coding,), 1, "")
            return await self._deliver(message)
        source, destination = (_key_text(a) for a in originals)
        key = f"{source}|{destination}|{concat.ref_bits}:{concat.ref}|{concat.total}"
        try:
            raw = encode_pdu(pdu._replace(sequence_number=0, command_status=0))
        except SmppError as exc:  # a driver's PDU the codec cannot write (a too-long body)
            return _refused(pdu, _Refused(f"cannot be kept: {exc}", exc.status))
        raws = await self.store.add_inbound_part(key, concat.seq, concat.total, raw, self.clock())
        if raws is None:
            return _OK  # kept until the rest comes
        if not raws:
            log.info("part of a finished MO came again: not delivered twice", key=key)
            return _OK
        return await self._deliver(_assemble(raws, concat.total, key))

    async def housekeeping(self, now: float) -> None:
        """Deliver the messages whose missing parts never came, and forget finished ones
        past `repeat_window`."""
        for key, raws in await self.store.stale_inbound(now - self.mo_timeout):
            message = _assemble(raws, 0, key)
            if message.partial:
                log.info(
                    "inbound message incomplete, delivered as it is",
                    key=key,
                    parts=len(message.parts),
                    total=message.total,
                )
            else:  # whole, but the process stopped before it was queued
                log.info("inbound message taken but not queued before a stop: queued now", key=key)
            await self._deliver(message)
        await self.store.forget_inbound(now - self.repeat_window)

    async def _deliver(self, message: _Message) -> CommandStatus:
        """Route a whole (or timed-out) message and queue it for its account."""
        now = self.clock()
        try:
            if not message.parts:
                raise _Refused("no readable part")
            text = "" if message.kept_form else message.text()
            first = message.first
            destination = normalize(first.destination_addr, self.plan) or first.destination_addr
            account = self.router.account_for(destination, text)
            if account is None:
                raise _Refused(f"no mo_route for {destination}")
            pdus = self._pdus(message, text)
        except _Refused as exc:
            if message.key:  # its parts are done with; a repeat is still recognised
                await self.store.finish_inbound(message.key, [], now)
            return _refused(message.first, exc)
        rule = self.opt_out
        reply, language = None, ""
        if rule is not None and text:
            found = rule.keywords.match(text)
            if found is not None:
                reply = await self._opt(found[0], message, rule, now)
                language = found[1]
        ttl = self.delivery_ttl
        deliveries = [NewDelivery(account, "mo", p, ttl) for p in pdus]
        if "mo" in self.webhook_events(account):
            webhook = self._webhook_delivery(account, message, pdus)
            if webhook is not None:
                deliveries.append(webhook)
        await self.store.finish_inbound(message.key, deliveries, now)
        self.notify(account)
        self.events.mo(first.source_addr, destination, account, text, len(message.parts))
        confirmation = rule.confirmation_for(language) if rule is not None else None
        if reply is Reply.OPT_OUT and rule is not None and confirmation and rule.confirm:
            first = message.first
            try:
                await rule.confirm(account, first.source_addr, first.destination_addr, confirmation)
            except Exception:  # the opt-out stands; only its confirmation is lost
                log.exception("opt-out confirmation not sent", account=account)
        return _OK

    async def _opt(
        self, reply: Reply, message: _Message, rule: OptOutRule, now: float
    ) -> Reply | None:
        """Suppress (or free) the MO's sender; None when the sender is not a number."""
        first = message.first
        number = normalize(first.source_addr, self.plan)
        if number is None:
            log.info("opt-out keyword from a sender that is not a number", kind=reply.value)
            return None
        scope = sender_key(first.destination_addr, self.plan) if rule.per_sender else ""
        source = f"mo:{_key_text(first.destination_addr)}"  # the number it was sent to
        if reply is Reply.OPT_OUT:
            await self.store.suppress([(number, scope, source)], now)
        else:
            await self.store.unsuppress([(number, scope)])
        log.info(reply.value.replace("_", "-"), number=number, scope=scope, source=source)
        if self.metrics is not None:
            self.metrics.optout(reply.value, "mo")
        return reply

    def _webhook_delivery(
        self, account: str, message: _Message, pdus: list[bytes]
    ) -> NewDelivery | None:
        """The webhook's copy of an MO: one deliver_sm with the whole message (the binds' own
        when there is one, else all of it in a message_payload)."""
        try:
            pdu = pdus[0] if len(pdus) == 1 else self._payload(message)
        except _Refused as exc:  # over 65,535 octets: the binds get it cut, the webhook not
            log.warning("MO too big for the webhook", account=account, reason=str(exc))
            return None
        return NewDelivery(account, "mo", pdu, self.delivery_ttl, ("webhook",))

    def _pdus(self, message: _Message, text: str) -> list[bytes]:
        """The deliver_sm PDUs of `message` for the application (see the module docstring)."""
        try:
            if message.kept_form:
                return self._kept(message)
            return self._text(message, text)
        except (SmsError, SmppError) as exc:  # unexpected: the forms above are built to fit
            raise _Refused(f"cannot be built for the application: {exc}") from None

    def _text(self, message: _Message, text: str) -> list[bytes]:
        first = message.first
        try:
            segments = segment(text)
        except MessageTooLong:
            return [self._payload(message)]
        if segments.total > 1:
            ref = self.refs.rotate(first.source_addr)
            segments = segments._replace(ref=ref, udhs=udh8_headers(ref, segments.total))
        builder = _text_builder(first)
        return builder.build(
            segments, first.source_addr, first.destination_addr, [0] * segments.total
        )

    def _kept(self, message: _Message) -> list[bytes]:
        first = message.first
        head = message.parts[0]
        others = [e for e in head.elements if e.iei not in _CONCAT_IEIS]
        body = b"".join(p.body for p in message.parts)
        if len(message.parts) == 1 and message.total == 1:
            short_message = head.udh + head.body  # exactly as it came
            if len(short_message) <= _SHORT_MESSAGE_MAX:
                return [_encode(first, message.data_codings[0], short_message, bool(head.udh))]
            return [self._payload(message)]
        encoding = head.encoding if isinstance(head.encoding, Encoding) else Encoding.BINARY
        if encoding.is_octet_text:
            encoding = Encoding.BINARY  # cut by octets
        try:
            alone = build_udh(others) if others else b""
            if len(cut_body(body, encoding, len(alone))) <= 1:  # fits one: no concatenation
                return [_encode(first, message.data_codings[0], alone + body, bool(alone))]
            # The concatenation element adds 5 octets (and the UDHL one when alone is empty).
            pieces = cut_body(body, encoding, (len(alone) or 1) + 5)
            if len(pieces) > 255:
                return [self._payload(message)]
            ref = self.refs.rotate(first.source_addr)
            udhs = [
                build_udh([*others, concat_ie(ref, len(pieces), i)])
                for i in range(1, len(pieces) + 1)
            ]
        except SmsError:  # the other elements leave no room: one message_payload
            return [self._payload(message)]
        return [
            _encode(first, message.data_codings[0], udh + piece, True)
            for udh, piece in zip(udhs, pieces, strict=True)
        ]

    def _payload(self, message: _Message) -> bytes:
        """The whole message in one message_payload, in the form it came."""
        head = message.parts[0]
        data_coding = message.data_codings[0]
        body = b"".join(p.body for p in message.parts)
        if any(p.encoding != head.encoding for p in message.parts):
            body = message.text().encode("utf-16-be")  # mixed encodings: as one UCS-2 text
            data_coding = 8
        others = [e for e in head.elements if e.iei not in _CONCAT_IEIS]
        try:
            udh = build_udh(others) if others else b""
        except SmsError:
            udh = b""
        payload = udh + body
        if len(payload) > MAX_PAYLOAD:
            raise _Refused(f"{len(payload)} octets do not fit one message_payload")
        return _encode(message.first, data_coding, payload, bool(udh), payload=True)


def _assemble(raws: Sequence[bytes], total: int, key: str) -> _Message:
    """The stored parts of one message, decoded again (in part order, as stored)."""
    pdus: list[DeliverSm | DataSm] = []
    parts: list[MessageContent] = []
    for raw in raws:
        try:
            pdu = decode_pdu(raw)
            if not isinstance(pdu, DeliverSm | DataSm):
                continue
            content = message_content(pdu)
        except SmppError:  # stored by take, so it read once: kept out rather than raised
            log.warning("stored inbound part unreadable, left out", key=key)
            continue
        pdus.append(pdu)
        parts.append(content)
        if content.concat is not None:
            total = max(total, content.concat.total)
    first = pdus[0] if pdus else DeliverSm()
    return _Message(
        first, tuple(parts), tuple(p.data_coding for p in pdus), max(total, len(parts)), key
    )


def _app_addresses(pdu: Any) -> DeliverSm | DataSm:
    """`pdu` with addresses the application's deliver_sm can carry; the originals of those
    that changed in the subaddress TLVs where they fit (see the module docstring)."""
    if not isinstance(pdu, DeliverSm | DataSm):
        raise _Refused(f"not an MO PDU: {type(pdu).__name__}", _S.ESME_RINVCMDID)
    source, destination = pdu.source_addr, pdu.destination_addr
    app_source, app_destination = app_address(source), app_address(destination)
    if app_source == source and app_destination == destination:
        return pdu
    tags = {t.tag for t in pdu.tlvs}
    added = []
    for tag, original, address in (
        (Tag.source_subaddress, source, app_source),
        (Tag.dest_subaddress, destination, app_destination),
    ):
        if address == original:
            continue
        octets = original.encode("utf-8", "replace")
        if len(octets) <= 22 and tag not in tags:
            added.append(Tlv(tag, _USER_SPECIFIED + octets))
        else:
            log.info(
                "MO address shortened for the application", original=_key_text(original), to=address
            )
    return pdu._replace(
        source_addr=app_source, destination_addr=app_destination, tlvs=(*pdu.tlvs, *added)
    )


def _key_text(address: str) -> str:
    """`address` as a store key (and a log line) can hold it: no NUL (PostgreSQL text), no
    lone surrogate."""
    return address.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\0")


def _passed_tlvs(pdu: DeliverSm | DataSm) -> tuple[Tlv, ...]:
    return tuple(t for t in pdu.tlvs if t.tag in _PASSED_TAGS and 2 <= len(t.value) <= 23)


def _text_builder(first: DeliverSm | DataSm) -> SmBuilder:
    """The builder for a text MO's parts: its TON/NPI, and our TLVs when it has any."""
    extra = _passed_tlvs(first)
    make = SmBuilder if extra else sm_builder  # per-sender TLVs would only churn the cache
    return make(
        command_id=_DELIVER_SM,
        source_addr_ton=first.source_addr_ton,
        source_addr_npi=first.source_addr_npi,
        dest_addr_ton=first.dest_addr_ton,
        dest_addr_npi=first.dest_addr_npi,
        tlvs=extra,
    )


def _encode(
    first: DeliverSm | DataSm,
    data_coding: int,
    body: bytes,
    udhi: bool,
    *,
    payload: bool = False,
) -> bytes:
    """One deliver_sm in the kept form: the MO's data_coding and protocol_id, `body` (UDH
    included when `udhi`) in short_message or one message_payload."""
    tlvs = _passed_tlvs(first)
    if payload:
        tlvs = (Tlv(Tag.message_payload, body), *tlvs)
    return encode_pdu(
        DeliverSm(
            source_addr_ton=first.source_addr_ton,
            source_addr_npi=first.source_addr_npi,
            source_addr=first.source_addr,
            dest_addr_ton=first.dest_addr_ton,
            dest_addr_npi=first.dest_addr_npi,
            destination_addr=first.destination_addr,
            esm_class=_UDHI if udhi else 0,
            protocol_id=getattr(first, "protocol_id", 0),
            data_coding=data_coding,
            short_message=b"" if payload else body,
            tlvs=tlvs,
        )
    )


def _refused(pdu: Any, exc: _Refused) -> CommandStatus:
    log.warning(
        "MO refused",
        reason=str(exc),
        status=exc.status.name,
        source=getattr(pdu, "source_addr", None),
        destination=getattr(pdu, "destination_addr", None),
    )
    return exc.status
