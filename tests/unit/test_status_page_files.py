"""The status page's files: all there, and nothing fetched from elsewhere."""

from __future__ import annotations

import re

from gateway.http.status_page import STATIC


def test_page_files_fetch_nothing_from_elsewhere() -> None:
    names = {p.name for p in STATIC.iterdir()}
    assert {"status.html", "status.css", "status.js"} <= names
    for path in STATIC.iterdir():
        text = path.read_text()
        # The SVG namespace is a name, not a fetch; any other scheme-ful URL would be one.
        urls = set(re.findall(r"\b(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
        assert "@import" not in text, path.name
        # Text goes in with textContent: no markup is built from what the gateway reports.
        assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", text)
