"""Shared test configuration.

Hypothesis: no per-example deadline (CI machines are shared and timing is not what these tests
check; speed lives in bench/), and a derandomized, larger profile under CI=true so a CI run is
reproducible and a failure there can be replayed locally with HYPOTHESIS_PROFILE=ci.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=200,
    derandomize=True,
    print_blob=True,
)
_default = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "bench" / "corpus.json"


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    """The standard workload (../shared/bench/corpus.json beside the checkout)."""
    if not CORPUS.exists():
        pytest.fail(f"the standard corpus is missing: {CORPUS}")
    return CORPUS


@pytest.fixture
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A Mosquitto broker of the test's own (see tests/broker.py); stopped after it."""
    from tests.broker import Broker  # noqa: PLC0415 - only tests that ask for a broker

    broker = Broker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.kill()
