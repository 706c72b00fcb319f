"""Recipient lists: CSV with or without a header, phone numbers as people write them, and
per-row placeholders in a text. Pure (no files, no network): `smsgw send --to-file` and
``POST /api/v1/batches`` both read their lists here, so a file means the same to both.

A CSV whose first cell is a phone number has no header: every row's first cell is a number.
Otherwise the first row names the columns; the number is in the column named like
`NUMBER_COLUMNS` (the first one found), else the first column, and every column is a
``{name}`` placeholder for `render`.
"""

from __future__ import annotations

import csv
import io
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "NUMBER_COLUMNS",
    "RecipientError",
    "Row",
    "clean_number",
    "placeholders",
    "read_csv",
    "render",
]

NUMBER_COLUMNS = ("to", "number", "phone", "msisdn", "destination", "recipient")
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_SEPARATORS = re.compile(r"[\s\-().]")


class RecipientError(ValueError):
    """A list or template that cannot be read at all (not one bad number: see `clean_number`)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One recipient as written: its line (1-based, the header being line 1), its number
    cell, and its columns by header name (empty without a header)."""

    line: int
    number: str
    fields: dict[str, str] = field(default_factory=dict)


def clean_number(raw: str) -> str | None:
    """`raw` without spaces, dashes, dots and brackets when it is a phone number (``+`` and
    up to 20 digits), else None."""
    number = _SEPARATORS.sub("", raw)
    return number if _NUMBER.fullmatch(number) else None


def read_csv(text: str, where: str) -> list[Row]:
    """The recipients of a CSV text (blank rows skipped).

    Args:
        text: the file's text (a BOM already removed).
        where: how to name the file in errors.

    Raises:
        RecipientError: not CSV, no rows, or a row whose cell count differs from the header's.
    """
    try:
        rows = [
            (line, r)
            for line, r in enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
            if r and any(c.strip() for c in r)
        ]
    except csv.Error as exc:
        raise RecipientError(f"{where}: not a text or CSV file ({exc})") from None
    if not rows:
        raise RecipientError(f"{where}: no numbers in it")
    head = [c.strip() for c in rows[0][1]]
    if clean_number(head[0]) is not None:  # no header: numbers only
        return [Row(line, r[0]) for line, r in rows]
    lowered = [h.lower() for h in head]
    column = next((lowered.index(c) for c in NUMBER_COLUMNS if c in lowered), 0)
    out = []
    for line, r in rows[1:]:
        if len(r) != len(head):
            raise RecipientError(f"{where}:{line}: {len(r)} columns, the header has {len(head)}")
        out.append(Row(line, r[column], dict(zip(head, (c.strip() for c in r), strict=True))))
    return out


def placeholders(template: str) -> set[str]:
    """The ``{name}`` fields `template` uses (``{{`` is a literal brace).

    Raises:
        RecipientError: a malformed placeholder (an unmatched brace).
    """
    try:
        return {
            name.split(".", 1)[0].split("[", 1)[0]
            for _text, name, _spec, _conv in string.Formatter().parse(template)
            if name is not None
        }
    except ValueError as exc:
        raise RecipientError(f"the text's placeholders: {exc}") from None


def render(template: str, fields: Mapping[str, str]) -> str:
    """`template` with its ``{name}`` placeholders filled from `fields`.

    Raises:
        KeyError: a placeholder with no such field.
        RecipientError: a malformed placeholder.
    """
    try:
        return template.format_map(fields)
    except (ValueError, IndexError) as exc:
        raise RecipientError(f"the text's placeholders: {exc}") from None
