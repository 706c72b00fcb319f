"""The HTTP API benchmark: single sends over keep-alive, and one 100,000-recipient batch.

Usage (from the repository root):

    .venv/bin/python bench/http_api.py         # 20,000 sends, 16 at once; a 100,000 batch; 3 times
    .venv/bin/python bench/http_api.py --quick # smoke run: 2,000 sends, a batch of 10,000, once
    .venv/bin/python bench/http_api.py --sends 50000 --concurrency 32 --repeats 3 \
        --json /tmp/http.json

Two processes on loopback, the gateway started fresh for every repeat of every scenario:

* the gateway, ``python -m gateway.cli serve -c CONFIG``: an SQLite store in a temporary
  directory (WAL, synchronous=FULL: an answer follows a real fsync), one account, one simulated
  carrier (`simulated_carriers`, receipts after 10 ms) and one route to it, HTTP on an
  ephemeral port;
* the client (this process): httpx.AsyncClient, HTTP/1.1 keep-alive.

Scenarios (``--only`` picks some):

1. ``sends``: N ``POST /api/v1/messages`` with one recipient each, C requests in flight on C
   keep-alive connections (after 500 warm-up requests). Reported: sends/s from the first
   request to the last answer, p50/p99/max latency of a request, and non-200 answers.
2. ``batch``: one ``POST /api/v1/batches`` of B distinct recipients (JSON), then
   ``GET /api/v1/batches/{id}`` every 20 ms until every recipient is accepted. Reported: the
   POST's answer time (the batch kept durably, the list validated and deduplicated) and the
   time from the POST to the GET showing accepted == B (each chunk durably committed).

Each scenario runs ``--repeats`` times; medians are printed and kept in the JSON with every
run. The load average at start and end is printed: on a shared machine timings are noisy.
Every wait is bounded; the gateway is killed on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' `smsgw serve`

from tests.integration.serve import Served

CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: bench, password: bench}]
simulated_carriers: {sim: {delivery_delay: 0.01}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
http: {host: 127.0.0.1, port: 0}
"""
AUTH = ("bench", "bench")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sends(port: int, count: int, concurrency: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", auth=AUTH, limits=limits, timeout=60
    ) as client:

        async def run(n: int, offset: int, latencies: list[float], errors: list[int]) -> None:
            queue = iter(range(offset, offset + n))

            async def worker() -> None:
                for i in queue:
                    body = {"to": [f"+4915{i:09d}"], "from": "Bench", "text": f"code {i:06d}"}
                    started = time.perf_counter()
                    answer = await client.post("/api/v1/messages", json=body)
                    latencies.append(time.perf_counter() - started)
                    if answer.status_code != 200:
                        errors.append(answer.status_code)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await run(500, 0, [], [])  # warm-up: connections open, code paths hot
        latencies: list[float] = []
        errors: list[int] = []
        started = time.perf_counter()
        await run(count, 1_000_000, latencies, errors)
        elapsed = time.perf_counter() - started
    return {
        "sends": count,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "sends_per_s": round(count / elapsed, 1),
        "p50_ms": round(_pct(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "errors": len(errors),
    }


async def batch(port: int, size: int) -> dict[str, Any]:
    body = {
        "from": "Bench",
        "text": "Our sale starts today",
        "recipients": [f"+4917{i:09d}" for i in range(size)],
    }
    payload = json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=AUTH, timeout=120) as c:
        started = time.perf_counter()
        answer = await c.post(
            "/api/v1/batches", content=payload, headers={"content-type": "application/json"}
        )
        answered = time.perf_counter() - started
        if answer.status_code != 202:
            raise RuntimeError(f"batch refused: {answer.status_code} {answer.text[:500]}")
        batch_id = answer.json()["id"]
        deadline = time.monotonic() + 300
        while True:
            progress = (await c.get(f"/api/v1/batches/{batch_id}")).json()
            if progress["accepted"] + progress["refused"] >= size:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"batch not accepted in 300 s: {progress}")
            await asyncio.sleep(0.02)
        accepted_in = time.perf_counter() - started
    return {
        "recipients": size,
        "body_bytes": len(payload),
        "post_answer_s": round(answered, 3),
        "accepted_s": round(accepted_in, 3),
        "accepted": progress["accepted"],
        "refused": progress["refused"],
        "recipients_per_s": round(size / accepted_in, 1),
    }


def scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-http-") as tmp:
        config = Path(tmp) / "gateway.yaml"
        config.write_text(CONFIG % (Path(tmp) / "gw.sqlite3"))
        gateway = Served(config)  # `smsgw serve`, as the tests run it
        try:
            port = gateway.port("http listening")
            if name == "sends":
                return asyncio.run(sends(port, args.sends, args.concurrency))
            return asyncio.run(batch(port, args.batch))
        finally:
            try:
                gateway.stop(30)
            finally:
                gateway.kill()


MEDIANS = {
    "sends": ("sends_per_s", "p50_ms", "p99_ms", "max_ms", "errors"),
    "batch": ("post_answer_s", "accepted_s", "recipients_per_s", "refused"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="sends,batch")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.sends, args.batch, args.repeats = 2_000, 10_000, 1
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
        "load_start": os.getloadavg(),
        "scenarios": {},
    }
    print(f"load average at start: {report['load_start']}", flush=True)
    for name in args.only.split(","):
        runs = []
        for n in range(args.repeats):
            result = scenario(name, args)
            print(f"{name} #{n + 1}: {result}", flush=True)
            runs.append(result)
        median = {k: statistics.median(r[k] for r in runs) for k in MEDIANS[name]}
        print(f"{name} median of {len(runs)}: {median}", flush=True)
        report["scenarios"][name] = {"median": median, "runs": runs}
    report["load_end"] = os.getloadavg()
    print(f"load average at end: {report['load_end']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
