"""The sending rules in the accept pipeline: what is decided before the store, and the check
the store decides in the accepting transaction (`gateway.policy`).

Before the store, from the message alone: its class's rules, the recipient's number
(phonenumbers: invalid, fixed line, time zones), the signature and opt-out hint of the text
(the text fixed here, so the part count and the UCS-2 choice follow the fixed text), and
quiet hours (the message is scheduled for when the window opens in all the recipient's
zones; its validity still counts from acceptance, so one that cannot go in time expires).
The rest (opted out, dead, caps, dedup) is the store's, in `Store.accept_checked`.

The rules apply only when the configuration has a `policy:` section: without one, every
message is accepted as before, and dedup in particular never answers an app's repeated
text with an earlier id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gateway.config import GatewayConfig
from gateway.policy.check import StoreCheck, dedup_key
from gateway.policy.numbers import number_info, preload
from gateway.policy.rules import ClassRule, Facts, Reason, decide
from gateway.routing import sender_key
from gateway.smpp.codec import encode_tlvs
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.errors import SmppError
from gateway.smpp.message import message_content
from gateway.smpp.tlv import with_tlv
from gateway.sms.errors import SmsError
from gateway.sms.gsm7 import encode_gsm7
from gateway.store.base import NewMessage

__all__ = ["AcceptRules", "Refused"]

_PAYLOAD = int(Tag.message_payload)
_SHORT_MAX = 254


@dataclass(frozen=True, slots=True)
class Refused:
    """A submit refused by a rule: answer with `status`."""

    status: int
    reason: Reason


class AcceptRules:
    """The configured rules, compiled once per configuration (reload builds a new one)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.active = "policy" in config.model_fields_set
        if self.active:
            preload()
        policy = config.policy
        self.policy = policy
        self.rules: dict[str, ClassRule] = policy.rules()
        # Classes whose signature depends on the account or the destination country.
        self.chosen = {name: c for name, c in policy.classes.items() if c.signatures}
        self.numbers = policy.numbers()
        self.refuse = {Reason(k): v for k, v in policy.refuse_at_submit.items()}
        self._refused = frozenset(self.refuse)
        self.scope_by_sender = policy.opt_out.scope == "sender"
        self.plan = config.numbers.plan()
        longest = max((c.window for r in self.rules.values() for c in r.caps), default=0.0)
        self.windows = (max(longest, 1.0), max(policy.dedup_window, 1.0))

    def check(
        self, message: NewMessage, pdu: object, now: float
    ) -> Refused | tuple[NewMessage, StoreCheck]:
        """The message as it will be stored (text fixed, held past quiet hours) and what the
        store must check; or the refusal of a rule that refuses at submit."""
        rule = self.rules.get(message.msg_class) or self.rules[self.policy.default_class]
        info = number_info(message.destination_addr)
        choices = self.chosen.get(rule.name)
        if choices is not None:
            rule = replace(rule, signature=choices.signature_for(message.account, info.country))
        text = _text(pdu) if rule.signature is not None else None  # only a signature reads it
        pre = decide(rule, info, Facts(), text=text, now=now, numbers=self.numbers)
        refuse = self._refused
        if pre.stop is not None:
            if pre.stop in self.refuse:
                return Refused(self.refuse[pre.stop], pre.stop)
            return message, StoreCheck(rule, refuse=refuse, stopped=pre.stop)
        if pre.text is not None:
            message = _with_text(message, pre.text, pdu)
        if pre.hold_until is not None:
            message = message._replace(schedule_at=max(message.schedule_at or 0.0, pre.hold_until))
        key = None
        if self.policy.dedup_window > 0 and rule.dedup:
            body = message.short_message or message.tlvs
            key = dedup_key(message.account, message.destination_addr, message.data_coding, body)
        scope = sender_key(message.source_addr, self.plan) if self.scope_by_sender else ""
        return message, StoreCheck(rule, scope, key, self.policy.dedup_window, refuse)

    def refusal_status(self, reason: Reason) -> int:
        return self.refuse.get(reason, int(CommandStatus.ESME_RSUBMITFAIL))


def _text(pdu: object) -> str | None:
    """The text of a whole message; None for binary or one part of the app's own series (no
    signature rule can fix a part)."""
    try:
        content = message_content(pdu)  # type: ignore[arg-type]
        if content.udh or content.concat is not None:
            return None
        return content.text()
    except (SmppError, SmsError, ValueError):
        return None


def _with_text(message: NewMessage, text: str, pdu: Any) -> NewMessage:
    """`message` carrying `text`: GSM 7-bit if it fits (and the app did not ask for UCS-2),
    else UCS-2; in message_payload when longer than short_message holds."""
    body: bytes
    if message.data_coding == 8:
        body, coding = text.encode("utf-16-be"), 8
    else:
        try:
            body, coding = encode_gsm7(text), 0
        except SmsError:
            body, coding = text.encode("utf-16-be"), 8
    tlvs = tuple(t for t in pdu.tlvs if t.tag != _PAYLOAD)
    if len(body) > _SHORT_MAX:
        tlvs, body = with_tlv(tlvs, _PAYLOAD, body), b""
    raw = encode_tlvs(tlvs) if tlvs else b""
    return message._replace(short_message=body, data_coding=coding, tlvs=raw)
