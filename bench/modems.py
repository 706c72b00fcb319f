"""The modem bank benchmark: a gateway driving N emulated modems (64 by default).

Usage (from the repository root):

    .venv/bin/python bench/modems.py                          # 64 modems, 5,000 messages, 60 s idle
    .venv/bin/python bench/modems.py --messages 20000 --idle 120 --json /tmp/modems.json
    .venv/bin/python bench/modems.py --only idle --health-interval 30

Three processes:

* the emulators, ``python -m gateway.cli emulate-modem --count N --link-dir DIR
  --report-delay 0``: N modems on ptys behind one simulated network, every delay zero (status
  reports at once, no slow answers). A process of their own, so their CPU is not the gateway's;
* the gateway, ``python -m gateway.cli serve -c CONFIG``: SQLite store (synchronous=FULL) in a
  temporary directory, one account, one bank of the N modems (by their symlinks), round robin,
  ``queue`` 2 per modem, every message routed to it;
* the load client (this process, `gateway.client.SmppClient`): one transceiver bind, up to
  ``--window`` submit_sm unanswered, registered_delivery=1, one-part GSM 7-bit texts to distinct
  numbers.

Scenarios (``--only`` picks one):

1. ``idle``: once every modem is READY and 5 s have passed, the gateway's CPU over ``--idle``
   seconds while the modems sit idle with health polling on (``--health-interval``, 30 s by
   default: AT+CSQ;+CREG?;+COPS? per modem per interval). Target: < 2 % of one core.
2. ``throughput``: ``--messages`` messages as fast as the window allows; messages/s from the
   first submit_sm to the last receipt back at the client (every message out through a modem,
   its status report back, its receipt delivered), and the gateway's CPU per message (from
   /proc/PID/stat). Target: >= 500 messages/s through 64 zero-delay modems.

Every wait is bounded and both child processes are stopped on the way out. Figures on a shared
machine are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.client import SmppClient  # noqa: E402
from gateway.control import ControlError, request  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _config(tmp: Path, links: Path, count: int, port: int, health: float) -> Path:
    modems = "\n".join(
        f"      - {{name: m{i}, port: '{links / f'modem{i}'}', health_interval: {health}}}"
        for i in range(1, count + 1)
    )
    text = f"""
listen: {{host: 127.0.0.1, port: {port}}}
accounts: [{{system_id: bench, password: bench, window: 1024}}]
modem_banks:
  bench:
    selection: round_robin
    queue: 2
    modems:
{modems}
routes: [{{name: all, targets: ["bank:bench"]}}]
dispatch: {{max_inflight: 4096}}
store: {{path: "{tmp / "gw.sqlite3"}"}}
control_socket: "{tmp / "ctl.sock"}"
"""
    path = tmp / "gateway.yaml"
    path.write_text(text)
    return path


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def _modems(sock: Path) -> list[dict[str, Any]]:
    try:
        rows: list[dict[str, Any]] = request(sock, "modem.list", timeout=10)
    except ControlError:
        return []
    return rows


async def _throughput(port: int, messages: int, window: int) -> dict[str, float]:
    client = SmppClient("127.0.0.1", port, response_timeout=60)
    await client.connect()
    await client.bind_transceiver("bench", "bench")
    slots = asyncio.Semaphore(window)
    accepted: list[str] = []
    refused = 0

    async def one(i: int) -> None:
        nonlocal refused
        async with slots:
            parts = await client.submit_text(
                f"+4915{i:09d}", f"Your code is {i % 1_000_000:06d}", registered_delivery=1
            )
        for part in parts:
            if part.status == 0:
                accepted.append(part.message_id)
            else:
                refused += 1

    t0 = time.monotonic()
    sender = asyncio.gather(*(one(i) for i in range(messages)))
    seen: set[str] = set()
    t_resp = 0.0
    async with asyncio.timeout(max(120.0, messages / 20)):
        while len(seen) < messages - refused:
            receipt = await client.receipt()
            if receipt.final:
                seen.add(receipt.message_id)
            if sender.done() and not t_resp:
                t_resp = time.monotonic()
        await sender
    t1 = time.monotonic()
    t_resp = t_resp or t1
    await client.unbind()
    await client.close()
    return {
        "accepted": len(accepted),
        "refused": refused,
        "receipts": len(seen),
        "seconds": t1 - t0,
        "accepted_per_s": len(accepted) / (t_resp - t0),
        "messages_per_s": len(seen) / (t1 - t0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modems", type=int, default=64)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=512, help="submit_sm unanswered at most")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--health-interval", type=float, default=30.0)
    parser.add_argument("--only", choices=["idle", "throughput"])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "modems": args.modems,
        "health_interval": args.health_interval,
        "load_before": os.getloadavg(),
    }
    emulators = gateway = None
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-modems-") as tmp_name:
        tmp = Path(tmp_name)
        links = tmp / "modems"
        try:
            emulators = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "emulate-modem", "--count",
                 str(args.modems), "--link-dir", str(links), "--report-delay", "0"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            _wait(
                lambda: all((links / f"modem{i}").exists() for i in range(1, args.modems + 1)),
                60,
                "emulators",
            )
            port = _free_port()
            config = _config(tmp, links, args.modems, port, args.health_interval)
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            sock = tmp / "ctl.sock"
            t_start = time.monotonic()
            _wait(
                lambda: sum(r["state"] == "READY" for r in _modems(sock)) == args.modems,
                180,
                "every modem READY",
            )
            results["ready_seconds"] = round(time.monotonic() - t_start, 1)
            print(f"{args.modems} modems READY after {results['ready_seconds']} s", flush=True)

            if args.only in (None, "idle"):
                time.sleep(5.0)  # start-up work (drains, first health rounds) out of the way
                cpu0, t0 = _cpu(gateway.pid), time.monotonic()
                time.sleep(args.idle)
                cpu1, t1 = _cpu(gateway.pid), time.monotonic()
                share = (cpu1 - cpu0) / (t1 - t0)
                results["idle"] = {
                    "seconds": round(t1 - t0, 1),
                    "cpu_seconds": round(cpu1 - cpu0, 3),
                    "cpu_percent_of_one_core": round(100 * share, 2),
                }
                print(
                    f"idle: {100 * share:.2f} % of one core over {t1 - t0:.0f} s "
                    f"({cpu1 - cpu0:.2f} CPU s, health every {args.health_interval:g} s)",
                    flush=True,
                )

            if args.only in (None, "throughput"):
                cpu0, emu0 = _cpu(gateway.pid), _cpu(emulators.pid)
                figures = asyncio.run(_throughput(port, args.messages, args.window))
                cpu1, emu1 = _cpu(gateway.pid), _cpu(emulators.pid)
                rows = _modems(sock)
                sent = [r["sent"] for r in rows]
                figures.update(
                    gateway_cpu_ms_per_message=1000 * (cpu1 - cpu0) / max(1, args.messages),
                    emulator_cpu_ms_per_message=1000 * (emu1 - emu0) / max(1, args.messages),
                    sent_by_modems=sum(sent),
                    per_modem_min=min(sent),
                    per_modem_max=max(sent),
                )
                results["throughput"] = figures
                print(
                    f"throughput: {figures['messages_per_s']:.0f} messages/s end to end "
                    f"({figures['receipts']} receipts of {figures['accepted']} accepted in "
                    f"{figures['seconds']:.1f} s; accepted {figures['accepted_per_s']:.0f}/s); "
                    f"gateway CPU {figures['gateway_cpu_ms_per_message']:.2f} ms/message, "
                    f"emulators {figures['emulator_cpu_ms_per_message']:.2f} ms/message; "
                    f"per modem {min(sent)}-{max(sent)} sent",
                    flush=True,
                )
        finally:
            _stop(gateway)
            _stop(emulators)
    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
