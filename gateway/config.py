"""YAML -> one frozen, validated `GatewayConfig`.

Every model forbids unknown keys (a typo is an error, not a silently ignored setting) and is
frozen. Errors name the YAML path and line: ``routes[2].prefixes[0] (line 31): must be
digits``. ``${NAME}`` in any string is replaced by the environment variable NAME (a missing one
is an error naming it), so secrets stay out of the file; ``${NAME:-default}`` falls back to
``default``; ``$${`` writes a literal ``${``.

Strict where YAML is loose: a key given twice is an error (PyYAML would keep the last); only
``true``/``false`` are booleans (YAML 1.2: ``yes``/``no``/``on``/``off`` stay strings); boolean
and number fields take only booleans and numbers (``emulate: yes``, ``emulate: true`` and
``port: "2775"`` are errors), except a value that is one whole ``${NAME}``, since the
environment holds only text. Names used (route targets, accounts) are checked by
`load_config` at the line of the value that names them. ``load_config(..., complete=True)``
(`smsgw check-config`) also refuses what validates but cannot be served: no accounts or
routes, a listen host that is no IP address and does not resolve, a store or socket folder
that cannot be created.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.policy.dead import ANY_UPSTREAM, DeadRule
from gateway.policy.keywords import LANGUAGE_OPT_IN, LANGUAGE_OPT_OUT, Keywords
from gateway.policy.quiet import QuietHours
from gateway.policy.rules import Cap, ClassRule, NumberRules, Reason
from gateway.policy.signature import Signature
from gateway.routing import NumberPlan, QualitySettings, Route, RouteTable, Strategy, Target
from gateway.routing.mo import MoRoute, MoRouter
from gateway.telemetry.mqtt import broker_address

__all__ = [
    "AccountConfig",
    "AgentConfig",
    "ConfigError",
    "DispatchConfig",
    "GatewayConfig",
    "MessagesConfig",
    "ModemBankConfig",
    "ModemConfig",
    "ModemLimitsConfig",
    "QualityConfig",
    "RemoteBankConfig",
    "RouteConfig",
    "SimulatedCarrierConfig",
    "StoreConfig",
    "UpstreamConfig",
    "WebhookConfig",
    "load_agent_config",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message lists every problem with its path."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        where = f"{source}:" if source else ""
        if len(problems) == 1:
            super().__init__(f"{where} {problems[0]}".lstrip())
        else:
            super().__init__(where + "\n  " + "\n  ".join(problems))


def _kinds(annotation: Any) -> set[type]:
    """The scalar types a field takes: bool, int, float (None and other types left out)."""
    if annotation in (bool, int, float):
        return {annotation}
    if get_origin(annotation) in (Union, UnionType):
        return {a for a in get_args(annotation) if a in (bool, int, float)}
    return set()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads "yes" as true, true as 1 and "8" as 8: a setting written
        # wrong would pass unnoticed, so booleans and numbers must be written as such.
        if info.field_name is None or value is None:
            return value
        kinds = _kinds(cls.model_fields[info.field_name].annotation)
        if not kinds:
            return value
        if isinstance(value, _FromEnv):
            if kinds == {bool} and value not in ("true", "false"):
                raise ValueError(f"must be true or false, got {str(value)!r}")
            return str(value)  # pydantic reads the number in it
        if isinstance(value, bool):
            if bool not in kinds:
                raise ValueError(f"must be a number, got {str(value).lower()}")
        elif kinds == {bool}:
            raise ValueError(f"must be true or false, got {value!r}")
        elif isinstance(value, int):
            pass
        elif isinstance(value, float):
            if float not in kinds:
                raise ValueError(f"must be a whole number, got {value!r}")
        else:
            raise ValueError(f"must be a number, got {value!r}")
        return value


def _digits(value: str, what: str) -> str:
    if value and not (value.isascii() and value.isdigit()):
        raise ValueError(f"{what} must be digits, got {value!r}")
    return value


Prefix = Annotated[str, AfterValidator(lambda value: _digits(value, "a prefix"))]


class NumberPlanConfig(_Model):
    """How national numbers are written where the gateway runs."""

    country_code: str = ""
    national_prefix: str = "0"
    international_prefix: str = "00"

    @field_validator("country_code", "national_prefix", "international_prefix")
    @classmethod
    def _check(cls, value: str) -> str:
        return _digits(value, "this")

    def plan(self) -> NumberPlan:
        return NumberPlan(self.country_code, self.national_prefix, self.international_prefix)


class ListenConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(2775, ge=0, le=65535)
    tls_port: int | None = Field(None, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    bind_timeout: float = Field(10.0, gt=0, description="close a connection not bound by then")
    enquire_link_interval: float = Field(30.0, gt=0)
    inactivity_timeout: float = Field(120.0, gt=0)
    response_timeout: float = Field(
        10.0, gt=0, description="seconds an app has to answer a deliver_sm; then it goes again"
    )
    max_pdu_length: int = Field(70_000, ge=1024)

    @model_validator(mode="after")
    def _tls(self) -> ListenConfig:
        if self.tls_port is not None and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("tls_port needs tls_cert and tls_key")
        return self


class WebhookConfig(_Model):
    """Where an account's receipts and MO are POSTed (signed JSON; see docs/API.md)."""

    url: str = Field(description="http:// or https:// URL the events are POSTed to")
    secret: str = Field(
        min_length=16, description="HMAC-SHA256 key of the X-Smsgw-Signature header"
    )
    events: frozenset[Literal["receipt", "mo", "state"]] = Field(
        frozenset({"receipt", "mo"}),
        description=(
            "receipt: final receipts; mo: inbound messages; state: intermediate notifications "
            "(registered_delivery 0x10)"
        ),
    )
    max_in_flight: int = Field(4, ge=1, le=256, description="POSTs outstanding at once")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds one POST may take in all")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in {"http", "https"} or not rest.split("/")[0]:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url


class AccountConfig(_Model):
    """An application that binds to us."""

    system_id: str = Field(min_length=1, max_length=15)
    password: str | None = Field(None, max_length=8)
    password_hash: str | None = None
    bind_types: frozenset[Literal["transmitter", "receiver", "transceiver"]] = frozenset(
        {"transmitter", "receiver", "transceiver"}
    )
    allow_cidrs: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_binds: int = Field(4, ge=1)
    throughput: float | None = Field(None, gt=0, description="messages/s; over it: throttled")
    window: int = Field(64, ge=1, le=10_000)
    admin: bool = Field(False, description="HTTP: may read the status of everything and reload")
    api_tokens: tuple[str, ...] = Field(
        (), description="HTTP bearer tokens for this account (besides Basic with the password)"
    )
    webhook: WebhookConfig | None = Field(
        None, description="receipts and MO also POSTed here (besides the RX/TRX binds' queue)"
    )

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, tokens: tuple[str, ...]) -> tuple[str, ...]:
        for token in tokens:
            if len(token) < 16:
                raise ValueError("an API token must be at least 16 characters")
        return tokens

    @model_validator(mode="after")
    def _secret(self) -> AccountConfig:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of password and password_hash")
        return self


class UpstreamConfig(_Model):
    """A carrier SMSC we bind to as an ESME."""

    host: str
    port: int = Field(ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: str = Field(max_length=8)
    system_type: str = Field("", max_length=12)
    bind: Literal["transceiver", "transmitter+receiver"] = "transceiver"
    binds: int = Field(1, ge=1, le=64)
    window: int = Field(10, ge=1, le=10_000)
    throughput: float | None = Field(None, gt=0)
    long_messages: Literal["udh", "sar", "payload"] = "udh"
    data_coding_0: Literal["gsm7", "latin1", "ascii"] = "gsm7"
    tls: bool = False
    tls_verify: bool = True  # check the carrier's certificate and host name
    tls_ca: Path | None = None  # a CA bundle (PEM) to trust instead of the system's
    id_format: Literal["auto", "decimal", "hex", "uuid", "string", "hex_decimal"] = Field(
        "auto",
        description=(
            "how the carrier spells message ids. Case, a 0x prefix and leading zeros never "
            "matter. auto learns it from the ids it sees; once known, a receipt's id is never "
            "read in another base (so an unknown id cannot settle another message). "
            "hex_decimal: hex in submit_sm_resp, decimal in receipts (Kannel msg-id-type 1)"
        ),
    )
    multipart_receipts: Literal["all", "last", "first", "any"] = Field(
        "all",
        description=(
            "which receipts end a message sent as several parts. all (the default): every "
            "part is its own submit_sm to the SMSC, and carriers report each one - the "
            "message is delivered only when every part is, and fails with its first failed "
            "part. last / first: the carrier reports only that part (some aggregators); "
            "any: the first final receipt of any part ends it. Whatever the setting, "
            "receipt_timeout ends a message whose receipts stop coming."
        ),
    )
    receipt_timeout: float = Field(
        72 * 3600.0,
        gt=0,
        description=(
            "seconds after the send: a message with no final receipt by then is asked for "
            "with query_sm (if query_sm) and otherwise ends UNKNOWN with a receipt. 72 h: "
            "the longest validity carriers usually keep a message for"
        ),
    )
    query_sm: bool = Field(True, description="ask with query_sm for a receipt that is late")
    receipts_without_flag: bool = Field(
        False,
        description=(
            "a deliver_sm without the receipt bit in esm_class whose text reads as a receipt "
            "(id: ... stat: ...) is a receipt: for carriers that do not set the bit"
        ),
    )


class SimulatedCarrierConfig(_Model):
    """A carrier that exists only in this process: for trying the gateway with no contract."""

    delivery_delay: float = Field(1.0, ge=0)
    failure_ratio: float = Field(0.0, ge=0, le=1)


class ModemLimitsConfig(_Model):
    """Messages one SIM may send per calendar minute / day / month (UTC); None: no limit."""

    per_minute: int | None = Field(None, ge=1)
    per_day: int | None = Field(None, ge=1)
    per_month: int | None = Field(None, ge=1)


class ModemConfig(_Model):
    """One GSM modem of a bank (see `drivers.modem.modem.ModemSettings`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    port: str = Field("", description="e.g. /dev/serial/by-id/...; filled in for emulated ones")
    imei: str | None = Field(None, description="find the modem by IMEI among `candidates`")
    iccid: str | None = Field(None, description="find the modem by its SIM's ICCID")
    candidates: tuple[str, ...] = Field((), description="ports (globs) to search by identity")
    number: str | None = Field(None, description="the SIM's own number: MO destination_addr")
    baudrate: int = Field(115200, gt=0)
    rtscts: bool = False
    pin: str | None = None
    smsc: str | None = None
    limits: ModemLimitsConfig = ModemLimitsConfig()
    health_interval: float = Field(30.0, gt=0)
    command_timeout: float = Field(10.0, gt=0)
    send_timeout: float = Field(60.0, gt=0)
    reopen_backoff: float = Field(1.0, gt=0)
    max_reopen_backoff: float = Field(60.0, gt=0)
    status_reports: bool = True
    storage: str = "SM"
    urc_port: Literal["usbat", "usbmodem", "uart1"] = Field(
        "usbat", description="the port a Quectel is told to send URCs to (AT+QURCCFG)"
    )
    poll_quiet: float = Field(
        120.0, ge=0, description="list storage when no SMS URC came for this long (0: never)"
    )
    ussd_packed: bool | None = Field(
        None, description="USSD as packed GSM 7-bit hex; unset: on Huawei modems"
    )
    report_routing: Literal["auto", "stored", "direct"] = Field(
        "auto", description="status reports stored (+CDSI) or direct (+CDS with AT+CNMA)"
    )


class ModemEmulatorConfig(_Model):
    """The simulated network behind `emulate` modems (`drivers.modem.emulator.SimNetwork`)."""

    report_delay: float = Field(0.5, ge=0, description="seconds to a status report")
    quirks: tuple[str, ...] = Field(
        (), description="NAME=VALUE, as smsgw emulate-modem takes (vendor=sim800|quectel|huawei)"
    )
    journal: Path | None = Field(
        None,
        description="a folder: the network appends each message it receives to sent.jsonl "
        "and delivers the MO dropped there as mo-*.json (tests of a process they cannot reach)",
    )


class RemoteBankConfig(_Model):
    """A bank whose modems an agent (`smsgw agent`) drives on another host, over MQTT."""

    agent: str = Field(..., min_length=1, description="the agent's name (its agent.yaml)")
    bank: str | None = Field(None, description="the bank's name at the agent (default: ours)")
    timeout: float = Field(
        90.0, gt=0, description="seconds a send waits for the agent's result (then retried)"
    )
    start_within: float = Field(
        30.0, gt=0, description="seconds a send command stays good: later, the agent drops it"
    )
    offline_after: float = Field(
        45.0, gt=0, description="seconds without the agent's status before it counts as offline"
    )

    @field_validator("agent", "bank")
    @classmethod
    def _topic_part(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("may hold only A-Z a-z 0-9 _ . -")
        return value


class ModemBankConfig(_Model):
    """GSM modems used as one route target, `bank:<name>`."""

    selection: Literal["round_robin", "least_loaded"] = "round_robin"
    modems: tuple[ModemConfig, ...] = ()
    emulate: int = Field(
        0, ge=0, le=256, description="start this many emulated modems in-process (no hardware)"
    )
    emulator: ModemEmulatorConfig = ModemEmulatorConfig()
    queue: int = Field(2, ge=1, le=64, description="sends waiting on one modem at most")
    report_window: float = Field(
        72 * 3600.0, gt=0, description="seconds a status report may come after its send"
    )
    remote: RemoteBankConfig | None = Field(
        None, description="the modems are an agent's, on another host (no local ports)"
    )

    @model_validator(mode="after")
    def _modems(self) -> ModemBankConfig:
        if self.remote is not None:
            if self.modems or self.emulate:
                raise ValueError("a remote bank has no modems of its own: its agent lists them")
            return self
        names = [m.name for m in self.modems]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"modem name {', '.join(duplicates)} given twice")
        if self.emulate and len(self.modems) > self.emulate:
            raise ValueError(f"{len(self.modems)} modems listed but only {self.emulate} emulated")
        if not self.emulate:
            if not self.modems:
                raise ValueError("a bank needs modems (or emulate: N)")
            for i, modem in enumerate(self.modems):
                if not (modem.port or modem.candidates):
                    raise ValueError(f"modems[{i}] ({modem.name}): give port or candidates")
        return self

    def modem_list(self) -> tuple[ModemConfig, ...]:
        """The modems: those listed, then generated ones (modemN) up to `emulate`."""
        listed = list(self.modems)
        taken = {m.name for m in listed}
        n = 0
        while len(listed) < self.emulate:
            n += 1
            if f"modem{n}" not in taken:
                listed.append(ModemConfig(name=f"modem{n}"))
        return tuple(listed)


class TargetConfig(_Model):
    name: str
    weight: int = Field(1, ge=0)
    price: float | None = Field(None, ge=0)


class QualityConfig(_Model):
    """The `quality` strategy: targets ordered by recent delivery rate, then receipt latency."""

    window: str = Field("1h", description="rolling window, a duration: 15m, 1h, 1d")
    min_sample: int = Field(50, ge=1, description="final outcomes before a rate counts")
    demote_below: float = Field(0.8, ge=0, le=1, description="a rate below this demotes")
    promote_above: float = Field(0.9, ge=0, le=1, description="a demoted one's rate to return")
    probe_share: float = Field(
        0.05, ge=0, lt=1, description="share of messages a demoted target still leads"
    )

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # seconds
        if isinstance(value, str):
            duration(value)
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> QualityConfig:
        if self.demote_below > self.promote_above:
            raise ValueError("demote_below must not exceed promote_above")
        return self

    def settings(self) -> QualitySettings:
        return QualitySettings(
            duration(self.window),
            self.min_sample,
            self.demote_below,
            self.promote_above,
            self.probe_share,
        )


class RouteConfig(_Model):
    name: str
    prefixes: tuple[Prefix, ...] = ("",)
    targets: tuple[TargetConfig | str, ...] = Field(min_length=1)
    strategy: Literal["failover", "weighted", "least_cost", "quality"] = "failover"
    accounts: frozenset[str] = frozenset()
    source_prefixes: tuple[str, ...] = ()
    service_types: frozenset[str] = frozenset()
    quality: QualityConfig | None = None

    @model_validator(mode="after")
    def _quality(self) -> RouteConfig:
        if self.quality is not None and self.strategy != "quality":
            raise ValueError("quality settings need strategy: quality")
        return self

    def compile(self) -> Route:
        targets = tuple(
            Target(t) if isinstance(t, str) else Target(t.name, t.weight, t.price)
            for t in self.targets
        )
        return Route(
            self.name,
            self.prefixes,
            targets,
            Strategy(self.strategy),
            frozenset(self.accounts),
            self.source_prefixes,
            frozenset(self.service_types),
            (self.quality or QualityConfig()).settings(),
        )


class MoRouteConfig(_Model):
    """Where inbound messages go: to `account`, when sent to one of `prefixes` and (if given)
    starting with `keyword`."""

    account: str
    prefixes: tuple[Prefix, ...] = ("",)
    keyword: str | None = None


class DispatchConfig(_Model):
    """How hard the gateway tries, and how long things wait."""

    max_attempts: int = Field(5, ge=1, description="sends tried before a message ends failed")
    max_age: float = Field(
        3600.0,
        gt=0,
        description=(
            "seconds after which retries stop; a message no target could take by then "
            "(all modems of its bank with a wrong PIN, say) ends FAILED with a receipt"
        ),
    )
    retry_backoff: float = Field(2.0, gt=0, description="first retry delay; doubles")
    max_retry_backoff: float = Field(300.0, gt=0)
    max_inflight: int = Field(
        256,
        ge=1,
        description=(
            "sends outstanding at once. Also the bound on duplicates after a crash: a kill -9 "
            "can send again at most the messages in flight then (their submit_sm_resp not yet "
            "recorded) - this many, plus those in the store writer's last uncommitted batch"
        ),
    )
    delivery_ttl: float = Field(
        86_400.0, gt=0, description="how long a receipt or MO waits for its application"
    )
    delivery_lease: float = Field(
        15.0,
        gt=0,
        description=(
            "seconds a node keeps a receipt or MO it offered to an application before another "
            "node sharing the store may offer it; also how long a node may be silent (no "
            "heartbeat) before another takes over the messages it had claimed for sending"
        ),
    )
    purge_interval: float = Field(3600.0, gt=0, description="seconds between retention purges")
    receipt_timeout: float = Field(
        72 * 3600.0,
        gt=0,
        description=(
            "for targets with no receipt_timeout of their own (modem banks, simulated): "
            "seconds after the send a message with no final receipt ends UNKNOWN"
        ),
    )


class StoreConfig(_Model):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: Path = Path("var/smsgw.sqlite3")
    dsn: str | None = None
    retention_days: int = Field(30, ge=1)
    stats_retention_days: int = Field(
        90, ge=1, description="days delivery statistics are kept (they outlive their messages)"
    )
    stats_prefix_digits: int = Field(
        3,
        ge=0,
        le=8,
        description="leading destination digits kept as the statistics' prefix: at most "
        "10^n rows per hour and route (0: none)",
    )
    writer: Literal["thread", "process"] = Field(
        "thread", description="SQLite: the writer is a thread, or a process of its own"
    )
    replica_dsn: str | None = Field(
        None,
        description="PostgreSQL: a read replica for status, statistics and queue-depth reads "
        "(its own pool of pool_min..pool_max); unset: everything goes to dsn",
    )
    pool_min: int = Field(2, ge=0, description="PostgreSQL: connections kept open per pool")
    pool_max: int = Field(
        10,
        ge=1,
        description="PostgreSQL: most connections per pool; nodes x pools x pool_max must stay "
        "under the server's max_connections (docs/SCALING.md)",
    )

    @model_validator(mode="after")
    def _dsn(self) -> StoreConfig:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("backend postgres needs a dsn")
        if self.replica_dsn is not None and self.backend != "postgres":
            raise ValueError("replica_dsn needs backend postgres")
        if self.pool_min > self.pool_max:
            raise ValueError("pool_min must not exceed pool_max")
        return self


class MessagesConfig(_Model):
    """How long accepted messages may wait (seconds)."""

    default_validity: float = Field(
        172_800.0, gt=0, description="when a submit gives no validity_period"
    )
    max_validity: float = Field(604_800.0, gt=0, description="longer validity_period is capped")

    @model_validator(mode="after")
    def _order(self) -> MessagesConfig:
        if self.default_validity > self.max_validity:
            raise ValueError("default_validity must not exceed max_validity")
        return self


class LoggingConfig(_Model):
    """What the gateway logs, and how (see gateway/telemetry/logging.py)."""

    format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto: console lines on a terminal, JSON lines otherwise"
    )
    level: Literal["debug", "info", "warning", "error"] = "info"
    messages: bool = Field(
        False, description="one info line per message: accepted, sent, receipt, failed"
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration(value: str | float) -> float:
    """Seconds of a duration written ``90s``, ``15m``, ``24h``, ``30d``, ``2w`` or a number.

    Raises:
        ValueError: anything else, or not more than zero.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value))
        if found is None:
            raise ValueError(f"{value!r} is not a duration: write e.g. 90s, 15m, 24h, 30d")
        seconds = float(found[1]) * _UNITS[found[2]]
    if seconds <= 0:
        raise ValueError("a duration must be more than zero")
    return seconds


def _clock(value: str) -> time:
    try:
        hours, minutes = (int(x) for x in value.split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day: write HH:MM, e.g. 21:00") from None


class QuietHoursConfig(_Model):
    """Quiet from `start` to `end`, the recipient's local time (may wrap midnight)."""

    start: str = Field(description="HH:MM")
    end: str = Field(description="HH:MM")

    @model_validator(mode="after")
    def _times(self) -> QuietHoursConfig:
        if _clock(self.start) == _clock(self.end):
            raise ValueError("quiet hours need a start and an end that differ")
        return self

    def window(self) -> QuietHours:
        return QuietHours(_clock(self.start), _clock(self.end))


class CapConfig(_Model):
    """At most `count` messages of the class to one recipient in any `per` (e.g. 24h, 30d)."""

    count: int = Field(ge=1)
    per: str = Field(description="a duration: 90s, 15m, 24h, 30d, 2w, or seconds")
    per_account: bool = Field(
        False, description="count each account (brand) apart; default: all accounts together"
    )

    @field_validator("per", mode="before")
    @classmethod
    def _per(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # seconds
        if isinstance(value, str):
            duration(value)
        return value

    def cap(self) -> Cap:
        return Cap(self.count, duration(self.per), self.per_account)


class SignatureConfig(_Model):
    """The brand signature and opt-out hint of a class's texts."""

    signature: str = ""
    hint: str = ""
    position: Literal["start", "end"] = "start"
    mode: Literal["fix", "enforce"] = "fix"
    accounts: frozenset[str] = Field(
        frozenset(), description="only for these accounts (brands); in `signatures:`"
    )
    countries: frozenset[str] = Field(
        frozenset(), description="only to these countries (ISO codes, e.g. CN); in `signatures:`"
    )

    @model_validator(mode="after")
    def _something(self) -> SignatureConfig:
        if not self.signature and not self.hint:
            raise ValueError("give a signature, a hint, or both")
        return self

    def rule(self) -> Signature:
        return Signature(self.signature, self.hint, self.position, self.mode)


class ClassConfig(_Model):
    """The rules of one message class."""

    opt_out: bool | None = Field(
        None, description="suppressed numbers get none of it (default: marketing only)"
    )
    quiet_hours: QuietHoursConfig | None = Field(None, description="never applied to otp")
    caps: tuple[CapConfig, ...] = ()
    signature: SignatureConfig | None = None
    signatures: tuple[SignatureConfig, ...] = Field(
        (),
        description="per account and/or destination country, the first that matches; "
        "else `signature`",
    )
    dedup: bool = True

    def signature_for(self, account: str, country: str | None) -> Signature | None:
        """The signature rule for a message of `account` to a number of `country`."""
        for choice in self.signatures:
            if (not choice.accounts or account in choice.accounts) and (
                not choice.countries or country in choice.countries
            ):
                return choice.rule()
        return self.signature.rule() if self.signature is not None else None

    def rule(self, name: str) -> ClassRule:
        return ClassRule(
            name,
            opt_out=self.opt_out if self.opt_out is not None else name == "marketing",
            quiet=None if name == "otp" or self.quiet_hours is None else self.quiet_hours.window(),
            caps=tuple(c.cap() for c in self.caps),
            signature=self.signature.rule() if self.signature is not None else None,
            dedup=self.dedup,
        )


BUILTIN_CLASSES = ("otp", "transactional", "marketing")


class OptOutConfig(_Model):
    """Replies that opt a number out of (and back into) what `opt_out` classes send."""

    keywords: tuple[str, ...] | Mapping[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(LANGUAGE_OPT_OUT),
        description="a list, or lists per language (the language picks the confirmation)",
    )
    opt_in_keywords: tuple[str, ...] | Mapping[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(LANGUAGE_OPT_IN)
    )
    scope: Literal["global", "sender"] = Field(
        "global", description="sender: an opt-out stops only what comes from the same sender id"
    )
    confirmation: str | Mapping[str, str] | None = Field(
        None,
        description='replied to an opt-out, if set: a text, or texts per language ("*": '
        "for any other)",
    )

    @model_validator(mode="after")
    def _keywords(self) -> OptOutConfig:
        Keywords.of(self.keywords, self.opt_in_keywords)  # raises on overlaps and blanks
        if isinstance(self.confirmation, Mapping):
            languages = set(self.keywords) if isinstance(self.keywords, Mapping) else set()
            unknown = sorted(set(self.confirmation) - languages - {"*"})
            if unknown:
                raise ValueError(
                    f"confirmation: no keywords of language {', '.join(unknown)} "
                    f"(keywords has: {', '.join(sorted(languages)) or 'one list'})"
                )
        return self

    def confirmation_for(self, language: str) -> str | None:
        """The confirmation for an opt-out in `language`."""
        if isinstance(self.confirmation, Mapping):
            return self.confirmation.get(language) or self.confirmation.get("*")
        return self.confirmation


class DeadNumbersConfig(_Model):
    """Numbers whose receipts say they do not exist (空号): not sent to for a while."""

    errors: Mapping[str, tuple[int, ...]] = Field(
        default_factory=dict,
        description='upstream (or "*" for all) -> receipt error codes meaning unknown/absent',
    )
    after: int = Field(3, ge=1, description="failures that make a number dead")
    period: str = Field("30d", description="how long it stays dead: 90s, 15m, 24h, 30d, 2w")

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # seconds
        if isinstance(value, str):
            duration(value)
        return value

    def rule(self) -> DeadRule | None:
        """None when no error code is listed: nothing is counted."""
        if not any(self.errors.values()):
            return None
        codes = {name: frozenset(c) for name, c in self.errors.items()}
        return DeadRule(codes, self.after, duration(self.period))


class PolicyConfig(_Model):
    """The sending rules (issue 11): message classes and what they must respect."""

    classes: Mapping[str, ClassConfig] = Field(default_factory=dict)
    default_class: str = "transactional"
    service_types: Mapping[str, str] = Field(
        default_factory=dict, description="SMPP service_type -> class"
    )
    class_tlv: int | None = Field(
        None, ge=0x1400, le=0x3FFF, description="a vendor TLV tag whose value names the class"
    )
    campaign_tlv: int | None = Field(
        None, ge=0x1400, le=0x3FFF, description="a vendor TLV tag whose value is the campaign"
    )
    refuse_invalid_numbers: bool = True
    refuse_fixed_line: bool = False
    opt_out: OptOutConfig = OptOutConfig()
    dead_numbers: DeadNumbersConfig = DeadNumbersConfig()
    dedup_window: float = Field(600.0, ge=0, description="seconds; 0 turns dedup off")
    stopped_state: Literal["rejected", "undeliverable"] = "rejected"
    refuse_at_submit: Mapping[str, int] = Field(
        default_factory=lambda: {"invalid_number": 0x0B, "fixed_line": 0x0B},
        description="reason -> SMPP status: refuse the submit instead of a REJECTD receipt",
    )

    @field_validator("refuse_at_submit")
    @classmethod
    def _reasons(cls, value: Mapping[str, int]) -> Mapping[str, int]:
        known = {r.value for r in Reason}
        for reason, status in value.items():
            if reason not in known:
                raise ValueError(f"unknown reason {reason!r}; reasons: {_names(known)}")
            if not 0 < status <= 0xFFFFFFFF:
                raise ValueError(f"{reason}: {status} is no SMPP error status")
        return value

    @model_validator(mode="after")
    def _known_classes(self) -> PolicyConfig:
        known = set(BUILTIN_CLASSES) | set(self.classes)
        for name in self.classes:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"classes: {name!r}: lower-case letters, digits and _")
        used = [("default_class", self.default_class)] + [
            (f"service_types.{k}", v) for k, v in self.service_types.items()
        ]
        for where, name in used:
            if name not in known:
                raise ValueError(f"{where}: unknown class {name!r}; classes: {_names(known)}")
        return self

    def rules(self) -> dict[str, ClassRule]:
        """Every class's rules, the built-in ones included."""
        out = {name: ClassConfig().rule(name) for name in BUILTIN_CLASSES}
        out.update({name: c.rule(name) for name, c in self.classes.items()})
        return out

    def numbers(self) -> NumberRules:
        return NumberRules(self.refuse_invalid_numbers, self.refuse_fixed_line)


class HttpConfig(_Model):
    """The HTTP server: the API, the status page, /metrics, /healthz and /readyz."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls_cert: Path | None = Field(None, description="PEM certificate chain: serve HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    max_body: int = Field(
        32 * 1024 * 1024, ge=1024, description="bytes; a larger request body gets 413"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self


class MqttTlsConfig(_Model):
    ca: Path | None = Field(None, description="PEM CA bundle; default: the system's")
    cert: Path | None = Field(None, description="PEM client certificate")
    key: Path | None = Field(None, description="PEM key of cert")
    insecure: bool = Field(False, description="skip the broker's host name check (tests only)")


class MqttConfig(_Model):
    """The MQTT broker: events out, notices between nodes, remote modem-bank agents."""

    url: str = Field(..., description="mqtt://host:1883 or mqtts://host:8883")
    client_id: str | None = Field(
        None, description="fixed id: the broker keeps the session (default: one per run)"
    )
    username: str | None = None
    password: str | None = None
    tls: MqttTlsConfig | None = Field(None, description="TLS settings (mqtts:// turns TLS on)")
    topic_prefix: str = Field("smsgw", min_length=1)
    node: str | None = Field(
        None, description="this node's name in topics (default: node<node_id>)"
    )
    queue: int = Field(10_000, ge=1, description="messages kept while the broker is away")
    keepalive: int = Field(30, ge=5, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        broker_address(value)
        return value

    @field_validator("topic_prefix", "node")
    @classmethod
    def _topic_part(cls, value: str | None) -> str | None:
        if value is not None and re.search(r"[#+\x00]", value):
            raise ValueError("may not hold the MQTT wildcards + and #")
        return value


class MetricsConfig(_Model):
    """Prometheus metrics; off only to measure what they cost (bench/e2e.py)."""

    enabled: bool = True


class GatewayConfig(_Model):
    """The whole configuration."""

    node_id: int = Field(0, ge=0, le=1023, description="unique per gateway node: message ids")
    listen: ListenConfig = ListenConfig()
    numbers: NumberPlanConfig = NumberPlanConfig()
    accounts: tuple[AccountConfig, ...] = ()
    upstreams: Mapping[str, UpstreamConfig] = Field(default_factory=dict)
    simulated_carriers: Mapping[str, SimulatedCarrierConfig] = Field(default_factory=dict)
    modem_banks: Mapping[str, ModemBankConfig] = Field(default_factory=dict)
    control_socket: Path | None = Field(
        None, description="Unix socket for smsgw modem ...; default: beside the SQLite file"
    )
    routes: tuple[RouteConfig, ...] = ()
    mo_routes: tuple[MoRouteConfig, ...] = ()
    mo_reassembly_timeout: float = Field(300.0, gt=0)
    dispatch: DispatchConfig = DispatchConfig()
    store: StoreConfig = StoreConfig()
    messages: MessagesConfig = MessagesConfig()
    logging: LoggingConfig = LoggingConfig()

    http: HttpConfig | None = Field(None, description="no HTTP server unless configured")
    policy: PolicyConfig = PolicyConfig()
    metrics: MetricsConfig = MetricsConfig()
    mqtt: MqttConfig | None = Field(None, description="no MQTT unless configured")

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> GatewayConfig:
        ids = [a.system_id for a in self.accounts]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"accounts: system_id {', '.join(duplicates)} given twice")
        for name in self.modem_banks:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"modem_banks: name {name!r} may hold only A-Z a-z 0-9 _ . -")
        if info.context and info.context.get("references_checked_by_loader"):
            return self  # load_config reports them, each at its own line
        problems = _reference_problems(self)
        if problems:
            loc, message = problems[0]
            raise ValueError(f"{_path(loc)}: {message}")
        return self

    def node_name(self) -> str:
        """This node in MQTT topics and the status: as configured, else node<node_id>."""
        if self.mqtt is not None and self.mqtt.node:
            return self.mqtt.node
        return f"node{self.node_id}"

    def control_path(self) -> Path | None:
        """Where the control socket is: as configured, else ``smsgw.sock`` in systemd's
        RuntimeDirectory (/run/smsgw, where `smsgw modem` looks), else beside the SQLite
        database (so gateways with their own data directories never share one), else none."""
        if self.control_socket is not None:
            return self.control_socket
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        if runtime:
            return Path(runtime) / "smsgw.sock"
        if self.store.backend == "sqlite":
            return self.store.path.parent / "smsgw.sock"
        return None

    def token_path(self) -> Path | None:
        """The local admin token's file (`smsgw` CLI over HTTP): beside the control socket."""
        control = self.control_path()
        return control.with_name("smsgw.token") if control is not None else None

    def mo_router(self) -> MoRouter:
        return MoRouter(MoRoute(m.account, m.prefixes, m.keyword) for m in self.mo_routes)

    def route_table(self) -> RouteTable:
        """The routes compiled for lookup (build a new one on reload)."""
        return RouteTable(route.compile() for route in self.routes)


def _names(names: set[str]) -> str:
    return ", ".join(sorted(names)) if names else "none are configured"


def _reference_problems(
    config: GatewayConfig, raw: Mapping[str, Any] | None = None
) -> list[tuple[tuple[Any, ...], str]]:
    """Names used that are not defined (route targets, route and MO route accounts), each with
    the path of the value that names it. `raw`: the loaded data, for a route's account index."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    ids = {a.system_id for a in config.accounts}
    known = (
        set(config.upstreams)
        | set(config.simulated_carriers)
        | {f"bank:{name}" for name in config.modem_banks}
    )
    for name, bank in config.modem_banks.items():
        if bank.remote is not None and config.mqtt is None:
            problems.append((("modem_banks", name, "remote"), "a remote bank needs mqtt:"))
    for i, route in enumerate(config.routes):
        for j, target in enumerate(route.targets):
            name = target if isinstance(target, str) else target.name
            if name not in known:
                loc: tuple[Any, ...] = ("routes", i, "targets", j)
                if not isinstance(target, str):
                    loc = (*loc, "name")
                if name.startswith("bank:"):
                    banks = _names(set(config.modem_banks))
                    message = f"unknown target {name!r}; modem banks: {banks}"
                else:
                    message = f"unknown target {name!r}; known targets: {_names(known)}"
                problems.append((loc, message))
        raw_accounts: Any = None
        if raw is not None:
            with contextlib.suppress(LookupError, TypeError, AttributeError):
                raw_accounts = raw["routes"][i]["accounts"]
        for name in sorted(route.accounts - ids):
            loc = ("routes", i, "accounts")
            if isinstance(raw_accounts, list) and name in raw_accounts:
                loc = (*loc, raw_accounts.index(name))
            problems.append((loc, f"unknown account {name!r}; accounts: {_names(ids)}"))
    for name in config.policy.dead_numbers.errors:
        if name != ANY_UPSTREAM and name not in known:
            problems.append(
                (
                    ("policy", "dead_numbers", "errors", name),
                    f"unknown upstream {name!r}; known targets: {_names(known)}",
                )
            )
    for i, mo in enumerate(config.mo_routes):
        if mo.account not in ids:
            problems.append(
                (
                    ("mo_routes", i, "account"),
                    f"unknown account {mo.account!r}; accounts: {_names(ids)}",
                )
            )
    return problems


# -- loading -------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader where only true/false are booleans, as in YAML 1.2: `yes`, `no`,
    `on` and `off` stay strings, which the strict fields then refuse with their path. (A key
    given twice, which PyYAML would let the last win, is found by `_duplicates`.)"""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


class _FromEnv(str):
    """A value that was one whole ``${NAME}``: the environment holds only strings, so
    `port: ${PORT}` may be read as a number (the strict fields accept it as text)."""

    __slots__ = ()


_ENV = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(
    value: Any,
    env: Mapping[str, str],
    missing: list[str],
    lines: Mapping[tuple[Any, ...], int],
    loc: tuple[Any, ...] = (),
) -> Any:
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            if m[1]:
                return m[0][1:]  # $${X} is a literal ${X}
            if m[2] not in env:
                if m[3] is not None:
                    return m[3]  # ${X:-default}
                missing.append(f"{_where(loc, lines)}: environment variable {m[2]} is not set")
                return ""
            return env[m[2]]

        out = _ENV.sub(one, value)
        whole = _ENV.fullmatch(value) is not None and not value.startswith("$$")
        return _FromEnv(out) if whole else out
    if isinstance(value, dict):
        return {k: _substitute(v, env, missing, lines, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, missing, lines, (*loc, i)) for i, v in enumerate(value)]
    return value


def _lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Line (1-based) of every value in the YAML document, by its path."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out.update(_lines(value, (*path, key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out.update(_lines(value, (*path, i)))
    return out


def _duplicates(node: yaml.Node, path: tuple[Any, ...] = ()) -> list[str]:
    """Keys given twice in one mapping: PyYAML would keep the last without a word."""
    out = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in seen:
                out.append(
                    f"{_path((*path, key.value))} (line {line}): "
                    f"given twice (first on line {seen[key.value]})"
                )
            seen.setdefault(key.value, line)
            out += _duplicates(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out += _duplicates(value, (*path, i))
    return out


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "TargetConfig") or "[" in str(part):
            continue  # pydantic's union-branch labels, not YAML keys
        else:
            text += f".{part}" if text else str(part)
    return text or "<root>"


def _where(loc: tuple[Any, ...], lines: Mapping[tuple[Any, ...], int]) -> str:
    line = lines.get(tuple(loc))
    return _path(loc) + (f" (line {line})" if line else "")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` (a path to one of its keys) takes."""
    model: type[BaseModel] | None = GatewayConfig
    annotation: Any = GatewayConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        model = _model_of(annotation)
        if model is not None and part in model.model_fields:
            annotation = model.model_fields[part].annotation
        elif get_origin(annotation) in (Mapping, dict):
            annotation = get_args(annotation)[1]  # a name: modem_banks.<name>
    model = _model_of(annotation)
    return sorted(model.model_fields) if model is not None else []


def _unknown_key(loc: tuple[Any, ...]) -> str:
    close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def _host_problem(host: str) -> str | None:
    if host in ("", "localhost"):
        return None  # "": every interface, as asyncio reads it
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return f"{host!r} is neither an IP address nor a host name that resolves"
    return None


def _folder_problem(path: Path) -> str | None:
    """Why the folder of `path` cannot be created (or written), without creating it."""
    folder = path.parent if str(path.parent) else Path()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"folder {folder} cannot be created: {probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == folder else f"cannot be created in {probe}"
        return f"folder {folder} {what}"
    return None


def _serve_problems(
    config: GatewayConfig, data: Mapping[str, Any], lines: Mapping[tuple[Any, ...], int]
) -> list[str]:
    """What a valid model still cannot serve: nothing to bind as or route by, a listen host
    that is no address, a store folder that cannot be made."""
    problems = []
    if not data:
        return ["the file is empty: a gateway needs at least accounts and routes"]
    if not config.accounts:
        problems.append("accounts: none configured, so no application can bind")
    if not config.routes:
        problems.append("routes: none configured, so no message can be sent")
    host = _host_problem(config.listen.host)
    if host:
        problems.append(f"{_where(('listen', 'host'), lines)}: {host}")
    if config.store.backend == "sqlite":
        folder = _folder_problem(config.store.path)
        if folder:
            problems.append(f"{_where(('store', 'path'), lines)}: {folder}")
    if config.control_socket is not None:
        folder = _folder_problem(config.control_socket)
        if folder:
            problems.append(f"{_where(('control_socket',), lines)}: {folder}")
    return problems


def load_config(
    source: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    text: str | None = None,
    complete: bool = False,
) -> GatewayConfig:
    """Read, substitute and validate a configuration file.

    `complete`: also refuse what validates but cannot be served (see `_serve_problems`):
    `smsgw check-config` asks for it; tests that build partial gateways do not.

    Raises:
        ConfigError: unreadable file, bad YAML, duplicate or unknown keys, bad values, unknown
            names, missing environment variables - every problem found, each with its YAML
            path and line.
    """
    name = str(source)
    data, lines = _read(source, env, text)
    try:
        config = GatewayConfig.model_validate(data, context={"references_checked_by_loader": True})
    except ValidationError as exc:
        raise ConfigError(_invalid(exc, lines), name) from None
    problems = [f"{_where(loc, lines)}: {m}" for loc, m in _reference_problems(config, data)]
    if complete:
        problems += _serve_problems(config, data, lines)
    if problems:
        raise ConfigError(problems, name)
    return config


def _read(
    source: str | Path, env: Mapping[str, str] | None, text: str | None
) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """A YAML file's data, substituted, and the line of each path in it."""
    name = str(source)
    try:
        raw_text = text if text is not None else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], name) from None
    try:
        node = yaml.compose(raw_text, Loader=_Loader)
        data = yaml.load(raw_text, Loader=_Loader)  # a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError([f"{where}not valid YAML: {what}"], name) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], name) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["the top level must be a mapping of settings"], name)
    duplicates = _duplicates(node) if node is not None else []
    if duplicates:
        raise ConfigError(duplicates, name)
    lines = _lines(node) if node is not None else {}
    missing: list[str] = []
    data = _substitute(data, os.environ if env is None else env, missing, lines)
    if missing:
        raise ConfigError(missing, name)
    return data, lines


def _invalid(exc: ValidationError, lines: Mapping[tuple[Any, ...], int]) -> list[str]:
    """The validation errors, each with its YAML path and line."""
    problems = []
    for error in exc.errors():
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p in ("str", "TargetConfig"))
        )
        if error["type"] == "extra_forbidden":
            message = _unknown_key(loc)
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{_where(loc, lines)}: {message}")
    return problems


class AgentConfig(_Model):
    """A modem-bank agent's configuration (`smsgw agent -c agent.yaml`)."""

    name: str = Field(..., description="the agent's name: gateways' remote banks name it")
    mqtt: MqttConfig
    modem_banks: Mapping[str, ModemBankConfig] = Field(..., min_length=1)
    state: Path = Field(
        Path("agent.sqlite3"), description="SQLite: idempotency keys, outbox, SIM usage"
    )
    heartbeat: float = Field(10.0, gt=0, le=600, description="seconds between status messages")
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _names(self) -> AgentConfig:
        for name in (self.name, *self.modem_banks):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"name {name!r} may hold only A-Z a-z 0-9 _ . -")
        for name, bank in self.modem_banks.items():
            if bank.remote is not None:
                raise ValueError(f"modem_banks.{name}: an agent drives local modems only")
        return self


def is_agent_config(source: str | Path) -> bool:
    """Whether a file is an agent's configuration (a top-level `name` and no `accounts`), so
    `check-config` validates each file as what it is."""
    try:
        data = yaml.load(Path(source).read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError):
        return False  # load_config reports it
    return isinstance(data, dict) and "name" in data and "accounts" not in data


def load_agent_config(
    source: str | Path, *, env: Mapping[str, str] | None = None, text: str | None = None
) -> AgentConfig:
    """Read, substitute and validate an agent's configuration file.

    Raises:
        ConfigError: every problem, each with its YAML path and line.
    """
    data, lines = _read(source, env, text)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_invalid(exc, lines), str(source)) from None
