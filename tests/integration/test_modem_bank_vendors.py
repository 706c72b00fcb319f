"""Issue 8 item 13 end to end: the whole gateway, smpplib as the application, a bank of two
emulated modems playing one vendor each run (SIM800, Quectel, Huawei: `VENDOR_PROFILES` in
`drivers.modem.emulator_quirks`). Messages go out, one modem is pulled out while the network
holds its status reports and an inbound message, and comes back: every receipt and every MO
reaches the application, once.

Every wait has a deadline (the client is read with a short socket timeout; the network is
polled until it holds what was sent).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gateway.config import ModemConfig
from gateway.sms import Encoding, decode_text
from tests.integration.test_modem_bank import App, Running, wait_until

CONFIG = """
listen: {{host: 127.0.0.1, port: 0}}
accounts: [{{system_id: shop, password: secret}}]
modem_banks:
  b:
    emulate: 2
    emulator: {{report_delay: 0.3, quirks: ["vendor={vendor}"]}}
    modems:
      - {{name: m1, imei: "{imei1}", iccid: "{iccid1}", number: "+4915100000001", {tuning}}}
      - {{name: m2, imei: "{imei2}", iccid: "{iccid2}", number: "+4915100000002", {tuning}}}
routes: [{{name: all, targets: ["bank:b"]}}]
mo_routes: [{{account: shop, prefixes: ["49151"]}}]
dispatch: {{retry_backoff: 0.2, max_retry_backoff: 1.0, max_attempts: 20}}
store: {{path: "{db}"}}
control_socket: "{sock}"
"""
# Short rounds so a test takes seconds; the mechanisms are those of the defaults. Keys the
# configuration does not know are left out, so this file also runs against the gateway before
# issue 8 (to show it fails there).
_TUNING = {"health_interval": 1.0, "poll_quiet": 3.0, "reopen_backoff": 0.1}
TUNING = ", ".join(f"{k}: {v}" for k, v in _TUNING.items() if k in ModemConfig.model_fields)


def start_gateway(tmp: Path, vendor: str) -> Running:
    """The gateway of test_modem_bank with both modems playing `vendor`."""
    config = CONFIG.replace("{vendor}", vendor).replace("{tuning}", TUNING)
    return Running(tmp, config=config)


@pytest.mark.parametrize("vendor", ["sim800", "quectel", "huawei"])
def test_every_receipt_and_mo_reaches_the_app_through_a_replug(tmp_path: Path, vendor: str) -> None:
    running = start_gateway(tmp_path, vendor)
    app = App(running.port)
    network = running.network
    m1, m2 = running.emulated.modems["m1"], running.emulated.modems["m2"]
    assert m1.quirks.vendor == vendor
    try:
        network.report_delay = 2.0  # the reports come after m1 is pulled out
        texts = [f"{vendor} order {i}" for i in range(10)]
        for i, text in enumerate(texts):
            app.submit(f"49151000000{i:02d}", text)
        app.pump(lambda: len(app.acks) == 10, 30, "submit_sm_resp")
        assert len(app.ids) == 10
        wait_until(lambda: {m.text for m in network.received} >= set(texts), 30, "all sent")
        m1.unplug()
        sent_by_m1 = sum(1 for m in network.received if m.modem == m1.imei)
        network.inject(m2, "+4917600000001", "to m2, while m1 is out")
        network.inject(m1, "+4917600000002", "to m1, held while it is out")
        # m1's reports fall due while it is out: the network holds them for its return.
        wait_until(
            lambda: (due := network.last_due(m1.imei)) is not None and due <= network.now(),
            30,
            "m1's reports due, held",
        )
        m1.replug()
        wait_until(lambda: running.state()["m1"]["state"] == "READY", 60, "m1 back")
        network.inject(m1, "+4917600000003", "to m1, after its return")
        network.inject(m2, "+4917600000004", "to m2, at the end")

        def complete() -> bool:
            return set(app.receipts) >= set(app.ids) and len(app.mo) >= 4

        try:
            app.pump(complete, 60, "every receipt and MO")
        except TimeoutError:
            missing = set(app.ids) - set(app.receipts)
            mo = [decode_text(p.short_message, Encoding.GSM7) for p in app.mo]
            raise AssertionError(
                f"{vendor}: {len(missing)} receipts missing (m1 sent {sent_by_m1}); MO {mo}; "
                f"m1 stores {m1.stored('SM')} {m1.stored('SR')} {m1.stored('ME')}"
            ) from None
        assert Counter(app.receipts) == Counter(app.ids)  # each once
        assert all(b"stat:DELIVRD" in p.short_message for p in app.received if p.esm_class & 4)
        mo = sorted(decode_text(p.short_message, Encoding.GSM7) for p in app.mo)
        assert mo == sorted(
            [
                "to m2, while m1 is out",
                "to m1, held while it is out",
                "to m1, after its return",
                "to m2, at the end",
            ]
        )
    finally:
        app.close()
        running.close()
