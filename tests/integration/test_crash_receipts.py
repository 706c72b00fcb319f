"""The acceptance crash test of issue 8: receipts you can trust across kill -9.

A carrier that behaves like one (tests/fakes/smsc.py): it answers each submit_sm after 50 ms,
sends receipts after 0.05-5 s, one in ten
after 5-10 s; half of the deliveries fail (UNDELIV, err 001); small hexadecimal message ids (1, 2,
... A, B ... 1E4), so a receipt for a send the gateway lost in a crash names an id that,
read in another base, is some other message's. The gateway (`smsgw serve`, a subprocess) is
killed with SIGKILL at seeded random moments - twice while the application is still
submitting, once while receipts are coming back - and restarted on the same store, on SQLite
and on PostgreSQL (a fresh schema per test; under CI=true PostgreSQL must be there).

The application (smpplib, one transceiver, rebinding after each kill) counts what it gets:

* lost: an acknowledged message (submit_sm_resp status 0) that never got a final receipt;
* wrong: a final receipt whose outcome is not the carrier's truth for that message (the fake
  decides each message's fate from its destination and text, so a resend has the same fate;
  matched through our message id, which the application knows from its submit_sm_resp);
* double: a message with two different final receipts;
* duplicates: the same final receipt again (allowed within the bound), and submit_sm the
  carrier got twice, bounded by what was in flight at each kill (`dispatch.max_inflight`,
  read from the configuration the test writes).

Seeds are fixed per backend (SMSGW_CRASH_SEED overrides) so a failure can be replayed; every
wait is bounded. With `-s` a summary line per run is printed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions
import yaml

from tests.fakes.smsc import Behaviour, FakeSmsc
from tests.integration.loop import LoopThread
from tests.integration.test_crash import start_gateway
from tests.pg import fresh_schema

MESSAGES = 400
INFLIGHT = 32  # dispatch.max_inflight: the most a kill can leave sent and not recorded
APP_WINDOW = 64
SEEDS = {"sqlite": 8, "postgres": 11}
FINAL = {2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 7: "UNKNOWN", 8: "REJECTD"}

CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: app, password: pw, window: 1000}]
upstreams:
  carrier: {host: 127.0.0.1, port: %(port)d, system_id: gw, password: pw, window: 32}
routes: [{name: all, targets: [carrier]}]
dispatch: {max_inflight: %(inflight)d, retry_backoff: 0.2, max_retry_backoff: 1.0}
store: %(store)s
"""


@pytest.fixture
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The `store:` of the gateway's configuration: an SQLite file, or a fresh PostgreSQL
    schema (created here, dropped after; the DSN's search_path puts the tables in it)."""
    if request.param == "sqlite":
        yield f'{{path: "{tmp_path / "gw.sqlite3"}"}}'
        return
    with fresh_schema("crash") as dsn:
        yield f'{{backend: postgres, dsn: "{dsn}"}}'


@dataclass
class AppView:
    """What the application saw, across its binds."""

    markers: dict[str, str] = field(default_factory=dict)  # our message id -> its text
    finals: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    unknown_receipts: int = 0  # receipts naming no id this application was given
    submitted: int = 0  # submit_sm written (acknowledged or not)
    unacknowledged: int = 0  # written, and the link died before the answer


class App:
    """One smpplib transceiver bind; replaced after each kill."""

    def __init__(self, port: int, view: AppView) -> None:
        self.view = view
        self.waiting: dict[int, str] = {}  # sequence -> text, not answered yet
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=10, allow_unknown_opt_params=True
        )
        self.client.set_message_sent_handler(self._sent)
        self.client.set_message_received_handler(self._received)
        self.client.connect()
        self.client.bind_transceiver(system_id="app", password="pw")  # may wait for the store
        self.client._socket.settimeout(0.2)  # then each read returns within 0.2 s

    def _sent(self, pdu: Any) -> None:
        text = self.waiting.pop(pdu.sequence, None)
        if text is not None and pdu.status == 0:
            self.view.markers[pdu.message_id.decode()] = text

    def _received(self, pdu: Any) -> None:
        our_id = (pdu.receipted_message_id or b"").decode()
        if not pdu.esm_class & 0x04 or pdu.message_state not in FINAL:
            return
        if our_id not in self.view.markers:
            self.view.unknown_receipts += 1
            return
        self.view.finals[our_id].append(pdu.message_state)

    def submit(self, i: int) -> None:
        text = f"m{i:04d}"
        pdu = self.client.send_message(
            source_addr="Shop",
            destination_addr=destination(i),
            short_message=text.encode(),
            registered_delivery=1,
        )
        self.waiting[pdu.sequence] = text
        self.view.submitted += 1

    def read(self) -> bool:
        """One PDU (or a 0.2 s timeout); False once the gateway is gone."""
        try:
            self.client.read_once()
        except (smpplib.exceptions.ConnectionError, OSError):
            return False
        return True

    def dead(self) -> None:
        self.view.unacknowledged += len(self.waiting)
        self.waiting.clear()
        with contextlib.suppress(OSError):
            if self.client._socket is not None:
                self.client._socket.close()
        self.client._socket = None  # nothing to unbind from

    def close(self) -> None:
        with contextlib.suppress(smpplib.exceptions.ConnectionError, OSError):
            self.client.unbind()
        self.client.disconnect()


def destination(i: int) -> str:
    return f"4915{i:08d}"


@pytest.mark.parametrize("store_config", ["sqlite", "postgres"], indirect=True)
def test_receipts_across_kill_9(tmp_path: Path, store_config: str) -> None:
    backend = "postgres" if "postgres" in store_config else "sqlite"
    seed = int(os.environ.get("SMSGW_CRASH_SEED", SEEDS[backend]))
    rng = random.Random(seed)
    kill_after_acks = sorted(rng.sample(range(30, 200), 2))  # while the application submits
    kill_after_receipts = rng.randint(MESSAGES // 4, MESSAGES // 2)  # while receipts come back

    carrier_loop = LoopThread()
    smsc = FakeSmsc(
        Behaviour(
            seed=seed,
            response_delay=0.05,  # a carrier's latency: sends are in flight when it is killed
            id_start=1,  # small hex ids: 484 read as decimal is 0x1E4
            receipt_delays=(0.05, 5.0),
            tail_share=0.1,
            tail_delays=(5.0, 10.0),
            fail_share=0.5,
            fail_error=1,
        )
    )
    smsc_port = carrier_loop.call(smsc.start())
    config = tmp_path / "gw.yaml"
    config.write_text(
        CONFIG % {"port": smsc_port, "inflight": INFLIGHT, "store": store_config},
        encoding="utf-8",
    )
    inflight = yaml.safe_load(config.read_text())["dispatch"]["max_inflight"]
    log: list[str] = []
    view = AppView()
    kills = 0
    proc, port = start_gateway(config, keep=log)
    app = App(port, view)
    started = time.monotonic()
    try:

        def kill_and_restart() -> App:
            nonlocal proc, port, kills
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            app.dead()
            proc, port = start_gateway(config, keep=log)  # same store: it resumes
            return App(port, view)

        # Phase 1: submit every message (window APP_WINDOW); two kills on the way.
        i = 0
        deadline = time.monotonic() + 60
        while (i < MESSAGES or app.waiting) and time.monotonic() < deadline:
            while i < MESSAGES and len(app.waiting) < APP_WINDOW:
                app.submit(i)
                i += 1
            alive = app.read()
            if (kills < 2 and len(view.markers) >= kill_after_acks[kills]) or not alive:
                app = kill_and_restart()
        assert i == MESSAGES, "the application could not submit everything in time"

        # Phase 2: receipts come back; one kill once some have.
        acknowledged = set(view.markers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if acknowledged <= set(view.finals) and not smsc.pending():
                break
            alive = app.read()
            if (kills == 2 and len(view.finals) >= kill_after_receipts) or not alive:
                app = kill_and_restart()
        # Phase 3: a little longer, for anything late (a second receipt would come now).
        quiet_until = time.monotonic() + 2.0
        while time.monotonic() < quiet_until:
            app.read()
        app.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()
        carrier_loop.call(smsc.stop())
        carrier_loop.stop_loop()

    # -- what the application got -----------------------------------------------------------
    truth = {
        f"m{i:04d}": smsc.outcome_of(destination(i), f"m{i:04d}".encode()) for i in range(MESSAGES)
    }
    acknowledged = set(view.markers)
    lost = sorted(acknowledged - set(view.finals))
    wrong: list[tuple[str, str, list[int]]] = []
    double: list[tuple[str, list[int]]] = []
    duplicate_receipts = 0
    for our_id, states in view.finals.items():
        want = 2 if truth[view.markers[our_id]] else 5
        if any(state != want for state in states):
            wrong.append((our_id, view.markers[our_id], states))
        if len(set(states)) > 1:
            double.append((our_id, states))
        duplicate_receipts += len(states) - 1
    sent = Counter(sm.decode() for _dest, sm in smsc.submits)
    never_sent = sorted(view.markers[i] for i in acknowledged if view.markers[i] not in sent)
    carrier_duplicates = sum(n - 1 for n in sent.values())
    tracebacks = sum("Traceback" in line for line in log)
    summary = (
        f"[{backend} seed={seed}] {time.monotonic() - started:.1f}s kills={kills} "
        f"submitted={view.submitted} acknowledged={len(acknowledged)} "
        f"unacknowledged={view.unacknowledged} failed_truth="
        f"{sum(not truth[view.markers[i]] for i in acknowledged)} lost={len(lost)} "
        f"never_sent={len(never_sent)} wrong={len(wrong)} double={len(double)} "
        f"duplicate_receipts={duplicate_receipts} carrier_duplicates={carrier_duplicates} "
        f"unknown_receipts_at_app={view.unknown_receipts} gateway_tracebacks={tracebacks}"
    )
    print(summary)
    assert kills == 3, summary
    assert not never_sent, f"{summary}\nnever reached the carrier: {never_sent[:10]}"
    assert not lost, f"{summary}\nno final receipt: {lost[:10]}"
    assert not wrong, f"{summary}\nwrong outcome (id, text, states): {wrong[:10]}"
    assert not double, f"{summary}\ntwo different finals: {double[:10]}"
    assert carrier_duplicates <= inflight * kills, summary
    assert duplicate_receipts <= inflight * kills, summary
