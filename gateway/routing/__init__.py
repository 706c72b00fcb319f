"""Routing by destination prefix: a compiled table and a pure `select_route`."""

from __future__ import annotations

from gateway.routing.numbers import NumberPlan, normalize, sender_key
from gateway.routing.quality import QualityBoard, QualitySettings, Transition
from gateway.routing.table import (
    Route,
    RouteDecision,
    RouteTable,
    Strategy,
    Target,
    select_route,
)

__all__ = [
    "NumberPlan",
    "QualityBoard",
    "QualitySettings",
    "Route",
    "RouteDecision",
    "RouteTable",
    "Strategy",
    "Target",
    "Transition",
    "normalize",
    "select_route",
    "sender_key",
]
