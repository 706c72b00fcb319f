"""The address rule of the MO path (`gateway.inbound.app_address`): what an application's
deliver_sm gets for an address it could not carry as it came."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.inbound import app_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("4915112345678", "4915112345678"),  # fits: unchanged
        ("Shop", "Shop"),
        ("", ""),
        ("ΔHMOΣ", "DHMOS"),  # GSM 7-bit Greek capitals: Latin look-alikes, then ELOT 743
        ("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX"),
        ("ΦΓΛΩΠΨΣΘΞ", "FGLOPPSSTHX"),
        ("€-Bank", "E-Bank"),
        ("Café Ørsted", "Cafe Orsted"),
        ("Straße", "Strasse"),
        ("日本", "??"),
        ("a\x01b", "a?b"),
        ("alerts@monitoring.example.com", "alerts@monitoring.ex"),  # truncated to 20
        ("x" * 64, "x" * 20),
    ],
)
def test_app_address(address: str, expected: str) -> None:
    assert app_address(address) == expected


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_every_address_becomes_printable_ascii_of_at_most_20(address: str) -> None:
    out = app_address(address)
    assert out.isascii() and out.isprintable() and len(out) <= 20
