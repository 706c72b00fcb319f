"""The HTTP API under /api/v1: send, query and cancel messages; reload, modems, status.

A send becomes one submit_sm per recipient and goes through `SmppServer.accept`, the accept
pipeline SMPP uses (validation, routing, limits, durable group commit): the answer comes only
once every accepted message is stored. Text is GSM 7-bit when it fits the alphabet, else
UCS-2; it travels in short_message, or message_payload when longer than 254 octets, and the
gateway cuts it for the carrier as it does a long SMPP message. The account's throughput
limit counts one token per recipient, shared with its SMPP binds.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.client import address_ton_npi
from gateway.http.auth import Caller, admin, caller, gateway_of
from gateway.http.errors import ApiError, errors, status_code
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.pdu import SubmitSm
from gateway.smpp.tlv import Tlv
from gateway.sms.errors import SmsError
from gateway.sms.gsm7 import encode_gsm7

if TYPE_CHECKING:
    from gateway.config import AccountConfig

__all__ = ["SendRequest", "router", "submit_pdu"]

router = APIRouter(prefix="/api/v1")

MAX_RECIPIENTS = 1000  # per request; more go as a batch
_SHORT_MAX = 254  # octets in short_message; longer goes in message_payload
_PAYLOAD = int(Tag.message_payload)
_OK = int(CommandStatus.ESME_ROK)


class SendRequest(BaseModel):
    """One text (or binary body) to one or more recipients."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: list[str] = Field(
        min_length=1,
        max_length=MAX_RECIPIENTS,
        description="recipients: +international or national digits",
        examples=[["+4915112345678"]],
    )
    from_: str = Field(
        "",
        alias="from",
        max_length=21,
        description="sender: a number, or up to 11 letters and digits",
        examples=["Shop"],
    )
    text: str | None = Field(None, description="the text; GSM 7-bit if it fits, else UCS-2")
    hex: str | None = Field(None, description="a binary body in hex (with data_coding)")
    data_coding: int | None = Field(
        None, ge=0, le=255, description="data_coding of `hex` (default 4: 8-bit data)"
    )
    dlr: bool = Field(True, description="ask for a delivery receipt")
    validity: float | None = Field(
        None, gt=0, description="seconds the message may wait to be delivered"
    )
    schedule: datetime | None = Field(
        None, description="send at this time (ISO 8601 with its zone), not at once"
    )
    class_: str | None = Field(
        None,
        alias="class",
        max_length=32,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="message class (otp, transactional, marketing, ...)",
    )
    campaign: str | None = Field(
        None, max_length=64, description="a tag for delivery statistics (compare variants)"
    )

    @field_validator("to")
    @classmethod
    def _numbers(cls, to: list[str]) -> list[str]:
        for i, number in enumerate(to):
            plain = number.replace(" ", "").replace("-", "")
            if not plain.lstrip("+").isdigit() or not 3 <= len(plain.lstrip("+")) <= 20:
                raise ValueError(f"to[{i}]: {number!r} is not a phone number")
        return to

    @model_validator(mode="after")
    def _body(self) -> SendRequest:
        if (self.text is None) == (self.hex is None):
            raise ValueError("give exactly one of text and hex")
        if self.text is not None and not self.text:
            raise ValueError("text is empty")
        if self.hex is not None:
            try:
                bytes.fromhex(self.hex)
            except ValueError:
                raise ValueError("hex is not hexadecimal digits") from None
        elif self.data_coding is not None:
            raise ValueError("data_coding goes with hex; text picks its own")
        return self


class Accepted(BaseModel):
    to: str
    id: str
    stopped: str | None = Field(
        None,
        description="a sending rule stopped it (its receipt says REJECTD): the rule's reason",
    )
    duplicate: bool = Field(False, description="the same text went to this number lately: its id")


class Refused(BaseModel):
    to: str
    field: str
    code: str
    message: str


class SendResponse(BaseModel):
    messages: list[Accepted] = Field(description="one per accepted recipient, in order")
    refused: list[Refused] = Field(description="recipients refused, with why")


def _smpp_time(at: float) -> str:
    """An absolute SMPP time (v3.4 7.1.1) in UTC."""
    return datetime.fromtimestamp(at, UTC).strftime("%y%m%d%H%M%S") + "000+"


def submit_pdu(request: SendRequest, to: str, now: float) -> SubmitSm:
    """The submit_sm an SMPP application would send for `request` to `to`."""
    source, source_ton, source_npi = address_ton_npi(request.from_) if request.from_ else ("", 0, 0)
    dest, dest_ton, dest_npi = address_ton_npi(to.replace("-", ""))
    if request.text is not None:
        try:
            body, data_coding = encode_gsm7(request.text), 0
        except SmsError:
            body, data_coding = request.text.encode("utf-16-be"), 8
    else:
        assert request.hex is not None
        body = bytes.fromhex(request.hex)
        data_coding = 4 if request.data_coding is None else request.data_coding
    tlvs: tuple[Tlv, ...] = ()
    if len(body) > _SHORT_MAX:
        body, tlvs = b"", (Tlv(_PAYLOAD, body),)
    return SubmitSm(
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        source_addr=source,
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        destination_addr=dest,
        registered_delivery=1 if request.dlr else 0,
        schedule_delivery_time=(
            _smpp_time(request.schedule.timestamp()) if request.schedule is not None else ""
        ),
        validity_period=(
            _smpp_time(now + request.validity) if request.validity is not None else ""
        ),
        data_coding=data_coding,
        short_message=body,
        tlvs=tlvs,
    )


def _sender(who: Caller) -> AccountConfig:
    if who.account is None:
        raise ApiError(403, "forbidden", "send as an account, not with the local token")
    return who.account


@router.post(
    "/messages",
    response_model=SendResponse,
    tags=["messages"],
    summary="Send a message to one or more recipients",
    responses=errors(400, 401, 403, 413, 422, 429),
)
async def send(
    body: SendRequest, request: Request, who: Annotated[Caller, Depends(caller)]
) -> SendResponse:
    gateway = gateway_of(request)
    account = _sender(who)
    server = gateway.server
    now = server.clock()
    if not server.take_token(account.system_id, asyncio.get_running_loop().time(), len(body.to)):
        wait = server.retry_after(account.system_id, len(body.to))
        if gateway.metrics is not None:
            gateway.metrics.refuse(account.system_id, CommandStatus.ESME_RTHROTTLED)
        if math.isinf(wait):
            raise ApiError(
                429,
                "throttled",
                f"{len(body.to)} recipients are more than the account's burst: send fewer",
                field="to",
            )
        raise ApiError(
            429,
            "throttled",
            f"over the account's throughput of {account.throughput:g}/s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if body.class_ is not None and body.class_ not in gateway.config.policy.rules():
        known = ", ".join(sorted(gateway.config.policy.rules()))
        raise ApiError(
            422, "unknown_class", f"class {body.class_!r} is not one of {known}", field="class"
        )
    pdus = [submit_pdu(body, to, now) for to in body.to]
    tags = {"msg_class": body.class_ or "", "campaign": body.campaign or ""}
    results = await asyncio.gather(*(server.accept_detail(pdu, account, **tags) for pdu in pdus))
    accepted, refused = [], []
    for i, (to, (status, message_id, reason)) in enumerate(zip(body.to, results, strict=True)):
        if gateway.metrics is not None:
            if status == _OK:
                gateway.metrics.accept(account.system_id)
            else:
                gateway.metrics.refuse(account.system_id, status)
        if status == _OK:
            duplicate = reason == "duplicate"
            stopped = None if duplicate else reason
            accepted.append(Accepted(to=to, id=message_id, stopped=stopped, duplicate=duplicate))
        else:
            code, _http = status_code(status)
            message = _explain(status, to)
            if reason is not None:  # a sending rule refused it: name the rule
                code, message = reason, f"{to}: refused by the sending rules ({reason})"
            refused.append(Refused(to=to, field=f"to[{i}]", code=code, message=message))
    if not accepted:
        first = refused[0]
        http = status_code(results[0][0])[1]
        raise ApiError(http, first.code, first.message, field=first.field)
    return SendResponse(messages=accepted, refused=refused)


def _explain(status: int, to: str) -> str:
    try:
        name = CommandStatus(status).name
    except ValueError:
        name = f"0x{status:08X}"
    reasons: dict[int, str] = {
        CommandStatus.ESME_RINVDSTADR: f"{to}: no route to this number, or not a valid number",
        CommandStatus.ESME_RINVSRCADR: "from: not a sender this gateway can send",
        CommandStatus.ESME_RINVSCHED: "schedule: in the past or too far ahead",
        CommandStatus.ESME_RINVEXPIRY: "validity: out of range",
        CommandStatus.ESME_RSYSERR: "the store refused the message: try again",
    }
    return reasons.get(status, f"refused ({name})")


@router.get(
    "/messages/{message_id}",
    tags=["messages"],
    summary="A message: state, parts, history, upstream ids, receipts (raw text too)",
    responses=errors(401, 404),
)
async def query(
    message_id: str, request: Request, who: Annotated[Caller, Depends(caller)]
) -> dict[str, Any]:
    info = await gateway_of(request).message_info(message_id)
    if info is None or not who.owns(str(info["account"])):
        raise ApiError(404, "not_found", f"no message {message_id!r}", field="message_id")
    return info


@router.delete(
    "/messages/{message_id}",
    tags=["messages"],
    summary="Cancel a message not yet sent",
    responses=errors(401, 404, 409),
)
async def cancel(
    message_id: str, request: Request, who: Annotated[Caller, Depends(caller)]
) -> dict[str, Any]:
    gateway = gateway_of(request)
    record = await gateway.store.get(message_id)
    if record is None or not who.owns(record.message.account):
        raise ApiError(404, "not_found", f"no message {message_id!r}", field="message_id")
    ok = await gateway.store.change_pending(
        message_id, record.message.account, gateway.server.clock()
    )
    if not ok:
        raise ApiError(
            409,
            "not_pending",
            f"message {message_id!r} is {record.state.value}: too late to cancel",
            field="message_id",
        )
    return {"id": message_id, "cancelled": True}


# -- operating the gateway (admin) -------------------------------------------------------------


class UssdRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=160, examples=["*100#"])
    wait: float = Field(30.0, gt=0, le=180, description="seconds to wait for the answer")


@router.post(
    "/reload",
    tags=["operations"],
    summary="Re-read the configuration file",
    responses=errors(401, 403, 422),
)
async def reload(request: Request, _who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
    result = await gateway_of(request).reload()
    if result.error is not None:
        raise ApiError(422, "reload_refused", result.error)
    return result.as_dict()


@router.get(
    "/status",
    tags=["operations"],
    summary="Binds, upstreams, modems and queues",
    responses=errors(401, 403),
)
async def status(request: Request, _who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
    return await gateway_of(request).status()


@router.get(
    "/modems", tags=["operations"], summary="Every modem of every bank", responses=errors(401, 403)
)
async def modems(request: Request, _who: Annotated[Caller, Depends(admin)]) -> list[dict[str, Any]]:
    return gateway_of(request).modems()


@router.post(
    "/modems/{bank}/{modem}/ussd",
    tags=["operations"],
    summary="Send a USSD code through one modem and return the network's answer",
    responses=errors(400, 401, 403, 404, 422, 502, 504),
)
async def ussd(
    bank: str,
    modem: str,
    body: UssdRequest,
    request: Request,
    _who: Annotated[Caller, Depends(admin)],
) -> dict[str, str]:
    try:
        answer = await gateway_of(request).ussd(bank, modem, body.code, body.wait)
    except ValueError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except TimeoutError:
        raise ApiError(504, "timeout", f"no answer within {body.wait:g} s") from None
    except Exception as exc:  # the modem's own error (CME/CMS, not ready)
        raise ApiError(502, "modem_error", str(exc)) from None
    return {"modem": f"{bank}/{modem}", "answer": answer}
