"""The end-to-end benchmark: load client -> gateway (SQLite, durable) -> fake carrier, and back.

Usage (from the repository root):

    .venv/bin/python bench/e2e.py                      # full run: 100,000 messages, 4 binds x 64
    .venv/bin/python bench/e2e.py --quick              # smoke run: a few thousand messages
    .venv/bin/python bench/e2e.py --messages 200000 --binds 4 --window 128 --json /tmp/e2e.json
    .venv/bin/python bench/e2e.py --only ceiling,paced --rate 1000 --duration 20
    .venv/bin/python bench/e2e.py --store postgres --messages 5000 --only throughput,burst \
        --burst 2000 --upstream-binds 1           # PostgreSQL, and a burst of 2,000 receipts

Three processes on loopback, each started fresh for every scenario:

* the gateway, ``python -m gateway.cli serve -c CONFIG`` with a temporary configuration: an
  SQLite store in a temporary directory (WAL, synchronous=FULL: every submit_sm_resp follows a
  real fsync), one account, one upstream pointing at the fake carrier (``--upstream-binds``
  binds, 4 by default, ``--upstream-window`` 512 each), one route sending everything there;
* the fake carrier, ``bench/fake_carrier.py``: answers every submit_sm at once with its own
  message id and then a delivery receipt (deliver_sm, esm_class 4, Appendix B text,
  receipted_message_id and message_state TLVs), one write per read;
* the load client (this file, ``--client``): M transceiver binds, each with at most W
  submit_sm unanswered, registered_delivery=1; it times every message from its submit_sm to its
  submit_sm_resp and to its receipt (matched by the message id of the resp, from the
  receipted_message_id TLV), and answers every deliver_sm.

Scenarios, all in one run (``--only`` picks some):

1. ``ceiling``: the load client directly against the fake carrier - what the client and the
   carrier manage on this machine without a gateway between them.
2. ``throughput``: N messages as fast as the windows allow, through the gateway.
3. ``paced``: an offered rate of R messages/s for D seconds through the gateway (latency at a
   realistic load, for the p99 submit -> submit_sm_resp target).
4. ``burst`` (with ``--burst N``): N messages through the gateway while the carrier holds
   every receipt; once all N are at the carrier it releases them together (one write per
   connection), as a carrier does after an outage - the receipt burst of issue 8, item 11.
5. ``throughput-nometrics``: ``throughput`` with ``metrics: {enabled: false}`` - run it beside
   ``throughput`` (``--only throughput,throughput-nometrics``) for what the Prometheus
   counters cost per message.
6. ``throughput-rules`` and ``paced-rules``: ``throughput`` / ``paced`` with every sending rule
   on (``policy:``: every message of class marketing - number checks, opt-out against a
   suppression list of ``--suppressions`` numbers (1,000,000 by default, filled before the
   gateway starts), quiet hours, a cap, dedup) - beside ``throughput`` / ``paced`` for what
   the rules cost.
7. ``throughput-mqtt``: ``throughput`` with ``mqtt:`` pointed at the machine's broker
   (``--mqtt-url``, default ``mqtt://127.0.0.1:1883``; a topic prefix of the run's own) and a
   subscriber process counting the events - beside ``throughput`` for what the MQTT events
   (docs/EVENTS.md) cost. The gateway's own count of events the broker acknowledged and of
   those it dropped is read from its /metrics before it stops.

The store is SQLite by default; ``--store postgres`` uses PostgreSQL at ``--dsn`` (default
``postgresql://postgres@127.0.0.1:5432/test``), in a fresh schema per scenario that is dropped
afterwards. The gateway runs with a loop-lag monitor (this file, ``--gateway``: the same as
``smsgw serve`` plus a timer every 5 ms that records how late it fires); the worst lag while the
load ran - and, for ``burst``, from the release to the last receipt at the client - is
reported. A lag is time the event loop did nothing else: no enquire_link answered, no
submit_sm_resp sent.

Workload: the parts of the standard corpus (``../shared/bench/corpus.json`` relative to the
repository root, 10,000 messages making 21,829 submit_sm; cycled to reach N), each submit_sm
with a distinct source_addr so the carrier can spot a message sent twice. ``--workload otp``
uses one-part GSM 7-bit one-time-password texts instead. "Messages" below are submit_sm PDUs.

What is reported per scenario: submit_sm accepted (status 0) and rejected (by status);
accepted/s from the first to the last submit_sm_resp; receipts/s from the first submit_sm to
the last receipt back at the client; p50/p99/max latency submit -> resp and submit -> receipt;
receipts still missing after the grace period (the client waits while receipts keep arriving,
up to ``--max-wait`` seconds, and gives up after ``--stall`` seconds without one); duplicates
seen by the carrier (a part sent twice) and by the client (a receipt delivered twice); CPU
seconds per 1,000 messages of each process (from /proc/PID/stat for the gateway, with its
writer process when it has one, and the
carrier, os.times for the client) and the gateway's RSS over the run (/proc/PID/status VmRSS,
sampled every second); after the gateway has stopped, the message states in its SQLite file.
``--profile py-spy`` (or ``cprofile``) records where the gateway spends its time during the
throughput and throughput-rules scenarios.

What decides the figures on this machine is printed first and kept in the JSON's meta: the
CPU model and its current frequency (/proc/cpuinfo), and the latency of a 4 KiB write + fsync
in the temp folder where the store's file goes (p50/p99 of 50). Per scenario the gateway's CPU
is split into user and system time (/proc/PID/stat), so two machines of one kind that differ
can be told apart: a slower core shows in user time, a slow disk in fsync and resp latency.

Every wait is bounded and every process is killed on the way out. Timings on a shared 2-core
machine are noisy: the load average at start and end is printed and kept in the JSON.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gateway.smpp import (  # noqa: E402 - after the path set-up, so the script runs from anywhere
    CommandId,
    FrameBuffer,
    RemoteSmppError,
    Tag,
    build_sm_pdus,
    decode_pdu,
    tlv_value,
)
from gateway.smpp.receipt import ReceiptParseError, parse_receipt  # noqa: E402
from gateway.sms import segment  # noqa: E402

DEFAULT_CORPUS = "../shared/bench/corpus.json"  # relative to the repository root
FAKE_CARRIER = Path(__file__).resolve().parent / "fake_carrier.py"

_HEAD = struct.Struct(">IIII")
_RESP = 0x80000000
_SUBMIT_SM_RESP = int(CommandId.submit_sm_resp)
_DELIVER_SM = int(CommandId.deliver_sm)
_DELIVER_SM_RESP = int(CommandId.deliver_sm_resp)
_ENQUIRE_LINK = int(CommandId.enquire_link)
_UNBIND = int(CommandId.unbind)
_UNBIND_RESP = int(CommandId.unbind_resp)
_BIND_TRANSCEIVER = int(CommandId.bind_transceiver)
_BIND_TRANSCEIVER_RESP = int(CommandId.bind_transceiver_resp)
_GENERIC_NACK = int(CommandId.generic_nack)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# =============================================================================================
# Workload
# =============================================================================================


def _corpus_texts(path: Path) -> list[tuple[str, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(m["text"], m["dst"]) for m in data["messages"]]


def _otp_texts(count: int = 1000) -> list[tuple[str, str]]:
    shops = ("TechHub", "BookNook", "ShopRight", "FreshCart", "GadgetHut")
    return [
        (
            f"{(i * 7919) % 1_000_000:06d} is your {shops[i % len(shops)]} login code. "
            "Valid 10 min. Never share it.",
            f"4915{(i * 104729) % 100_000_000:08d}",
        )
        for i in range(count)
    ]


def build_workload(kind: str, count: int, corpus: Path) -> list[bytes]:
    """`count` complete submit_sm PDUs, sequence_number i + 1 and a distinct source_addr each.

    Multi-part messages contribute one submit_sm per part (with its concatenation UDH); the
    texts are cycled until `count` PDUs exist.
    """
    texts = _corpus_texts(corpus) if kind == "corpus" else _otp_texts()
    plans = [(segment(text, ref=i & 0xFF), dst) for i, (text, dst) in enumerate(texts)]
    pdus: list[bytes] = []
    message = 0
    while len(pdus) < count:
        segs, dst = plans[message % len(plans)]
        first = len(pdus) + 1
        parts = build_sm_pdus(
            segs,
            source_addr=str(1_000_000 + message),  # the carrier's duplicate check keys on it
            destination_addr=dst,
            sequence_numbers=range(first, first + segs.total),
            registered_delivery=1,
        )
        pdus.extend(parts[: count - len(pdus)])
        message += 1
    return pdus


# =============================================================================================
# The load client (runs in its own process: `e2e.py --client SPEC.json`)
# =============================================================================================


@dataclass
class ClientSpec:
    host: str
    port: int
    messages: int
    binds: int
    window: int
    rate: float | None
    workload: str
    corpus: str
    stall: float
    max_wait: float
    result_path: str
    system_id: str = "bench"
    password: str = "bench"


class ClientState:
    """Per-message times and counters shared by the client's connections."""

    def __init__(self, pdus: list[bytes], loop: asyncio.AbstractEventLoop) -> None:
        n = len(pdus)
        self.loop = loop
        self.pdus = pdus
        self.n = n
        nan = array.array("d", [math.nan])
        self.t_sub = nan * n
        self.t_intended = nan * n  # paced mode: when the schedule wanted it sent
        self.t_resp = nan * n
        self.t_rcpt = nan * n
        self.next_index = 0
        self.responses = 0
        self.accepted = 0
        self.receipts = 0
        self.rejected: Counter[int] = Counter()
        self.by_message_id: dict[str, int] = {}
        self.early: dict[str, float] = {}  # receipts that came before their resp (ceiling)
        self.duplicate_receipts = 0
        self.unknown_receipts = 0
        self.unreadable_receipts = 0
        self.duplicate_ids = 0
        self.generic_nacks = 0
        self.connections_lost = 0
        self.last_progress = time.monotonic()
        self.build_seconds = 0.0  # how long the workload's PDUs took to build

    def receipt(self, message_id: str, now: float) -> None:
        idx = self.by_message_id.get(message_id)
        if idx is None:
            if message_id in self.early:
                self.duplicate_receipts += 1
            else:
                self.early[message_id] = now
            return
        if self.t_rcpt[idx] == self.t_rcpt[idx]:  # not NaN: seen already
            self.duplicate_receipts += 1
            return
        self.t_rcpt[idx] = now
        self.receipts += 1
        self.last_progress = now


class ClientConnection(asyncio.Protocol):
    """One transceiver bind with at most `window` submit_sm unanswered."""

    def __init__(self, state: ClientState, window: int, paced: bool) -> None:
        self.state = state
        self.window = window
        self.paced = paced
        self.inflight = 0
        self.frames = FrameBuffer()
        self.transport: asyncio.Transport | None = None
        self.bound: asyncio.Future[int] = state.loop.create_future()
        self.unbound: asyncio.Future[None] = state.loop.create_future()
        self.closed: asyncio.Future[None] = state.loop.create_future()
        self.out_seq = 0x40000000  # our own requests (bind, unbind), apart from the submits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.unbound.done():
            self.state.connections_lost += 1
        if not self.bound.done():
            self.bound.set_result(-1)
        for fut in (self.unbound, self.closed):
            if not fut.done():
                fut.set_result(None)

    def send_bind(self, system_id: str, password: str) -> None:
        assert self.transport is not None
        body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + b"\x34\0\0\0"
        self.out_seq += 1
        self.transport.write(_HEAD.pack(16 + len(body), _BIND_TRANSCEIVER, 0, self.out_seq) + body)

    def send_unbind(self) -> None:
        if self.transport is not None:
            self.out_seq += 1
            self.transport.write(_HEAD.pack(16, _UNBIND, 0, self.out_seq))

    def send_enquire_link(self) -> None:
        if self.transport is not None:
            self.out_seq += 1
            self.transport.write(_HEAD.pack(16, _ENQUIRE_LINK, 0, self.out_seq))

    def room(self) -> int:
        return self.window - self.inflight if self.transport is not None else 0

    def submit(self, indexes: Sequence[int], now: float) -> None:
        """Write the given messages in one write."""
        transport = self.transport
        assert transport is not None
        state = self.state
        pdus = state.pdus
        t_sub = state.t_sub
        for i in indexes:
            t_sub[i] = now
        self.inflight += len(indexes)
        transport.write(b"".join([pdus[i] for i in indexes]))

    def top_up(self, now: float) -> None:
        state = self.state
        room = self.window - self.inflight
        if room <= 0 or state.next_index >= state.n or self.transport is None:
            return
        start = state.next_index
        end = min(state.n, start + room)
        state.next_index = end
        self.submit(range(start, end), now)

    def data_received(self, data: bytes) -> None:
        state = self.state
        transport = self.transport
        if transport is None:
            return
        now = time.monotonic()
        self.frames.feed(data)
        out: list[bytes] = []
        t_resp = state.t_resp
        try:
            while (raw := self.frames.next_pdu()) is not None:
                _length, command_id, status, seq = _HEAD.unpack_from(raw)
                if command_id == _SUBMIT_SM_RESP:
                    idx = seq - 1
                    if not 0 <= idx < state.n or t_resp[idx] == t_resp[idx]:
                        state.generic_nacks += 1  # a resp we did not ask for
                        continue
                    t_resp[idx] = now
                    self.inflight -= 1
                    state.responses += 1
                    state.last_progress = now
                    if status:
                        state.rejected[status] += 1
                        continue
                    state.accepted += 1
                    end = raw.find(b"\0", 16)
                    message_id = raw[16:end].decode("latin-1")
                    if message_id in state.by_message_id:
                        state.duplicate_ids += 1
                    state.by_message_id[message_id] = idx
                    early = state.early.pop(message_id, None)
                    if early is not None:
                        state.receipt(message_id, early)
                elif command_id == _DELIVER_SM:
                    out.append(_HEAD.pack(17, _DELIVER_SM_RESP, 0, seq) + b"\0")
                    try:
                        pdu: Any = decode_pdu(raw)
                    except RemoteSmppError:
                        state.unreadable_receipts += 1
                        continue
                    if not pdu.esm_class & 0x04:
                        state.unknown_receipts += 1  # an MO: not expected here
                        continue
                    rid = tlv_value(pdu.tlvs, Tag.receipted_message_id) if pdu.tlvs else None
                    if not isinstance(rid, str):
                        try:
                            rid = parse_receipt(pdu.short_message).message_id
                        except ReceiptParseError:
                            state.unreadable_receipts += 1
                            continue
                    state.receipt(rid, now)
                elif command_id == _ENQUIRE_LINK:
                    out.append(_HEAD.pack(16, _ENQUIRE_LINK | _RESP, 0, seq))
                elif command_id == _BIND_TRANSCEIVER_RESP:
                    if not self.bound.done():
                        self.bound.set_result(status)
                elif command_id == _UNBIND_RESP:
                    if not self.unbound.done():
                        self.unbound.set_result(None)
                elif command_id == _UNBIND:
                    out.append(_HEAD.pack(16, _UNBIND_RESP, 0, seq))
                elif command_id == _GENERIC_NACK:
                    state.generic_nacks += 1
        except RemoteSmppError:
            transport.close()
            return
        if out:
            transport.write(b"".join(out))
        if not self.paced:
            self.top_up(now)


async def _client_main(spec: ClientSpec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    build_start = time.perf_counter()
    pdus = build_workload(spec.workload, spec.messages, Path(spec.corpus))
    build_seconds = time.perf_counter() - build_start
    state = ClientState(pdus, loop)
    state.build_seconds = build_seconds
    paced = spec.rate is not None
    conns: list[ClientConnection] = []
    for _ in range(spec.binds):
        conns.append(await open_bind(state, spec, paced=paced))
    summary = await run_load(state, conns, spec)
    for conn in conns:
        conn.send_unbind()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.unbound for c in conns)), 3)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return summary


async def open_bind(state: ClientState, spec: ClientSpec, *, paced: bool) -> ClientConnection:
    """Connect and bind one transceiver (10 s for each step).

    Raises:
        RuntimeError: the bind was refused.
    """
    loop = asyncio.get_running_loop()
    _transport, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: ClientConnection(state, spec.window, paced), spec.host, spec.port
        ),
        10,
    )
    conn.send_bind(spec.system_id, spec.password)
    status = await asyncio.wait_for(conn.bound, 10)
    if status != 0:
        raise RuntimeError(f"bind refused: status {status:#x}")
    return conn


async def run_load(
    state: ClientState, conns: list[ClientConnection], spec: ClientSpec
) -> dict[str, Any]:
    """Send `state`'s messages over the bound `conns` (paced at `spec.rate`, else as the
    windows allow), wait for their responses and receipts (bounded by `spec.stall` and
    `spec.max_wait`) and sum them up; the binds stay bound."""
    loop = asyncio.get_running_loop()
    usage0 = os.times()
    t0 = time.monotonic()
    state.last_progress = t0
    pacer: asyncio.Task[None] | None = None
    if spec.rate is None:
        for conn in conns:
            conn.top_up(t0)
    else:
        pacer = loop.create_task(_pace(state, conns, spec.rate, t0))
    # Phase 1: every submit_sm answered (or nothing happening for `stall` seconds).
    stalled_submits = False
    while state.responses < state.n:
        await asyncio.sleep(0.02)
        if time.monotonic() - state.last_progress > spec.stall or all(
            c.transport is None for c in conns
        ):
            stalled_submits = True
            break
    t_submits_done = time.monotonic()
    if pacer is not None:
        pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacer
    # Phase 2: receipts, while they keep coming, up to max_wait.
    stalled_receipts = False
    last_count, last_change = state.receipts, time.monotonic()
    while state.receipts < state.accepted:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        if state.receipts != last_count:
            last_count, last_change = state.receipts, now
        if now - last_change > spec.stall or now - t_submits_done > spec.max_wait:
            stalled_receipts = now - last_change > spec.stall
            break
        if all(c.transport is None for c in conns):
            break
    t_end = time.monotonic()
    # Receipt arrival rate in the last 5 s before giving up: non-zero means "still flowing".
    tail_rate = _count_after(state.t_rcpt, t_end - 5.0) / 5.0
    usage1 = os.times()
    client_cpu = (usage1.user - usage0.user) + (usage1.system - usage0.system)
    summary = _summarise(
        state,
        spec,
        t0=t0,
        t_end=t_end,
        build_seconds=state.build_seconds,
        client_cpu=client_cpu,
        stalled_submits=stalled_submits,
        stalled_receipts=stalled_receipts,
        tail_rate=tail_rate,
    )
    # Absolute monotonic times (one clock for every process on the host): the harness lines
    # them up with the gateway's loop-lag samples.
    receipts_at = [t for t in state.t_rcpt if not math.isnan(t)]
    summary["t0_abs"], summary["t_end_abs"] = t0, t_end
    summary["t_last_receipt_abs"] = max(receipts_at) if receipts_at else None
    return summary


async def _pace(state: ClientState, conns: list[ClientConnection], rate: float, t0: float) -> None:
    """Send message i at t0 + i / rate (as near as the loop allows), round-robin over binds."""
    k = 0
    while state.next_index < state.n:
        now = time.monotonic()
        due = min(state.n, int((now - t0) * rate) + 1)
        while state.next_index < due:
            for _ in range(len(conns)):
                conn = conns[k % len(conns)]
                k += 1
                if conn.room() > 0:
                    break
            else:
                break  # every window is full: the backlog shows in the send lag
            i = state.next_index
            state.next_index += 1
            state.t_intended[i] = t0 + i / rate
            conn.submit((i,), now)
        await asyncio.sleep(0.001)


def _count_after(times: array.array[float], since: float) -> int:
    return sum(1 for t in times if t >= since)


def _timeline(times: array.array[float], start: float) -> list[int]:
    """How many of `times` fell in each whole second after `start`."""
    counts = Counter(int(t - start) for t in times if not math.isnan(t))
    return [counts.get(s, 0) for s in range(max(counts, default=-1) + 1)]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "mean": None}
    values.sort()
    n = len(values)

    def at(q: float) -> float:
        return values[min(n - 1, max(0, math.ceil(q * n) - 1))] * 1000.0

    return {
        "p50": at(0.50),
        "p99": at(0.99),
        "max": values[-1] * 1000.0,
        "mean": sum(values) / n * 1000.0,
    }


def _summarise(
    state: ClientState,
    spec: ClientSpec,
    *,
    t0: float,
    t_end: float,
    build_seconds: float,
    client_cpu: float,
    stalled_submits: bool,
    stalled_receipts: bool,
    tail_rate: float,
) -> dict[str, Any]:
    t_sub, t_resp, t_rcpt = state.t_sub, state.t_resp, state.t_rcpt
    isnan = math.isnan
    sent = [t for t in t_sub if not isnan(t)]
    resps = [t for t in t_resp if not isnan(t)]
    rcpts = [t for t in t_rcpt if not isnan(t)]
    resp_lat = [r - s for s, r in zip(t_sub, t_resp, strict=True) if not isnan(r)]
    rcpt_lat = [r - s for s, r in zip(t_sub, t_rcpt, strict=True) if not isnan(r)]
    first_sub = min(sent) if sent else t0
    accepted_rate = None
    if len(resps) > 1 and max(resps) > min(resps):
        accepted_rate = state.accepted / (max(resps) - min(resps))
    receipts_rate = None
    if rcpts and max(rcpts) > first_sub:
        receipts_rate = state.receipts / (max(rcpts) - first_sub)
    # Receipts per whole second of the run (the steady part: 10 % .. 90 % of the receipts).
    steady: dict[str, float | None] = {"median": None, "min": None}
    if len(rcpts) >= 100:
        rcpts.sort()
        lo, hi = rcpts[len(rcpts) // 10], rcpts[len(rcpts) * 9 // 10]
        buckets = Counter(int(t - lo) for t in rcpts if lo <= t < hi)
        full = [buckets.get(s, 0) for s in range(int(hi - lo))]  # whole seconds only
        if full:
            full_sorted = sorted(full)
            steady = {"median": float(full_sorted[len(full) // 2]), "min": float(full_sorted[0])}
    send_lag: dict[str, float | None] = {}
    if spec.rate is not None:
        lag = [
            s - i
            for s, i in zip(t_sub, state.t_intended, strict=True)
            if not (isnan(s) or isnan(i))
        ]
        send_lag = _percentiles(lag)
    missing = [i for i in range(state.n) if t_resp[i] == t_resp[i] and t_rcpt[i] != t_rcpt[i]]
    accepted_missing = len(missing) - sum(state.rejected.values()) if missing else 0
    return {
        "submitted": len(sent),
        "responses": state.responses,
        "accepted": state.accepted,
        "rejected": {f"{k:#x}": v for k, v in sorted(state.rejected.items())},
        "receipts": state.receipts,
        "missing_receipts": max(0, accepted_missing),
        "missing_receipts_still_flowing": tail_rate > 0,
        "receipts_per_s_last_5s": tail_rate,
        "duplicate_receipts": state.duplicate_receipts,
        "duplicate_message_ids": state.duplicate_ids,
        "unmatched_receipts": len(state.early),
        "unreadable_receipts": state.unreadable_receipts,
        "generic_nacks": state.generic_nacks,
        "connections_lost": state.connections_lost,
        "stalled_submits": stalled_submits,
        "stalled_receipts": stalled_receipts,
        "accepted_per_s": accepted_rate,
        "receipts_per_s": receipts_rate,
        "receipts_per_s_steady": steady,
        "receipts_timeline": _timeline(t_rcpt, first_sub),
        "submit_to_resp_ms": _percentiles(resp_lat),
        "submit_to_receipt_ms": _percentiles(rcpt_lat),
        "send_lag_ms": send_lag,
        "submit_seconds": (max(resps) - first_sub) if resps else None,
        "run_seconds": t_end - t0,
        "client_cpu_s": client_cpu,
        "build_seconds": build_seconds,
    }


def client_entry(spec_path: str) -> int:
    spec = ClientSpec(**json.loads(Path(spec_path).read_text(encoding="utf-8")))
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(_client_main(spec))
    Path(spec.result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


# =============================================================================================
# The gateway with a loop-lag monitor (runs in its own process: `e2e.py --gateway CONFIG`)
# =============================================================================================

LAG_INTERVAL = 0.005  # seconds between the monitor's timer callbacks
LAG_KEEP = 0.002  # samples later than this are kept (with their time) for the report
STAGE_INTERVAL = 0.5  # seconds between samples of the time by stage


class LagMonitor:
    """A timer every `LAG_INTERVAL` seconds on the gateway's loop; how late each one fires is
    how long the loop was busy with something else (a transaction, a long callback)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.worst = 0.0
        self.samples: list[tuple[float, float]] = []  # (monotonic time, lag) above LAG_KEEP
        # Every STAGE_INTERVAL: (monotonic time, time by stage, CPU by thread) so far; the
        # benchmark takes the difference over its load window.
        self.stages: list[tuple[float, dict[str, Any], dict[str, float]]] = []
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._stage_handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = time.monotonic() + LAG_INTERVAL
        self._handle = asyncio.get_running_loop().call_later(LAG_INTERVAL, self._tick)
        self._sample_stages()

    def _sample_stages(self) -> None:
        from gateway.telemetry import stages  # noqa: PLC0415 - only in the gateway process

        self.stages.append((time.monotonic(), stages.snapshot(), stages.thread_cpu()))
        self._stage_handle = asyncio.get_running_loop().call_later(
            STAGE_INTERVAL, self._sample_stages
        )

    def _tick(self) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._due)
        self.ticks += 1
        self.worst = max(self.worst, lag)
        if lag > LAG_KEEP and len(self.samples) < 1_000_000:
            self.samples.append((now, lag))
        self._due = now + LAG_INTERVAL
        self._handle = asyncio.get_running_loop().call_later(LAG_INTERVAL, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._stage_handle is not None:
            self._stage_handle.cancel()


def gateway_entry(config_path: str, lag_out: str) -> int:
    """`smsgw serve -c CONFIG` with a `LagMonitor`; its samples go to `lag_out` at the end."""
    from gateway.app import run  # noqa: PLC0415 - only in the gateway process
    from gateway.config import load_config  # noqa: PLC0415
    from gateway.telemetry import stages  # noqa: PLC0415

    stages.enable()
    config = load_config(config_path)
    monitor = LagMonitor()

    async def serve() -> None:
        monitor.start()
        try:
            await run(config)
        finally:
            monitor.stop()

    try:
        import uvloop  # noqa: PLC0415 - as `smsgw serve` does

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            runner.run(serve())
    finally:
        Path(lag_out).write_text(
            json.dumps(
                {
                    "interval": LAG_INTERVAL,
                    "ticks": monitor.ticks,
                    "worst": monitor.worst,
                    "samples": monitor.samples,
                    "stages": monitor.stages,
                }
            ),
            encoding="utf-8",
        )
    return 0


# The issue's stages, and which sections of the loop (left) and of the store's writer
# (right, "store." + operation) make each. carrier.read decodes what the carrier sends:
# receipts and, fewer bytes, the submit_sm_resp of the dispatch.
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "accept": (
        ("app.read", "app.accept", "app.answer", "app.write"),
        ("store.accept", "store.accept_checked"),
    ),
    "commit": ((), ("store.COMMIT", "store._stats")),
    "dispatch": (
        ("dispatch.start", "dispatch.encode", "dispatch.send", "dispatch.sent", "carrier.write"),
        ("store.claim_due", "store.record_sent", "store.set_state"),
    ),
    "receipt match": (
        ("carrier.read", "receipt.parse", "receipt.match", "receipt.settle", "receipt.answer"),
        ("store.match_receipts", "store.settle_many", "store.settle"),
    ),
    "deliver": (
        ("app.deliver",),
        ("store.pending", "store.deliveries_done"),
    ),
}
WRITER_THREAD = "smsgw-sqlite-writer"


def _stage_summary(path: Path, t0: float, t_end: float, messages: int) -> dict[str, Any]:
    """Time by stage over the load window [t0, t_end], in microseconds per message: the
    difference of the gateway's samples nearest before t0 and after t_end."""
    data = json.loads(path.read_text(encoding="utf-8"))
    samples = data.get("stages") or []
    if len(samples) < 2 or messages <= 0:
        return {}
    before = [s for s in samples if s[0] <= t0]
    after = [s for s in samples if s[0] >= t_end]
    first = before[-1] if before else samples[0]
    last = after[0] if after else samples[-1]

    def per_message(name: str) -> float:
        a = first[1].get(name, {}).get("seconds", 0.0)
        b = last[1].get(name, {}).get("seconds", 0.0)
        return (b - a) * 1e6 / messages

    def calls(name: str) -> int:
        return int(last[1].get(name, {}).get("calls", 0) - first[1].get(name, {}).get("calls", 0))

    names = set(first[1]) | set(last[1])
    rows: dict[str, dict[str, float]] = {}
    placed: set[str] = set()
    for stage, (loop_names, writer_names) in STAGES.items():
        rows[stage] = {
            "loop_us": sum(per_message(n) for n in loop_names),
            "writer_us": sum(per_message(n) for n in writer_names),
        }
        placed.update(loop_names, writer_names)
    rest = sorted(names - placed)
    rows["other"] = {
        "loop_us": sum(per_message(n) for n in rest if not n.startswith("store.")),
        "writer_us": sum(per_message(n) for n in rest if n.startswith("store.")),
    }
    cpu = {
        name: (last[2].get(name, 0.0) - first[2].get(name, 0.0)) * 1e6 / messages
        for name in set(first[2]) | set(last[2])
    }
    loop_cpu = cpu.pop("MainThread", 0.0)
    writer_cpu = cpu.pop(WRITER_THREAD, 0.0)
    loop_in_stages = sum(r["loop_us"] for r in rows.values())
    return {
        "window_s": last[0] - first[0],
        "stages": rows,
        "sections": {n: per_message(n) for n in sorted(names)},
        "loop_thread_cpu_us": loop_cpu,
        "writer_thread_cpu_us": writer_cpu,
        "other_threads_cpu_us": sum(cpu.values()),
        # The loop's CPU outside every marked section: uvloop's own C code (socket reads and
        # writes, wake-ups), task switching, timers, logging.
        "loop_unmarked_us": loop_cpu - loop_in_stages,
        # Group commit: the writer's cost per message falls with the operations a commit
        # carries (each commit writes its changed pages to the WAL again and waits for fsync).
        "commits": calls("store.COMMIT"),
        "operations": sum(
            calls(n)
            for n in names
            if n.startswith("store.") and n not in ("store.COMMIT", "store._stats")
        ),
    }


def _print_stages(summary: dict[str, Any]) -> None:
    print(
        f"  time by stage, us per message (loop thread CPU {summary['loop_thread_cpu_us']:.0f}, "
        f"writer thread CPU {summary['writer_thread_cpu_us']:.0f}, other threads "
        f"{summary['other_threads_cpu_us']:.0f}; sections are wall time on their thread):",
        flush=True,
    )
    for stage, row in summary["stages"].items():
        print(
            f"    {stage:<14} loop {row['loop_us']:7.1f}   store writer {row['writer_us']:7.1f}",
            flush=True,
        )
    unmarked = summary["loop_unmarked_us"]
    writer_wall = sum(row["writer_us"] for row in summary["stages"].values())
    print(
        f"    {'loop, unmarked':<14} loop "
        + (
            f"{unmarked:7.1f}   (uvloop I/O, task switches, timers)"
            if unmarked >= 0
            # Sections are wall time: on a busy machine a thread is descheduled inside them.
            else "    n/a   (the sections took more wall time than the thread had CPU: "
            "the machine was busy, figures above are inflated)"
        ),
        flush=True,
    )
    waited = max(0.0, writer_wall - summary["writer_thread_cpu_us"])
    committing = summary["sections"].get("store.COMMIT", 0.0)
    print(
        f"    the writer waited {waited:.0f} us per message inside its sections: at most "
        f"{min(waited, committing):.0f} in COMMIT (its fsync), so at least "
        f"{max(0.0, waited - committing):.0f} for the interpreter lock (or a free core)",
        flush=True,
    )
    if summary.get("commits"):
        print(
            f"    the writer committed {summary['commits']:,} times, "
            f"{summary['operations'] / summary['commits']:.1f} operations per commit",
            flush=True,
        )


def _lag_summary(
    path: Path,
    t0: float,
    t_end: float,
    t_release: float | None,
    t_last_receipt: float | None,
) -> dict[str, Any]:
    """The worst loop lag while the load ran, and during a receipt burst (ms)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": repr(exc)}
    samples = [(t, lag) for t, lag in data["samples"]]

    def worst(start: float, end: float) -> float:
        # A sample is stamped when the timer finally ran: it covers [t - lag, t].
        lags = [lag for t, lag in samples if t >= start and t - lag <= end]
        return max(lags, default=0.0) * 1000.0

    out: dict[str, Any] = {
        "worst_under_load_ms": worst(t0, t_end),
        "over_10ms_under_load": sum(1 for t, lag in samples if t0 <= t <= t_end and lag > 0.01),
        "over_50ms_under_load": sum(1 for t, lag in samples if t0 <= t <= t_end and lag > 0.05),
        "worst_whole_run_ms": data["worst"] * 1000.0,
        "ticks": data["ticks"],
    }
    if t_release is not None:
        end = t_last_receipt if t_last_receipt is not None else t_end
        out["worst_in_burst_ms"] = worst(t_release, end + 0.05)
        out["burst_seconds"] = end - t_release
    return out


# =============================================================================================
# Process management and /proc sampling
# =============================================================================================


def _proc_cpu(pid: int, *, children: bool = False) -> float | None:
    """utime + stime of a process in seconds (/proc/PID/stat fields 14 and 15); with
    `children`, plus those of its running child processes (the store.writer=process writer)."""
    split = _proc_cpu_split(pid, children=children)
    return None if split is None else split[0] + split[1]


def _proc_cpu_split(pid: int, *, children: bool = False) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process (and, with `children`, its running children):
    system time is the kernel's share - socket writes, fsyncs, page faults."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    user, system = int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK
    if children:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                other = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(other[1]) == pid:  # field 4: the parent's pid
                user += int(other[11]) / _CLK_TCK
                system += int(other[12]) / _CLK_TCK
    return user, system


def _proc_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the gateway did not listen on {port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[Any] | None, timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class Carrier:
    """The fake carrier subprocess and its stdin/stdout command channel."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_CARRIER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        self.port = int(self._reply(10.0)["port"])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _reply(self, timeout: float) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        import select  # noqa: PLC0415 - only here

        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.1)
            if ready:
                line = stdout.readline()
                if not line:
                    raise RuntimeError("the fake carrier exited")
                reply: dict[str, Any] = json.loads(line)
                return reply
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fake carrier exited with {self.proc.returncode}")
        raise RuntimeError("the fake carrier did not answer in time")

    def command(self, name: str) -> dict[str, Any]:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(name.encode() + b"\n")
        stdin.flush()
        return self._reply(10.0)

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


GATEWAY_CONFIG = """\
# Written by bench/e2e.py for one scenario.
node_id: 0
listen:
  host: 127.0.0.1
  port: {port}
  inactivity_timeout: 3600
accounts:
  - system_id: bench
    password: bench
    max_binds: {binds}
    window: {window}
upstreams:
  carrier:
    host: 127.0.0.1
    port: {carrier_port}
    system_id: smsgw
    password: smsgw
    binds: {upstream_binds}
    window: {upstream_window}
routes:
  - name: all
    prefixes: [""]
    targets: [carrier]
store:
{store}
http: {{host: 127.0.0.1, port: {http_port}}}
metrics: {{enabled: {metrics}}}
{mqtt}{policy}"""
# Every rule on and every message marketing: number checks (invalid ones still sent: the
# corpus's numbers are made up), opt-out against the suppression list, quiet hours (a
# minute a day: computed for every message, rarely holding one), a cap counted per message,
# and dedup (a 1 s window: looked up for every message; the corpus repeats every 10,000).
RULES = """policy:
  default_class: marketing
  refuse_invalid_numbers: false
  dedup_window: 1
  classes:
    marketing:
      quiet_hours: {start: "03:00", end: "03:01"}
      caps: [{count: 1000000, per: 30d}]
"""
SQLITE_STORE = """\
  backend: sqlite
  path: {db}
  writer: {store_writer}"""
POSTGRES_STORE = """\
  backend: postgres
  dsn: '{dsn}'"""


def _suppressed(count: int) -> Any:
    """`count` numbers for the suppression list, none of them a corpus destination."""
    return ((f"861{i:010d}", "", 0.0, "bench") for i in range(count))


def _fill_suppressions_sqlite(db: Path, count: int) -> None:
    """The store's schema (made by opening it), then the list in one transaction."""
    from gateway.store.sqlite import SqliteStore  # noqa: PLC0415 - bench-only import

    async def migrate() -> None:
        store = SqliteStore(db)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany("INSERT INTO suppressions VALUES (?, ?, ?, ?)", _suppressed(count))


def _fill_suppressions_pg(dsn: str, schema: str, count: int) -> None:
    import asyncpg  # noqa: PLC0415 - only with --store postgres

    from gateway.store.postgres import PostgresStore  # noqa: PLC0415 - bench-only import

    async def fill() -> None:
        store = PostgresStore(dsn, schema=schema, min_size=1, max_size=2)
        await store.open()
        await store.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.copy_records_to_table(
                "suppressions", records=list(_suppressed(count)), schema_name=schema
            )
        finally:
            await conn.close()

    asyncio.run(fill())


@dataclass
class Scenario:
    name: str
    through_gateway: bool
    messages: int
    binds: int
    window: int
    rate: float | None = None
    profile: str = "none"
    burst: bool = False  # the carrier holds the receipts, then releases them together
    metrics: bool = True  # Prometheus counters on (off: what they cost, side by side)
    rules: bool = False  # every sending rule on, with a suppression list (issue 11)
    mqtt: bool = False  # MQTT events on, to --mqtt-url, with a subscriber counting them


@dataclass
class Samples:
    """RSS of the gateway over a scenario: (seconds since load started, MB)."""

    rss: list[tuple[float, float]] = field(default_factory=list)


def _db_states(db: Path) -> dict[str, Any]:
    """Message states and pending deliveries in the gateway's SQLite file (after it stopped)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            states = dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
            (pending,) = conn.execute("SELECT count(*) FROM deliveries").fetchone()
        return {"message_states": states, "deliveries_pending": pending}
    except sqlite3.Error as exc:
        return {"error": str(exc)}


def _profiler(pid: int, out: Path, idle: bool) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [exe, "record", "--pid", str(pid), "--rate", "400", "--nonblocking", "--threads"]
    command += ["--format", "raw", "-o", str(out)] + (["--idle"] if idle else [])
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# Frames every sample of a thread passes through: left out of the inclusive list.
_WRAPPERS = ("Thread.", "Runner.run", "SqliteStore._run (", "_run_module_as_main", "_run_code")
_WRAPPER_FILES = ("(gateway/cli.py)", "(<frozen runpy>)", "(threading.py)")


def summarise_pyspy(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares by function (and by thread) of a py-spy raw profile."""
    total = 0
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    own_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        # "function (file:line)" -> "function (file)": one entry per function
        names = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") and ":" in f else f for f in frames]
        total += count
        threads[thread] += count
        if names:
            own[names[-1]] += count
            own_lines[frames[-1]] += count
        for name in set(names):
            if not name.startswith(_WRAPPERS) and not name.endswith(_WRAPPER_FILES):
                inclusive[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100.0 * n / total) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "threads": share(threads),
        "self": share(own),
        "self_lines": share(own_lines),
        "inclusive": share(inclusive),
    }


def _pg_execute(dsn: str, statement: str) -> None:
    import asyncpg  # noqa: PLC0415 - only with --store postgres

    async def go() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close(timeout=10)

    asyncio.run(asyncio.wait_for(go(), 60))


def _pg_states(dsn: str, schema: str) -> dict[str, Any]:
    """Message states and pending deliveries in the scenario's PostgreSQL schema."""
    import asyncpg  # noqa: PLC0415 - only with --store postgres

    async def go() -> dict[str, Any]:
        conn = await asyncpg.connect(dsn, timeout=10, server_settings={"search_path": schema})
        try:
            rows = await conn.fetch("SELECT state, count(*) FROM messages GROUP BY state")
            pending = await conn.fetchval("SELECT count(*) FROM deliveries")
        finally:
            await conn.close(timeout=10)
        return {"message_states": {r[0]: r[1] for r in rows}, "deliveries_pending": pending}

    try:
        return asyncio.run(asyncio.wait_for(go(), 60))
    except Exception as exc:
        return {"error": repr(exc)}


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"smsgw-e2e-{scenario.name}-"))
    carrier: Carrier | None = None
    gateway: subprocess.Popen[bytes] | None = None
    client: subprocess.Popen[bytes] | None = None
    profiler: subprocess.Popen[bytes] | None = None
    gateway_log: IO[bytes] | None = None
    result: dict[str, Any] = {"scenario": scenario.name, "store": args.store}
    schema: str | None = None
    lag_path = tmp / "gateway-lag.json"
    t_release: float | None = None
    counter: subprocess.Popen[bytes] | None = None
    http_port = _free_port()
    try:
        carrier = Carrier()
        port = carrier.port
        if scenario.through_gateway:
            port = _free_port()
            config = tmp / "gateway.yaml"
            if args.store == "postgres":
                schema = f"smsgw_e2e_{os.getpid()}_{scenario.name}"
                _pg_execute(args.dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                _pg_execute(args.dsn, f'CREATE SCHEMA "{schema}"')
                sep = "&" if "?" in args.dsn else "?"
                store = POSTGRES_STORE.format(dsn=f"{args.dsn}{sep}search_path={schema}")
            else:
                db = tmp / "smsgw.sqlite3"
                store = SQLITE_STORE.format(db=db, store_writer=args.store_writer)
            config.write_text(
                GATEWAY_CONFIG.format(
                    port=port,
                    binds=max(scenario.binds, 1),
                    window=scenario.window,
                    carrier_port=carrier.port,
                    upstream_binds=args.upstream_binds,
                    upstream_window=args.upstream_window,
                    store=store,
                    metrics=str(scenario.metrics).lower(),
                    policy=RULES if scenario.rules else "",
                    http_port=http_port,
                    mqtt=MQTT.format(url=args.mqtt_url, prefix=f"bench{os.getpid()}")
                    if scenario.mqtt
                    else "",
                ),
                encoding="utf-8",
            )
            if scenario.rules:
                started = time.perf_counter()
                if args.store == "postgres":
                    _fill_suppressions_pg(args.dsn, schema, args.suppressions)
                else:
                    _fill_suppressions_sqlite(db, args.suppressions)
                result["suppressions"] = args.suppressions
                result["suppressions_fill_s"] = round(time.perf_counter() - started, 2)
            if scenario.mqtt:  # subscribed before the gateway publishes anything
                counter = _start_counter(args.mqtt_url, f"bench{os.getpid()}", tmp)
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--gateway",
                str(config),
                "--lag-out",
                str(lag_path),
            ]
            if scenario.profile == "cprofile":
                out = Path(args.profile_out or tmp / "gateway.pstats")
                command[1:1] = ["-m", "cProfile", "-o", str(out)]
                result["profile"] = str(out)
            gateway_log = (tmp / "gateway.log").open("wb")
            gateway = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=gateway_log, stderr=subprocess.STDOUT
            )
            _wait_listening(port, gateway, 20.0)
            deadline = time.monotonic() + 15.0  # the upstream binds to the carrier
            while carrier.command("stats")["binds"] < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not bind to the fake carrier")
                time.sleep(0.05)
            result["upstream_binds_at_carrier"] = carrier.command("stats")["binds"]
            carrier.command("reset")
            if scenario.burst:
                carrier.command("hold")
        spec = ClientSpec(
            host="127.0.0.1",
            port=port,
            messages=scenario.messages,
            binds=scenario.binds,
            window=scenario.window,
            rate=scenario.rate,
            workload=args.workload,
            corpus=str(args.corpus),
            stall=args.stall,
            max_wait=args.max_wait,
            result_path=str(tmp / "client.json"),
        )
        spec_path = tmp / "client-spec.json"
        spec_path.write_text(json.dumps(spec.__dict__), encoding="utf-8")
        gw_pid = gateway.pid if gateway is not None else None
        gw_cpu0 = _proc_cpu(gw_pid, children=True) if gw_pid else None
        gw_split0 = _proc_cpu_split(gw_pid, children=True) if gw_pid else None
        rss_idle = _proc_rss_mb(gw_pid) if gw_pid else None
        carrier_cpu0 = _proc_cpu(carrier.pid)
        client = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--client", str(spec_path)],
            cwd=REPO_ROOT,
        )
        if gw_pid and scenario.profile == "py-spy":
            out = Path(args.profile_out or tmp / "gateway.pyspy.txt")
            profiler = _profiler(gw_pid, out, args.profile_idle)
            result["profile"] = str(out)
        samples = Samples()
        started = time.monotonic()
        # Hard bound on the whole client: submitting at >= 100/s, then the receipt grace.
        hard = 60.0 + scenario.messages / 100.0 + args.max_wait + 2 * args.stall
        if scenario.rate:
            hard += scenario.messages / scenario.rate
        while client.poll() is None:
            if time.monotonic() - started > hard:
                client.kill()
                raise RuntimeError(f"the load client ran over {hard:.0f} s and was killed")
            if gw_pid:
                rss = _proc_rss_mb(gw_pid)
                if rss is not None:
                    samples.rss.append((time.monotonic() - started, rss))
            if scenario.burst and t_release is None:
                # Every submit_sm is at the carrier (its receipt held): release them together.
                stats = carrier.command("stats")
                if stats["unique_submits"] >= scenario.messages and stats["held"] >= (
                    scenario.messages
                ):
                    t_release = time.monotonic()
                    carrier.command("probe")  # enquire_link every 10 ms, timed by the carrier
                    result["burst_released"] = carrier.command("release")["released"]
                time.sleep(0.05)
                continue
            time.sleep(1.0 if gw_pid else 0.2)
        gw_cpu1 = _proc_cpu(gw_pid, children=True) if gw_pid else None
        gw_split1 = _proc_cpu_split(gw_pid, children=True) if gw_pid else None
        carrier_cpu1 = _proc_cpu(carrier.pid)
        if client.returncode != 0:
            raise RuntimeError(f"the load client failed with exit code {client.returncode}")
        result.update(json.loads((tmp / "client.json").read_text(encoding="utf-8")))
        result["carrier"] = carrier.command("stats")
        accepted = max(1, result["accepted"])
        if carrier_cpu0 is not None and carrier_cpu1 is not None:
            result["carrier_cpu_s"] = carrier_cpu1 - carrier_cpu0
            result["carrier_cpu_s_per_1000"] = (carrier_cpu1 - carrier_cpu0) * 1000 / accepted
        result["client_cpu_s_per_1000"] = result["client_cpu_s"] * 1000 / accepted
        if gw_cpu0 is not None and gw_cpu1 is not None:
            result["gateway_cpu_s"] = gw_cpu1 - gw_cpu0
            result["gateway_cpu_s_per_1000"] = (gw_cpu1 - gw_cpu0) * 1000 / accepted
        if gw_split0 is not None and gw_split1 is not None:
            result["gateway_user_s_per_1000"] = (gw_split1[0] - gw_split0[0]) * 1000 / accepted
            result["gateway_system_s_per_1000"] = (gw_split1[1] - gw_split0[1]) * 1000 / accepted
        if gw_pid:
            result["gateway_rss_mb"] = _rss_summary(rss_idle, samples.rss)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                _, err = profiler.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                profiler.kill()
                err = b""
            if profiler.returncode not in (0, None) and err:
                result["profile_error"] = err.decode(errors="replace")[-500:]
            with contextlib.suppress(OSError):
                result["profile_summary"] = summarise_pyspy(Path(result["profile"]))
        if scenario.mqtt:
            result["mqtt"] = _scrape_mqtt(http_port)
        if gateway is not None:
            result["gateway_exit"] = _stop(gateway, 30.0)
            if counter is not None:
                result.setdefault("mqtt", {})["received"] = _stop_counter(counter, tmp)
            if schema is not None:
                result["store_states"] = _pg_states(args.dsn, schema)
            else:
                result["store_states"] = _db_states(tmp / "smsgw.sqlite3")
            result["loop_lag"] = _lag_summary(
                lag_path,
                result["t0_abs"],
                result["t_end_abs"],
                t_release,
                result.get("t_last_receipt_abs"),
            )
            result["stages"] = _stage_summary(
                lag_path,
                result["t0_abs"],
                result.get("t_last_receipt_abs") or result["t_end_abs"],
                accepted,
            )
        result["ok"] = True
    except Exception as exc:  # reported in the table and the JSON; the run goes on
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        log_path = tmp / "gateway.log"
        if log_path.exists():
            result["gateway_log_tail"] = log_path.read_text(errors="replace")[-2000:]
    finally:
        for proc in (client, profiler, counter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
        _stop(gateway, 10.0)
        if schema is not None and not args.keep:
            with contextlib.suppress(Exception):
                _pg_execute(args.dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if gateway_log is not None:
            gateway_log.close()
        if carrier is not None:
            carrier.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            result["tmp"] = str(tmp)
    return result


MQTT = """mqtt: {{url: "{url}", topic_prefix: {prefix}, node: gw}}
"""


def _start_counter(url: str, prefix: str, tmp: Path) -> subprocess.Popen[bytes]:
    """The subscriber process (`--mqtt-count`), once it is subscribed."""
    ready = tmp / "mqtt-ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--mqtt-count",
            f"{url} {prefix} {tmp}",
        ],
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + 15.0
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the MQTT subscriber did not subscribe")
        time.sleep(0.05)
    return proc


def _stop_counter(proc: subprocess.Popen[bytes], tmp: Path) -> dict[str, int]:
    """Stop the subscriber once its count has been still for a second (the gateway flushed
    its queue when it stopped); what it received, by event type."""
    out = tmp / "mqtt-count.json"
    last, still = -1, time.monotonic()
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            now = sum(json.loads(out.read_text(encoding="utf-8")).values())
            if now != last:
                last, still = now, time.monotonic()
        if time.monotonic() - still > 1.5:
            break
        time.sleep(0.25)
    proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    return cast(dict[str, int], json.loads(out.read_text(encoding="utf-8")))


def counter_entry(spec: str) -> int:
    """`--mqtt-count "URL PREFIX DIR"`: count events (in the arrays) on PREFIX/# by type into
    DIR/mqtt-count.json (rewritten every 0.2 s) until SIGTERM."""
    import aiomqtt  # noqa: PLC0415 - only in the subscriber process

    from gateway.telemetry.mqtt import broker_address  # noqa: PLC0415

    url, prefix, directory = spec.split(" ", 2)
    host, port, *_ = broker_address(url)
    counts: Counter[str] = Counter()
    out = Path(directory) / "mqtt-count.json"

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

        async def write() -> None:
            while True:
                out.write_text(json.dumps(counts), encoding="utf-8")
                await asyncio.sleep(0.2)

        async with aiomqtt.Client(host, port) as client:
            await client.subscribe(f"{prefix}/#", qos=1)
            (Path(directory) / "mqtt-ready").touch()

            async def read() -> None:
                async for message in client.messages:
                    # a payload is an array of events, all of the topic's type
                    assert isinstance(message.payload, bytes)
                    batch = json.loads(message.payload)
                    if isinstance(batch, list):  # not a notice to the other nodes
                        counts[str(message.topic).split("/", 2)[2]] += len(batch)

            tasks = [asyncio.create_task(read()), asyncio.create_task(write())]
            await stop.wait()
            for task in tasks:
                task.cancel()
        out.write_text(json.dumps(counts), encoding="utf-8")

    asyncio.run(main())
    return 0


def _scrape_mqtt(http_port: int) -> dict[str, float]:
    """The gateway's smsgw_mqtt_* figures, from its /metrics."""
    import urllib.request  # noqa: PLC0415 - only here

    deadline = time.monotonic() + 10.0
    figures: dict[str, float] = {}
    while time.monotonic() < deadline:  # until its queue is empty (or 10 s)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        figures = {
            line.split()[0].removeprefix("smsgw_mqtt_"): float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("smsgw_mqtt_") and not line.startswith("smsgw_mqtt_published_c")
        }
        figures = {k: v for k, v in figures.items() if not k.endswith("_created")}
        if not figures.get("queued"):
            break
        time.sleep(0.2)
    return figures


def _rss_summary(idle: float | None, rss: list[tuple[float, float]]) -> dict[str, Any]:
    if not rss:
        return {"idle": idle}
    values = [mb for _t, mb in rss]
    n = len(values)
    quarter, end = values[n // 4], values[-1]
    return {
        "idle": idle,
        "first": values[0],
        "quarter": quarter,
        "mid": values[n // 2],
        "end": end,
        "max": max(values),
        "growth_quarter_to_end_pct": (end - quarter) / quarter * 100.0 if quarter else None,
        "samples": n,
    }


# =============================================================================================
# Report
# =============================================================================================


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return format(value, spec)


def _table(results: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | submit_sm | accepted | accepted/s | receipts | receipts/s "
        "| steady receipts/s (median) | resp p50 / p99 / max ms | receipt p50 / p99 / max ms "
        "| missing receipts | dup at carrier / client | gateway CPU s /1k | carrier CPU s /1k "
        "| client CPU s /1k | gateway RSS MB idle / ¼ / end |"
    )
    lines = [head, "|---|" + "---:|" * 14]
    for r in results:
        if not r.get("ok"):
            lines.append(f"| {r['scenario']} | failed: {r.get('error', '?')} |" + " |" * 13)
            continue
        resp, rcpt = r["submit_to_resp_ms"], r["submit_to_receipt_ms"]
        rss = r.get("gateway_rss_mb") or {}
        missing = r["missing_receipts"]
        if missing and r["missing_receipts_still_flowing"]:
            missing_text = f"{missing:,} (still arriving)"
        else:
            missing_text = f"{missing:,}"
        lines.append(
            f"| {r['scenario']} | {r['submitted']:,} | {r['accepted']:,} "
            f"| {_fmt(r['accepted_per_s'])} | {r['receipts']:,} | {_fmt(r['receipts_per_s'])} "
            f"| {_fmt(r['receipts_per_s_steady']['median'])} "
            f"| {_fmt(resp['p50'], '.1f')} / {_fmt(resp['p99'], '.1f')} / "
            f"{_fmt(resp['max'], '.0f')} "
            f"| {_fmt(rcpt['p50'], '.1f')} / {_fmt(rcpt['p99'], '.1f')} / "
            f"{_fmt(rcpt['max'], '.0f')} "
            f"| {missing_text} | {r['carrier']['duplicates']:,} / {r['duplicate_receipts']:,} "
            f"| {_fmt(r.get('gateway_cpu_s_per_1000'), '.3f')} "
            f"| {_fmt(r.get('carrier_cpu_s_per_1000'), '.3f')} "
            f"| {_fmt(r.get('client_cpu_s_per_1000'), '.3f')} "
            f"| {_fmt(rss.get('idle'), '.0f')} / {_fmt(rss.get('quarter'), '.0f')} / "
            f"{_fmt(rss.get('end'), '.0f')} |"
        )
    return "\n".join(lines)


def _targets(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    t = results.get("throughput")
    if t and t.get("ok"):
        rate = t["receipts_per_s"] or 0.0
        ok = rate >= 10_000 and t["accepted"] >= 100_000 and t["missing_receipts"] == 0
        out.append(
            f"- >= 10,000 msg/s end to end with receipts, >= 100,000 messages, none lost: "
            f"{rate:,.0f} msg/s over {t['accepted']:,} accepted, {t['missing_receipts']:,} "
            f"without a receipt -> {'met' if ok else 'MISSED'}"
            + (f" ({10_000 / rate:.1f}x short)" if 0 < rate < 10_000 else "")
        )
        growth = (t.get("gateway_rss_mb") or {}).get("growth_quarter_to_end_pct")
        if growth is not None:
            flat = growth < 10.0
            out.append(
                f"- memory flat over the run: RSS {growth:+.1f}% from the first quarter to the "
                f"end -> {'met' if flat else 'MISSED'}"
            )
    p = results.get("paced")
    if p and p.get("ok"):
        p99 = p["submit_to_resp_ms"]["p99"]
        ok = p99 is not None and p99 <= 20.0
        out.append(
            f"- p99 submit -> submit_sm_resp <= 20 ms at an offered {p.get('rate', 0):,.0f} "
            f"msg/s: {_fmt(p99, '.1f')} ms -> {'met' if ok else 'MISSED'}"
        )
    return out


def _cpu_facts() -> tuple[str, float | None]:
    """The CPU model and its cores' mean current frequency (MHz), from /proc/cpuinfo."""
    model, mhz = "?", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "cpu MHz":
                mhz.append(float(value))
    except (OSError, ValueError):
        pass
    return model, (round(sum(mhz) / len(mhz)) if mhz else None)


def _fsync_latency(directory: str, count: int = 50) -> dict[str, float]:
    """p50/p99 ms of a 4 KiB write + fsync in `directory` (where the store's file goes): what
    a durable commit waits for, and the first thing that differs between two VMs."""
    times = []
    fd, path = tempfile.mkstemp(prefix="fsync-", dir=directory)
    try:
        block = os.urandom(4096)
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"p50": round(times[len(times) // 2], 3), "p99": round(times[-1], 3)}


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=None, help="N (default 100,000)")
    parser.add_argument("--binds", type=int, default=4, help="M binds of the load client")
    parser.add_argument("--window", type=int, default=64, help="W unanswered submit_sm a bind")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered msg/s (paced)")
    parser.add_argument("--duration", type=float, default=None, help="seconds paced (20)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few messages")
    parser.add_argument(
        "--only", default="ceiling,throughput,paced", help="comma-separated scenarios"
    )
    parser.add_argument("--workload", choices=("corpus", "otp"), default="corpus")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--upstream-binds", type=int, default=4)
    parser.add_argument("--upstream-window", type=int, default=512)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="--store postgres: where (a fresh schema per scenario, dropped afterwards)",
    )
    parser.add_argument(
        "--burst", type=int, default=0, help="N: the burst scenario's messages (receipts held)"
    )
    parser.add_argument(
        "--store-writer",
        choices=("thread", "process"),
        default="thread",
        help="the gateway's SQLite writer (store.writer)",
    )
    parser.add_argument(
        "--suppressions", type=int, default=1_000_000, help="opt-outs for the *-rules scenarios"
    )
    parser.add_argument("--stall", type=float, default=20.0, help="s without progress: give up")
    parser.add_argument("--max-wait", type=float, default=None, help="s for receipts (600)")
    parser.add_argument("--profile", choices=("none", "py-spy", "cprofile"), default="none")
    parser.add_argument("--profile-out", default=None, help="where the gateway profile goes")
    parser.add_argument(
        "--profile-idle", action="store_true", help="py-spy: wall-clock (waiting threads too)"
    )
    parser.add_argument("--json", default=None, help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--gateway", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lag-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mqtt-count", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--mqtt-url", default="mqtt://127.0.0.1:1883", help="the broker of throughput-mqtt"
    )
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 5_000 if args.quick else 100_000
    if args.duration is None:
        args.duration = 5.0 if args.quick else 20.0
    if args.max_wait is None:
        args.max_wait = 60.0 if args.quick else 600.0
    if args.corpus is None:
        args.corpus = (REPO_ROOT / DEFAULT_CORPUS).resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.client:
        return client_entry(args.client)
    if args.gateway:
        return gateway_entry(args.gateway, args.lag_out)
    if args.mqtt_count:
        return counter_entry(args.mqtt_count)
    if args.workload == "corpus" and not args.corpus.exists():
        print(f"error: no corpus at {args.corpus} (--corpus PATH or --workload otp)")
        return 2
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    scenarios = {
        "ceiling": Scenario("ceiling", False, args.messages, args.binds, args.window),
        "throughput": Scenario(
            "throughput", True, args.messages, args.binds, args.window, profile=args.profile
        ),
        "throughput-nometrics": Scenario(
            "throughput-nometrics", True, args.messages, args.binds, args.window, metrics=False
        ),
        "throughput-mqtt": Scenario(
            "throughput-mqtt", True, args.messages, args.binds, args.window, mqtt=True
        ),
        "paced": Scenario(
            "paced",
            True,
            max(1, int(args.rate * args.duration)),
            args.binds,
            args.window,
            rate=args.rate,
        ),
        "burst": Scenario("burst", True, args.burst or 2000, args.binds, args.window, burst=True),
        "throughput-rules": Scenario(
            "throughput-rules",
            True,
            args.messages,
            args.binds,
            args.window,
            rules=True,
            profile=args.profile,
        ),
        "paced-rules": Scenario(
            "paced-rules",
            True,
            max(1, int(args.rate * args.duration)),
            args.binds,
            args.window,
            rate=args.rate,
            rules=True,
        ),
    }
    unknown = set(wanted) - set(scenarios)
    if unknown:
        print(f"error: unknown scenario(s) {', '.join(sorted(unknown))}")
        return 2
    meta = {
        "command": " ".join(
            shlex.quote(a)
            for a in [
                ".venv/bin/python",
                "bench/e2e.py",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_start": _load(),
        "workload": args.workload,
        "binds": args.binds,
        "window": args.window,
        "upstream_binds": args.upstream_binds,
        "upstream_window": args.upstream_window,
        "store": args.store,
    }
    meta["cpu_model"], meta["cpu_mhz"] = _cpu_facts()
    meta["fsync_ms"] = _fsync_latency(tempfile.gettempdir())
    print(
        f"smsgw e2e: commit {meta['commit']}, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"load {meta['load_start']}; workload {args.workload}, M={args.binds} binds x "
        f"W={args.window}; store {args.store}",
        flush=True,
    )
    print(
        f"machine: {meta['cpu_model']} at {meta['cpu_mhz']} MHz; fsync of 4 KiB in "
        f"{tempfile.gettempdir()}: p50 {meta['fsync_ms']['p50']} ms, "
        f"p99 {meta['fsync_ms']['p99']} ms",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for name in wanted:
        scenario = scenarios[name]
        print(
            f"- {name}: {scenario.messages:,} submit_sm"
            + (f" at {scenario.rate:,.0f}/s" if scenario.rate else "")
            + (" through the gateway" if scenario.through_gateway else " straight to the carrier")
            + " ...",
            flush=True,
        )
        r = run_scenario(scenario, args)
        r["rate"] = scenario.rate
        results[name] = r
        if r.get("ok"):
            print(
                f"  accepted {r['accepted']:,} ({_fmt(r['accepted_per_s'])}/s), receipts "
                f"{r['receipts']:,} ({_fmt(r['receipts_per_s'])}/s), "
                f"{r['run_seconds']:.1f} s",
                flush=True,
            )
            if "mqtt" in r:
                m = r["mqtt"]
                print(
                    f"  mqtt: published {m.get('published_total', 0):,.0f} MQTT messages, dropped "
                    f"{m.get('dropped_total', 0):,.0f}, events received by the subscriber "
                    f"{sum(m.get('received', {}).values()):,} {dict(m.get('received', {}))}",
                    flush=True,
                )
            if "gateway_user_s_per_1000" in r:
                print(
                    f"  gateway CPU s /1k: user {r['gateway_user_s_per_1000']:.3f}, system "
                    f"{r['gateway_system_s_per_1000']:.3f}",
                    flush=True,
                )
            if r.get("stages"):
                _print_stages(r["stages"])
            lag = r.get("loop_lag") or {}
            if "worst_under_load_ms" in lag:
                print(
                    f"  gateway loop lag: worst {lag['worst_under_load_ms']:.1f} ms under load "
                    f"({lag['over_10ms_under_load']} > 10 ms, {lag['over_50ms_under_load']} "
                    f"> 50 ms)"
                    + (
                        f"; worst {lag['worst_in_burst_ms']:.1f} ms during the burst of "
                        f"{r.get('burst_released', 0):,} receipts ({lag['burst_seconds']:.2f} s); "
                        f"the carrier's enquire_link answered within "
                        f"{r['carrier']['enquire_link_rtt_max_ms']:.1f} ms (p99 "
                        f"{r['carrier']['enquire_link_rtt_p99_ms']:.1f} ms)"
                        if "worst_in_burst_ms" in lag
                        else ""
                    ),
                    flush=True,
                )
        else:
            print(f"  FAILED: {r['error']}", flush=True)
            if r.get("gateway_log_tail"):
                print("  gateway log (tail):\n" + r["gateway_log_tail"], flush=True)
    meta["load_end"] = _load()
    print()
    print(_table(list(results.values())))
    print()
    for line in _targets(results):
        print(line)
    print(f"\nload average: {meta['load_start']} at start, {meta['load_end']} at end")
    for r in results.values():
        if r.get("profile"):
            print(f"gateway profile ({r['scenario']}): {r['profile']}")
        summary = r.get("profile_summary")
        if summary:
            print(f"  {summary['samples']:,} samples; by thread:")
            for name, pct in summary["threads"]:
                print(f"    {pct:5.1f}%  {name}")
            for kind in ("self", "self_lines", "inclusive"):
                print(f"  top functions ({kind}):")
                for name, pct in summary[kind]:
                    print(f"    {pct:5.1f}%  {name}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "results": results}, indent=2), encoding="utf-8"
        )
        print(f"figures written to {args.json}")
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
