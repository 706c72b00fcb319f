from __future__ import annotations

import argparse
from pathlib import Path

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


def _send_args(*argv: str) -> argparse.Namespace:
    from gateway.cli import _parser  # noqa: PLC0415

    return _parser().parse_args(["send", *argv])


def test_recipients_from_repeated_to_and_comma_lists() -> None:
    from gateway.cli import _messages  # noqa: PLC0415

    args = _send_args("--to", "+49 151 1, 4915-2", "--to", "(0049) 3", "hi")
    assert _messages(args) == [("+491511", "hi"), ("49152", "hi"), ("00493", "hi")]


def test_a_csv_header_is_told_from_a_number(tmp_path: Path) -> None:
    from gateway.cli import _messages  # noqa: PLC0415

    plain = tmp_path / "plain.csv"
    plain.write_text("+49151,ignored\n49152,x\n")
    assert [n for n, _ in _messages(_send_args("--to-file", str(plain), "{x}"))] == [
        "+49151",
        "49152",
    ]
    headed = tmp_path / "headed.csv"
    headed.write_text("Name,MSISDN\nAnna,49153\n")
    assert _messages(_send_args("--to-file", str(headed), "Hi {Name}")) == [("49153", "Hi Anna")]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "no numbers"),
        ("name,phone\nAnna\n", "1 columns, the header has 2"),
        ("name,phone\nAnna,12ab\n", "not a phone number"),
    ],
)
def test_bad_number_files(tmp_path: Path, content: str, says: str) -> None:
    from gateway.cli import _InputError, _messages  # noqa: PLC0415

    path = tmp_path / "to.csv"
    path.write_text(content)
    with pytest.raises(_InputError, match=says):
        _messages(_send_args("--to-file", str(path), "hi"))
