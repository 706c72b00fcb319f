"""The SQLite writer's run of checked accepts (`_accept_checked_run`: one query per kind for
a whole group commit) decides exactly as the message-by-message path does: same verdicts,
same rows, for any mix of caps (per account or not, at their window's edge), dedup, opt-outs,
dead numbers and stops found before the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.check import StoreCheck
from gateway.policy.rules import Cap, ClassRule, Reason
from gateway.store.sqlite import _accept_checked, connect, run_ops
from tests.store import T0, msg

NUMBERS = ("8613800000001", "8613800000002", "4915100000003")
RULES = (
    ClassRule("marketing", caps=(Cap(2, 10.0), Cap(3, 100.0, per_account=True))),
    ClassRule("payment_reminder", caps=(Cap(1, 5.0),), dedup=False),
    ClassRule("otp", opt_out=False, dedup=False),
)

_item = st.tuples(
    st.integers(0, len(NUMBERS) - 1),  # recipient
    st.integers(0, len(RULES) - 1),  # class
    st.sampled_from(("shop", "brand")),  # account
    st.integers(0, 2),  # text (dedup key)
    st.floats(0.0, 12.0),  # seconds after the previous message
    st.sampled_from((None, None, None, Reason.SIGNATURE_MISSING)),  # stopped before the store
    st.booleans(),  # a stop refuses the submit
)


def _ops(items: list[tuple[Any, ...]]) -> list[tuple[Any, tuple[Any, ...]]]:
    ops = []
    now = T0
    for i, (number, rule, account, text, gap, stopped, refuse) in enumerate(items):
        now += gap
        r = RULES[rule]
        m = msg(
            i,
            destination_addr=NUMBERS[number],
            msg_class=r.name,
            account=account,
            accepted_at=now,
        )
        check = StoreCheck(
            r,
            scope="Shop" if i % 2 else "",
            dedup_key=f"{account}/{number}/{text}",
            dedup_window=8.0,
            refuse=frozenset({Reason.FREQUENCY_CAP}) if refuse else frozenset(),
            stopped=stopped,
        )
        ops.append((_accept_checked, (m, check, now)))
    return ops


def _seed(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO suppressions VALUES (?, 'Shop', ?, 'test')", (NUMBERS[1], T0))
    conn.execute("INSERT INTO dead_numbers VALUES (?, 3, ?, ?)", (NUMBERS[2], T0, T0 + 30.0))
    # Earlier sends, some at the windows' edges.
    for at in (T0 - 9.5, T0 - 4.0, T0 - 0.5):
        conn.execute(
            "INSERT INTO policy_sends VALUES (?, 'marketing', 'shop', ?)", (NUMBERS[0], at)
        )
    conn.execute("INSERT INTO policy_dedup VALUES ('shop/0/0', 'old', ?)", (T0 - 2.0,))


def _tables(conn: sqlite3.Connection) -> list[Any]:
    return [
        sorted(conn.execute("SELECT id, state, stop_reason FROM messages").fetchall()),
        sorted(conn.execute("SELECT * FROM message_history").fetchall()),
        sorted(conn.execute("SELECT * FROM policy_sends").fetchall()),
        sorted(conn.execute("SELECT * FROM policy_dedup").fetchall()),
    ]


@settings(max_examples=150)
@given(st.lists(_item, min_size=2, max_size=25))
def test_a_run_decides_as_one_by_one(tmp_path_factory: Any, items: list[tuple[Any, ...]]) -> None:
    directory: Path = tmp_path_factory.mktemp("run")
    together, alone = connect(str(directory / "a.db")), connect(str(directory / "b.db"))
    for conn in (together, alone):
        _seed(conn)
    ops = _ops(items)
    batched = run_ops(together, ops)  # one transaction: the run path
    single = [run_ops(alone, [op])[0] for op in ops]  # a transaction each: the plain path
    assert [e for _, e in batched] == [None] * len(ops)
    assert [v for v, _ in batched] == [v for v, _ in single]
    assert _tables(together) == _tables(alone)
    together.close()
    alone.close()
