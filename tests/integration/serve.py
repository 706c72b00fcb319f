"""`smsgw serve` as a subprocess, for the tests that run the command a user runs: its output
read by a thread into a queue, so every wait for a log line has a deadline."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# The console (`port=2775`) and JSON (`"port": 2775`) spellings of a logged port.
PORT = r'port"?[=:] ?(\d+)'


class Served:
    """A running `smsgw serve -c config`; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first line from now on that matches `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the gateway never logged {pattern!r}") from None
            if found := re.search(pattern, line):
                return found

    def port(self, what: str = "listening") -> int:
        """The port the gateway logs after `what` (the SMPP listener by default)."""
        return int(self.wait_for(f"{what}.*{PORT}")[1])

    def stop(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Whatever a test left running (call in `finally`)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
