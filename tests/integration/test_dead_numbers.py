"""Dead numbers (空号) through a carrier: the fake SMSC reports UNDELIV with an error code the
policy lists for that upstream; after `after` such receipts the number is dead for `period`,
and a delivered receipt forgets a number's failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import smpplib.client

from gateway.store.base import DeadNumber
from tests.fakes.smsc import Behaviour
from tests.integration.test_upstream import CONFIG, Running

DEAD_CONFIG = (
    CONFIG
    + """
policy:
  dead_numbers: {errors: {carrier: [11], "*": [99]}, after: 3, period: 2d}
"""
)


def _send(port: int, messages: list[tuple[str, str]]) -> None:
    """Submit each (destination, text) asking for a receipt; wait for every receipt."""
    received: list[object] = []
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    c.set_message_received_handler(lambda pdu: received.append(pdu))  # noqa: PLW0108 - called with pdu=
    c.bind_transceiver(system_id="shop", password="secret")
    for destination, text in messages:
        c.send_message(
            source_addr="Shop",
            destination_addr=destination,
            short_message=text.encode(),
            registered_delivery=1,
        )
    deadline = time.monotonic() + 20
    while len(received) < len(messages):
        assert time.monotonic() < deadline, f"{len(received)} of {len(messages)} receipts"
        c.read_once()
    c.unbind()
    c.disconnect()


def _dead(
    running: Running, settled: Callable[[dict[str, DeadNumber]], bool]
) -> dict[str, DeadNumber]:
    """The dead-number rows once `settled` holds (they are written just after the receipts
    are settled and sent on, so the application may see a receipt first)."""
    deadline = time.monotonic() + 10
    while True:
        page = running.call(running.gateway.store.dead_numbers_page(None, 100))
        rows = {d.number: d for d in page}
        if settled(rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.02)


def test_receipts_with_a_listed_error_mark_a_number_dead(tmp_path: Path) -> None:
    running = Running(tmp_path, Behaviour(fail_share=1.0, fail_error=11), DEAD_CONFIG)
    try:
        started = time.time()
        _send(
            running.port,
            [("4915100000001", f"offer {i}") for i in range(3)] + [("4915100000002", "hi")],
        )
        dead = _dead(running, lambda rows: len(rows) == 2 and rows["4915100000001"].failures == 3)
        until = dead["4915100000001"].dead_until
        assert until is not None and until >= started + 2 * 86_400
        assert (dead["4915100000002"].failures, dead["4915100000002"].dead_until) == (1, None)
        # the accept pipeline reads it: the next message to the dead number is stopped
        _send(running.port, [("4915100000001", "one more")])
        stopped = running.call(running.gateway.store.dead_numbers_page(None, 1))
        assert stopped[0].failures == 3  # not sent, so not counted again
        assert [d for d, _ in running.smsc.submits].count("4915100000001") == 3
        # a delivered receipt forgets the number's failures
        running.smsc.behaviour.fail_share = 0.0
        _send(running.port, [("4915100000002", "hello again")])
        _dead(running, lambda rows: "4915100000002" not in rows)
        # an error code the policy does not list counts nothing
        running.smsc.behaviour.fail_share, running.smsc.behaviour.fail_error = 1.0, 12
        _send(running.port, [("4915100000003", "x"), ("4915100000004", "y")])
        running.smsc.behaviour.fail_error = 99  # listed for every upstream ("*")
        _send(running.port, [("4915100000004", "z")])
        rows = _dead(running, lambda rows: "4915100000004" in rows)
        assert "4915100000003" not in rows and rows["4915100000004"].failures == 1
    finally:
        running.close()
