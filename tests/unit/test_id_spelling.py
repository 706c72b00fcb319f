"""How an upstream spells its message ids (`IdSpelling`, issue 8 item 7): case and leading
zeros never matter, in any format; once the format is known, configured or learnt, an id is
never read in another base."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.receipt import ID_FORMATS, IdSpelling


def meets(spelling: IdSpelling, sent: str, received: str) -> bool:
    """Whether a receipt spelt `received` finds the message sent as `sent` (widened look)."""
    stored = set(spelling.sent(sent))
    return bool(stored & set(spelling.received(received, widened=True, learn=False)))


@pytest.mark.parametrize("id_format", ID_FORMATS)
def test_case_and_leading_zeros_never_matter(id_format: str) -> None:
    spelling = IdSpelling(id_format)
    pairs = {
        "decimal": ("000123", "123"),
        "hex": ("0x00AB12", "ab12"),
        "uuid": ("0e999f21-5c1a-4b2e-9d3c-00ab12cd34ef", "E999F21-5C1A-4B2E-9D3C-AB12CD34EF"),
        "string": ("Msg-0007-x", "MSG-7-X"),
        "auto": ("0e999f21-5c1a", "E999F21-5C1A"),
        "hex_decimal": ("0A1B2C", "662316"),  # hex responses, decimal receipts
    }
    sent, received = pairs[id_format]
    assert meets(spelling, sent, received)
    assert not meets(spelling, sent, received + "1")


@pytest.mark.parametrize("id_format", ["hex", "decimal", "uuid", "string"])
def test_a_known_format_reads_no_other_base(id_format: str) -> None:
    spelling = IdSpelling(id_format)
    assert not meets(spelling, "1E4", "484")  # 0x1E4 == 484: another base
    assert not meets(spelling, "10", "0A")
    assert not meets(spelling, "16", "10")


def test_auto_learns_the_bases_then_reads_no_other() -> None:
    spelling = IdSpelling("auto")
    assert spelling.bases == (None, None)
    assert meets(spelling, "0A1B2C", "662316")  # unknown yet: the value may match
    spelling.sent("1E4")
    assert spelling.bases == ("hex", None)
    spelling.received("1E5", widened=False)  # the receipts spell ids in hex too
    assert spelling.known and spelling.bases == ("hex", "hex")
    assert not meets(spelling, "1E4", "484")
    assert meets(spelling, "1E4", "01e4")


def test_auto_learns_decimal_only_after_many_letterless_ids() -> None:
    spelling = IdSpelling("auto")
    for n in range(31):
        spelling.sent(str(1000 + n))
    assert spelling.bases[0] is None  # a hex carrier's ids can run letterless a while
    spelling.sent("1031")
    assert spelling.bases[0] == "decimal"


def test_auto_learns_a_carrier_that_writes_receipts_in_decimal() -> None:
    """Hex in submit_sm_resp, decimal in the receipt text (Kannel's msg-id-type): learnt
    from the receipts' ids, and then the value in decimal is what matches."""
    spelling = IdSpelling("auto")
    spelling.sent("ABC000")
    for n in range(32):
        spelling.received(str(11_255_808 + n), widened=False)
    assert spelling.bases == ("hex", "decimal")
    assert meets(spelling, "ABC001", "11255809")
    assert not meets(spelling, "ABC001", "ABC002")


def test_restore_takes_up_what_was_learnt_but_not_over_a_configured_format() -> None:
    auto = IdSpelling("auto")
    auto.restore("hex", "hex")
    assert auto.known and not meets(auto, "1E4", "484")
    configured = IdSpelling("hex_decimal")
    configured.restore("text", "text")
    assert configured.bases == ("hex", "decimal")
    with pytest.raises(ValueError, match="id_format"):
        IdSpelling("octal")


@given(st.integers(0, 2**64), st.integers(0, 2**64), st.sampled_from(["hex", "decimal"]))
def test_distinct_numbers_never_meet_in_a_known_base(a: int, b: int, base: str) -> None:
    spelling = IdSpelling(base)
    spell = (lambda n: f"{n:X}") if base == "hex" else str
    assert meets(spelling, spell(a), spell(b)) == (a == b)
    assert meets(spelling, spell(a), "000" + spell(b).lower()) == (a == b)
