"""Every SMPP v3.4 PDU, declared once.

Each PDU is a NamedTuple whose fields are in wire order (SMPP v3.4 section 4); the wire format of
each field rides in its annotation (`Annotated[str, CStr(16, status)]`): integers by width,
C-octet strings by their maximum size *including* the NUL, as the specification's tables give it,
and the status to answer when a peer overruns it. `gateway.smpp.codec` generates the encoder and
decoder of each PDU from these declarations; nothing else lists fields.

Every PDU ends with `tlvs` (optional parameters, kept in arrival order and byte-exact, unknown
tags included), then the header's `sequence_number` and `command_status`.

Why NamedTuple and not a frozen dataclass: a decoded submit_sm has 19 fields, and on CPython 3.11
a frozen dataclass spends ~5 µs in `object.__setattr__` building one, a NamedTuple ~0.3 µs. The
PDUs are immutable either way (`_replace` makes a changed copy); equality also compares the type,
so a submit_sm never equals a deliver_sm with the same fields.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from gateway.smpp.constants import CommandId
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.tlv import Tlv

__all__ = [
    "COMMAND_IDS",
    "PDU_CLASSES",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CStr",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DestAddress",
    "DestList",
    "DistributionList",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "Int",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "ShortMessage",
    "SmeAddress",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "UnsuccessList",
    "UnsuccessSme",
    "command_id_of",
    "response_class",
]


# -- field kinds ---------------------------------------------------------------------------------


class Int(NamedTuple):
    """Unsigned big-endian integer of `size` octets."""

    size: int


class CStr(NamedTuple):
    """C-octet string of at most `max_size` octets including the NUL; overrunning it is
    answered with `status`."""

    max_size: int
    status: S = S.ESME_RINVPARLEN


class ShortMessage(NamedTuple):
    """sm_length (one octet) followed by that many octets (SMPP v3.4 5.2.21-22)."""

    max_size: int = 254


class DestList(NamedTuple):
    """number_of_dests then that many dest_address entries (submit_multi, 4.5.1)."""

    max_count: int = 254


class UnsuccessList(NamedTuple):
    """no_unsuccess then that many unsuccess_sme entries (submit_multi_resp, 4.5.2)."""

    max_count: int = 254


U8 = Annotated[int, Int(1)]
U16 = Annotated[int, Int(2)]
U32 = Annotated[int, Int(4)]

SystemId = Annotated[str, CStr(16, S.ESME_RINVSYSID)]
Password = Annotated[str, CStr(9, S.ESME_RINVPASWD)]
SystemType = Annotated[str, CStr(13, S.ESME_RINVSYSTYP)]
AddressRange = Annotated[str, CStr(41)]
ServiceType = Annotated[str, CStr(6, S.ESME_RINVSERTYP)]
SourceAddr = Annotated[str, CStr(21, S.ESME_RINVSRCADR)]
DestinationAddr = Annotated[str, CStr(21, S.ESME_RINVDSTADR)]
SourceAddr65 = Annotated[str, CStr(65, S.ESME_RINVSRCADR)]
DestinationAddr65 = Annotated[str, CStr(65, S.ESME_RINVDSTADR)]
EsmeAddr65 = Annotated[str, CStr(65)]
ScheduleTime = Annotated[str, CStr(17, S.ESME_RINVSCHED)]
ValidityPeriod = Annotated[str, CStr(17, S.ESME_RINVEXPIRY)]
FinalDate = Annotated[str, CStr(17)]
MessageId = Annotated[str, CStr(65, S.ESME_RINVMSGID)]
DlName = Annotated[str, CStr(21, S.ESME_RINVDLNAME)]
Body = Annotated[bytes, ShortMessage()]
Tlvs = tuple[Tlv, ...]

# -- submit_multi entries ------------------------------------------------------------------------


class SmeAddress(NamedTuple):
    """dest_flag 1: an SME address."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


class DistributionList(NamedTuple):
    """dest_flag 2: a distribution list name."""

    dl_name: str = ""


DestAddress = SmeAddress | DistributionList


class UnsuccessSme(NamedTuple):
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0


# -- session management (SMPP v3.4 4.1, 4.2, 4.3, 4.11) ----------------------------------------


class BindTransmitter(NamedTuple):
    system_id: SystemId = ""
    password: Password = ""
    system_type: SystemType = ""
    interface_version: U8 = 0x34
    addr_ton: U8 = 0
    addr_npi: U8 = 0
    address_range: AddressRange = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class BindReceiver(NamedTuple):
    system_id: SystemId = ""
    password: Password = ""
    system_type: SystemType = ""
    interface_version: U8 = 0x34
    addr_ton: U8 = 0
    addr_npi: U8 = 0
    address_range: AddressRange = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class BindTransceiver(NamedTuple):
    system_id: SystemId = ""
    password: Password = ""
    system_type: SystemType = ""
    interface_version: U8 = 0x34
    addr_ton: U8 = 0
    addr_npi: U8 = 0
    address_range: AddressRange = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class BindTransmitterResp(NamedTuple):
    system_id: SystemId = ""
    tlvs: Tlvs = ()  # sc_interface_version
    sequence_number: U32 = 0
    command_status: U32 = 0


class BindReceiverResp(NamedTuple):
    system_id: SystemId = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class BindTransceiverResp(NamedTuple):
    system_id: SystemId = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class Outbind(NamedTuple):
    system_id: SystemId = ""
    password: Password = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class Unbind(NamedTuple):
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class UnbindResp(NamedTuple):
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class GenericNack(NamedTuple):
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class EnquireLink(NamedTuple):
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class EnquireLinkResp(NamedTuple):
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


# -- message submission and delivery (4.4 - 4.7) ------------------------------------------------


class SubmitSm(NamedTuple):
    service_type: ServiceType = ""
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr = ""
    dest_addr_ton: U8 = 0
    dest_addr_npi: U8 = 0
    destination_addr: DestinationAddr = ""
    esm_class: U8 = 0
    protocol_id: U8 = 0
    priority_flag: U8 = 0
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityPeriod = ""
    registered_delivery: U8 = 0
    replace_if_present_flag: U8 = 0
    data_coding: U8 = 0
    sm_default_msg_id: U8 = 0
    short_message: Body = b""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class SubmitSmResp(NamedTuple):
    message_id: MessageId = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class SubmitMulti(NamedTuple):
    service_type: ServiceType = ""
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr = ""
    dest_addresses: Annotated[tuple[DestAddress, ...], DestList()] = ()
    esm_class: U8 = 0
    protocol_id: U8 = 0
    priority_flag: U8 = 0
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityPeriod = ""
    registered_delivery: U8 = 0
    replace_if_present_flag: U8 = 0
    data_coding: U8 = 0
    sm_default_msg_id: U8 = 0
    short_message: Body = b""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class SubmitMultiResp(NamedTuple):
    message_id: MessageId = ""
    unsuccess_smes: Annotated[tuple[UnsuccessSme, ...], UnsuccessList()] = ()
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class DeliverSm(NamedTuple):
    service_type: ServiceType = ""
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr = ""
    dest_addr_ton: U8 = 0
    dest_addr_npi: U8 = 0
    destination_addr: DestinationAddr = ""
    esm_class: U8 = 0
    protocol_id: U8 = 0
    priority_flag: U8 = 0
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityPeriod = ""
    registered_delivery: U8 = 0
    replace_if_present_flag: U8 = 0
    data_coding: U8 = 0
    sm_default_msg_id: U8 = 0
    short_message: Body = b""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class DeliverSmResp(NamedTuple):
    message_id: MessageId = ""  # unused, NULL (4.6.2)
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class DataSm(NamedTuple):
    service_type: ServiceType = ""
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr65 = ""
    dest_addr_ton: U8 = 0
    dest_addr_npi: U8 = 0
    destination_addr: DestinationAddr65 = ""
    esm_class: U8 = 0
    registered_delivery: U8 = 0
    data_coding: U8 = 0
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class DataSmResp(NamedTuple):
    message_id: MessageId = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


# -- ancillary operations (4.8 - 4.12) ---------------------------------------------------------


class QuerySm(NamedTuple):
    message_id: MessageId = ""
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class QuerySmResp(NamedTuple):
    message_id: MessageId = ""
    final_date: FinalDate = ""
    message_state: U8 = 0
    error_code: U8 = 0
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class CancelSm(NamedTuple):
    service_type: ServiceType = ""
    message_id: MessageId = ""
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr = ""
    dest_addr_ton: U8 = 0
    dest_addr_npi: U8 = 0
    destination_addr: DestinationAddr = ""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class CancelSmResp(NamedTuple):
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class ReplaceSm(NamedTuple):
    message_id: MessageId = ""
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr = ""
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityPeriod = ""
    registered_delivery: U8 = 0
    sm_default_msg_id: U8 = 0
    short_message: Body = b""
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class ReplaceSmResp(NamedTuple):
    tlvs: Tlvs = ()
    sequence_number: U32 = 0
    command_status: U32 = 0


class AlertNotification(NamedTuple):
    source_addr_ton: U8 = 0
    source_addr_npi: U8 = 0
    source_addr: SourceAddr65 = ""
    esme_addr_ton: U8 = 0
    esme_addr_npi: U8 = 0
    esme_addr: EsmeAddr65 = ""
    tlvs: Tlvs = ()  # ms_availability_status
    sequence_number: U32 = 0
    command_status: U32 = 0


Pdu = (
    BindTransmitter
    | BindReceiver
    | BindTransceiver
    | BindTransmitterResp
    | BindReceiverResp
    | BindTransceiverResp
    | Outbind
    | Unbind
    | UnbindResp
    | GenericNack
    | EnquireLink
    | EnquireLinkResp
    | SubmitSm
    | SubmitSmResp
    | SubmitMulti
    | SubmitMultiResp
    | DeliverSm
    | DeliverSmResp
    | DataSm
    | DataSmResp
    | QuerySm
    | QuerySmResp
    | CancelSm
    | CancelSmResp
    | ReplaceSm
    | ReplaceSmResp
    | AlertNotification
)

C = CommandId
PDU_CLASSES: dict[CommandId, type[Any]] = {
    C.bind_transmitter: BindTransmitter,
    C.bind_transmitter_resp: BindTransmitterResp,
    C.bind_receiver: BindReceiver,
    C.bind_receiver_resp: BindReceiverResp,
    C.bind_transceiver: BindTransceiver,
    C.bind_transceiver_resp: BindTransceiverResp,
    C.outbind: Outbind,
    C.unbind: Unbind,
    C.unbind_resp: UnbindResp,
    C.generic_nack: GenericNack,
    C.enquire_link: EnquireLink,
    C.enquire_link_resp: EnquireLinkResp,
    C.submit_sm: SubmitSm,
    C.submit_sm_resp: SubmitSmResp,
    C.submit_multi: SubmitMulti,
    C.submit_multi_resp: SubmitMultiResp,
    C.deliver_sm: DeliverSm,
    C.deliver_sm_resp: DeliverSmResp,
    C.data_sm: DataSm,
    C.data_sm_resp: DataSmResp,
    C.query_sm: QuerySm,
    C.query_sm_resp: QuerySmResp,
    C.cancel_sm: CancelSm,
    C.cancel_sm_resp: CancelSmResp,
    C.replace_sm: ReplaceSm,
    C.replace_sm_resp: ReplaceSmResp,
    C.alert_notification: AlertNotification,
}
COMMAND_IDS: dict[type[Any], CommandId] = {cls: cid for cid, cls in PDU_CLASSES.items()}
_BY_NUMBER: dict[int, type[Any]] = {int(cid): cls for cid, cls in PDU_CLASSES.items()}


def _typed_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _typed_eq(self, other)


def _typed_hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, tuple.__hash__(self)))


for _cls in PDU_CLASSES.values():
    setattr(_cls, "__eq__", _typed_eq)  # noqa: B010 - mypy won't let a method be assigned
    setattr(_cls, "__ne__", _typed_ne)  # noqa: B010
    setattr(_cls, "__hash__", _typed_hash)  # noqa: B010


def command_id_of(pdu: Pdu) -> CommandId:
    """The command_id of a PDU object."""
    return COMMAND_IDS[type(pdu)]


def response_class(command_id: int) -> type[Any] | None:
    """The PDU class answering `command_id`, or None (generic_nack and responses have none)."""
    if command_id & 0x80000000 or command_id in (C.alert_notification, C.outbind):
        return None
    return _BY_NUMBER.get(command_id | 0x80000000)
