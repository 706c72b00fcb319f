"""The store's PostgreSQL scaling keys: pool sizes and a replica, checked where they are read."""

from __future__ import annotations

import pydantic
import pytest

from gateway.app import _store
from gateway.config import GatewayConfig, StoreConfig
from gateway.store.postgres import PostgresStore

PG = {"backend": "postgres", "dsn": "postgresql://db/smsgw"}


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ({"replica_dsn": "postgresql://replica/smsgw"}, "replica_dsn needs backend postgres"),
        ({**PG, "pool_min": 5, "pool_max": 4}, "pool_min must not exceed pool_max"),
        ({**PG, "pool_max": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_store_keys(keys: dict[str, object], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        StoreConfig.model_validate(keys)


def test_the_keys_reach_the_postgres_store() -> None:
    keys = {**PG, "pool_min": 1, "pool_max": 3, "replica_dsn": "postgresql://replica/smsgw"}
    config = GatewayConfig.model_validate({"store": keys})
    store = _store(config)
    assert isinstance(store, PostgresStore)
    assert (store.min_size, store.max_size) == (1, 3)
    assert store.replica_dsn == "postgresql://replica/smsgw"
    default = StoreConfig.model_validate(PG)
    assert (default.pool_min, default.pool_max, default.replica_dsn) == (2, 10, None)
