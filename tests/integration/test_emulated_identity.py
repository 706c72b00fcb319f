"""Emulated modems keep their IMEI/ICCID across restarts, so SIM usage (per-SIM limits)
carries over as config/README.md and the embedded default promise."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.app import emulated_iccid, emulated_imei
from tests.integration.test_modem_bank import Running, wait_until

CONFIG = """
listen: {{host: 127.0.0.1, port: 0}}
accounts: [{{system_id: shop, password: secret}}]
modem_banks:
  b:
    emulate: 2
    emulator: {{report_delay: 0.1}}
routes: [{{name: all, targets: ["bank:b"]}}]
store: {{path: "{db}"}}
control_socket: "{sock}"
"""


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_identities_are_fixed_by_name_and_luhn_valid() -> None:
    assert emulated_imei("b", "modem1") == emulated_imei("b", "modem1")
    assert emulated_imei("b", "modem1") != emulated_imei("b", "modem2")
    assert emulated_iccid("a", "modem1") != emulated_iccid("b", "modem1")
    for bank, modem in [("local", "modem1"), ("local", "modem2"), ("b", "x")]:
        imei, iccid = emulated_imei(bank, modem), emulated_iccid(bank, modem)
        assert len(imei) == 15 and imei.isdigit() and _luhn_ok(imei), imei
        assert len(iccid) == 19 and iccid.startswith("89") and _luhn_ok(iccid), iccid


def test_two_starts_see_the_same_sims_and_their_usage(tmp_path: Path) -> None:
    first = Running(tmp_path, config=CONFIG)
    try:
        state = first.state()
        iccids = {name: row["iccid"] for name, row in state.items()}
        assert iccids["modem1"] == emulated_iccid("b", "modem1")
        assert state["modem1"]["imei"] == emulated_imei("b", "modem1")
        first.call(first.gateway.store.count_usage(f"iccid:{iccids['modem1']}", time.time(), 3))
    finally:
        first.close()
    second = Running(tmp_path, config=CONFIG)
    try:
        assert {name: row["iccid"] for name, row in second.state().items()} == iccids
        wait_until(
            lambda: second.state()["modem1"]["used"]["day"] == 3,
            timeout=10,
            what="the usage counted before the restart",
        )
    finally:
        second.close()
