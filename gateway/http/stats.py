"""GET /api/v1/stats: delivery statistics from the store's counters (`Store.stats`), grouped
by any of `STATS_GROUPS`. An admin sees every account; an account sees its own rows only.

Times: ``since``/``until`` are ISO 8601 (with a zone) or a duration back from now (``24h``,
``-24h``, ``30m``, ``7d``). Rows are per accept hour, so ``since`` is rounded down to its hour.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from gateway.http.auth import Caller, caller, gateway_of
from gateway.http.errors import ApiError, errors
from gateway.store.base import STATS_GROUPS

__all__ = ["parse_time", "router"]

router = APIRouter(prefix="/api/v1")

_DURATION = re.compile(r"^-?(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DEFAULT_SINCE = 86_400.0


def parse_time(value: str, now: float) -> float:
    """Epoch seconds of an ISO 8601 time or of a duration back from `now`; ValueError."""
    found = _DURATION.match(value.strip())
    if found is not None:
        return now - float(found[1]) * _UNIT[found[2]]
    when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("an ISO time needs its zone (Z or +hh:mm)")
    return when.timestamp()


def _time(name: str, value: str | None, default: float, now: float) -> float:
    if value is None:
        return default
    try:
        return parse_time(value, now)
    except ValueError as exc:
        raise ApiError(
            422, "invalid_request", f"{name}: {exc} (ISO 8601 or like 24h)", field=name
        ) from exc


@router.get(
    "/stats",
    tags=["operations"],
    summary="Delivery statistics: sent, delivered, failed, expired, rejected, pending, "
    "delivery rate and receipt latency p50/p95, per group",
    responses=errors(401, 422),
)
async def stats(  # noqa: PLR0917 - one query parameter each
    request: Request,
    who: Annotated[Caller, Depends(caller)],
    group: Annotated[str, Query(description=f"comma-separated: {', '.join(STATS_GROUPS)}")] = (
        "route,target"
    ),
    since: Annotated[str | None, Query(description="ISO 8601 or a duration (24h)")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or a duration; default now")] = None,
    class_: Annotated[str | None, Query(alias="class")] = None,
    campaign: str | None = None,
    account: str | None = None,
    route: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    now = time.time()
    keys = tuple(g for g in (part.strip() for part in group.split(",")) if g)
    unknown = [g for g in keys if g not in STATS_GROUPS]
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"group: unknown {', '.join(unknown)}; valid: {', '.join(STATS_GROUPS)}",
            field="group",
        )
    start = _time("since", since, now - DEFAULT_SINCE, now)
    end = _time("until", until, now + 3600, now)
    where = {
        k: v
        for k, v in {
            "class": class_,
            "campaign": campaign,
            "account": account,
            "route": route,
            "target": target,
        }.items()
        if v is not None
    }
    if not who.admin:
        where["account"] = who.name  # an account's own rows, whatever it asked
    rows = await gateway_of(request).store.stats(start, end, keys, where=where)
    return {"since": start, "until": end, "group": list(keys), "rows": [r.as_dict() for r in rows]}
