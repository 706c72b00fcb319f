"""What a reload changes: two `GatewayConfig`s compared into a plan (pure: no I/O).

`Gateway.reload` applies the plan's live parts and names the rest: a setting in
`RESTART_NEEDED` keeps its old value until the process restarts, and the log and the reload's
answer say so. Everything else is applied in one step of the event loop, so a message is
accepted either wholly under the old configuration or wholly under the new one.

A message is stored with its route's name, not its targets, so the dispatcher keeps each
replaced route table (`Dispatcher.swap_routes`) and sends a message by the table in force when
it was accepted: a route changed or removed by a reload keeps its old targets for the messages
it already took. An upstream no longer named is retired only once the due messages routed to it
were handed to it and its sends in flight finished (`Dispatcher.remove_driver`); a message of
it due later (a retry, a scheduled one) goes by the new table's route of the same name, and its
receipts still outstanding end by the receipt timeout (there is no link left to query).
A changed upstream binds anew at once with its new settings; the old one unbinds when its
sends in flight are answered, so for that moment the carrier sees one bind more. A modem bank
added starts (its emulated modems too), one removed drains like an upstream; in a bank kept,
modems added start, and modems removed or changed leave the selection at once and stop once
their sends under way are answered (`ModemBank.reconfigure`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig

__all__ = ["RESTART_NEEDED", "ReloadPlan", "ReloadResult", "plan_reload"]

# Top-level settings a running gateway cannot change: where it listens, where it stores, its
# node id (in every message id), the control socket it serves, and settings the dispatcher
# and the MO reassembly read once at start.
RESTART_NEEDED = (
    "listen",
    "store",
    "node_id",
    "control_socket",
    "dispatch",
    "mo_reassembly_timeout",
    "http",
    "metrics",
    "logging",
)


@dataclass(frozen=True)
class Changed:
    """Names added, removed and changed in one mapping of the config."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, what: str) -> list[str]:
        return [
            f"{what} {verb}: {', '.join(names)}"
            for verb, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]


@dataclass(frozen=True)
class ReloadPlan:
    accounts: Changed = Changed()
    upstreams: Changed = Changed()
    simulated_carriers: Changed = Changed()
    modem_banks: Changed = Changed()
    routes: bool = False
    mo_routes: bool = False
    numbers: bool = False
    messages: bool = False
    policy: bool = False
    restart_needed: tuple[str, ...] = ()

    def applied(self) -> list[str]:
        """What applying the plan changes, one line per kind of object."""
        lines = self.accounts.describe("accounts") + self.upstreams.describe("upstreams")
        lines += self.simulated_carriers.describe("simulated carriers")
        lines += self.modem_banks.describe("modem banks")
        lines += [
            name
            for name, flag in (
                ("routes", self.routes),
                ("mo_routes", self.mo_routes),
                ("numbers", self.numbers),
                ("messages", self.messages),
                ("policy", self.policy),
            )
            if flag
        ]
        return lines


@dataclass(frozen=True)
class ReloadResult:
    """A reload's answer: what was applied, what waits for a restart (empty on error)."""

    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "restart_needed": self.restart_needed}


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> Changed:
    return Changed(
        added=tuple(sorted(set(new) - set(old))),
        removed=tuple(sorted(set(old) - set(new))),
        changed=tuple(sorted(n for n in set(old) & set(new) if old[n] != new[n])),
    )


def plan_reload(old: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    """What turning `old` into `new` changes, and which of those changes need a restart."""
    return ReloadPlan(
        accounts=_diff(
            {a.system_id: a for a in old.accounts}, {a.system_id: a for a in new.accounts}
        ),
        upstreams=_diff(old.upstreams, new.upstreams),
        simulated_carriers=_diff(old.simulated_carriers, new.simulated_carriers),
        modem_banks=_diff(old.modem_banks, new.modem_banks),
        # A route's targets and its place in the table both matter: compare the whole list.
        routes=old.routes != new.routes,
        mo_routes=old.mo_routes != new.mo_routes,
        numbers=old.numbers != new.numbers,
        messages=old.messages != new.messages,
        # Compared as written: adding an empty `policy:` section turns the rules on.
        policy=(old.policy, "policy" in old.model_fields_set)
        != (new.policy, "policy" in new.model_fields_set),
        restart_needed=tuple(n for n in RESTART_NEEDED if getattr(old, n) != getattr(new, n)),
    )
