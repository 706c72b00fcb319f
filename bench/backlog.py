"""Backlogs (issue 13, item 5): a million deliveries queued for an unbound app, and a big store.

Usage (from the repository root):

    .venv/bin/python bench/backlog.py                  # full: 1,000,000 seeded, 10,000,000 store
    .venv/bin/python bench/backlog.py --quick          # smoke run (< 1 min): 20,000 / 200,000
    .venv/bin/python bench/backlog.py --only queue,drain --seeded 1000000 --json /tmp/b.json
    .venv/bin/python bench/backlog.py --only start,purge --store-messages 10000000 \
        --store-path /tmp/big.sqlite3 --keep-store        # build once, reuse with --store-path

Three scenarios, each with the gateway started as ``bench/e2e.py --gateway CONFIG`` (``smsgw
serve`` plus e2e.py's loop-lag timer: a callback every 5 ms, how late it fires), the fake
carrier of ``bench/fake_carrier.py`` as its one upstream, and an SQLite store (WAL,
synchronous=FULL) in a temporary directory:

A. **queue + drain** (``queue``, ``drain``). The application's account ``app`` has no
   receiving bind. ``queue`` (through the pipeline): the app binds as a *transmitter* only and
   submits ``--queued`` messages with registered_delivery=1 (window 256); the carrier answers
   each with a receipt; at the same time the carrier sends ``--queued`` / 4 MO messages to a
   number the gateway's ``mo_routes`` give to ``app``. Every receipt and MO therefore queues
   durably in the store's delivery queue with nobody to take it. The gateway's RSS is sampled
   every second while they queue (it must stay flat: nothing of the backlog is held in
   memory). ``drain``: the queue as it is now (``--seeded N`` first adds N deliveries - 4
   receipts to 1 MO, real deliver_sm PDUs - with the store's own API,
   ``SqliteStore.finish_inbound``, in a separate process before the gateway starts: labelled
   **seeded**, since it skips the pipeline to make a million in seconds), then one
   ``bind_receiver`` (this file, ``--receiver``: answers every deliver_sm at once, one write
   per read) with the account's window (``--window``, 512) takes them all. Reported: deliver_sm
   per second (overall and the median of whole seconds), the RSS while it drains, and the
   order. **Order of arrival** is the order of the queue's ids (``deliveries.id``, an
   AUTOINCREMENT key given in the order the store's writer committed them: the receipts and MO
   in the order they reached the store). Before the receiver binds, the bench reads every
   queued row (id, PDU) read-only; the receiver keeps a digest of each deliver_sm's body
   (everything after the header, where only the sequence number differs). A deliver_sm whose
   id is lower than one already received is *out of order*; one received twice a *duplicate*;
   one never received *missing*.
B. **start** (``start``): a store of ``--store-messages`` messages (10,000,000), built by
   direct bulk SQL in the store's schema (made by opening it with ``SqliteStore`` first; then
   one ``INSERT ... SELECT`` over a recursive counter per 100,000 rows, in a separate process,
   ``synchronous=OFF`` while building): ids as the gateway makes them, accepted over the last
   ``--span-days`` (60) days, 98 % final (delivered, undeliverable, expired, failed, unknown)
   with two history rows, an upstream id and (delivered / undeliverable) a receipt each; the
   newest ``--non-final`` (3,000) still accepted (scheduled for later), dispatching or sent.
   Then ``serve`` is started ``--starts`` times (3) on it; timed from process start to the
   SMPP port accepting a TCP connection, to a bind_transceiver_resp and to the first
   submit_sm_resp.
C. **purge** (``purge``): the same store, the gateway started with ``retention_days`` of half
   the span, so its first retention purge (run at start) removes the oldest half. While it
   runs, a paced load client (e2e.py's, 200 submit_sm/s with receipts, rounds of 5 s) measures
   submit -> submit_sm_resp; the gateway's loop-lag timer gives the worst lag during the purge.
   Reported: rows purged, purge seconds and rows/s (from the gateway's ``purged`` log line),
   the worst loop lag, and the p99 submit -> resp per round during the purge. With ``--watch``
   the gateway runs a watchdog thread (``Watchdog``): for each stall of its loop over 30 ms,
   the loop's and the store writer's stacks, how long each spent on a CPU and waiting for one
   (the kernel's schedstat: the waiting is the machine's other work), and the garbage
   collections within it.

Everything is printed as tables at the end; ``--json`` keeps every figure. Timings on a shared
2-core machine are noisy: the load average at start and end is printed.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import (
    _HEAD,
    REPO_ROOT,
    Carrier,
    ClientSpec,
    LagMonitor,
    _cpu_facts,
    _fmt,
    _free_port,
    _fsync_latency,
    _git_commit,
    _lag_summary,
    _load,
    _proc_cpu,
    _proc_rss_mb,
    _profiler,
    _stop,
    _wait_listening,
    build_workload,
    gateway_entry,
    summarise_pyspy,
)
from gateway.smpp import CommandId, FrameBuffer

E2E = Path(__file__).resolve().parent / "e2e.py"
MO_NUMBER = "4930555000"  # the app's inbound number (mo_routes)
_DELIVER_SM = int(CommandId.deliver_sm)
_DELIVER_SM_RESP = int(CommandId.deliver_sm_resp)
_ENQUIRE_LINK = int(CommandId.enquire_link)
_UNBIND = int(CommandId.unbind)
_SUBMIT_SM_RESP = int(CommandId.submit_sm_resp)
_RESP = 0x80000000


def _digest(body: bytes) -> int:
    """64 bits of a deliver_sm's body (after the 16-octet header): the same in the store's row
    (sequence number 0) and on the wire (the session's sequence number), in every process."""
    return int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "little")


# =============================================================================================
# Configuration
# =============================================================================================

CONFIG = """\
# Written by bench/backlog.py for one scenario.
node_id: 0
listen: {{host: 127.0.0.1, port: {port}, inactivity_timeout: 3600}}
accounts:
  - system_id: app
    password: app
    max_binds: 4
    window: {window}
  - system_id: bench
    password: bench
    max_binds: 4
    window: 64
upstreams:
  carrier:
    host: 127.0.0.1
    port: {carrier_port}
    system_id: smsgw
    password: smsgw
    binds: 2
    window: 512
routes:
  - name: all
    prefixes: [""]
    targets: [carrier]
mo_routes:
  - account: app
    prefixes: ["{mo_number}"]
dispatch: {{delivery_ttl: 604800}}
store:
  backend: sqlite
  path: {db}
  retention_days: {retention_days}
http: {{host: 127.0.0.1, port: {http_port}}}
metrics: {{enabled: true}}
"""


class Gateway:
    """The gateway process (`e2e.py --gateway CONFIG`) on a fresh config in `tmp`; with
    `watch`, started through `--watched` instead: the same plus a `Watchdog`."""

    def __init__(
        self,
        tmp: Path,
        db: Path,
        carrier_port: int,
        *,
        window: int,
        retention_days: int,
        watch: bool = False,
    ) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.config = tmp / "gateway.yaml"
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                window=window,
                carrier_port=carrier_port,
                mo_number=MO_NUMBER,
                db=db,
                retention_days=retention_days,
                http_port=_free_port(),
            ),
            encoding="utf-8",
        )
        self.lag = tmp / "gateway-lag.json"
        self.stalls = tmp / "gateway-stalls.json" if watch else None
        self.log_path = tmp / "gateway.log"
        self.log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.log = self.log_path.open("wb")
        self.started = time.monotonic()
        command = [str(E2E), "--gateway", str(self.config), "--lag-out", str(self.lag)]
        if self.stalls is not None:
            command = [
                str(Path(__file__).resolve()),
                "--watched",
                f"{self.config} {self.lag} {self.stalls}",
            ]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_listening(self, timeout: float = 60.0) -> float:
        assert self.proc is not None
        _wait_listening(self.port, self.proc, timeout)
        return time.monotonic() - self.started

    def stop(self) -> int | None:
        code = _stop(self.proc, 60.0)
        if self.log is not None:
            self.log.close()
            self.log = None
        return code

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""


def _wait_upstream(carrier: Carrier, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while carrier.command("stats")["binds"] < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not bind to the fake carrier")
        time.sleep(0.05)


# =============================================================================================
# The watchdog (`--watch`): what the gateway's threads did while its event loop stalled
# =============================================================================================

WATCH_BEAT = 0.005  # seconds between the loop's heartbeats (and the watchdog's looks)
WATCH_STALL = 0.03  # a heartbeat this late is a stall: its stacks are taken
WATCH_LOOKS = 6  # stack samples kept per stall, one per WATCH_STALL while it lasts


def _schedstat(tid: int | None) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for one) of a thread, (0, 0) if unknown."""
    if tid is None:
        return (0, 0)
    try:
        on_cpu, waiting, _slices = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return (0, 0)
    return int(on_cpu), int(waiting)


def _task_state(tid: int | None) -> str:
    """R running, S sleeping (a lock, epoll), D waiting for the disk (a page fault, a write)."""
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return "?"
    return stat[stat.rindex(")") + 2]


def _stack(frame: Any, depth: int = 8) -> list[str]:
    """The innermost `depth` frames, innermost first: file:line function."""
    out: list[str] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return out


class Watchdog:
    """A thread beside the gateway's event loop. The loop sets a heartbeat every `WATCH_BEAT`;
    when it is `WATCH_STALL` late, the thread records the loop thread's and the store writer's
    stacks and kernel states, and once the loop is back, what each thread spent of the stall
    on a CPU and waiting for one (the kernel's schedstat: the waiting is the neighbours' and
    our other threads' share of the two cores). A stack the watchdog cannot take in time says
    the interpreter lock was held, or the whole process had no CPU: its own lateness says so."""

    def __init__(self) -> None:
        self.beat = time.monotonic()
        self.stalls: list[dict[str, Any]] = []
        self.collections: list[tuple[float, int, float]] = []  # (end, generation, s) > 5 ms
        self._collecting = 0.0
        self._main = threading.get_ident()
        self._main_tid = threading.get_native_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-watchdog", daemon=True)

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def heartbeat() -> None:
            self.beat = time.monotonic()
            loop.call_later(WATCH_BEAT, heartbeat)

        heartbeat()
        gc.callbacks.append(self._collection)
        self._thread.start()

    def _collection(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._collecting = now
        elif now - self._collecting > 0.005:
            self.collections.append((time.monotonic(), info["generation"], now - self._collecting))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _writer(self) -> threading.Thread | None:
        for thread in threading.enumerate():
            if thread.name == "smsgw-sqlite-writer":
                return thread
        return None

    def _watch(self) -> None:
        writer: threading.Thread | None = None
        own_tid = threading.get_native_id()
        history: list[tuple[float, tuple[int, int], tuple[int, int], tuple[int, int]]] = []
        stall: dict[str, Any] | None = None
        last_look = time.monotonic()
        while not self._stop.wait(WATCH_BEAT):
            now = time.monotonic()
            own_late = now - last_look - WATCH_BEAT
            last_look = now
            if writer is None or not writer.is_alive():
                writer = self._writer()
            writer_tid = writer.native_id if writer is not None else None
            main_ss, writer_ss = _schedstat(self._main_tid), _schedstat(writer_tid)
            own_ss = _schedstat(own_tid)
            history.append((now, main_ss, writer_ss, own_ss))
            del history[:-100]  # ~0.5 s
            beat = self.beat
            late = now - beat - WATCH_BEAT
            if stall is not None and beat > stall["beat"]:
                # The loop is back: what the stall was made of, from the look before it.
                _t0, main0, writer0, own0 = stall.pop("_before")
                stall["main_cpu_ms"] = (main_ss[0] - main0[0]) / 1e6
                stall["main_runqueue_ms"] = (main_ss[1] - main0[1]) / 1e6
                stall["writer_cpu_ms"] = (writer_ss[0] - writer0[0]) / 1e6
                stall["writer_runqueue_ms"] = (writer_ss[1] - writer0[1]) / 1e6
                stall["watchdog_runqueue_ms"] = (own_ss[1] - own0[1]) / 1e6
                stall["window_ms"] = (now - _t0) * 1000.0
                stall["lag_ms"] = (beat - stall["beat"] - WATCH_BEAT) * 1000.0
                stall["load"] = Path("/proc/loadavg").read_text().split()[0]
                stall.pop("beat_late", None)
                self.stalls.append(stall)
                stall = None
            if late < WATCH_STALL:
                continue
            if stall is None:
                before = next((h for h in reversed(history) if h[0] <= beat), history[0])
                stall = {"at": now, "beat": beat, "_before": before, "looks": []}
            looks = stall["looks"]
            if len(looks) < WATCH_LOOKS and late >= WATCH_STALL * (len(looks) + 1):
                frames = sys._current_frames()
                looks.append(
                    {
                        "late_ms": round(late * 1000.0, 1),
                        "watchdog_late_ms": round(own_late * 1000.0, 1),
                        "main_state": _task_state(self._main_tid),
                        "writer_state": _task_state(writer_tid),
                        "main": _stack(frames.get(self._main)),
                        "writer": _stack(frames.get(writer.ident)) if writer is not None else [],
                    }
                )


def watched_entry(spec: str) -> int:
    """`e2e.py --gateway CONFIG` with a `Watchdog`: its stalls go to a JSON file at the end."""
    config, lag_out, stalls_out = spec.split()
    watchdog = Watchdog()
    started = LagMonitor.start

    def start(monitor: Any) -> None:
        started(monitor)
        watchdog.start()

    LagMonitor.start = start  # type: ignore[method-assign]
    try:
        return gateway_entry(config, lag_out)
    finally:
        watchdog.stop()
        for stall in watchdog.stalls:  # the collections that ended within the stall
            stall["collections_ms"] = [
                round(seconds * 1000.0, 1)
                for end, _generation, seconds in watchdog.collections
                if stall["beat"] <= end <= stall["beat"] + stall.get("lag_ms", 0.0) / 1000.0 + 0.01
            ]
        Path(stalls_out).write_text(json.dumps(watchdog.stalls), encoding="utf-8")


# =============================================================================================
# SMPP helpers: a bind, a transmitter that submits, a receiver that drains
# =============================================================================================


def _bind_pdu(command: CommandId, system_id: str, password: str, seq: int) -> bytes:
    body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + b"\x34\0\0\0"
    return _HEAD.pack(16 + len(body), int(command), 0, seq) + body


class _Receiver(asyncio.Protocol):
    """bind_receiver; answers every deliver_sm at once, keeping its time and body digest."""

    def __init__(self, expected: int) -> None:
        self.frames = FrameBuffer()
        self.transport: asyncio.Transport | None = None
        self.times = array.array("d")
        self.digests = array.array("Q")
        self.expected = expected
        self.bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.bound.done():
            self.bound.set_result(-1)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.frames.feed(data)
        out: list[bytes] = []
        times, digests = self.times, self.digests
        while (raw := self.frames.next_pdu()) is not None:
            _length, command_id, status, seq = _HEAD.unpack_from(raw)
            if command_id == _DELIVER_SM:
                out.append(_HEAD.pack(17, _DELIVER_SM_RESP, 0, seq) + b"\0")
                times.append(now)
                digests.append(_digest(raw[16:]))
            elif command_id == _ENQUIRE_LINK:
                out.append(_HEAD.pack(16, _ENQUIRE_LINK | _RESP, 0, seq))
            elif command_id == _UNBIND:
                out.append(_HEAD.pack(16, _UNBIND | _RESP, 0, seq))
            elif command_id == int(CommandId.bind_receiver_resp) and not self.bound.done():
                self.bound.set_result(status)
        if out:
            self.last = now
            if self.transport is not None:
                self.transport.write(b"".join(out))


async def _receive(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    usage0 = os.times()
    _t, proto = await loop.create_connection(
        lambda: _Receiver(spec["expected"]), "127.0.0.1", spec["port"]
    )
    assert proto.transport is not None
    t_bind = time.monotonic()
    proto.transport.write(_bind_pdu(CommandId.bind_receiver, "app", "app", 1))
    status = await asyncio.wait_for(proto.bound, 30)
    if status != 0:
        raise RuntimeError(f"bind_receiver refused: {status:#x}")
    proto.last = time.monotonic()
    while len(proto.times) < proto.expected:
        await asyncio.sleep(0.05)
        if time.monotonic() - proto.last > spec["stall"] or proto.transport is None:
            break
    # A little longer: anything sent twice would come now.
    settle_until = time.monotonic() + spec["settle"]
    while time.monotonic() < settle_until and proto.transport is not None:
        await asyncio.sleep(0.05)
    usage1 = os.times()
    if proto.transport is not None:
        proto.transport.write(_HEAD.pack(16, _UNBIND, 0, 2))
        await asyncio.sleep(0.2)
    if proto.transport is not None:
        proto.transport.close()
    Path(spec["out"] + ".times").write_bytes(proto.times.tobytes())
    Path(spec["out"] + ".digests").write_bytes(proto.digests.tobytes())
    return {
        "t_bind": t_bind,
        "received": len(proto.times),
        "cpu_s": (usage1.user - usage0.user) + (usage1.system - usage0.system),
    }


def receiver_entry(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = _run_async(_receive(spec))
    Path(spec["out"] + ".json").write_text(json.dumps(result), encoding="utf-8")
    return 0


async def _transmit(spec: dict[str, Any]) -> dict[str, Any]:
    """bind_transmitter as `app`, submit every PDU with at most `window` unanswered."""
    loop = asyncio.get_running_loop()
    pdus = build_workload("otp", spec["messages"], Path("."))
    reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
    writer.write(_bind_pdu(CommandId.bind_transmitter, "app", "app", 0x40000001))
    frames = FrameBuffer()
    bound = False
    sent = answered = accepted = 0
    window = spec["window"]
    started = loop.time()
    while answered < len(pdus):
        if bound and sent < len(pdus) and sent - answered < window:
            end = min(len(pdus), answered + window)
            writer.write(b"".join(pdus[sent:end]))
            sent = end
        data = await asyncio.wait_for(reader.read(65536), 30)
        if not data:
            break
        frames.feed(data)
        while (raw := frames.next_pdu()) is not None:
            _length, command_id, status, seq = _HEAD.unpack_from(raw)
            if command_id == int(CommandId.bind_transmitter_resp):
                bound = status == 0
                if not bound:
                    raise RuntimeError(f"bind_transmitter refused: {status:#x}")
            elif command_id == _SUBMIT_SM_RESP:
                answered += 1
                accepted += status == 0
            elif command_id == _ENQUIRE_LINK:
                writer.write(_HEAD.pack(16, _ENQUIRE_LINK | _RESP, 0, seq))
    seconds = loop.time() - started
    writer.write(_HEAD.pack(16, _UNBIND, 0, 0x40000002))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.read(65536), 2)
    writer.close()
    return {"submitted": sent, "accepted": accepted, "seconds": seconds}


def transmitter_entry(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = _run_async(_transmit(spec))
    Path(spec["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def _run_async(coro: Any) -> Any:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(coro)


# =============================================================================================
# Seeding the delivery queue with the store's own API (a separate process)
# =============================================================================================


def seed_entry(spec: str) -> int:
    """`--seed "DB COUNT"`: COUNT deliveries for `app` (4 receipts : 1 MO), through
    `SqliteStore.finish_inbound` in chunks of 2,000, eight at a time (group commit)."""
    from gateway.smpp import DeliverSm, encode_pdu, make_tlvs  # noqa: PLC0415
    from gateway.store.base import NewDelivery  # noqa: PLC0415
    from gateway.store.sqlite import SqliteStore  # noqa: PLC0415

    db, count_text = spec.split(" ", 1)
    count = int(count_text)
    now = time.time()

    def pdu(i: int) -> NewDelivery:
        if i % 5 == 4:
            return NewDelivery(
                "app",
                "mo",
                encode_pdu(
                    DeliverSm(
                        source_addr=f"49171{i:08d}",
                        destination_addr=MO_NUMBER,
                        source_addr_ton=1,
                        source_addr_npi=1,
                        short_message=f"seeded mo {i}".encode(),
                    )
                ),
                7 * 86_400.0,
            )
        mid = f"seed{i:012d}"
        text = (
            f"id:{mid} sub:001 dlvrd:001 submit date:2612031200 done date:2612031200 "
            "stat:DELIVRD err:000 text:"
        ).encode()
        return NewDelivery(
            "app",
            "receipt",
            encode_pdu(
                DeliverSm(
                    source_addr=f"49151{i % 10**8:08d}",
                    destination_addr=f"{1_000_000 + i}",
                    source_addr_ton=1,
                    source_addr_npi=1,
                    esm_class=0x04,
                    short_message=text,
                    tlvs=make_tlvs(receipted_message_id=mid, message_state=2),
                )
            ),
            7 * 86_400.0,
        )

    async def go() -> None:
        store = SqliteStore(db)
        await store.open()
        try:
            chunk = 2000
            starts = list(range(0, count, chunk))
            for k in range(0, len(starts), 8):
                await asyncio.gather(
                    *(
                        store.finish_inbound(
                            "", [pdu(i) for i in range(s, min(count, s + chunk))], now
                        )
                        for s in starts[k : k + 8]
                    )
                )
        finally:
            await store.close()

    asyncio.run(go())
    return 0


# =============================================================================================
# Building a big store by bulk SQL (a separate process)
# =============================================================================================

EPOCH_MS = 1_735_689_600_000  # gateway.store.ids: ids are ms since 2025 << 23


def build_entry(spec: str) -> int:
    """`--build "DB COUNT SPAN_DAYS NON_FINAL"`: the store's schema, then COUNT messages."""
    from gateway.store.sqlite import SqliteStore  # noqa: PLC0415

    db, count_text, span_text, non_final_text = spec.split(" ")
    count, span, non_final = int(count_text), float(span_text) * 86_400.0, int(non_final_text)

    async def migrate() -> None:
        store = SqliteStore(db)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    now = time.time()
    first_at = now - span
    step = span / count
    final_upto = count - non_final  # messages 1..final_upto end final
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    chunk = 100_000
    # x: 1..count. Final states by x mod 50: 45 delivered, 2 undeliverable, 1 each expired,
    # failed, unknown. Non-final (the newest): accepted (scheduled in a day), dispatching, sent.
    state_sql = (
        "CASE WHEN x > :final THEN (CASE x % 3 WHEN 0 THEN 'accepted' WHEN 1 THEN "
        "'dispatching' ELSE 'sent' END) ELSE (CASE WHEN x % 50 < 45 THEN 'delivered' "
        "WHEN x % 50 < 47 THEN 'undeliverable' WHEN x % 50 = 47 THEN 'expired' "
        "WHEN x % 50 = 48 THEN 'failed' ELSE 'unknown' END) END"
    )
    at_sql = ":first + x * :step"
    insert = f"""
        WITH RECURSIVE c(x) AS (SELECT :lo UNION ALL SELECT x + 1 FROM c WHERE x < :hi)
        INSERT INTO messages (id, account, source_addr, source_addr_ton, source_addr_npi,
            destination_addr, dest_addr_ton, dest_addr_npi, service_type, esm_class,
            protocol_id, priority_flag, registered_delivery, data_coding, short_message, tlvs,
            route, schedule_at, expires_at, accepted_at, state, updated_at, attempts, error,
            parts, claimed_by, sent_to, sent_ids, msg_class, campaign, sent_at)
        SELECT printf('%016x', ((CAST(({at_sql}) * 1000 AS INTEGER) - {EPOCH_MS}) << 23)
                              | (x & 8191)),
            'bench', 'Shop', 5, 0, '4915' || printf('%08d', (x * 7919) % 100000000), 1, 1, '',
            0, 0, 0, 1, 0,
            CAST(printf('%06d is your login code. Valid 10 min. Never share it.',
                        x % 1000000) AS BLOB),
            x'', 'all',
            CASE WHEN x > :final AND x % 3 = 0 THEN :now + 86400 END,
            NULL, {at_sql}, {state_sql},
            CASE WHEN x > :final THEN :now - 60 ELSE ({at_sql}) + 5 END,
            1, NULL, 1, CASE WHEN x > :final AND x % 3 = 1 THEN 0 END,
            'carrier', CAST(x AS TEXT), 'otp', '', ({at_sql}) + 1
        FROM c
    """
    params: dict[str, Any] = {"final": final_upto, "first": first_at, "step": step, "now": now}
    for lo in range(1, count + 1, chunk):
        hi = min(count, lo + chunk - 1)
        conn.execute("BEGIN")
        conn.execute(insert, {**params, "lo": lo, "hi": hi})
        conn.execute(  # the history as the store keeps it since migration 13: in the row
            "UPDATE messages SET trail = printf('%!.17g accepted;', accepted_at) || "
            "CASE WHEN state != 'accepted' THEN printf('%!.17g %s;', updated_at, state) "
            "ELSE '' END WHERE rowid BETWEEN ? AND ?",
            (lo, hi),
        )
        conn.execute(
            "INSERT INTO upstream_ids (upstream, key, message_id, part) "
            "SELECT 'carrier', sent_ids, id, 0 FROM messages WHERE rowid BETWEEN ? AND ? "
            "AND state NOT IN ('accepted', 'dispatching', 'failed')",
            (lo, hi),
        )
        conn.execute(
            "INSERT INTO receipts (message_id, part, upstream, upstream_id, message_state, "
            "error, received_at, raw) SELECT id, 0, 'carrier', sent_ids, "
            "CASE state WHEN 'delivered' THEN 2 ELSE 5 END, 0, updated_at, "
            "CAST('id:' || sent_ids || ' sub:001 dlvrd:001 stat:' || "
            "CASE state WHEN 'delivered' THEN 'DELIVRD' ELSE 'UNDELIV' END || ' err:000' "
            "AS BLOB) FROM messages WHERE rowid BETWEEN ? AND ? "
            "AND state IN ('delivered', 'undeliverable')",
            (lo, hi),
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return 0


def _counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("messages", "message_history", "upstream_ids", "receipts", "deliveries")
        }


# =============================================================================================
# Scenario A: queue, then drain
# =============================================================================================


def _queued_rows(db: Path) -> tuple[array.array[int], array.array[int]]:
    """(ids, digests of the PDU bodies) of app's SMPP deliveries, in id order (read-only)."""
    ids, digests = array.array("q"), array.array("Q")
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        for row_id, pdu in conn.execute(
            "SELECT id, pdu FROM deliveries WHERE account = 'app' AND channel = 'smpp' ORDER BY id"
        ):
            ids.append(row_id)
            digests.append(_digest(pdu[16:]))
    return ids, digests


def _queue_depth(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return int(conn.execute("SELECT count(*) FROM deliveries").fetchone()[0])


def _rss_points(samples: list[tuple[float, float]]) -> dict[str, Any]:
    if not samples:
        return {}
    values = [mb for _t, mb in samples]
    n = len(values)
    return {
        "start": values[0],
        "quarter": values[n // 4],
        "half": values[n // 2],
        "end": values[-1],
        "max": max(values),
        "samples": n,
    }


def run_queue_drain(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"scenario": "queue+drain"}
    db = tmp / "smsgw.sqlite3"
    if args.seeded:
        started = time.perf_counter()
        _child(["--seed", f"{db} {args.seeded}"], timeout=3600)
        result["seeded"] = args.seeded
        result["seed_seconds"] = round(time.perf_counter() - started, 1)
        print(f"  seeded {args.seeded:,} deliveries in {result['seed_seconds']} s", flush=True)
    carrier = Carrier()
    gateway = Gateway(tmp, db, carrier.port, window=args.window, retention_days=30)
    try:
        gateway.start()
        gateway.wait_listening()
        _wait_upstream(carrier)
        pid = gateway.pid
        rss: list[tuple[float, float]] = []
        if args.queued:
            q = _queue_through_pipeline(args, tmp, gateway, carrier, db, rss)
            result["queue"] = q
        depth = _queue_depth(db)
        result["queued_total"] = depth
        # Expected order: every queued row, read-only, before the receiver binds.
        ids, digests = _queued_rows(db)
        expected = len(ids)
        print(f"  {expected:,} deliveries queued; binding a receiver ...", flush=True)
        rss_before = _proc_rss_mb(pid)
        cpu0 = _proc_cpu(pid)
        spec = {
            "port": gateway.port,
            "expected": expected,
            "stall": args.stall,
            "settle": 2.0,
            "out": str(tmp / "receiver"),
        }
        spec_path = tmp / "receiver-spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        receiver = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--receiver", str(spec_path)],
            cwd=REPO_ROOT,
        )
        profiler = None
        if args.profile:
            profile_out = tmp / "drain.pyspy.txt"
            profiler = _profiler(pid, profile_out, False)
        drain_rss: list[tuple[float, float]] = []
        t0 = time.monotonic()
        while receiver.poll() is None:
            if time.monotonic() - t0 > 3600:
                receiver.kill()
                raise RuntimeError("the receiver ran over an hour")
            mb = _proc_rss_mb(pid)
            if mb is not None:
                drain_rss.append((time.monotonic() - t0, mb))
            time.sleep(1.0)
        cpu1 = _proc_cpu(pid)
        if profiler is not None:
            result["profile_summary"] = _stop_profiler(profiler, tmp / "drain.pyspy.txt")
        if receiver.returncode != 0:
            raise RuntimeError(f"the receiver failed: {receiver.returncode}")
        r = json.loads(Path(spec["out"] + ".json").read_text(encoding="utf-8"))
        times = array.array("d")
        times.frombytes(Path(spec["out"] + ".times").read_bytes())
        got = array.array("Q")
        got.frombytes(Path(spec["out"] + ".digests").read_bytes())
        result["drain"] = _drain_figures(ids, digests, times, got, r["t_bind"])
        result["drain"]["rss_mb_before"] = rss_before
        result["drain"]["rss_mb"] = _rss_points(drain_rss)
        result["drain"]["receiver_cpu_s"] = r["cpu_s"]
        if cpu0 is not None and cpu1 is not None and result["drain"]["received"]:
            result["drain"]["gateway_cpu_s_per_1000"] = (
                (cpu1 - cpu0) * 1000 / result["drain"]["received"]
            )
        result["loop_lag"] = {}
        result["gateway_exit"] = gateway.stop()
        d = result["drain"]
        if d.get("t_first_abs") is not None:
            result["loop_lag"] = _lag_summary(
                gateway.lag, d["t_first_abs"], d["t_last_abs"], None, None
            )
        result["left_in_store"] = _queue_depth(db)
        result["ok"] = True
    except Exception as exc:
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["gateway_log_tail"] = gateway.log_tail()
    finally:
        gateway.stop()
        carrier.close()
    return result


def _stop_profiler(profiler: subprocess.Popen[bytes], out: Path) -> dict[str, Any] | None:
    import signal  # noqa: PLC0415

    profiler.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        profiler.communicate(timeout=30)
    if profiler.poll() is None:
        profiler.kill()
    with contextlib.suppress(OSError):
        return summarise_pyspy(out)
    return None


def _queue_through_pipeline(  # noqa: PLR0917 - one call site, every part of the scenario
    args: argparse.Namespace,
    tmp: Path,
    gateway: Gateway,
    carrier: Carrier,
    db: Path,
    rss: list[tuple[float, float]],
) -> dict[str, Any]:
    """The app (TX only) submits `--queued` with receipts while the carrier sends a quarter
    as many MO to it: all of them queue. RSS every second until the queue stops growing."""
    before = _queue_depth(db)
    mo = args.queued // 4
    out = tmp / "transmitter.json"
    spec_path = tmp / "transmitter-spec.json"
    spec_path.write_text(
        json.dumps({"port": gateway.port, "messages": args.queued, "window": 256, "out": str(out)}),
        encoding="utf-8",
    )
    print(
        f"  queueing through the pipeline: {args.queued:,} submits with receipts, {mo:,} MO ...",
        flush=True,
    )
    t0 = time.monotonic()
    transmitter = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--transmitter", str(spec_path)],
        cwd=REPO_ROOT,
    )
    carrier.command(f"mo {mo} {MO_NUMBER}")
    target = before + args.queued + mo
    depth, last_change, last_depth = before, time.monotonic(), before
    while True:
        mb = _proc_rss_mb(gateway.pid)
        if mb is not None:
            rss.append((time.monotonic() - t0, mb))
        with contextlib.suppress(sqlite3.Error):
            depth = _queue_depth(db)
        now = time.monotonic()
        if depth != last_depth:
            last_depth, last_change = depth, now
        if depth >= target and transmitter.poll() is not None:
            break
        if now - last_change > args.stall:
            break
        time.sleep(1.0)
    seconds = time.monotonic() - t0
    transmitter.wait(30)
    t = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return {
        "submitted": t.get("submitted"),
        "accepted": t.get("accepted"),
        "mo_sent": mo,
        "queued": depth - before,
        "expected": args.queued + mo,
        "seconds": round(seconds, 1),
        "queued_per_s": (depth - before) / seconds if seconds else None,
        "rss_mb": _rss_points(rss),
        "rss_growth_quarter_to_end_pct": (
            (rss[-1][1] - rss[len(rss) // 4][1]) / rss[len(rss) // 4][1] * 100.0
            if len(rss) >= 4
            else None
        ),
    }


def _drain_figures(
    ids: array.array[int],
    digests: array.array[int],
    times: array.array[float],
    got: array.array[int],
    t_bind: float,
) -> dict[str, Any]:
    rank = {d: k for k, d in enumerate(digests)}
    seen = bytearray(len(ids))
    out_of_order = duplicates = unknown = 0
    highest = -1
    for d in got:
        k = rank.get(d)
        if k is None:
            unknown += 1
            continue
        if seen[k]:
            duplicates += 1
            continue
        seen[k] = 1
        if k < highest:
            out_of_order += 1
        else:
            highest = k
    received = len(got)
    missing = len(ids) - sum(seen)
    figures: dict[str, Any] = {
        "expected": len(ids),
        "received": received,
        "missing": missing,
        "duplicates": duplicates,
        "unknown": unknown,
        "out_of_order": out_of_order,
        "order": "by deliveries.id (queue id)",
    }
    if received:
        t_first, t_last = times[0], times[-1]
        figures["t_first_abs"], figures["t_last_abs"] = t_first, t_last
        figures["bind_to_first_ms"] = (t_first - t_bind) * 1000.0
        figures["seconds"] = t_last - t_first
        figures["per_s_overall"] = received / (t_last - t_first) if t_last > t_first else None
        figures["per_s_from_bind"] = received / (t_last - t_bind) if t_last > t_bind else None
        per_second: dict[int, int] = {}
        for t in times:
            s = int(t - t_first)
            per_second[s] = per_second.get(s, 0) + 1
        whole = [per_second.get(s, 0) for s in range(int(t_last - t_first))]  # whole seconds
        if whole:
            figures["per_s_median"] = statistics.median(whole)
            figures["per_s_min"] = min(whole)
            figures["per_s_max"] = max(whole)
        figures["per_s_timeline"] = whole
    return figures


# =============================================================================================
# Scenarios B and C: a big store starts, and purges
# =============================================================================================


def _build_store(args: argparse.Namespace, db: Path) -> dict[str, Any]:
    started = time.perf_counter()
    _child(
        ["--build", f"{db} {args.store_messages} {args.span_days} {args.non_final}"],
        timeout=7200,
    )
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {
        "messages": args.store_messages,
        "build_seconds": round(seconds, 1),
        "file_gb": round(size / 1e9, 2),
    }


async def _first_answers(port: int, deadline: float) -> tuple[float | None, float | None]:
    """Monotonic times of a bind_transceiver_resp and of the first submit_sm_resp."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_bind_pdu(CommandId.bind_transceiver, "bench", "bench", 1))
    t_bind = t_resp = None
    frames = FrameBuffer()
    pdu = build_workload("otp", 1, Path("."))[0]
    while t_resp is None and time.monotonic() < deadline:
        data = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
        if not data:
            break
        frames.feed(data)
        while (raw := frames.next_pdu()) is not None:
            _length, command_id, _status, seq = _HEAD.unpack_from(raw)
            if command_id == int(CommandId.bind_transceiver_resp):
                t_bind = time.monotonic()
                writer.write(pdu)
            elif command_id == _SUBMIT_SM_RESP:
                t_resp = time.monotonic()
            elif command_id == _DELIVER_SM:
                writer.write(_HEAD.pack(17, _DELIVER_SM_RESP, 0, seq) + b"\0")
    writer.close()
    return t_bind, t_resp


def _migrate(db: Path) -> float | None:
    """Bring a store built by an older schema up to date (the upgrade's one-off start-up
    work: new indexes read the table once); its seconds, None when it was up to date."""
    from gateway.store.sqlite import MIGRATIONS, SqliteStore  # noqa: PLC0415

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version >= len(MIGRATIONS):
        return None

    async def migrate() -> None:
        store = SqliteStore(db)
        await store.open()
        await store.close()

    started = time.perf_counter()
    asyncio.run(migrate())
    return time.perf_counter() - started


def run_start(args: argparse.Namespace, tmp: Path, db: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"scenario": "start", "runs": []}
    migrated = _migrate(db)
    if migrated is not None:
        result["upgrade_migration_s"] = migrated
        print(f"  the store's schema was older: migrated once in {migrated:.1f} s", flush=True)
    carrier = Carrier()
    try:
        for k in range(args.starts):
            run_tmp = tmp / f"start{k}"
            run_tmp.mkdir(exist_ok=True)
            gateway = Gateway(run_tmp, db, carrier.port, window=64, retention_days=3650)
            try:
                gateway.start()
                listening = gateway.wait_listening(120.0)
                t_bind, t_resp = asyncio.run(_first_answers(gateway.port, time.monotonic() + 120.0))
                run: dict[str, Any] = {
                    "listening_s": listening,
                    "bind_s": None if t_bind is None else t_bind - gateway.started,
                    "first_submit_resp_s": None if t_resp is None else t_resp - gateway.started,
                    "rss_mb": _proc_rss_mb(gateway.pid),
                }
            except Exception as exc:
                run = {"error": f"{type(exc).__name__}: {exc}", "log": gateway.log_tail()}
            finally:
                gateway.stop()
            print(f"  start {k + 1}: {run}", flush=True)
            result["runs"].append(run)
        ok = [r for r in result["runs"] if "listening_s" in r]
        for key in ("listening_s", "bind_s", "first_submit_resp_s"):
            values = [r[key] for r in ok if r.get(key) is not None]
            if values:
                result[key] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
        result["ok"] = bool(ok)
    finally:
        carrier.close()
    return result


def run_purge(args: argparse.Namespace, tmp: Path, db: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"scenario": "purge"}
    before = _counts(db)
    result["rows_before"] = before
    carrier = Carrier()
    run_tmp = tmp / "purge"
    run_tmp.mkdir(exist_ok=True)
    gateway = Gateway(
        run_tmp,
        db,
        carrier.port,
        window=64,
        retention_days=max(1, int(args.span_days / 2)),
        watch=args.watch,
    )
    rounds: list[dict[str, Any]] = []
    try:
        gateway.start()
        gateway.wait_listening(120.0)
        t_listen = time.monotonic()
        _wait_upstream(carrier)
        purged: dict[str, Any] | None = None
        profiler = None
        if args.profile:
            profiler = _profiler(gateway.pid, run_tmp / "purge.pyspy.txt", False)
        while purged is None:
            rounds.append(_paced_round(gateway.port, run_tmp, len(rounds), args))
            purged = _purged_line(gateway.log_path)
            if time.monotonic() - t_listen > args.max_purge:
                break
        t_purged = time.monotonic()
        # The same load once the purge is over: what the rounds above compare with.
        after = [
            _paced_round(gateway.port, run_tmp, len(rounds) + k, args)
            for k in range(args.after_rounds)
        ]
        if profiler is not None:
            result["profile_summary"] = _stop_profiler(profiler, run_tmp / "purge.pyspy.txt")
        t_end = time.monotonic()
        result["gateway_exit"] = gateway.stop()
        keys = ("p50", "p99", "max", "accepted", "t0_abs")
        result["rounds"] = [{k: r[k] for k in keys} for r in rounds]
        result["rounds_after"] = [{k: r[k] for k in keys} for r in after]
        if purged is not None:
            result["purged_rows"] = purged["rows"]
            result["purge_seconds"] = purged["seconds"]
            result["purge_rows_per_s"] = purged["rows"] / max(purged["seconds"], 1e-9)
        result["loop_lag"] = _lag_summary(gateway.lag, t_listen, t_purged, None, None)
        result["loop_lag_after"] = _lag_summary(gateway.lag, t_purged, t_end, None, None)
        if gateway.stalls is not None:
            result["stalls"] = _stalls(gateway.stalls, t_listen, t_purged, t_end)
        for key, group in (("resp_p99_ms", rounds), ("resp_p99_ms_after", after)):
            timed = [r for r in group if r["p99"] is not None]
            if timed:
                result[key] = {
                    "median_of_rounds": statistics.median(r["p99"] for r in timed),
                    "worst_round": max(r["p99"] for r in timed),
                    "p50_median": statistics.median(r["p50"] for r in timed),
                    "max_ms": max(r["max"] for r in timed),
                    "rounds": len(timed),
                }
        result["rows_after"] = _counts(db)
        result["ok"] = purged is not None
        if purged is None:
            result["error"] = f"no purge finished within {args.max_purge:.0f} s"
    except Exception as exc:
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["gateway_log_tail"] = gateway.log_tail()
    finally:
        gateway.stop()
        carrier.close()
    return result


def _stalls(path: Path, t_listen: float, t_purged: float, t_end: float) -> dict[str, Any]:
    """The watchdog's stalls, during the purge and after it."""
    try:
        stalls = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": repr(exc)}
    for stall in stalls:
        stall["start_up"] = any(_start_up(look["main"]) for look in stall["looks"])
    out: dict[str, Any] = {
        "during": [s for s in stalls if t_listen <= s["at"] < t_purged],
        "after": [s for s in stalls if t_purged <= s["at"] <= t_end],
    }
    for when in ("during", "after"):
        others = [s["lag_ms"] for s in out[when] if not s["start_up"] and "lag_ms" in s]
        out[f"worst_{when}_not_start_up_ms"] = max(others, default=0.0)
    return out


def _start_up(stack: list[str]) -> bool:
    """A loop stack of the gateway's start-up: `serve`'s own body running (its collection of
    start-up garbage; once serving it waits), or a module imported on first use."""
    ours = [frame for frame in stack if not frame.startswith("backlog.py:")]  # (gc callback)
    serving = bool(ours) and ours[0].startswith("app.py:") and ours[0].endswith(" run")
    return serving or any("importlib" in frame for frame in stack)


def _purged_line(log_path: Path) -> dict[str, Any] | None:
    """The gateway's `purged` log line: rows, and its own timing of the purge."""
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            found = _PURGED.search(line)
            if found:
                return {"rows": int(found["rows"]), "seconds": float(found["seconds"])}
    return None


_PURGED = re.compile(r"purged\W.*?rows\W+(?P<rows>\d+).*?seconds\W+(?P<seconds>[\d.]+)")


def _paced_round(port: int, tmp: Path, k: int, args: argparse.Namespace) -> dict[str, Any]:
    """e2e.py's load client for one round: 200 submit_sm/s for 5 s, with receipts."""
    out = tmp / f"round{k}.json"
    spec = ClientSpec(
        host="127.0.0.1",
        port=port,
        messages=int(args.purge_rate * 5),
        binds=1,
        window=64,
        rate=args.purge_rate,
        workload="otp",
        corpus=".",
        stall=20.0,
        max_wait=10.0,
        result_path=str(out),
    )
    spec_path = tmp / f"round{k}-spec.json"
    spec_path.write_text(json.dumps(spec.__dict__), encoding="utf-8")
    subprocess.run(
        [sys.executable, str(E2E), "--client", str(spec_path)],
        cwd=REPO_ROOT,
        timeout=120,
        check=True,
    )
    r = json.loads(out.read_text(encoding="utf-8"))
    lat = r["submit_to_resp_ms"]
    return {
        "p50": lat["p50"],
        "p99": lat["p99"],
        "max": lat["max"],
        "accepted": r["accepted"],
        "t0_abs": r["t0_abs"],
    }


# =============================================================================================
# Driver
# =============================================================================================


def _child(argv: list[str], timeout: float) -> None:
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        cwd=REPO_ROOT,
        check=True,
        timeout=timeout,
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, < 1 min")
    parser.add_argument("--only", default="queue,drain,start,purge")
    parser.add_argument("--queued", type=int, default=None, help="through the pipeline (50,000)")
    parser.add_argument("--seeded", type=int, default=None, help="seeded deliveries (1,000,000)")
    parser.add_argument("--window", type=int, default=512, help="the app's window (drain)")
    parser.add_argument("--store-messages", type=int, default=None, help="(10,000,000)")
    parser.add_argument("--store-path", type=Path, default=None, help="reuse (or build) here")
    parser.add_argument("--keep-store", action="store_true", help="do not delete the store")
    parser.add_argument("--span-days", type=float, default=60.0)
    parser.add_argument("--non-final", type=int, default=3000)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--purge-rate", type=float, default=200.0, help="msg/s during the purge")
    parser.add_argument("--max-purge", type=float, default=1800.0)
    parser.add_argument(
        "--after-rounds", type=int, default=3, help="rounds of 5 s at the same load after the purge"
    )
    parser.add_argument("--stall", type=float, default=20.0)
    parser.add_argument("--profile", action="store_true", help="py-spy on drain and purge")
    parser.add_argument(
        "--watch", action="store_true", help="the purge's gateway with a watchdog of its stalls"
    )
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--receiver", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--transmitter", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--build", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--watched", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.queued is None:
        args.queued = 5_000 if args.quick else 50_000
    if args.seeded is None:
        args.seeded = 20_000 if args.quick else 1_000_000
    if args.store_messages is None:
        args.store_messages = 200_000 if args.quick else 10_000_000
    if args.quick:
        args.starts = min(args.starts, 2)
        args.non_final = min(args.non_final, 300)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    for flag, entry in (
        (args.receiver, receiver_entry),
        (args.transmitter, transmitter_entry),
        (args.seed, seed_entry),
        (args.build, build_entry),
        (args.watched, watched_entry),
    ):
        if flag:
            return entry(flag)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    meta: dict[str, Any] = {
        "command": " ".join(["bench/backlog.py", *(argv or sys.argv[1:])]),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_start": _load(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    meta["cpu_model"], meta["cpu_mhz"] = _cpu_facts()
    tmp = Path(tempfile.mkdtemp(prefix="smsgw-backlog-"))
    meta["fsync_ms"] = _fsync_latency(str(tmp))
    print(
        f"smsgw backlog: commit {meta['commit']}, Python {meta['python']}, {meta['cpus']} CPUs "
        f"({meta['cpu_model']}), load {meta['load_start']}; fsync p50 {meta['fsync_ms']['p50']} "
        f"ms",
        flush=True,
    )
    results: dict[str, Any] = {}
    try:
        if wanted & {"queue", "drain"}:
            if "queue" not in wanted:
                args.queued = 0
            if "drain" not in wanted:
                print("note: the drain runs with the queue (it is how the queue is checked)")
            print(
                f"- queue + drain: {args.queued:,} through the pipeline, "
                f"{args.seeded:,} seeded ...",
                flush=True,
            )
            qd_tmp = tmp / "queue"
            qd_tmp.mkdir()
            results["queue_drain"] = run_queue_drain(args, qd_tmp)
            shutil.rmtree(qd_tmp, ignore_errors=True)
        if wanted & {"start", "purge"}:
            db = args.store_path or tmp / "big" / "smsgw.sqlite3"
            db.parent.mkdir(parents=True, exist_ok=True)
            if not db.exists():
                print(f"- building a store of {args.store_messages:,} messages ...", flush=True)
                results["store"] = _build_store(args, db)
                print(f"  {results['store']}", flush=True)
            else:
                results["store"] = {"reused": str(db)}
            results["store"]["rows"] = _counts(db)
            if "start" in wanted:
                print(f"- start: serve on it, {args.starts} times ...", flush=True)
                results["start"] = run_start(args, tmp, db)
            if "purge" in wanted:
                print("- purge: the oldest half, under a paced load ...", flush=True)
                results["purge"] = run_purge(args, tmp, db)
            if not args.keep_store and args.store_path is not None:
                for path in db.parent.glob(db.name + "*"):
                    path.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    meta["load_end"] = _load()
    print()
    print(_report(results))
    print(f"\nload average: {meta['load_start']} at start, {meta['load_end']} at end")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "results": results}, indent=2, default=str),
            encoding="utf-8",
        )
        print(f"figures written to {args.json}")
    return 0 if all(r.get("ok", True) for r in results.values()) else 1


def _report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    qd = results.get("queue_drain")
    if qd:
        if not qd.get("ok"):
            lines.append(f"queue + drain FAILED: {qd.get('error')}\n{qd.get('gateway_log_tail')}")
        else:
            q = qd.get("queue")
            if q:
                rss = q["rss_mb"]
                lines.append(
                    "| queue (pipeline) | expected | queued | s | queued/s "
                    "| RSS MB start / ¼ / ½ / end / max |"
                )
                lines.append("|---|---:|---:|---:|---:|---|")
                lines.append(
                    f"| {q['submitted']:,} submits + {q['mo_sent']:,} MO | {q['expected']:,} "
                    f"| {q['queued']:,} | {q['seconds']} | {_fmt(q['queued_per_s'])} "
                    f"| {_fmt(rss.get('start'), '.0f')} / {_fmt(rss.get('quarter'), '.0f')} / "
                    f"{_fmt(rss.get('half'), '.0f')} / {_fmt(rss.get('end'), '.0f')} / "
                    f"{_fmt(rss.get('max'), '.0f')} |"
                )
                lines.append("")
            d = qd["drain"]
            rss = d.get("rss_mb") or {}
            lines.append(
                "| drain | queued | received | per s overall | per s median (min-max) "
                "| bind -> first ms | out of order | dup | missing | gateway CPU s /1k "
                "| RSS MB before / ¼ / end / max | loop lag worst ms |"
            )
            lines.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|")
            lines.append(
                f"| {qd.get('seeded', 0):,} seeded + {(qd.get('queue') or {}).get('queued', 0):,} "
                f"pipeline | {d['expected']:,} | {d['received']:,} "
                f"| {_fmt(d.get('per_s_overall'))} "
                f"| {_fmt(d.get('per_s_median'))} ({_fmt(d.get('per_s_min'))}-"
                f"{_fmt(d.get('per_s_max'))}) | {_fmt(d.get('bind_to_first_ms'), '.0f')} "
                f"| {d['out_of_order']:,} | {d['duplicates']:,} | {d['missing']:,} "
                f"| {_fmt(d.get('gateway_cpu_s_per_1000'), '.3f')} "
                f"| {_fmt(d.get('rss_mb_before'), '.0f')} / {_fmt(rss.get('quarter'), '.0f')} / "
                f"{_fmt(rss.get('end'), '.0f')} / {_fmt(rss.get('max'), '.0f')} "
                f"| {_fmt((qd.get('loop_lag') or {}).get('worst_under_load_ms'), '.1f')} |"
            )
            lines.append(f"left in the store after the drain: {qd.get('left_in_store')}")
            lines.append("")
    st = results.get("store")
    if st:
        lines.append(f"store: {st}")
    s = results.get("start")
    if s:
        lines.append("| start | listening s | bind s | first submit_sm_resp s |")
        lines.append("|---|---|---|---|")

        def spread(v: dict[str, float] | None) -> str:
            if not v:
                return "–"
            return f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"

        if s.get("upgrade_migration_s") is not None:
            lines.append(f"(first, the upgrade's migration: {s['upgrade_migration_s']:.1f} s)")
        lines.append(
            f"| {len(s['runs'])} runs, median (min-max) | {spread(s.get('listening_s'))} "
            f"| {spread(s.get('bind_s'))} | {spread(s.get('first_submit_resp_s'))} |"
        )
        lines.append("")
    p = results.get("purge")
    if p:
        if not p.get("ok"):
            lines.append(f"purge FAILED: {p.get('error')}")
        lines.append(
            "| purge | rows purged | s | rows/s | worst loop lag ms | resp p50 ms (median of "
            "rounds) | resp p99 ms (median of rounds / worst round) | resp max ms |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---|---:|")
        for label, lag_key, resp_key in (
            ("during the purge (oldest half)", "loop_lag", "resp_p99_ms"),
            ("after it, the same load", "loop_lag_after", "resp_p99_ms_after"),
        ):
            lag = p.get(lag_key) or {}
            resp = p.get(resp_key) or {}
            during = lag_key == "loop_lag"
            lines.append(
                f"| {label} | {_fmt(p.get('purged_rows')) if during else ''} "
                f"| {_fmt(p.get('purge_seconds'), '.1f') if during else ''} "
                f"| {_fmt(p.get('purge_rows_per_s')) if during else ''} "
                f"| {_fmt(lag.get('worst_under_load_ms'), '.1f')} "
                f"| {_fmt(resp.get('p50_median'), '.1f')} "
                f"| {_fmt(resp.get('median_of_rounds'), '.1f')} / "
                f"{_fmt(resp.get('worst_round'), '.1f')} "
                f"| {_fmt(resp.get('max_ms'), '.0f')} |"
            )
    stalls = (p or {}).get("stalls") or {}
    for when in ("during", "after"):
        if when in stalls:
            lines.append(
                f"\nstalls > {WATCH_STALL * 1000:.0f} ms {when} the purge (watchdog): "
                f"{len(stalls[when])}, {sum(s['start_up'] for s in stalls[when])} of them the "
                f"start-up's; the worst of the others "
                f"{stalls[f'worst_{when}_not_start_up_ms']:.1f} ms"
            )
        for stall in stalls.get(when, []):
            look = (stall.get("looks") or [{}])[0]
            lines.append(
                f"  {_fmt(stall.get('lag_ms'), '.1f')} ms{' (start-up)' * stall['start_up']} "
                f"(load {stall.get('load')}): loop "
                f"thread on CPU {_fmt(stall.get('main_cpu_ms'), '.1f')} ms, waiting for a CPU "
                f"{_fmt(stall.get('main_runqueue_ms'), '.1f')} ms; writer on CPU "
                f"{_fmt(stall.get('writer_cpu_ms'), '.1f')} ms, waiting "
                f"{_fmt(stall.get('writer_runqueue_ms'), '.1f')} ms; watchdog waiting "
                f"{_fmt(stall.get('watchdog_runqueue_ms'), '.1f')} ms; garbage collections "
                f"{stall.get('collections_ms')} ms; states "
                f"{''.join(x.get('main_state', '?') for x in stall.get('looks', []))} / "
                f"{''.join(x.get('writer_state', '?') for x in stall.get('looks', []))}"
            )
            lines.append(f"    loop:   {' < '.join(look.get('main', [])[:4])}")
            lines.append(f"    writer: {' < '.join(look.get('writer', [])[:4])}")
    for key in ("queue_drain", "purge"):
        summary = (results.get(key) or {}).get("profile_summary")
        if summary:
            lines.append(f"\nprofile of the gateway ({key}): {summary['samples']:,} samples")
            for name, pct in summary["threads"]:
                lines.append(f"  {pct:5.1f}%  {name}")
            for kind in ("self", "inclusive"):
                lines.append(f"  top functions ({kind}):")
                lines.extend(f"    {pct:5.1f}%  {name}" for name, pct in summary[kind][:12])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
