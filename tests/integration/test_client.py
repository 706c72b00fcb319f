"""`gateway.client.SmppClient` against peers that are not ours: the fake SMSC (smpplib PDUs)
for submits, receipts and refusals, and our server over TLS with a throwaway CA."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from gateway.client import BindRefused, ClientReceipt, SmppClient, address_ton_npi
from gateway.smpp.receipt import ReceiptState
from tests.fakes.smsc import ESME_RINVPASWD, Behaviour, FakeSmsc
from tests.integration.loop import ServerOnLoop

ROOT = Path(__file__).resolve().parents[2]


async def _with_fake(behaviour: Behaviour, text: str) -> tuple[FakeSmsc, list[ClientReceipt]]:
    smsc = FakeSmsc(behaviour)
    port = await smsc.start()
    try:
        async with SmppClient("127.0.0.1", port, response_timeout=5) as client:
            await client.bind_transceiver("esme", "pw")
            parts = await client.submit_text("+4915112345678", text, registered_delivery=1, ref=77)
            assert [p.status for p in parts] == [0] * len(parts)
            assert [p.message_id for p in parts] == [r.upstream_id for r in smsc.records]
            await smsc.send_mo("4915112345678", "12345", [(b"an MO, not a receipt", 0)])
            receipts = []
            async with asyncio.timeout(10):
                while len(receipts) < len(parts):
                    receipts.append(await client.receipt())
            await client.unbind()
        return smsc, receipts
    finally:
        await smsc.stop()


def test_parts_and_receipts_from_tlvs() -> None:
    text = "A" * 200  # two GSM parts
    smsc, receipts = asyncio.run(_with_fake(Behaviour(receipt_id="decimal"), text))
    assert len(smsc.records) == 2
    assert [r.udh for r in smsc.records] == [
        b"\x05\x00\x03\x4d\x02\x01",
        b"\x05\x00\x03\x4d\x02\x02",
    ]
    assert b"".join(r.short_message[6:] for r in smsc.records) == text.encode()
    assert {r.destination for r in smsc.records} == {"4915112345678"}
    # The text spells the id in decimal; the TLV carries it as given, and wins.
    assert sorted(r.message_id for r in receipts) == sorted(r.upstream_id for r in smsc.records)
    assert all(r.stat is ReceiptState.DELIVRD and r.final for r in receipts)
    assert smsc.unbinds == 1


def test_receipt_from_text_only() -> None:
    smsc, receipts = asyncio.run(
        _with_fake(Behaviour(receipt_tlvs=False, receipt_state=5), "short")
    )
    (receipt,) = receipts
    assert receipt.message_id == smsc.records[0].upstream_id
    assert receipt.stat is ReceiptState.UNDELIV
    assert receipt.err == "000"


def test_refused_bind() -> None:
    async def go() -> None:
        smsc = FakeSmsc(Behaviour(refuse_binds=1))
        port = await smsc.start()
        try:
            async with SmppClient("127.0.0.1", port, response_timeout=5) as client:
                with pytest.raises(BindRefused) as err:
                    await client.bind_transceiver("esme", "bad")
                assert err.value.status == ESME_RINVPASWD
        finally:
            await smsc.stop()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("+49 151 1234", ("491511234", 1, 1)),
        ("4915112345678", ("4915112345678", 0, 1)),
        ("Shop", ("Shop", 5, 0)),
    ],
)
def test_address_ton_npi(written: str, expected: tuple[str, int, int]) -> None:
    assert address_ton_npi(written) == expected


# -- over TLS to our server --------------------------------------------------------------------


@pytest.fixture
def tls_running(tmp_path: Path) -> Iterator[tuple[ServerOnLoop, trustme.CA]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    config = f"""
accounts: [{{system_id: shop, password: secret}}]
simulated_carriers: {{sim: {{}}}}
routes: [{{name: all, targets: [sim]}}]
listen: {{tls_port: 0, tls_cert: '{tmp_path / "cert.pem"}', tls_key: '{tmp_path / "key.pem"}'}}
"""
    r = ServerOnLoop(config, tmp_path / "smsgw.sqlite3")
    yield r, ca
    r.close()


def test_tls_submit_to_our_server(tls_running: tuple[ServerOnLoop, trustme.CA]) -> None:
    running, ca = tls_running
    port = running.server.tls_port
    assert port is not None
    context = ssl.create_default_context()
    ca.configure_trust(context)  # host name checked too: the certificate is for 127.0.0.1

    async def go() -> str:
        async with SmppClient("127.0.0.1", port, ssl_context=context) as client:
            await client.bind_transceiver("shop", "secret")
            (part,) = await client.submit_text("4915112345678", "Привет", source="Shop")
            await client.unbind()
        assert part.status == 0
        return part.message_id

    message_id = asyncio.run(go())
    record = running.call(running.store.get(message_id))
    assert record.message.data_coding == 8
    assert record.message.short_message == "Привет".encode("utf-16-be")
    assert (record.message.source_addr, record.message.source_addr_ton) == ("Shop", 5)


def test_send_command_over_tls(
    tls_running: tuple[ServerOnLoop, trustme.CA], tmp_path: Path
) -> None:
    running, ca = tls_running
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    command = [sys.executable, "-m", "gateway.cli", "send", "--tls", "--cafile"]
    command += [str(tmp_path / "ca.pem"), "--port", str(running.server.tls_port)]
    command += ["--system-id", "shop", "--to", "4915112345678", "over TLS"]
    done = subprocess.run(  # noqa: PLW1510 - the exit code is what is tested
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SMSGW_PASSWORD": "secret", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"^part 1/1: id=(\S+)$", done.stdout, re.M)
    assert found is not None
    assert running.call(running.store.get(found[1])).message.short_message == b"over TLS"
    # Without the CA the certificate is not trusted: a connection error, exit 2.
    command.remove("--cafile")
    command.remove(str(tmp_path / "ca.pem"))
    done = subprocess.run(  # noqa: PLW1510
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SMSGW_PASSWORD": "secret", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
