from __future__ import annotations

import pytest

from gateway.cli import main
from gateway.smpp import SubmitSm, decode_pdu


def test_segment_prints_parts_and_pdus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segment", "x" * 200, "--pdus", "--ref", "7", "--destination", "4915"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "encoding: GSM7 (data_coding 0)"
    assert out[1] == "parts: 2 (udh8)"
    assert out[2] == "  part 1: 153 septets, udh 050003070201"
    pdus = [decode_pdu(bytes.fromhex(line)) for line in out[4:]]
    assert [type(p) for p in pdus] == [SubmitSm, SubmitSm]
    assert all(p.destination_addr == "4915" for p in pdus)


def test_segment_refuses_too_long(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segment", "y" * 400, "--max-parts", "2"]) == 2
    assert "3 parts" in capsys.readouterr().err


def test_decode_smpp_pdu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "00000010800000040000000d00000001"]) == 0
    assert "SubmitSmResp(message_id='', tlvs=(), sequence_number=1, command_status=13)" in (
        capsys.readouterr().out
    )


def test_decode_rejects_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "zz"]) == 2
    assert "not hexadecimal" in capsys.readouterr().err
