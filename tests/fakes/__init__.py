"""Fake peers for tests: they bind to ephemeral ports on 127.0.0.1 only."""
