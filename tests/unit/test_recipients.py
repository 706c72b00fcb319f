"""Recipient lists (gateway/recipients.py), read the same by `smsgw send` and batches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.recipients import RecipientError, Row, clean_number, placeholders, read_csv, render


def test_a_list_without_header_is_numbers_in_the_first_column() -> None:
    rows = read_csv("+49 151 1\n\n4915112,ignored\n", "f.csv")
    assert rows == [Row(1, "+49 151 1"), Row(3, "4915112")]


def test_a_header_names_the_number_column_and_the_fields() -> None:
    rows = read_csv("name,MSISDN\nAnna, +491511\n", "f.csv")
    assert rows == [Row(2, " +491511", {"name": "Anna", "MSISDN": "+491511"})]
    # no known column name: the first column
    assert read_csv("who,code\n+491,x\n", "f.csv")[0].number == "+491"


def test_a_row_with_other_cells_than_the_header_names_its_line() -> None:
    with pytest.raises(RecipientError, match=r"f.csv:3: 1 columns, the header has 2"):
        read_csv("name,phone\nA,1\nB\n", "f.csv")
    with pytest.raises(RecipientError, match="no numbers"):
        read_csv("\n , \n", "f.csv")


def test_numbers_as_people_write_them() -> None:
    assert clean_number("+49 (151) 123-45.67") == "+491511234567"
    assert clean_number("0049151") == "0049151"
    for bad in ("", "+", "abc", "1" * 21, "++49"):
        assert clean_number(bad) is None


def test_placeholders_and_render() -> None:
    assert placeholders("Hi {name}, {{not}} {code!r} {a.b}") == {"name", "code", "a"}
    assert render("Hi {name}", {"name": "Anna"}) == "Hi Anna"
    with pytest.raises(KeyError):
        render("Hi {name}", {})
    with pytest.raises(RecipientError):
        placeholders("Hi {name")
    with pytest.raises(RecipientError):
        render("Hi {0}", {})


@given(st.lists(st.from_regex(r"\+?[0-9]{3,15}", fullmatch=True), min_size=1, max_size=20))
def test_a_written_list_reads_back(numbers: list[str]) -> None:
    text = "phone,n\n" + "".join(f"{n},{i}\n" for i, n in enumerate(numbers))
    rows = read_csv(text, "f.csv")
    assert [r.number for r in rows] == numbers
    assert [r.fields["n"] for r in rows] == [str(i) for i in range(len(numbers))]
