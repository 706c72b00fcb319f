"""Delivery statistics kept by both backends: the row key of a message and the per-transaction
sums written as one UPSERT per key (a group commit of 500 messages is a handful of rows).

The destination's country and operator come from phonenumbers (cached) when a row is bumped,
not from columns of messages: nothing else needs them, and a stats row outlives its messages
(`store.stats_retention_days`). The operator is the range's, valid number or not: no validity,
time zone or geocoder lookups (`policy.numbers.number_info` costs 2.5x as much per new number).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import carrier

from gateway.store.base import (
    LATENCY_BUCKETS,
    OUTCOME,
    PREFIX_DIGITS,
    STATS_COUNTERS,
    STATS_GROUPS,
    latency_bucket,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DIM_NAMES",
    "KEY_COLUMNS",
    "MESSAGE_DIMS",
    "StatsBatch",
    "count_change",
    "count_sent",
    "group_columns",
    "place",
    "query_sql",
    "schema",
    "upsert_sql",
]

KEY_COLUMNS = (
    "hour", "account", "route", "target", "msg_class", "campaign", "country", "operator", "prefix"
)  # fmt: skip
_GROUP_COLUMN = dict(zip(STATS_GROUPS, KEY_COLUMNS, strict=True))
LATENCY_COLUMNS = tuple(f"lat{i}" for i in range(LATENCY_BUCKETS))
VALUE_COLUMNS = STATS_COUNTERS + LATENCY_COLUMNS
_INDEX = {name: i for i, name in enumerate(VALUE_COLUMNS)}
# What a message row gives its stats key, in this order (sent_to is the target).
MESSAGE_DIMS = (
    "accepted_at, account, route, coalesce(sent_to, '') AS target, msg_class, campaign, "
    "destination_addr"
)
DIM_NAMES = "accepted_at, account, route, target, msg_class, campaign, destination_addr"

_OUTCOME = {state.value: counter for state, counter in OUTCOME.items()}
_FAR = 2.0**53
Key = tuple[int, str, str, str, str, str, str, str, str]
Dims = tuple[float, str, str, str, str, str, str]


def schema(integer: str, text: str) -> str:
    """The delivery_stats table in a backend's types."""
    values = ",\n".join(f"        {c} {integer} NOT NULL DEFAULT 0" for c in VALUE_COLUMNS)
    keys = ",\n".join(
        f"        {c} {integer if c == 'hour' else text} NOT NULL" for c in KEY_COLUMNS
    )
    return f"""
    CREATE TABLE delivery_stats (
{keys},
{values},
        PRIMARY KEY ({", ".join(KEY_COLUMNS)})
    );
    CREATE INDEX delivery_stats_hour ON delivery_stats (hour)
    """


def upsert_sql(placeholder: Callable[[int], str]) -> str:
    columns = KEY_COLUMNS + VALUE_COLUMNS
    marks = ", ".join(placeholder(i) for i in range(1, len(columns) + 1))
    sums = ", ".join(f"{c} = delivery_stats.{c} + excluded.{c}" for c in VALUE_COLUMNS)
    return (
        f"INSERT INTO delivery_stats ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {sums}"
    )


def group_columns(group: tuple[str, ...]) -> list[str]:
    """The columns of `group` names; ValueError names an unknown one."""
    unknown = [g for g in group if g not in _GROUP_COLUMN]
    if unknown:
        raise ValueError(f"unknown group {', '.join(unknown)}; valid: {', '.join(STATS_GROUPS)}")
    return [_GROUP_COLUMN[g] for g in group]


@lru_cache(maxsize=65_536)
def _place(digits: str) -> tuple[str, str]:
    """(country, operator) of international digits; ("", "") when phonenumbers cannot say."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return "", ""
    country = phonenumbers.region_code_for_number(number)
    if country in (None, "ZZ"):
        return "", ""
    return country, carrier.name_for_valid_number(number, "en")


def place(destination: str) -> tuple[str, str]:
    """The (country, operator) columns of a destination's stats rows."""
    return _place(destination) if destination.isdigit() else ("", "")


def _key(dims: Dims, prefix_digits: int) -> Key:
    accepted_at, account, route, target, msg_class, campaign, destination = dims
    country, operator = place(destination)
    hour = accepted_at // 3600 * 3600
    return (
        int(hour) if -_FAR < hour < _FAR else 0,  # a time no clock gives (or NaN): hour 0
        account,
        route,
        target,
        msg_class,
        campaign,
        country,
        operator,
        destination[:prefix_digits],
    )


class StatsBatch:
    """The counter changes of one transaction, summed per row key."""

    __slots__ = ("prefix_digits", "rows")

    def __init__(self, prefix_digits: int = PREFIX_DIGITS) -> None:
        self.rows: dict[Key, list[int]] = {}
        self.prefix_digits = prefix_digits  # `store.stats_prefix_digits`

    def add(self, dims: Dims, counter: str, n: int = 1, *, target: str | None = None) -> None:
        """`n` more (or fewer) in `counter` of the row of a message with `dims` (`target`
        standing in for its own)."""
        if target is not None:
            dims = (*dims[:3], target, *dims[4:])
        self._row(dims)[_INDEX[counter]] += n

    def latency(self, dims: Dims, seconds: float) -> None:
        self._row(dims)[len(STATS_COUNTERS) + latency_bucket(seconds)] += 1

    def _row(self, dims: Dims) -> list[int]:
        key = _key(dims, self.prefix_digits)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * len(VALUE_COLUMNS)
        return row

    def copy(self) -> StatsBatch:
        other = StatsBatch(self.prefix_digits)
        other.rows = {k: list(v) for k, v in self.rows.items()}
        return other

    def take(self) -> list[tuple[object, ...]]:
        """The rows to upsert (those with a change), and an empty batch."""
        rows = [(*k, *v) for k, v in self.rows.items() if any(v)]
        self.rows = {}
        return rows


def count_change(
    batch: StatsBatch,
    dims: Dims,
    change: tuple[str | None, str],
    now: float,
    sent_at: float | None = None,
) -> None:
    """A message with `dims` went from state `change[0]` (None: new) to `change[1]`
    (`MessageState` values): its outcome counters follow, both ways, so counts always equal
    a scan of messages."""
    old, new = change
    if old is None:
        batch.add(dims, "accepted")
    before, after = _OUTCOME.get(old or ""), _OUTCOME.get(new)
    if before == after:
        return
    if before is not None:
        batch.add(dims, before, -1)
    if after is not None:
        batch.add(dims, after)
        if after == "delivered" and sent_at is not None:
            batch.latency(dims, max(0.0, now - sent_at))


def count_sent(batch: StatsBatch, dims: Dims, sent_to: str | None, upstream: str) -> None:
    """A message with `dims` (its target as it was: `sent_to`) was handed to `upstream`: it
    counts as sent there, and moves its accepted count from its old target."""
    if sent_to == upstream:
        return
    batch.add(dims, "accepted", -1, target=sent_to or "")
    batch.add(dims, "accepted", target=upstream)
    if sent_to:
        batch.add(dims, "sent", -1, target=sent_to)
    batch.add(dims, "sent", target=upstream)


def query_sql(
    group: tuple[str, ...], where: dict[str, str], placeholder: Callable[[int], str]
) -> tuple[str, list[object]]:
    """The statement of `Store.stats` after its (since, until) arguments, and the arguments
    `where` adds; ValueError names an unknown group or filter."""
    columns = group_columns(group)
    filters = group_columns(tuple(where))
    conditions = [f"hour >= {placeholder(1)}", f"hour < {placeholder(2)}"]
    conditions += [f"{c} = {placeholder(n)}" for n, c in enumerate(filters, 3)]
    sums = ", ".join(f"sum({c})" for c in VALUE_COLUMNS)
    select = ", ".join([*columns, sums])
    sql = f"SELECT {select} FROM delivery_stats WHERE {' AND '.join(conditions)}"
    if columns:
        sql += f" GROUP BY {', '.join(columns)}"
    # a message handed to a target leaves a row of zeros under "" (no target yet)
    sql += " HAVING " + " OR ".join(f"sum({c}) <> 0" for c in STATS_COUNTERS)
    if columns:
        sql += f" ORDER BY {', '.join(columns)}"
    args: list[object] = [
        int(v) if c == "hour" else v for c, v in zip(filters, where.values(), strict=True)
    ]
    return sql, args
