"""The SQLite writer's run of checked accepts (`_accept_checked_run`: one query per kind for
a whole group commit, what an earlier message of the run adds kept in memory) decides exactly
as the same messages do one per transaction, and as a plain reference that reads each fact
with its own query: same verdicts, same rows, for any mix of caps (per account or not, at
their window's edge), dedup, opt-outs, dead numbers and stops found before the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.check import StoreCheck, store_verdict
from gateway.policy.rules import Cap, ClassRule, Facts, Reason, Verdict
from gateway.store.sqlite import _accept, _accept_checked, connect, run_ops
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


def _reference(conn: sqlite3.Connection, m: Any, check: StoreCheck, now: float) -> Verdict:
    """The store's side of the rules for one message, written the plain way - each fact read
    with its own query, by the rows' own times - to hold the writer's run against."""
    facts = Facts()
    if check.stopped is None:
        number = m.destination_addr
        dead = conn.execute(
            "SELECT 1 FROM dead_numbers WHERE number = ? AND dead_until > ?", (number, now)
        ).fetchone()
        suppressed = (
            check.rule.opt_out
            and conn.execute(
                "SELECT 1 FROM suppressions WHERE number = ? AND scope IN ('', ?)",
                (number, check.scope),
            ).fetchone()
        )
        duplicate = None
        if check.dedup_key is not None and check.rule.dedup:
            duplicate = conn.execute(
                "SELECT message_id FROM policy_dedup WHERE key = ? AND created_at > ?",
                (check.dedup_key, now - check.dedup_window),
            ).fetchone()
        sent = {
            cap: conn.execute(
                "SELECT count(*) FROM policy_sends WHERE number = ?1 AND msg_class = ?2 "
                "AND sent_at > ?3 AND (?4 = '' OR account = ?4)",
                (number, m.msg_class, now - cap.window, m.account if cap.per_account else ""),
            ).fetchone()[0]
            for cap in check.rule.caps
        }
        facts = Facts(
            suppressed=bool(suppressed),
            dead=dead is not None,
            sent=sent,
            duplicate_of=duplicate[0] if duplicate else None,
        )
    verdict = store_verdict(check, facts)
    if verdict.duplicate_of is not None or (
        verdict.stop is not None and verdict.stop in check.refuse
    ):
        return verdict
    _accept(conn, m)
    if verdict.stop is not None:
        conn.execute("UPDATE messages SET stop_reason = ? WHERE id = ?", (verdict.stop.value, m.id))
        return verdict
    if check.rule.caps:
        conn.execute(
            "INSERT INTO policy_sends VALUES (?, ?, ?, ?)",
            (m.destination_addr, m.msg_class, m.account, now),
        )
    if check.dedup_key is not None and check.rule.dedup:
        conn.execute(
            "INSERT OR REPLACE INTO policy_dedup VALUES (?, ?, ?)", (check.dedup_key, m.id, now)
        )
    return verdict


def _tables(conn: sqlite3.Connection) -> list[Any]:
    return [
        # the history is the row's trail (migration 13)
        sorted(conn.execute("SELECT id, state, stop_reason, trail FROM messages").fetchall()),
        sorted(conn.execute("SELECT * FROM policy_sends").fetchall()),
        sorted(conn.execute("SELECT * FROM policy_dedup").fetchall()),
    ]


@settings(max_examples=150)
@given(st.lists(_item, min_size=2, max_size=25))
def test_a_run_decides_as_one_by_one(tmp_path_factory: Any, items: list[tuple[Any, ...]]) -> None:
    directory: Path = tmp_path_factory.mktemp("run")
    conns = [connect(str(directory / f"{name}.db")) for name in ("run", "ones", "reference")]
    for conn in conns:
        _seed(conn)
    together, alone, plain = conns
    ops = _ops(items)
    batched = run_ops(together, ops)  # one transaction: one run
    single = [run_ops(alone, [op])[0] for op in ops]  # a transaction each: runs of one
    reference = [run_ops(plain, [(_reference, args)])[0] for _, args in ops]
    assert [e for _, e in batched] == [None] * len(ops)
    assert [v for v, _ in batched] == [v for v, _ in single] == [v for v, _ in reference]
    assert _tables(together) == _tables(alone) == _tables(plain)
    for conn in conns:
        conn.close()
