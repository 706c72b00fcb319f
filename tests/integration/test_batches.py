"""Batches over HTTP: a whole `Gateway` on a loop thread, a simulated carrier, httpx as the
client. JSON and CSV (body and multipart upload), placeholders, duplicates, bad rows,
progress until delivered, cancel, ownership, the size limit; and kill -9 while accepting."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.http.batches import MAX_BATCH
from tests.integration.loop import LoopThread
from tests.integration.serve import Served

CONFIG = """
accounts:
  - {system_id: shop, password: secret}
  - {system_id: other, password: secret}
simulated_carriers: {sim: {delivery_delay: 0.05}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
http: {host: 127.0.0.1, port: 0}
"""

SHOP = ("shop", "secret")
OTHER = ("other", "secret")


class Running(LoopThread):
    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.db = tmp / "gw.sqlite3"
        self.gateway = Gateway(load_config("t.yaml", text=CONFIG % self.db))
        self.gateway.dispatcher.poll_interval = 0.05
        self.call(self.gateway.start("127.0.0.1", 0))
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.gateway.http_port}", auth=SHOP, timeout=30
        )

    def close(self) -> None:
        self.client.close()
        self.call(self.gateway.stop())
        self.stop_loop()

    def texts(self, batch_id: str) -> dict[str, str]:
        """destination -> text of the batch's stored messages (GSM 7-bit, unpacked)."""
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(
                "SELECT destination_addr, short_message FROM messages WHERE batch_id = ?",
                (batch_id,),
            ).fetchall()
        return {dest: bytes(body).decode("latin-1") for dest, body in rows}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    running = Running(tmp_path)
    try:
        yield running
    finally:
        running.close()


def wait_for(
    get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], limit: float = 30
) -> dict[str, Any]:
    """Poll `get` until `done` holds; fail with the last answer after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        last = get()
        if done(last):
            return last
        assert time.monotonic() < deadline, f"still not there after {limit} s: {last}"
        time.sleep(0.05)


def progress(gw: Running, batch_id: str) -> dict[str, Any]:
    answer = gw.client.get(f"/api/v1/batches/{batch_id}")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_json_batch_is_accepted_sent_and_delivered(gw: Running) -> None:
    numbers = [f"+491511000{i:04d}" for i in range(50)]
    answer = gw.client.post(
        "/api/v1/batches",
        json={"from": "Shop", "text": "Sale today", "recipients": numbers},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["total"] == 50
    assert body["to_accept"] == 50
    assert answer.headers["location"] == f"/api/v1/batches/{body['id']}"
    final = wait_for(lambda: progress(gw, body["id"]), lambda p: p["delivered"] == 50)
    assert final["state"] == "done"
    assert (final["accepted"], final["refused"], final["pending"], final["failed"]) == (
        50,
        0,
        0,
        0,
    )
    assert final["finished_accepting_at"] >= final["created_at"]
    assert set(gw.texts(body["id"])) == {n[1:] for n in numbers}


def test_csv_upload_fills_placeholders_per_row(gw: Running) -> None:
    csv_text = "name,phone,code\nAnna,+4915110000001,A1\nBen,+49 1511 0000002,B2\n"
    answer = gw.client.post(
        "/api/v1/batches",
        files={"file": ("list.csv", csv_text, "text/csv")},
        data={"from": "Shop", "text": "Hi {name}, your code is {code}"},
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]
    wait_for(lambda: progress(gw, batch_id), lambda p: p["accepted"] == 2)
    assert gw.texts(batch_id) == {
        "4915110000001": "Hi Anna, your code is A1",
        "4915110000002": "Hi Ben, your code is B2",
    }


def test_csv_body_with_query_fields(gw: Running) -> None:
    answer = gw.client.post(
        "/api/v1/batches",
        params={"text": "Hello {first}", "dlr": "false"},
        content="msisdn,first\n4915110000003,Cy\n",
        headers={"content-type": "text/csv"},
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]
    wait_for(lambda: progress(gw, batch_id), lambda p: p["accepted"] == 1)
    assert gw.texts(batch_id) == {"4915110000003": "Hello Cy"}


def test_duplicates_are_sent_once_and_bad_rows_reported(gw: Running) -> None:
    recipients = [
        "+4915110000001",
        {"to": "+49 1511 0000001"},  # the same number, written differently
        "not-a-number",
        "+4915110000002",
        "+4915110000002",
    ]
    answer = gw.client.post("/api/v1/batches", json={"text": "x", "recipients": recipients})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["total"], body["to_accept"], body["duplicates"], body["invalid"]) == (5, 2, 2, 1)
    assert body["report"]["duplicates"] == ["+49 1511 0000001", "+4915110000002"]
    final = wait_for(lambda: progress(gw, body["id"]), lambda p: p["state"] == "done")
    assert (final["accepted"], final["refused"], final["duplicates"]) == (2, 1, 2)
    assert final["report"]["invalid"] == [
        {"row": 3, "to": "not-a-number", "message": "not a phone number"}
    ]
    assert final["report"]["duplicates"] == ["+49 1511 0000001", "+4915110000002"]
    assert len(gw.texts(body["id"])) == 2


def test_a_placeholder_no_row_has_refuses_the_batch(gw: Running) -> None:
    answer = gw.client.post(
        "/api/v1/batches",
        json={"text": "Hi {name}", "recipients": [{"to": "+4915110000001", "fields": {}}]},
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "missing_field"
    assert "row 1" in error["message"]
    assert "{name}" in error["message"]


def test_cancel_a_scheduled_batch(gw: Running) -> None:
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    numbers = [f"+491511000{i:04d}" for i in range(30)]
    answer = gw.client.post(
        "/api/v1/batches", json={"text": "later", "schedule": later, "recipients": numbers}
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]
    before = wait_for(lambda: progress(gw, batch_id), lambda p: p["state"] == "done")
    assert (before["pending"], before["sent"]) == (30, 0)
    gone = gw.client.delete(f"/api/v1/batches/{batch_id}")
    assert gone.status_code == 200, gone.text
    assert (gone.json()["cancelled_now"], gone.json()["not_accepted"]) == (30, 0)
    after = progress(gw, batch_id)
    assert (after["state"], after["cancelled"], after["pending"]) == ("cancelled", 30, 0)
    assert gw.client.delete(f"/api/v1/batches/{batch_id}").json()["cancelled_now"] == 0


def test_another_account_sees_no_batch(gw: Running) -> None:
    answer = gw.client.post("/api/v1/batches", json={"text": "x", "recipients": ["+491511"]})
    batch_id = answer.json()["id"]
    for method in ("GET", "DELETE"):
        seen = gw.client.request(method, f"/api/v1/batches/{batch_id}", auth=OTHER)
        assert seen.status_code == 404
        assert seen.json()["error"]["code"] == "not_found"
    assert gw.client.get("/api/v1/batches/nope").status_code == 404
    assert gw.client.get(f"/api/v1/batches/{batch_id}", auth=("shop", "wrong")).status_code == 401


def test_more_than_the_limit_is_refused(gw: Running) -> None:
    answer = gw.client.post(
        "/api/v1/batches", json={"text": "x", "recipients": ["+491511"] * (MAX_BATCH + 1)}
    )
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert error["code"] == "too_many_recipients"
    assert "100,000" in error["message"]


# -- kill -9 while accepting --------------------------------------------------------------------

SERVE_CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: shop, password: secret}]
simulated_carriers: {sim: {delivery_delay: 0.05}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
http: {host: 127.0.0.1, port: 0}
"""


def _count(db: Path, batch_id: str) -> tuple[int, int, int]:
    """(messages, distinct destinations, the batch's cursor) in the SQLite file."""
    with sqlite3.connect(db, timeout=10) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT destination_addr) FROM messages WHERE batch_id = ?",
            (batch_id,),
        ).fetchone()
        (upto,) = conn.execute(
            "SELECT accepted_upto FROM batches WHERE id = ?", (batch_id,)
        ).fetchone()
    return total, distinct, upto


def test_kill_9_while_accepting_loses_nothing_and_accepts_nothing_twice(tmp_path: Path) -> None:
    db = tmp_path / "gw.sqlite3"
    config = tmp_path / "gateway.yaml"
    config.write_text(SERVE_CONFIG % db)
    size = 20_000
    numbers = [f"+4916{i:08d}" for i in range(size)]
    # A placeholder per row: the text is rendered per recipient, as slow as a batch gets.
    rows = [{"to": n, "fields": {"n": str(i)}} for i, n in enumerate(numbers)]
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    served = Served(config)
    try:
        served.port()
        base = f"http://127.0.0.1:{served.port('http listening')}"
        answer = httpx.post(
            base + "/api/v1/batches",
            json={"text": "code {n}", "schedule": later, "recipients": rows},
            auth=SHOP,
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["id"]
        deadline = time.monotonic() + 30
        while (upto := _count(db, batch_id)[2]) == 0:  # the first chunk is in: kill now
            assert time.monotonic() < deadline, "no chunk accepted in 30 s"
            time.sleep(0.002)
        os.kill(served.proc.pid, signal.SIGKILL)
        served.proc.wait(timeout=10)
    finally:
        served.kill()
    total, distinct, upto = _count(db, batch_id)
    assert 0 < upto < size, f"the kill came after the whole batch ({upto}): nothing resumed"
    assert total == distinct == upto  # what was accepted is there, once
    served = Served(config)
    try:
        served.port()
        deadline = time.monotonic() + 60
        while _count(db, batch_id)[2] < size:
            assert time.monotonic() < deadline, f"resumed batch stuck at {_count(db, batch_id)}"
            time.sleep(0.05)
        total, distinct, upto = _count(db, batch_id)
        assert (total, distinct, upto) == (size, size, size)
        with sqlite3.connect(db) as conn:
            texts = {
                dest: bytes(body)
                for dest, body in conn.execute(
                    "SELECT destination_addr, short_message FROM messages WHERE batch_id = ?",
                    (batch_id,),
                )
            }
        assert texts["4916" + "00012345"] == b"code 12345"
        assert served.stop() == 0
    finally:
        served.kill()
