"""The store's fast verdict is `decide`'s, whatever the facts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.check import StoreCheck, decided, store_verdict
from gateway.policy.rules import Cap, ClassRule, Facts, Reason

CAPS = (Cap(2, 86400.0), Cap(5, 30 * 86400.0, per_account=True))


@given(
    opt_out=st.booleans(),
    dedup=st.booleans(),
    caps=st.sampled_from([(), CAPS[:1], CAPS]),
    stopped=st.none() | st.sampled_from(list(Reason)),
    suppressed=st.booleans(),
    dead=st.booleans(),
    duplicate=st.none() | st.just("m1"),
    counts=st.tuples(st.integers(0, 6), st.integers(0, 6)),
)
def test_the_fast_verdict_is_decides(
    *,
    opt_out: bool,
    dedup: bool,
    caps: tuple[Cap, ...],
    stopped: Reason | None,
    suppressed: bool,
    dead: bool,
    duplicate: str | None,
    counts: tuple[int, int],
) -> None:
    check = StoreCheck(ClassRule("c", opt_out=opt_out, caps=caps, dedup=dedup), stopped=stopped)
    facts = Facts(suppressed, dead, dict(zip(caps, counts, strict=False)), duplicate)
    assert store_verdict(check, facts) == decided(check, facts)
