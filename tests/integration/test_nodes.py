"""Three gateway nodes on one PostgreSQL schema and one Mosquitto broker (issue 12).

Each node is `smsgw serve` in a subprocess with its own node_id and ports, all bound to one
fake carrier (tests/fakes/smsc.py) that hands its receipts round robin to whichever node's
link it picks, as carriers do. The application binds as a receiver to node A (directly, or
through haproxy from contrib/haproxy/haproxy.cfg) and submits through node B. A receipt that
reaches node B or C is announced over MQTT, so node A sends it at once: the cross-node receipt
latency (the carrier's deliver_sm to the application's) is printed and must stay far under
the rescan that would otherwise find it (5 s).

The second test kills node B with SIGKILL while receipts are coming: every message acknowledged
to the application still gets its receipt (node B's claimed messages are taken over after
`dispatch.delivery_lease`), and a receipt reaches the application twice only if the carrier
had to offer it twice (the kill interrupted its delivery) or the message went to the carrier
twice (sent by B, not yet recorded). Under CI=true nothing here skips. Waits are bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions

from tests.broker import Broker
from tests.fakes.smsc import Behaviour, FakeSmsc, Submitted
from tests.integration.loop import LoopThread
from tests.integration.test_crash import start_gateway
from tests.integration.wait import until
from tests.pg import fresh_schema, under_ci

LEASE = 3.0  # dispatch.delivery_lease: how soon a dead node's claims are taken over
INFLIGHT = 64  # dispatch.max_inflight in CONFIG
RESCAN = 5.0  # the server's rescan (gateway.server.smpp._REDELIVER): what MQTT must beat
HAPROXY_CFG = Path(__file__).parents[2] / "contrib" / "haproxy" / "haproxy.cfg"

CONFIG = """
node_id: {node}
listen: {{host: 127.0.0.1, port: {port}}}
http: {{host: 127.0.0.1, port: {http}}}
accounts: [{{system_id: app, password: pw, window: 200}}]
upstreams:
  carrier: {{host: 127.0.0.1, port: {carrier}, system_id: gw, password: pw, window: 64}}
routes: [{{name: all, targets: [carrier]}}]
dispatch: {{max_inflight: {inflight}, delivery_lease: {lease}, retry_backoff: 0.2,
           max_retry_backoff: 1.0}}
store: {{backend: postgres, dsn: "{dsn}"}}
mqtt: {{url: "{mqtt}", topic_prefix: nodes-test}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def shared_dsn() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema (dropped after): the nodes' one store."""
    with fresh_schema("nodes") as dsn:
        yield dsn


class Carrier(FakeSmsc):
    """The fake carrier, noting when each receipt went out, on which node's link, and how
    often (a receipt offered again after a link died)."""

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(behaviour)
        self.dest_of: dict[str, str] = {}  # upstream id -> destination
        self.sent_at: dict[str, list[tuple[float, int]]] = defaultdict(list)  # dest -> (t, link)
        self.offers: Counter[str] = Counter()  # destination -> final receipts offered
        # Links (by bind order: 0 is node A's) that get no receipts: node A then hears of
        # them only through a notice (or its rescan), never because its own link was busy.
        self.skip: set[int] = set()

    def _receipts(self, record: Submitted) -> list[dict[str, Any]]:
        self.dest_of[record.upstream_id] = record.destination
        return super()._receipts(record)

    def _deliver(self, fields: dict[str, Any], peer: Any = None) -> None:
        if peer is None:  # the base class's choice, made here to see it
            receivers = [
                p
                for p in self.receivers()
                if not p.writer.is_closing() and self._peers.index(p) not in self.skip
            ]
            if not receivers:
                self._undelivered.append(fields)
                return
            peer = receivers[next(self._rr) % len(receivers)]
        upstream_id = fields.get("receipted_message_id")
        dest = self.dest_of.get(upstream_id or "")
        if dest is not None:
            self.offers[dest] += 1
            self.sent_at[dest].append((time.monotonic(), self._peers.index(peer)))
        super()._deliver(fields, peer)

    async def redeliver(self) -> None:
        """Offer again what waits for a receiver (a carrier's retry timer): the receipts
        a killed node never answered."""
        waiting, self._undelivered = self._undelivered, []
        for fields in waiting:
            self._deliver(fields)
        for peer in self.receivers():
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()


@dataclass
class Receiver:
    """The application's receiver bind, read by a thread of its own."""

    port: int
    got: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", self.port, timeout=10, allow_unknown_opt_params=True
        )
        self.client.set_message_received_handler(self._received)
        self.client.connect()
        self.client.bind_receiver(system_id="app", password="pw")
        # smpplib sends an enquire_link whenever a read times out, and each PDU it sends
        # makes the node look for deliveries: a short timeout would find the receipts
        # without any notice. 30 s: nothing but the notice (or the 5 s rescan) wakes node A.
        self.client._socket.settimeout(30)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _received(self, pdu: Any) -> None:
        if pdu.esm_class & 0x04:
            with self.lock:
                self.got[(pdu.receipted_message_id or b"").decode()].append(time.monotonic())

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                self.client.read_once()
            except (smpplib.exceptions.ConnectionError, OSError):
                return

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.client._socket.shutdown(socket.SHUT_RDWR)  # ends the blocked read
        self.thread.join(timeout=5)
        with contextlib.suppress(smpplib.exceptions.ConnectionError, OSError):
            self.client.disconnect()


class Submitter:
    """The application's transmitter bind on node B: submits with a window, keeps the ids."""

    def __init__(self, port: int) -> None:
        self.acked: dict[str, str] = {}  # our message id -> destination
        self.waiting: dict[int, str] = {}  # sequence -> destination
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=10, allow_unknown_opt_params=True
        )
        self.client.set_message_sent_handler(self._sent)
        self.client.connect()
        self.client.bind_transmitter(system_id="app", password="pw")
        self.client._socket.settimeout(0.2)

    def _sent(self, pdu: Any) -> None:
        dest = self.waiting.pop(pdu.sequence, None)
        if dest is not None and pdu.status == 0:
            self.acked[pdu.message_id.decode()] = dest

    def submit(self, dest: str) -> None:
        pdu = self.client.send_message(
            source_addr="Shop", destination_addr=dest, short_message=b"hi", registered_delivery=1
        )
        self.waiting[pdu.sequence] = dest

    def run(self, count: int, window: int, stop_after: int | None = None) -> bool:
        """Submit `count` messages; False when the link died (the node was killed)."""
        i = 0
        deadline = time.monotonic() + 60
        while (i < count or self.waiting) and time.monotonic() < deadline:
            while i < count and len(self.waiting) < window:
                self.submit(f"4917{i:08d}")
                i += 1
            try:
                self.client.read_once()
            except (smpplib.exceptions.ConnectionError, OSError):
                return False
            if stop_after is not None and len(self.acked) >= stop_after:
                return True
        assert not self.waiting, "submit_sm_resp never came"
        return True

    def close(self) -> None:
        with contextlib.suppress(smpplib.exceptions.ConnectionError, OSError):
            self.client.unbind()
        self.client.disconnect()


@dataclass
class Cluster:
    carrier: Carrier
    carrier_loop: LoopThread
    procs: list[subprocess.Popen[str]]
    ports: list[int]
    http_ports: list[int]
    logs: list[list[str]]


@pytest.fixture
def cluster(tmp_path: Path, shared_dsn: str, mqtt_broker: Broker) -> Iterator[Cluster]:
    carrier_loop = LoopThread()
    carrier = Carrier(Behaviour(seed=3, receipt_delays=(0.05, 0.5)))
    carrier_port = carrier_loop.call(carrier.start())
    procs: list[subprocess.Popen[str]] = []
    ports, http_ports, logs = [], [], []
    try:
        for node in range(3):
            port, http = _free_port(), _free_port()
            config = tmp_path / f"node{node}.yaml"
            config.write_text(
                CONFIG.format(
                    node=node + 1,
                    port=port,
                    http=http,
                    carrier=carrier_port,
                    lease=LEASE,
                    inflight=INFLIGHT,
                    dsn=shared_dsn,
                    mqtt=mqtt_broker.url,
                ),
                encoding="utf-8",
            )
            log: list[str] = []
            proc, _ = start_gateway(config, keep=log)
            procs.append(proc)
            ports.append(port)
            http_ports.append(http)
            logs.append(log)
            # One at a time: the carrier's links are then in node order (A, B, C).
            until(lambda n=node: len(carrier.receivers()) == n + 1, "the upstream binds", 20)
        for n, log in enumerate(logs):
            until(lambda log=log: any("mqtt_connected" in line for line in log), f"mqtt {n}", 20)
        yield Cluster(carrier, carrier_loop, procs, ports, http_ports, logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            if proc.poll() is None:
                proc.kill()
        carrier_loop.call(carrier.stop())
        carrier_loop.stop_loop()
        tracebacks = [line for log in logs for line in log if "Traceback" in line]
        assert not tracebacks, tracebacks


def _haproxy_binary() -> str:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(binary, os.X_OK):
        message = "haproxy is not installed (apt-get install haproxy)"
        if under_ci():
            pytest.fail(message)
        pytest.skip(message)
    return binary


def test_the_contrib_haproxy_config_is_valid() -> None:
    check = subprocess.run(
        [_haproxy_binary(), "-c", "-f", str(HAPROXY_CFG)],
        check=False,
        capture_output=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def _haproxy(tmp_path: Path, cluster: Cluster) -> tuple[subprocess.Popen[bytes], int]:
    """haproxy with contrib/haproxy/haproxy.cfg, its bind and servers pointed at the nodes."""
    binary = _haproxy_binary()
    port = _free_port()
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    text = text.replace("bind :2775", f"bind 127.0.0.1:{port}")
    text = re.sub(r"\n    server .*", "", text)
    text += "".join(
        f"    server node{n + 1} 127.0.0.1:{p} check port {h}\n"
        for n, (p, h) in enumerate(zip(cluster.ports, cluster.http_ports, strict=True))
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text, encoding="utf-8")
    check = subprocess.run(
        [binary, "-c", "-f", str(cfg)], check=False, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL)
    return proc, port


def _latencies(
    cluster: Cluster, receiver: Receiver, acked: dict[str, str]
) -> dict[str, list[float]]:
    """Seconds from the carrier's deliver_sm to the application's, split by the link the
    carrier chose: node A's own ("local") or another node's ("cross")."""
    out: dict[str, list[float]] = {"local": [], "cross": []}
    for our_id, dest in acked.items():
        got = receiver.got.get(our_id)
        sends = cluster.carrier.sent_at.get(dest)
        if not got or not sends:
            continue
        at, link = max((s for s in sends if s[0] <= got[0]), default=sends[0])
        out["local" if link == 0 else "cross"].append(got[0] - at)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.parametrize("via", ["direct", "haproxy"])
def test_receipts_cross_nodes_at_once(tmp_path: Path, cluster: Cluster, via: str) -> None:
    count = 300
    haproxy = None
    cluster.carrier.skip = {0}  # every receipt reaches node A from another node
    try:
        if via == "haproxy":
            haproxy, port = _haproxy(tmp_path, cluster)
            receiver = _bind_when_up(port)
        else:
            receiver = Receiver(cluster.ports[0])
        submitter = Submitter(cluster.ports[1])  # node B
        started = time.monotonic()
        assert submitter.run(count, window=50)
        acked = dict(submitter.acked)
        assert len(acked) == count
        until(lambda: set(acked) <= set(receiver.got), "every receipt at the application", 30)
        elapsed = time.monotonic() - started
        submitter.close()
        receiver.close()
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(timeout=10)
    latency = _latencies(cluster, receiver, acked)
    cross, local = latency["cross"], latency["local"]
    duplicates = sum(len(receiver.got[i]) - 1 for i in acked)
    print(
        f"[{via}] {count} messages in {elapsed:.1f}s; every receipt via node B or C: "
        f"{len(cross)} p50={_pct(cross, 0.5) * 1000:.1f}ms p99={_pct(cross, 0.99) * 1000:.1f}ms "
        f"max={max(cross) * 1000:.1f}ms; duplicates={duplicates}"
    )
    assert len(cross) == count and not local
    # The notice, not the rescan, delivered them: found by the rescan they would wait 2.5 s
    # on average, up to 5 s. (1.5 s, not 1 s, for p99: this 2-core VM, shared, has shown
    # 0.6 s; most of a tail is another node's send not yet recorded - `_look_again`.)
    assert _pct(cross, 0.5) < 0.5
    assert _pct(cross, 0.99) < 1.5 < RESCAN
    assert duplicates == 0


def _bind_when_up(port: int) -> Receiver:
    """Bind through haproxy once its health checks put a node in rotation."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return Receiver(port)
        except (smpplib.exceptions.ConnectionError, OSError, smpplib.exceptions.PDUError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # bounded: haproxy's first checks (inter 2s, rise 2)


def test_kill_9_of_a_node_loses_no_receipt(cluster: Cluster) -> None:
    receiver = Receiver(cluster.ports[0])
    submitter = Submitter(cluster.ports[1])
    started = time.monotonic()
    # Node B takes submits; it is killed once 250 are acknowledged, with receipts still due
    # (0.05-0.5 s after each send) and sends of its own in flight.
    submitter.run(600, window=64, stop_after=250)
    cluster.procs[1].send_signal(signal.SIGKILL)
    cluster.procs[1].wait(timeout=10)
    killed_at = time.monotonic()
    with contextlib.suppress(smpplib.exceptions.ConnectionError, OSError):
        while True:  # answers already on their way before the kill
            submitter.client.read_once()
    acked = dict(submitter.acked)

    def all_in() -> bool:
        cluster.carrier_loop.call(cluster.carrier.redeliver())
        return set(acked) <= set(receiver.got)

    with contextlib.suppress(AssertionError):
        until(all_in, "every acknowledged message's receipt", LEASE + 30)
    waited = time.monotonic() - killed_at
    receiver.close()
    lost = sorted(set(acked) - set(receiver.got))
    dests = Counter(dest for dest, _ in cluster.carrier.submits)
    interrupted = {d for d, n in cluster.carrier.offers.items() if n > 1} | {
        d for d, n in dests.items() if n > 1
    }
    duplicates = {i: len(receiver.got[i]) for i in acked if len(receiver.got.get(i, ())) > 1}
    unexplained = {i: n for i, n in duplicates.items() if acked[i] not in interrupted}
    taken = [
        json.loads(line).get("count", 0)
        for log in cluster.logs
        for line in list(log)
        if "took over the messages of a silent node" in line
    ]
    print(
        f"kill -9 of node B after {killed_at - started:.1f}s: acknowledged={len(acked)} "
        f"unacknowledged={len(submitter.waiting)} "
        f"receipts_in={len(set(acked) & set(receiver.got))} "
        f"lost={len(lost)} all_in_after={waited:.1f}s duplicates={len(duplicates)} "
        f"(interrupted deliveries: {len(interrupted)}, carrier resubmits: "
        f"{sum(n - 1 for n in dests.values())}) unexplained_duplicates={len(unexplained)} "
        f"taken_over_from_B={sum(taken)}"
    )
    assert len(acked) >= 250
    assert not lost, lost[:10]
    assert waited < LEASE + 30
    assert not unexplained, unexplained
    # What B had sent and not recorded went again after the takeover: at most its sends in
    # flight (dispatch.max_inflight), as after a crash and restart.
    assert sum(n - 1 for n in dests.values()) <= INFLIGHT


def test_without_the_broker_the_rescan_still_delivers(
    cluster: Cluster, mqtt_broker: Broker
) -> None:
    """The notice only makes it sooner: with the broker gone, node A's rescan (every 5 s)
    still finds the receipts that reached node B or C."""
    mqtt_broker.stop()
    cluster.carrier.skip = {0}
    receiver = Receiver(cluster.ports[0])
    submitter = Submitter(cluster.ports[1])
    for i in range(4):  # one at a time: no other receipt's traffic wakes node A meanwhile
        submitter.submit(f"4918{i:08d}")
        while submitter.waiting:
            submitter.client.read_once()
        until(lambda: set(submitter.acked) <= set(receiver.got), "a receipt", 2 * RESCAN + 5)
    acked = dict(submitter.acked)
    submitter.close()
    receiver.close()
    cross = _latencies(cluster, receiver, acked)["cross"]
    print(
        f"[no broker] receipts via another node: {len(cross)} "
        f"p50={_pct(cross, 0.5) * 1000:.0f}ms max={max(cross) * 1000:.0f}ms"
    )
    assert len(cross) == len(acked)
    assert max(cross) > 1.0  # waited for the rescan: no notice came
