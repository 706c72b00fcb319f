"""The operator's commands as an admin runs them: subprocesses against a whole gateway
(simulated carriers), judged by exit status and output. Bulk `send`, `query`, `status`,
`reload`, and wrong input that must give one line, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_send_command import ROOT, Running, send

__all__: list[str] = []


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    r = Running(tmp_path_factory.mktemp("gw"))
    yield r
    r.close()


def smsgw(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the exit code is what is tested
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        input=stdin,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def destinations(running: Running, since: float) -> list[tuple[str, bytes]]:
    """(destination, text) of every message stored since `since`, oldest first."""
    db = Path(str(running.gateway.config.store.path))
    import sqlite3  # noqa: PLC0415

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT destination_addr, short_message FROM messages WHERE accepted_at >= ?"
            " ORDER BY accepted_at",
            (since,),
        ).fetchall()
    return [(d, bytes(t)) for d, t in rows]


def test_version() -> None:
    done = smsgw("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"smsgw \d+\.\d+\.\d+\S*\n", done.stdout)


def test_repeated_to_and_comma_lists_reach_everyone(running: Running) -> None:
    done = send(running, "--to", "+49 151 1", "--to", "4915102,4915103", "--dlr", "hello")
    assert done.returncode == 0, done.stderr
    assert "3 messages: 3 accepted, 0 failed, 3 delivered, 0 without" in done.stdout
    assert "Traceback" not in done.stderr


def test_any_failure_makes_the_bulk_exit_1(running: Running) -> None:
    done = send(running, "--to", "4915104,33612345678", "--dlr", "hello")
    assert done.returncode == 1, done.stderr
    assert "2 messages: 2 accepted, 1 failed, 1 delivered, 0 without a final receipt" in done.stdout
    assert "33612345678: UNDELIV" in done.stderr


def test_csv_rows_fill_the_placeholders(running: Running, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("name,phone\nAnna,+49 151 201\nBo,4915120 2\n")
    since = time.time() - 0.001
    done = send(running, "--to-file", str(people), "Hi {name}!")
    assert done.returncode == 0, done.stderr
    assert "2 messages: 2 accepted, 0 failed" in done.stdout
    sent = {d: t for d, t in destinations(running, since)}
    assert sent == {"49151201": b"Hi Anna!", "49151202": b"Hi Bo!"}


def test_number_file_and_text_from_stdin(running: Running, tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("4915130\n\n+4915131\n")
    since = time.time() - 0.001
    command = ["send", "-c", str(running.config_path), "--port", str(running.port)]
    done = smsgw(*command, "--to-file", str(numbers), "-", stdin="from stdin\n")
    assert done.returncode == 0, done.stderr
    assert sorted(destinations(running, since)) == [
        ("4915130", b"from stdin"),
        ("4915131", b"from stdin"),
    ]


def test_rate_spaces_the_submits(running: Running) -> None:
    started = time.monotonic()
    done = send(running, "--to", "4915140,4915141,4915142,4915143", "--rate", "5", "x")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 0.6  # three gaps of 0.2 s at least


def test_receipts_late_exit_3_with_the_summary(running: Running) -> None:
    done = send(running, "--to", "39612345670,39612345671", "--dlr", "--timeout", "1", "x")
    assert done.returncode == 3, done.stderr
    assert done.stdout == (
        "2 messages: 2 accepted, 0 failed, 0 delivered, 2 without a final receipt\n"
    )
    assert done.stderr.strip().splitlines()[-1] == "error: timed out after 1s"


def test_bulk_send_with_no_gateway_is_one_line(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = smsgw(
        "send", "--port", str(port), "--system-id", "x", "--password", "y",
        "--to", "491,492", "hi", cwd=tmp_path,
    )  # fmt: skip
    assert "Connection refused" in one_line_error(done)


def test_a_placeholder_without_its_column(running: Running, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("phone,name\n4915150,Anna\n")
    line = one_line_error(send(running, "--to-file", str(people), "Hi {first}"))
    assert "{first}" in line
    assert "phone, name" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--to", "49151x"), "not a phone number"),
        (("--to", "4915,"), None),  # an empty item is skipped: this one is sent
        (("--to", "4915", "--from", "A" * 12), "at most 11"),
        (("--to", "4915,4916", "--rate", "0"), "more than 0"),
        (("--to", " , "), "no recipient"),
    ],
)
def test_wrong_input_is_one_line(running: Running, args: tuple[str, ...], says: str | None) -> None:
    done = send(running, *args, "hi")
    if says is None:
        assert done.returncode == 0, done.stderr
    else:
        assert says in one_line_error(done)


def test_missing_default_config_is_named(tmp_path: Path) -> None:
    line = one_line_error(smsgw("send", "--to", "4915", "hi", cwd=tmp_path))
    assert "config/gateway.yaml" in line


def test_missing_given_config_is_named(tmp_path: Path) -> None:
    line = one_line_error(smsgw("send", "-c", str(tmp_path / "x.yaml"), "--to", "4915", "hi"))
    assert "x.yaml" in line


def control(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    return smsgw(*args, "-c", str(running.config_path), "--timeout", "10")


def test_query_shows_state_history_and_receipts(running: Running) -> None:
    done = send(running, "--to", "4915160", "--dlr", "hello")
    assert done.returncode == 0, done.stderr
    (message_id,) = re.findall(r"^part 1/1: id=(\S+)$", done.stdout, re.M)
    found = control(running, "query", message_id)
    assert found.returncode == 0, found.stderr
    assert re.search(r"^state: +delivered$", found.stdout, re.M), found.stdout
    assert re.search(r"^account: +shop +route: de$", found.stdout, re.M)
    history = re.findall(r"^  \S+ \S+  (\w+)$", found.stdout, re.M)
    assert history[0] == "accepted"
    assert history[-1] == "delivered"
    assert re.search(r"^  part 1 .* from fast id=\S+ state=2 err=0$", found.stdout, re.M)
    assert re.search(r"^    id:\S+ .*stat:DELIVRD", found.stdout, re.M), found.stdout


def test_query_an_unknown_id_is_one_line(running: Running) -> None:
    done = control(running, "query", "nope")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no message 'nope'"


def test_status_shows_binds_per_account_and_type(running: Running) -> None:
    from gateway.client import SmppClient  # noqa: PLC0415

    client = SmppClient("127.0.0.1", running.port)

    async def bind() -> None:
        await client.connect()
        await client.bind_transceiver("other", "pw2")

    running.call(bind())
    try:
        done = control(running, "status")
    finally:
        running.call(client.close())
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  other +trx +1$", done.stdout, re.M), done.stdout
    assert "upstreams: none" in done.stdout
    assert "modems: none" in done.stdout
    assert re.search(r"^  messages waiting: \d+", done.stdout, re.M), done.stdout


def test_status_counts_what_waits(running: Running) -> None:
    import json  # noqa: PLC0415

    from gateway.store.base import NewMessage  # noqa: PLC0415

    now = time.time()
    store = running.gateway.store
    # An account nobody binds, so nothing is pushed or sent: a message scheduled an hour
    # ahead, accepted a minute ago, and a receipt waiting for a receiver for 30 s.
    later = NewMessage("q-later", "nobody", "", "4915170", b"x", schedule_at=now + 3600)
    running.call(store.accept(later._replace(accepted_at=now - 60)))
    running.call(store.enqueue_delivery("nobody", "receipt", b"", now - 30, 3600))
    done = control(running, "status", "--json")
    assert done.returncode == 0, done.stderr
    queues = json.loads(done.stdout)["queues"]
    assert queues["messages_waiting"] >= 1
    assert 60 <= queues["oldest_message_age"] < 120
    assert queues["deliveries_waiting"]["nobody"] == 1
    assert queues["oldest_delivery_age"] >= 30
    text = control(running, "status")
    assert re.search(r"^  deliveries waiting: .*nobody 1 \(oldest \d+s\)$", text.stdout, re.M)
    assert re.search(r"^  messages waiting: \d+ \(oldest \d+s\)$", text.stdout, re.M)


def test_reload_prints_what_was_applied(running: Running) -> None:
    answers: list[object] = []

    async def reload(_request: object) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert running.gateway.control is not None
    running.gateway.control.handlers["reload"] = reload  # the gateway's own is not ours to test
    try:
        answers.append({"applied": ["routes", "accounts.shop"]})
        done = control(running, "reload")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "reloaded: routes, accounts.shop\n"
        answers.append(ValueError("gateway.yaml:7 routes[0].targets: no target 'nope'"))
        done = control(running, "reload")
        assert done.returncode == 1
        assert done.stderr == "error: gateway.yaml:7 routes[0].targets: no target 'nope'\n"
    finally:
        del running.gateway.control.handlers["reload"]


def test_no_gateway_running_is_one_line(tmp_path: Path) -> None:
    for command in ("status", "reload", "query"):
        args = ("x",) if command == "query" else ()
        line = one_line_error(smsgw(command, *args, "--socket", str(tmp_path / "gw.sock")))
        assert "no gateway running" in line


def test_status_shows_upstream_links_and_modems(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    from gateway.app import Gateway  # noqa: PLC0415
    from gateway.config import load_config  # noqa: PLC0415
    from tests.integration.loop import LoopThread  # noqa: PLC0415

    with socket.socket() as s:  # a port nobody listens on: the upstream stays down
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"""
listen: {{host: 127.0.0.1, port: 0}}
accounts: [{{system_id: shop, password: secret}}]
upstreams:
  carrier: {{host: 127.0.0.1, port: {dead}, system_id: gw, password: pw}}
modem_banks:
  local: {{emulate: 1}}
routes: [{{name: all, targets: [carrier]}}]
store: {{path: "{tmp_path / "gw.sqlite3"}"}}
"""
    )
    gateway = Gateway(load_config(path))
    loop = LoopThread()
    loop.call(gateway.start("127.0.0.1", 0))
    try:
        done = smsgw("status", "-c", str(path), "--timeout", "10")
    finally:
        loop.call(gateway.stop())
        loop.stop_loop()
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  carrier +down +0/trx:down +0$", done.stdout, re.M), done.stdout
    assert re.search(r"^  local/\S+ ", done.stdout, re.M), done.stdout
