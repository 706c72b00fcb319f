"""Many binds: N application binds on one gateway, idle and then each sending R messages/s.

Usage (from the repository root):

    .venv/bin/python bench/binds.py                        # 1,000 binds, 1 msg/s each, 30 s
    .venv/bin/python bench/binds.py --binds 200 --duration 10 --json /tmp/binds.json
    .venv/bin/python bench/binds.py --steps 100,500 --idle 20 --no-load   # memory only

Issue 13, item 4. Built from bench/e2e.py's pieces: the gateway runs as
``bench/e2e.py --gateway CONFIG`` (``smsgw serve`` with its 5 ms loop-lag timer) on e2e's
configuration (SQLite store in a temporary directory, durable before every submit_sm_resp; one
account, here with ``max_binds`` above N and no throughput limit; one upstream of 4 binds to
``bench/fake_carrier.py``, which answers every submit_sm and sends its receipt). The load client
is one asyncio process (uvloop) of e2e's client connections (``--client``, started by this
file, talking to it over stdin/stdout); RLIMIT_NOFILE is raised to its hard limit first, for
every process.

1. **Idle.** The client binds 10 transceivers and unbinds them (the gateway's first-bind costs:
   imports, caches), then the gateway's RSS (``VmRSS``, the median of 3 readings 0.5 s apart,
   after 2 s of rest) is taken with 0 binds, and again with each of ``--steps`` and N idle
   transceiver binds bound. The binds send nothing but an enquire_link each
   ``--enquire-link`` seconds (spread evenly over the binds, as clients do); each level is held
   ``--idle`` seconds, over which the gateway's CPU is measured (what idle binds cost it:
   timers, polling). Memory per idle bind = (RSS_n - RSS_0) / n.
2. **Load.** Every bind sends R submit_sm a second (registered_delivery=1, one-part OTP texts,
   each with its own source_addr) for ``--duration`` seconds: message i goes to bind i mod N at
   t0 + i / (N R), so the binds' starts are spread evenly over a second and the total is a
   smooth N R messages/s. The client answers every deliver_sm, matches receipts by
   receipted_message_id, and waits for the missing ones (``--stall`` s without progress).

Reported: RSS and KB per idle bind at each level against the 50 KB target, idle CPU; under
load accepted/s, receipts, missing, duplicates (at the carrier and at the client), p50/p99/max
submit -> submit_sm_resp and submit -> receipt, the client's send lag, gateway CPU s per 1,000
messages and % of one core (utime + stime from /proc, its children included), RSS during the
load, and the gateway's worst event-loop lag under load. The machine is shared: the load
average at start and end is printed and kept in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import (
    DEFAULT_CORPUS,
    GATEWAY_CONFIG,
    REPO_ROOT,
    SQLITE_STORE,
    Carrier,
    ClientConnection,
    ClientSpec,
    ClientState,
    _db_states,
    _fmt,
    _free_port,
    _git_commit,
    _lag_summary,
    _load,
    _proc_cpu,
    _proc_rss_mb,
    _stop,
    _wait_listening,
    build_workload,
    open_bind,
    run_load,
)

E2E = Path(__file__).resolve().parent / "e2e.py"
TARGET_KB = 50.0  # issue 13, item 4: memory per idle bind
WARM_BINDS = 10
BIND_CONCURRENCY = 50  # connects + binds in flight at once


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the children); the new limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# =============================================================================================
# The load client (its own process: `binds.py --client SPEC.json`), driven over stdin/stdout
# =============================================================================================


@dataclass
class BindsSpec:
    host: str
    port: int
    binds: int
    steps: list[int]
    rate: float  # per bind, messages/s
    duration: float
    load: bool
    enquire_link: float
    workload: str
    corpus: str
    stall: float
    max_wait: float
    result_path: str
    window: int = 64


def _say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


async def _wait_go() -> None:
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit("the harness went away")


async def _bind_up_to(
    state: ClientState, spec: ClientSpec, conns: list[ClientConnection], count: int
) -> None:
    """Open binds until `count` are up, `BIND_CONCURRENCY` at a time."""
    gate = asyncio.Semaphore(BIND_CONCURRENCY)

    async def one() -> ClientConnection:
        async with gate:
            return await open_bind(state, spec, paced=True)

    conns.extend(await asyncio.gather(*(one() for _ in range(count - len(conns)))))


async def _unbind(conns: list[ClientConnection]) -> None:
    for conn in conns:
        conn.send_unbind()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.unbound for c in conns)), 5)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()


async def _enquire_links(conns: list[ClientConnection], interval: float) -> None:
    """An enquire_link on each bind every `interval` s, spread evenly over the binds."""
    k = 0
    while True:
        if conns:
            conns[k % len(conns)].send_enquire_link()
            k += 1
            await asyncio.sleep(interval / len(conns))
        else:
            await asyncio.sleep(interval)


async def _client_main(spec: BindsSpec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = max(1, round(spec.binds * spec.rate * spec.duration)) if spec.load else 1
    started = time.perf_counter()
    pdus = build_workload(spec.workload, total, Path(spec.corpus))
    build_seconds = time.perf_counter() - started
    state = ClientState(pdus, loop)
    state.build_seconds = build_seconds
    client = ClientSpec(
        host=spec.host,
        port=spec.port,
        messages=total,
        binds=spec.binds,
        window=spec.window,
        rate=spec.binds * spec.rate,
        workload=spec.workload,
        corpus=spec.corpus,
        stall=spec.stall,
        max_wait=spec.max_wait,
        result_path=spec.result_path,
    )
    warm: list[ClientConnection] = []
    await _bind_up_to(state, client, warm, WARM_BINDS)
    await _unbind(warm)
    _say(bound=0)
    await _wait_go()
    conns: list[ClientConnection] = []
    pinger = loop.create_task(_enquire_links(conns, spec.enquire_link))
    bind_seconds: dict[int, float] = {}
    for level in [*spec.steps, spec.binds]:
        t = time.monotonic()
        await _bind_up_to(state, client, conns, level)
        bind_seconds[level] = time.monotonic() - t
        _say(bound=len(conns), seconds=bind_seconds[level])
        await _wait_go()
    result: dict[str, Any] = {"bind_seconds": bind_seconds, "connections_lost_idle": 0}
    result["connections_lost_idle"] = state.connections_lost
    if spec.load:
        _say(loading=True)
        result.update(await run_load(state, conns, client))
        _say(loaded=True)
        await _wait_go()
    pinger.cancel()
    await _unbind(conns)
    return result


def client_entry(spec_path: str) -> int:
    spec = BindsSpec(**json.loads(Path(spec_path).read_text(encoding="utf-8")))
    raise_nofile()
    import uvloop  # noqa: PLC0415 - the client process only

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_client_main(spec))
    Path(spec.result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


# =============================================================================================
# The harness
# =============================================================================================


class Client:
    """The load client process and its line protocol (JSON lines out, "go" in)."""

    def __init__(self, spec_path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--client", str(spec_path)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if ready:
                line = stdout.readline()
                if not line:
                    break
                said: dict[str, Any] = json.loads(line)
                if key in said:
                    return said
            elif self.proc.poll() is not None:
                break
        raise RuntimeError(f"the load client did not say {key!r} (exit {self.proc.poll()})")

    def go(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(b"go\n")
        stdin.flush()


def _rss_kb(pid: int) -> float:
    """The median of 3 VmRSS readings 0.5 s apart, in KiB."""
    readings = []
    for i in range(3):
        if i:
            time.sleep(0.5)
        mb = _proc_rss_mb(pid)
        if mb is None:
            raise RuntimeError("the gateway is gone")
        readings.append(mb * 1024.0)
    return statistics.median(readings)


def _idle_level(pid: int, binds: int, rest: float, hold: float) -> dict[str, Any]:
    """RSS after `rest` s, and the gateway's CPU over the next `hold` s, with `binds` bound."""
    time.sleep(rest)
    rss = _rss_kb(pid)
    cpu0, t0 = _proc_cpu(pid, children=True), time.monotonic()
    time.sleep(hold)
    cpu1, t1 = _proc_cpu(pid, children=True), time.monotonic()
    cpu = (cpu1 or 0.0) - (cpu0 or 0.0)
    return {"binds": binds, "rss_kb": rss, "idle_cpu_pct": 100.0 * cpu / (t1 - t0)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="smsgw-binds-"))
    carrier: Carrier | None = None
    gateway: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    gateway_log: IO[bytes] | None = None
    lag_path = tmp / "gateway-lag.json"
    result: dict[str, Any] = {}
    try:
        carrier = Carrier()
        port = _free_port()
        config = tmp / "gateway.yaml"
        config.write_text(
            GATEWAY_CONFIG.format(
                port=port,
                binds=args.binds + WARM_BINDS,
                window=args.window,
                carrier_port=carrier.port,
                upstream_binds=args.upstream_binds,
                upstream_window=512,
                store=SQLITE_STORE.format(db=tmp / "smsgw.sqlite3", store_writer="thread"),
                metrics="true",
                policy="",
                http_port=_free_port(),
                mqtt="",
            ),
            encoding="utf-8",
        )
        command = [sys.executable, str(E2E), "--gateway", str(config), "--lag-out", str(lag_path)]
        gateway_log = (tmp / "gateway.log").open("wb")
        gateway = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=gateway_log, stderr=subprocess.STDOUT
        )
        _wait_listening(port, gateway, 20.0)
        deadline = time.monotonic() + 15.0
        while carrier.command("stats")["binds"] < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not bind to the fake carrier")
            time.sleep(0.05)
        carrier.command("reset")
        pid = gateway.pid
        spec = BindsSpec(
            host="127.0.0.1",
            port=port,
            binds=args.binds,
            steps=[s for s in args.steps if 0 < s < args.binds],
            rate=args.rate,
            duration=args.duration,
            load=args.load,
            enquire_link=args.enquire_link,
            workload=args.workload,
            corpus=str(args.corpus),
            stall=args.stall,
            max_wait=args.max_wait,
            result_path=str(tmp / "client.json"),
            window=args.window,
        )
        spec_path = tmp / "client-spec.json"
        spec_path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
        client = Client(spec_path)
        client.expect("bound", 120.0)  # the warm-up binds came and went
        levels = [_idle_level(pid, 0, 2.0, args.idle)]
        print(f"  0 binds: RSS {levels[0]['rss_kb'] / 1024:.1f} MB", flush=True)
        for _ in [*spec.steps, spec.binds]:
            client.go()
            said = client.expect("bound", 120.0)
            level = _idle_level(pid, said["bound"], 2.0, args.idle)
            level["bind_seconds"] = said["seconds"]
            base = levels[0]["rss_kb"]
            level["kb_per_bind"] = (level["rss_kb"] - base) / max(1, level["binds"])
            levels.append(level)
            print(
                f"  {level['binds']:,} idle binds: RSS {level['rss_kb'] / 1024:.1f} MB, "
                f"{level['kb_per_bind']:.1f} KB a bind, idle CPU {level['idle_cpu_pct']:.1f} %",
                flush=True,
            )
        result["idle"] = levels
        if len(levels) > 2:  # the slope between the first and the last level
            a, b = levels[1], levels[-1]
            result["kb_per_bind_marginal"] = (b["rss_kb"] - a["rss_kb"]) / (b["binds"] - a["binds"])
        rss_samples: list[float] = []
        if args.load:
            client.go()
            client.expect("loading", 30.0)
            cpu0, t0 = _proc_cpu(pid, children=True), time.monotonic()
            print(
                f"  load: {args.binds:,} binds x {args.rate:g} msg/s for {args.duration:g} s ...",
                flush=True,
            )
            hard = time.monotonic() + args.duration + args.max_wait + 2 * args.stall + 60.0
            stdout = client.proc.stdout
            assert stdout is not None
            while True:  # sample RSS every second until the client says it is done
                ready, _, _ = select.select([stdout], [], [], 1.0)
                if ready:
                    line = stdout.readline()
                    if not line or "loaded" in json.loads(line):
                        break
                mb = _proc_rss_mb(pid)
                if mb is not None:
                    rss_samples.append(mb)
                if time.monotonic() > hard or client.proc.poll() is not None:
                    raise RuntimeError("the load client did not finish in time")
            cpu1, t1 = _proc_cpu(pid, children=True), time.monotonic()
            result["gateway_cpu_s"] = (cpu1 or 0.0) - (cpu0 or 0.0)
            result["load_wall_s"] = t1 - t0
            result["rss_after_load_kb"] = _rss_kb(pid)
        client.go()
        if client.proc.wait(60) != 0:
            raise RuntimeError(f"the load client failed with exit code {client.proc.returncode}")
        result.update(json.loads((tmp / "client.json").read_text(encoding="utf-8")))
        if args.load:
            accepted = max(1, result["accepted"])
            result["gateway_cpu_s_per_1000"] = result["gateway_cpu_s"] * 1000 / accepted
            result["gateway_cpu_pct"] = 100.0 * result["gateway_cpu_s"] / result["load_wall_s"]
            result["client_cpu_s_per_1000"] = result["client_cpu_s"] * 1000 / accepted
            if rss_samples:
                result["rss_load_mb"] = {"max": max(rss_samples), "end": rss_samples[-1]}
            result["carrier"] = carrier.command("stats")
        result["gateway_exit"] = _stop(gateway, 30.0)
        if args.load:
            result["store_states"] = _db_states(tmp / "smsgw.sqlite3")
            result["loop_lag"] = _lag_summary(
                lag_path, result["t0_abs"], result["t_end_abs"], None, None
            )
        result["ok"] = True
    except Exception as exc:
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        log_path = tmp / "gateway.log"
        if log_path.exists():
            result["gateway_log_tail"] = log_path.read_text(errors="replace")[-2000:]
    finally:
        if client is not None and client.proc.poll() is None:
            client.proc.kill()
            client.proc.wait(5)
        _stop(gateway, 10.0)
        if gateway_log is not None:
            gateway_log.close()
        if carrier is not None:
            carrier.close()
        if args.keep:
            result["tmp"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _report(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [
        "| idle binds | gateway RSS MB | KB a bind (from 0) | idle gateway CPU % | bind time s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for level in r["idle"]:
        lines.append(
            f"| {level['binds']:,} | {level['rss_kb'] / 1024:.1f} "
            f"| {_fmt(level.get('kb_per_bind'), '.1f')} | {level['idle_cpu_pct']:.1f} "
            f"| {_fmt(level.get('bind_seconds'), '.2f')} |"
        )
    if "kb_per_bind_marginal" in r:
        lines.append(
            f"\nmarginal KB a bind between {r['idle'][1]['binds']:,} and "
            f"{r['idle'][-1]['binds']:,} binds: {r['kb_per_bind_marginal']:.1f}"
        )
    if args.load:
        resp, rcpt, lag = r["submit_to_resp_ms"], r["submit_to_receipt_ms"], r["loop_lag"]
        send_lag = r.get("send_lag_ms") or {}
        lines += [
            "",
            "| load | value |",
            "|---|---:|",
            f"| binds x msg/s each x s | {args.binds:,} x {args.rate:g} x {args.duration:g} |",
            f"| submitted / accepted | {r['submitted']:,} / {r['accepted']:,} |",
            f"| accepted/s | {_fmt(r['accepted_per_s'])} |",
            f"| receipts back / missing | {r['receipts']:,} / {r['missing_receipts']:,} |",
            f"| duplicates at carrier / at client | {r['carrier']['duplicates']:,} / "
            f"{r['duplicate_receipts']:,} |",
            f"| submit -> resp p50 / p99 / max ms | {_fmt(resp['p50'], '.1f')} / "
            f"{_fmt(resp['p99'], '.1f')} / {_fmt(resp['max'], '.0f')} |",
            f"| submit -> receipt p50 / p99 / max ms | {_fmt(rcpt['p50'], '.1f')} / "
            f"{_fmt(rcpt['p99'], '.1f')} / {_fmt(rcpt['max'], '.0f')} |",
            f"| client send lag p99 ms | {_fmt(send_lag.get('p99'), '.1f')} |",
            f"| gateway CPU s per 1,000 | {r['gateway_cpu_s_per_1000']:.3f} |",
            f"| gateway CPU % of a core | {r['gateway_cpu_pct']:.1f} |",
            f"| gateway RSS MB max / after | {r.get('rss_load_mb', {}).get('max', 0):.1f} / "
            f"{r['rss_after_load_kb'] / 1024:.1f} |",
            f"| gateway worst loop lag ms (> 10 ms) | {lag.get('worst_under_load_ms', 0):.1f} "
            f"({lag.get('over_10ms_under_load', 0)}) |",
            f"| client CPU s per 1,000 | {r['client_cpu_s_per_1000']:.3f} |",
            f"| connections lost | {r['connections_lost']} |",
        ]
    last = r["idle"][-1]
    ok = last["kb_per_bind"] <= TARGET_KB
    lines.append(
        f"\n- memory per idle bind <= {TARGET_KB:.0f} KB: {last['kb_per_bind']:.1f} KB at "
        f"{last['binds']:,} binds -> {'met' if ok else 'MISSED'}"
    )
    if args.load:
        p99 = r["submit_to_resp_ms"]["p99"]
        lines.append(f"- p99 submit -> submit_sm_resp: {_fmt(p99, '.1f')} ms")
    return lines


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binds", type=int, default=1000, help="N binds (1,000)")
    parser.add_argument(
        "--steps",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[100],
        help="idle levels measured before N (comma list; 100)",
    )
    parser.add_argument("--rate", type=float, default=1.0, help="msg/s each bind sends (1)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (30)")
    parser.add_argument("--no-load", dest="load", action="store_false", help="idle only")
    parser.add_argument("--idle", type=float, default=10.0, help="s each idle level is held")
    parser.add_argument(
        "--enquire-link", type=float, default=10.0, help="s between a bind's enquire_links"
    )
    parser.add_argument("--workload", choices=("corpus", "otp"), default="otp")
    parser.add_argument("--corpus", type=Path, default=(REPO_ROOT / DEFAULT_CORPUS).resolve())
    parser.add_argument(
        "--window", type=int, default=64, help="the account's window (deliver_sm a bind)"
    )
    parser.add_argument("--upstream-binds", type=int, default=4)
    parser.add_argument("--stall", type=float, default=20.0, help="s without progress: give up")
    parser.add_argument("--max-wait", type=float, default=120.0, help="s for receipts")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.client:
        return client_entry(args.client)
    nofile = raise_nofile()
    if nofile[0] < 2 * args.binds + 200:
        print(f"error: RLIMIT_NOFILE {nofile[0]} is too low for {args.binds:,} binds")
        return 2
    meta = {
        "command": " ".join(
            shlex.quote(a)
            for a in [".venv/bin/python", "bench/binds.py", *(argv if argv else sys.argv[1:])]
        ),
        "commit": _git_commit(),
        "cpus": os.cpu_count(),
        "load_start": _load(),
        "nofile": nofile[0],
    }
    print(
        f"smsgw binds: commit {meta['commit']}, {meta['cpus']} CPUs, load {meta['load_start']}; "
        f"{args.binds:,} binds (steps {args.steps}), {args.rate:g} msg/s each",
        flush=True,
    )
    result = run(args)
    meta["load_end"] = _load()
    if not result.get("ok"):
        print(f"FAILED: {result.get('error')}")
        if result.get("gateway_log_tail"):
            print("gateway log (tail):\n" + result["gateway_log_tail"])
    else:
        print()
        print("\n".join(_report(result, args)))
    print(f"\nload average: {meta['load_start']} at start, {meta['load_end']} at end")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "result": result}, indent=2), encoding="utf-8"
        )
        print(f"figures written to {args.json}")
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
