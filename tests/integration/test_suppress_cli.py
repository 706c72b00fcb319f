"""`smsgw suppress` as a subprocess against a served gateway, through its HTTP API with the
node's local token: add, show, remove, import a CSV file, export to a file and to stdout; one
line on stderr and exit 2 when the gateway is down, exit 1 on an error answer."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.integration.serve import Served
from tests.integration.test_http_api import CONFIG, TOKEN, _smsgw, _until


def test_the_suppress_commands(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        (CONFIG % {"token": TOKEN, "db": tmp_path / "gw.sqlite3", "tls": ""}).replace(
            "max_body: 4096", "max_body: 1048576"
        )
        + f"listen: {{host: 127.0.0.1, port: 0}}\ncontrol_socket: {tmp_path / 'smsgw.sock'}\n"
    )
    served = Served(config)
    c = ("-c", str(config))
    try:
        served.wait_for("http listening", timeout=30)
        _until((tmp_path / "smsgw.token").exists, "the local token written")
        added = _smsgw("suppress", "add", "+49 151 0000 0042", "--scope", "Shop", *c, cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        assert "4915100000042: suppressed" in added.stdout and "Shop:" in added.stdout
        assert "(cli)" in added.stdout
        shown = _smsgw("suppress", "show", "4915100000042", *c, cwd=tmp_path)
        assert shown.returncode == 0 and "Shop: since" in shown.stdout, shown.stderr
        removed = _smsgw("suppress", "remove", "4915100000042", *c, cwd=tmp_path)
        assert removed.returncode == 0 and "removed (1)" in removed.stdout, removed.stderr
        again = _smsgw("suppress", "remove", "4915100000042", *c, cwd=tmp_path)
        assert again.returncode == 1 and again.stderr.startswith("error: ")
        assert "Traceback" not in again.stderr
        bad = _smsgw("suppress", "show", "nope", *c, cwd=tmp_path)
        assert bad.returncode == 1 and "not a phone number" in bad.stderr

        source = tmp_path / "in.csv"
        source.write_text("number\n" + "".join(f"+3361{i:07d}\n" for i in range(5000)))
        imported = _smsgw("suppress", "import", str(source), *c, cwd=tmp_path)
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.startswith("suppressed 5000, invalid 0")
        target = tmp_path / "out.csv"
        exported = _smsgw("suppress", "export", str(target), *c, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        rows = list(csv.reader(io.StringIO(target.read_text())))
        assert {r[0] for r in rows[1:]} == {f"3361{i:07d}" for i in range(5000)}
        to_stdout = _smsgw("suppress", "export", *c, cwd=tmp_path)
        assert to_stdout.stdout.replace("\r\n", "\n") == target.read_text().replace("\r\n", "\n")
        missing = _smsgw("suppress", "import", str(tmp_path / "none.csv"), *c, cwd=tmp_path)
        assert missing.returncode == 1 and missing.stderr.startswith("error: ")

        assert served.stop() == 0
        down = _smsgw("suppress", "show", "4915100000042", *c, cwd=tmp_path)
        assert down.returncode == 2 and "is it running" in down.stderr
        assert "Traceback" not in down.stderr
    finally:
        served.kill()
