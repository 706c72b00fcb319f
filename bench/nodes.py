"""Several gateway nodes on one PostgreSQL: throughput with receipts, and the cross-node hop.

Usage (from the repository root; PostgreSQL at --dsn, `mosquitto` installed):

    .venv/bin/python bench/nodes.py                          # 20,000 messages, 3 runs each
    .venv/bin/python bench/nodes.py --messages 5000 --runs 1 --json /tmp/nodes.json
    .venv/bin/python bench/nodes.py --messages 4000 --rate 200   # latency below the ceiling

Built from bench/e2e.py's pieces: its load client (transceiver binds, windowed submit_sm with
registered_delivery, every message timed from submit_sm to submit_sm_resp and to its receipt),
bench/fake_carrier.py (answers at once, then the receipt on the same link), and its gateway
configuration (one account, one upstream, one route), here on PostgreSQL (a fresh schema per
run, shared by the nodes) with `mqtt:` pointing at a Mosquitto of the bench's own.

Scenarios, each `--runs` times with medians reported:

* ``one``: one node; the client's binds on it.
* ``two-split``: two nodes, the load split: half the messages through a client bound to each
  (two accounts, so each client's receipts are its own). Both dispatchers claim from the one
  queue, so a message accepted on one node is often sent by the other, and its receipt, which
  comes back on the sender's link, crosses back over an MQTT notice.
* ``two-one-entry``: two nodes, one client on node 1 only: every receipt that node 2's
  dispatcher got crosses to node 1 (about half).

Reported per scenario: accepted/s (sum over the clients, which run together), receipts/s, and
submit -> receipt p50/p99 (the cross-node hop is the difference against ``one``; with
``--rate`` the load is paced below the ceiling so queueing does not hide it); the MQTT
notices the nodes published (`<prefix>/+/deliveries`, counted by a subscriber here) against
the receipts: what the per-tick coalescing saves. Timings on a shared 2-core machine are
noisy; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import (
    GATEWAY_CONFIG,
    POSTGRES_STORE,
    REPO_ROOT,
    Carrier,
    ClientSpec,
    _free_port,
    _pg_execute,
    _stop,
    _wait_listening,
)
from tests.broker import Broker

E2E = Path(__file__).resolve().parent / "e2e.py"
PREFIX = "bench-nodes"


class NoticeCounter:
    """Counts the nodes' delivery notices on the broker, from a thread of its own."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.host, self.port = host, int(port)
        self.count = 0
        self.accounts = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the notice counter could not subscribe")

    async def _run(self) -> None:
        async with aiomqtt.Client(self.host, self.port) as client:
            await client.subscribe(f"{PREFIX}/+/deliveries", qos=1)
            self.ready.set()
            messages = client.messages
            while not self._stop.is_set():
                try:
                    message = await asyncio.wait_for(anext(messages), 0.2)
                except TimeoutError:
                    continue
                self.count += 1
                payload = message.payload
                if isinstance(payload, bytes):
                    self.accounts += len(json.loads(payload).get("accounts", ()))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def _gateway(tmp: Path, node: int, carrier_port: int, dsn: str, mqtt: str) -> tuple[Any, int]:
    port = _free_port()
    text = GATEWAY_CONFIG.format(
        port=port,
        binds=8,
        window=64,
        carrier_port=carrier_port,
        upstream_binds=2,
        upstream_window=512,
        store=POSTGRES_STORE.format(dsn=dsn),
        metrics="true",
        http_port=0,
        mqtt="",
        policy="",
    ).replace("node_id: 0", f"node_id: {node}")
    # A second account for the second client of `two-split`: each client then gets exactly
    # its own receipts (an account's receipts go to any of its binds, on any node).
    text = text.replace(
        "accounts:\n",
        "accounts:\n  - {system_id: bench2, password: bench, max_binds: 8, window: 64}\n",
    )
    text += f'mqtt: {{url: "{mqtt}", topic_prefix: {PREFIX}}}\n'
    config = tmp / f"node{node}.yaml"
    config.write_text(text, encoding="utf-8")
    log = (tmp / f"node{node}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    _wait_listening(port, proc, 30.0)
    return proc, port


def _client(
    tmp: Path, name: str, port: int, messages: int, rate: float | None, *, account: str = "bench"
) -> tuple[Any, Path]:
    result = tmp / f"{name}.json"
    spec = ClientSpec(
        host="127.0.0.1",
        port=port,
        messages=messages,
        binds=4,
        window=64,
        rate=rate,
        workload="otp",
        corpus="",
        stall=20.0,
        max_wait=120.0,
        result_path=str(result),
        system_id=account,
    )
    spec_path = tmp / f"{name}-spec.json"
    spec_path.write_text(json.dumps(spec.__dict__), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(E2E), "--client", str(spec_path)], cwd=REPO_ROOT)
    return proc, result


def run(scenario: str, args: argparse.Namespace, broker: Broker) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"smsgw-nodes-{scenario}-"))
    schema = f"smsgw_nodes_{os.getpid()}_{scenario.replace('-', '_')}"
    _pg_execute(args.dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    _pg_execute(args.dsn, f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in args.dsn else "?"
    dsn = f"{args.dsn}{sep}search_path={schema}"
    carrier = Carrier()
    gateways: list[Any] = []
    clients: list[tuple[Any, Path]] = []
    counter: NoticeCounter | None = None
    try:
        nodes = 1 if scenario == "one" else 2
        ports = []
        for node in range(1, nodes + 1):
            proc, port = _gateway(tmp, node, carrier.port, dsn, broker.url)
            gateways.append(proc)
            ports.append(port)
        deadline = time.monotonic() + 20
        while carrier.command("stats")["binds"] < 2 * nodes:
            if time.monotonic() > deadline:
                raise RuntimeError("the nodes did not bind to the carrier")
            time.sleep(0.05)
        time.sleep(1.0)  # the nodes' MQTT links (connected in the background)
        carrier.command("reset")
        counter = NoticeCounter(broker.url)
        if scenario == "two-split":
            half = args.messages // 2
            rate = args.rate / 2 if args.rate else None
            clients = [
                _client(tmp, "a", ports[0], half, rate),
                _client(tmp, "b", ports[1], args.messages - half, rate, account="bench2"),
            ]
        else:
            clients = [_client(tmp, "a", ports[0], args.messages, args.rate)]
        hard = time.monotonic() + 120 + args.messages / 100
        for proc, _ in clients:
            proc.wait(timeout=max(1.0, hard - time.monotonic()))
            if proc.returncode != 0:
                raise RuntimeError(f"a load client failed ({proc.returncode})")
        results = [json.loads(path.read_text(encoding="utf-8")) for _, path in clients]
        time.sleep(0.5)  # the last notices reach the counter
    finally:
        if counter is not None:
            counter.close()
        for proc, _ in clients:
            if proc.poll() is None:
                proc.kill()
        for proc in gateways:
            _stop(proc)
        carrier.close()
        _pg_execute(args.dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    receipts = sum(r["receipts"] for r in results)
    accepted = sum(r["accepted"] for r in results)
    return {
        "scenario": scenario,
        "accepted": accepted,
        "receipts": receipts,
        "missing_receipts": accepted - receipts,
        "duplicate_receipts": sum(r["duplicate_receipts"] for r in results),
        "accepted_per_s": sum(r["accepted_per_s"] or 0 for r in results),
        # both clients run at once: receipts over the span from the first submit to the last
        "receipts_per_s": receipts
        / (max(r["t_last_receipt_abs"] for r in results) - min(r["t0_abs"] for r in results)),
        "receipt_p50_ms": max(r["submit_to_receipt_ms"]["p50"] or 0 for r in results),
        "receipt_p99_ms": max(r["submit_to_receipt_ms"]["p99"] or 0 for r in results),
        "notices": counter.count if counter else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="one,two-split,two-one-entry")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rate", type=float, default=None, help="offered messages/s (paced)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    broker = Broker(Path(tempfile.mkdtemp(prefix="smsgw-nodes-mqtt-")))
    broker.start()
    table: dict[str, list[dict[str, Any]]] = {}
    try:
        for n in range(args.runs):
            for scenario in args.only.split(","):
                result = run(scenario, args, broker)
                table.setdefault(scenario, []).append(result)
                print(f"run {n + 1} {json.dumps(result)}", flush=True)
    finally:
        with contextlib.suppress(Exception):
            broker.kill()
    print(f"load average at end: {os.getloadavg()}")
    print(
        f"{'scenario':<15}{'accepted/s':>12}{'receipts/s':>12}{'rcpt p50 ms':>13}"
        f"{'rcpt p99 ms':>13}{'notices':>9}{'receipts':>10}{'missing':>9}{'dup':>5}"
    )
    medians = {}
    for scenario, runs in table.items():

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        medians[scenario] = {k: med(k) for k in runs[0] if k != "scenario"}
        m = medians[scenario]
        print(
            f"{scenario:<15}{m['accepted_per_s']:>12,.0f}{m['receipts_per_s']:>12,.0f}"
            f"{m['receipt_p50_ms']:>13,.1f}{m['receipt_p99_ms']:>13,.1f}{m['notices']:>9,.0f}"
            f"{m['receipts']:>10,.0f}{m['missing_receipts']:>9,.0f}"
            f"{m['duplicate_receipts']:>5,.0f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": table, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
