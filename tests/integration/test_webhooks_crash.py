"""kill -9 during webhook delivery: every receipt's webhook arrives after the restart, and the
only ones POSTed twice are those in flight at the kill (at most `max_in_flight`).

`smsgw serve` runs as a subprocess; the receiver (in this process) is slow, so several POSTs
are open when the gateway is killed. The restarted gateway ends its old leases and sends them
again: at least once, with X-Smsgw-Delivery for the receiver to dedupe on.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import smpplib.client

from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.serve import Served

SECRET = "s3cret-s3cret-s3cret"
IN_FLIGHT = 4
COUNT = 30
CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts:
  - {system_id: shop, password: secret,
     webhook: {url: "%s", secret: %s, max_in_flight: %d, timeout: 5}}
simulated_carriers: {sim: {delivery_delay: 0.05}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
"""


def submit(port: int, count: int) -> list[str]:
    ids: list[str] = []
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.set_message_sent_handler(lambda pdu: ids.append(pdu.message_id.decode()))
    c.connect()
    c.bind_transmitter(system_id="shop", password="secret")
    for i in range(count):
        c.send_message(
            source_addr="Shop",
            destination_addr=f"491510000{i:03d}",
            short_message=b"your parcel is on its way",
            registered_delivery=1,
        )
    deadline = time.monotonic() + 20
    while len(ids) < count:
        assert time.monotonic() < deadline
        c.read_once()
    c.unbind()
    c.disconnect()
    return ids


def delivered(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        (n,) = conn.execute("SELECT count(*) FROM messages WHERE state = 'delivered'").fetchone()
    return int(n)


def test_kill_9_mid_delivery_loses_no_webhook(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    receiver.default = ("hang", 0.5)  # slow: answers 200 after half a second
    db = tmp_path / "gw.sqlite3"
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG % (receiver.url, SECRET, IN_FLIGHT, db))
    served = Served(config)
    try:
        ids = submit(served.port(), COUNT)
        deadline = time.monotonic() + 20
        while delivered(db) < COUNT:  # every receipt settled: its webhook row queued with it
            assert time.monotonic() < deadline, "receipts not settled"
            time.sleep(0.05)
        receiver.wait(lambda h: len(h) >= 2 * IN_FLIGHT, timeout=20)
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(timeout=10)
        at_kill = len(receiver.hits)
        assert at_kill < COUNT, "all delivered before the kill: nothing was tested"
        receiver.default = 200
        served = Served(config)
        served.port()
        hits = receiver.wait(lambda h: {x.json["id"] for x in h} >= set(ids), timeout=60)
        for hit in hits:
            assert hit.signed_by(SECRET)
        time.sleep(0.5)  # anything still coming would be a duplicate: let it show
        hits = list(receiver.hits)
        per_delivery = Counter(h.delivery for h in hits)
        twice = [d for d, n in per_delivery.items() if n > 1]
        assert len(per_delivery) == COUNT
        assert all(n <= 2 for n in per_delivery.values())
        assert len(twice) <= IN_FLIGHT, twice  # only those in flight at the kill
        assert set(twice) <= {h.delivery for h in hits[:at_kill]}
        assert served.stop() == 0
    finally:
        served.kill()
        receiver.close()
