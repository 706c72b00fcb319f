"""Reload with an application bound and submitting throughout (issue 9, item 1).

smpplib submits steadily from a thread while the gateway reloads: a route change, an account
limit change, an upstream added and removed, an invalid file. No submit is refused, the bind
is never dropped, and each message goes to the carrier of the table in force when it was
accepted (told apart by which of the fake carriers received it).
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import smpplib.client

from drivers.modem.emulator import SimNetwork
from drivers.smpp.upstream import SmppUpstream
from gateway.app import Gateway
from gateway.config import load_config
from tests.fakes.smsc import FakeSmsc
from tests.integration.loop import LoopThread
from tests.integration.serve import Served

BASE = """
accounts: [{system_id: shop, password: secret%(limits)s}%(extra)s]
upstreams:
%(upstreams)s
routes: [{name: all, targets: [%(target)s]}]
store: {path: "%(db)s"}
"""


def _upstream(name: str, port: int) -> str:
    return f"  {name}: {{host: 127.0.0.1, port: {port}, system_id: gw, password: pw}}"


class Running(LoopThread):
    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.tmp = tmp
        self.smscs = {name: FakeSmsc() for name in ("a", "b", "c")}
        self.ports = {name: self.call(smsc.start()) for name, smsc in self.smscs.items()}
        self.path = tmp / "gateway.yaml"
        self.write(target="a")
        self.gateway = Gateway(load_config(self.path))
        self.gateway.config_path = str(self.path)
        self.gateway.dispatcher.poll_interval = 0.05
        self.port = self.call(self.gateway.start("127.0.0.1", 0))
        for name in ("a", "b"):
            self.wait_bound(name)

    def write(
        self,
        *,
        target: str,
        upstreams: tuple[str, ...] = ("a", "b"),
        limits: str = "",
        extra: str = "",
    ) -> None:
        self.path.write_text(
            BASE
            % {
                "limits": limits,
                "extra": extra,
                "upstreams": "\n".join(_upstream(n, self.ports[n]) for n in upstreams),
                "target": target,
                "db": self.tmp / "gw.sqlite3",
            }
        )

    def wait_bound(self, name: str) -> None:
        upstream = self.gateway.drivers[name]
        assert isinstance(upstream, SmppUpstream)
        self.call(upstream.wait_bound(10))

    def carrier_of(self, text: bytes) -> list[str]:
        return [n for n, smsc in self.smscs.items() if any(sm == text for _, sm in smsc.submits)]

    def close(self) -> None:
        self.call(self.gateway.stop())
        for smsc in self.smscs.values():
            self.call(smsc.stop())
        self.stop_loop()


class Submitter(threading.Thread):
    """Submits one message at a time, each tagged with the reload generation around it."""

    def __init__(self, port: int, generation: list[int]) -> None:
        super().__init__(daemon=True)
        self.generation = generation  # [n]: odd while a reload is under way
        self.done = threading.Event()
        self.results: list[tuple[bytes, int, int, int]] = []  # text, gen before, after, status
        self.error: BaseException | None = None
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=10, allow_unknown_opt_params=True
        )
        self.client.connect()
        self.client.bind_transmitter(system_id="shop", password="secret")

    def run(self) -> None:
        try:
            i = 0
            while not self.done.is_set():
                text = b"m%d" % i
                before = self.generation[0]
                self.client.send_message(
                    source_addr="shop", destination_addr="4915100000001", short_message=text
                )
                resp = self.client.read_pdu()
                after = self.generation[0]
                status = int(resp.status)  # type: ignore[attr-defined]
                self.results.append((text, before, after, status))
                i += 1
                time.sleep(0.005)  # steady, not flat out: the reloads are what is under test
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_reloads_under_a_steady_bind_keep_it_and_route_by_the_table_at_accept(
    tmp_path: Path,
) -> None:
    gw = Running(tmp_path)
    generation = [0]
    submitter = Submitter(gw.port, generation)
    submitter.start()
    # The table in force in each generation (even numbers), and what the reload changes.
    limits = ", window: 5, throughput: 5000"
    steps: list[tuple[dict[str, object], str | None]] = [
        ({"target": "b"}, None),  # route change
        ({"target": "b", "limits": limits}, None),  # account limits
        ({"target": "c", "upstreams": ("a", "b", "c"), "limits": limits}, None),  # added
        ({"target": "a", "limits": limits}, None),  # upstream c removed
        ({"target": "nowhere", "limits": limits}, "unknown target 'nowhere'"),  # invalid
    ]
    expected = ["a"]
    try:
        for changes, error in steps:
            time.sleep(0.3)
            gw.write(**changes)  # type: ignore[arg-type]
            generation[0] += 1
            result = gw.call(gw.gateway.reload())
            generation[0] += 1
            if error is None:
                assert result.error is None, result.error
                expected.append(str(changes["target"]))
            else:
                assert result.error is not None and error in result.error
                assert "line" in result.error  # where in the file, for `smsgw reload`
                expected.append(expected[-1])
        time.sleep(0.3)
    finally:
        submitter.done.set()
        submitter.join(timeout=15)
    try:
        assert submitter.error is None, repr(submitter.error)
        results = submitter.results
        assert len(results) > 50
        assert all(status == 0 for _, _, _, status in results), "a submit was refused"
        assert gw.gateway.server.auth.bound["shop"] == 1  # the same bind throughout
        assert gw.gateway.server.auth.accounts["shop"].window == 5  # the limit applied
        assert "c" not in gw.gateway.drivers and gw.smscs["c"].unbinds >= 1  # drained, unbound

        def all_sent() -> bool:
            return sum(len(s.submits) for s in gw.smscs.values()) >= len(results)

        deadline = time.monotonic() + 20
        while not all_sent() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all_sent(), "an accepted message was not sent"
        checked = 0
        for text, before, after, _ in results:
            carriers = gw.carrier_of(text)
            assert len(carriers) == 1, (text, carriers)
            if before == after and before % 2 == 0:  # accepted wholly within one table
                assert carriers[0] == expected[before // 2], (text, before, carriers)
                checked += 1
            else:  # accepted while a reload ran: by one table or the next
                assert carriers[0] in expected[before // 2 : (after + 1) // 2 + 1], (text, carriers)
        assert checked > 50
    finally:
        submitter.client.unbind()
        submitter.client.disconnect()
        gw.close()


def test_a_removed_account_is_unbound_and_a_new_one_can_bind(tmp_path: Path) -> None:
    gw = Running(tmp_path)
    try:
        gw.write(target="a", extra=", {system_id: shop2, password: two}")
        assert gw.call(gw.gateway.reload()).applied == ["accounts added: shop2"]
        first = smpplib.client.Client(
            "127.0.0.1", gw.port, timeout=10, allow_unknown_opt_params=True
        )
        first.connect()
        first.bind_transmitter(system_id="shop2", password="two")
        gw.write(target="a")
        result = gw.call(gw.gateway.reload())
        assert result.applied == ["accounts removed: shop2"]
        pdu = first.read_pdu()  # the gateway unbinds the removed account's bind
        assert pdu.command == "unbind"  # type: ignore[attr-defined]
    finally:
        gw.close()


def test_a_restart_only_setting_is_named_and_kept(tmp_path: Path) -> None:
    gw = Running(tmp_path)
    try:
        text = gw.path.read_text() + "listen: {host: 127.0.0.1, port: 2776}\n"
        gw.path.write_text(text)
        result = gw.call(gw.gateway.reload())
        assert result.error is None
        assert result.restart_needed == ["listen"]
        assert gw.gateway.server.config.listen.port != 2776  # still the running listener
    finally:
        gw.close()


def test_an_empty_file_is_refused_and_the_accounts_kept(tmp_path: Path) -> None:
    """A file emptied by a bad edit reloads into nothing: refused, as check-config refuses it."""
    gw = Running(tmp_path)
    try:
        accounts = dict(gw.gateway.server.auth.accounts)
        assert accounts
        gw.path.write_text("")
        result = gw.call(gw.gateway.reload())
        assert result.error is not None
        assert gw.gateway.server.auth.accounts == accounts
        assert gw.gateway.config.routes  # the running table is the old one
    finally:
        gw.close()


def test_reload_through_the_control_socket(tmp_path: Path) -> None:
    gw = Running(tmp_path)
    try:
        control = gw.gateway.config.control_path()
        assert control is not None

        def ask(request: dict[str, object]) -> dict[str, object]:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(30)
                sock.connect(str(control))
                sock.sendall(json.dumps(request).encode() + b"\n")
                answer: dict[str, object] = json.loads(sock.makefile().readline())
                return answer

        gw.write(target="b")
        answer = ask({"command": "reload"})
        assert answer == {"ok": True, "result": {"applied": ["routes"], "restart_needed": []}}
        gw.path.write_text("accounts: [{system_id: shop, password: secret, windw: 3}]\n")
        answer = ask({"command": "reload"})
        assert answer["ok"] is False and "windw" in str(answer["error"])
        assert gw.gateway.config.routes[0].targets == ("b",)  # the old config still runs
    finally:
        gw.close()


SERVE = """
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: demo, password: demo}%s]
simulated_carriers: {sim: {delivery_delay: 0.0}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
"""


def test_sighup_reloads_a_running_serve(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    db = tmp_path / "var" / "gw.sqlite3"
    config.write_text(SERVE % ("", db))
    served = Served(config)
    try:
        port = served.port()
        config.write_text(SERVE % (", {system_id: late, password: late}", db))
        served.proc.send_signal(signal.SIGHUP)
        served.wait_for(r"reloaded")
        assert served.proc.poll() is None
        client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
        client.connect()
        client.bind_transmitter(system_id="late", password="late")
        client.unbind()
        client.disconnect()
        assert served.stop() == 0
    finally:
        served.kill()


def test_a_changed_upstream_rebinds_and_the_old_bind_unbinds(tmp_path: Path) -> None:
    gw = Running(tmp_path)
    try:
        before = gw.gateway.drivers["b"]
        gw.path.write_text(
            gw.path.read_text().replace(
                f"port: {gw.ports['b']}, ", f"port: {gw.ports['b']}, window: 3, "
            )
        )
        result = gw.call(gw.gateway.reload())
        assert result.applied == ["upstreams changed: b"]
        after = gw.gateway.drivers["b"]
        assert after is not before and isinstance(after, SmppUpstream)
        assert after.config.window == 3
        gw.wait_bound("b")
        assert gw.smscs["b"].binds == 2 and gw.smscs["b"].unbinds == 1
        gw.write(target="b")
        gw.call(gw.gateway.reload())
        client = smpplib.client.Client(
            "127.0.0.1", gw.port, timeout=10, allow_unknown_opt_params=True
        )
        client.connect()
        client.bind_transmitter(system_id="shop", password="secret")
        client.send_message(
            source_addr="shop", destination_addr="4915100000001", short_message=b"x"
        )
        assert int(client.read_pdu().status) == 0  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while not gw.carrier_of(b"x") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gw.carrier_of(b"x") == ["b"]
        client.unbind()
        client.disconnect()
    finally:
        gw.close()


def test_modem_banks_added_grown_shrunk_and_removed_under_a_steady_bind(tmp_path: Path) -> None:
    """A bank of emulated modems added by a reload takes the route at once, a modem added to
    it starts and shares the traffic, one removed stops, and the bank removed drains: the
    application's bind stays up and submitting throughout, and every message is sent."""
    gw = Running(tmp_path)
    generation = [0]
    submitter = Submitter(gw.port, generation)
    submitter.start()
    bank = "modem_banks: {usb: {emulate: %d, emulator: {report_delay: 0.05}}}\n"

    def reload(text: str, applied: list[str]) -> None:
        gw.path.write_text(text)
        result = gw.call(gw.gateway.reload())
        assert result.error is None, result.error
        assert result.applied == applied and result.restart_needed == []

    def sent_by(network: SimNetwork, imei: str) -> int:
        return sum(1 for m in network.received if m.modem == imei)

    def wait_for(check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 20
        while not check() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert check(), what

    try:
        gw.write(target="'bank:usb'")
        base = gw.path.read_text()
        reload(base + bank % 1, ["modem banks added: usb", "routes"])
        emulated = gw.gateway.emulated["usb"]
        network = emulated.network
        first = emulated.modems["modem1"].imei
        wait_for(lambda: sent_by(network, first) >= 5, "the new bank sends")
        reload(base + bank % 2, ["modem banks changed: usb"])
        second = emulated.modems["modem2"].imei
        wait_for(lambda: sent_by(network, second) >= 5, "the added modem sends")
        # modem1 removed: the bank keeps the one modem listed, on its emulator.
        only_second = "{emulate: 1, modems: [{name: modem2}], emulator: {report_delay: 0.05}}"
        reload(f"{base}modem_banks: {{usb: {only_second}}}\n", ["modem banks changed: usb"])
        assert "modem1" not in emulated.modems  # its emulator stopped with it
        before = sent_by(network, first)
        count = len(submitter.results)
        wait_for(lambda: len(submitter.results) >= count + 20, "submits go on")
        assert sent_by(network, first) == before  # the removed modem sends no more
        gw.write(target="a")
        reload(gw.path.read_text(), ["modem banks removed: usb", "routes"])
        assert "usb" not in gw.gateway.banks and "bank:usb" not in gw.gateway.drivers
        assert "usb" not in gw.gateway.emulated
        count = len(submitter.results)
        wait_for(lambda: len(submitter.results) >= count + 20, "submits go on after")
    finally:
        submitter.done.set()
        submitter.join(timeout=15)
    try:
        assert submitter.error is None, repr(submitter.error)
        assert all(status == 0 for _, _, _, status in submitter.results), "a submit was refused"
        assert gw.gateway.server.auth.bound["shop"] == 1  # the same bind throughout

        def all_sent() -> bool:
            by_modem = len(network.received)
            by_carrier = sum(len(s.submits) for s in gw.smscs.values())
            return by_modem + by_carrier >= len(submitter.results)

        wait_for(all_sent, "an accepted message was not sent")
        texts = [m.text for m in network.received] + [
            sm.decode() for s in gw.smscs.values() for _, sm in s.submits
        ]
        assert sorted(texts) == sorted(t.decode() for t, *_ in submitter.results)  # once each
    finally:
        submitter.client.unbind()
        submitter.client.disconnect()
        gw.close()
