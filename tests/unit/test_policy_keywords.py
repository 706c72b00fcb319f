"""Opt-out keywords after folding (NFKC, case, spaces and punctuation)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.keywords import DEFAULT, Keywords, Reply, fold


@pytest.mark.parametrize(
    "reply",
    [
        "TD",
        "td",
        "Td",
        "ｔｄ",
        "ＴＤ",
        "T D",
        "t",
        "n",
        "退订",
        " 退订！",
        "退订。",
        "取消",
        "STOP",
        "Stop.",
        "stop!!",
        "\u3000STOP\u3000",
        "UNSUBSCRIBE",
        "unsubscribe\n",
    ],
)
def test_opt_out_replies(reply: str) -> None:
    assert DEFAULT.classify(reply) is Reply.OPT_OUT


@pytest.mark.parametrize("reply", ["START", "start", "订阅", "ＳＴＡＲＴ"])
def test_opt_in_replies(reply: str) -> None:
    assert DEFAULT.classify(reply) is Reply.OPT_IN


@pytest.mark.parametrize(
    "reply",
    ["do not stop", "stop please", "TDD", "退订单", "我要退订单号123", "", "   ", "?!", "STOPS"],
)
def test_other_replies_are_not_keywords(reply: str) -> None:
    assert DEFAULT.classify(reply) is None


def test_keywords_are_checked() -> None:
    with pytest.raises(ValueError, match="both"):
        Keywords.of(["stop"], ["STOP"])
    with pytest.raises(ValueError, match="letter"):
        Keywords.of(["!!"], [])


@given(
    st.sampled_from(["TD", "退订", "STOP"]),
    st.text(alphabet=" \t\u3000.!?。！？,，", max_size=4),
    st.text(alphabet=" \t\u3000.!?。！？,，", max_size=4),
)
def test_padding_never_changes_the_answer(keyword: str, before: str, after: str) -> None:
    assert DEFAULT.classify(before + keyword + after) is Reply.OPT_OUT


@given(st.text(max_size=20))
def test_fold_is_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)


def test_lists_per_language_tell_the_language_of_the_reply() -> None:
    keywords = Keywords.of({"zh": ["退订", "TD"], "en": ["STOP"]}, {"zh": ["订阅"]})
    assert keywords.match("  退订！") == (Reply.OPT_OUT, "zh")
    assert keywords.match("ｔｄ") == (Reply.OPT_OUT, "zh")
    assert keywords.match("Stop.") == (Reply.OPT_OUT, "en")
    assert keywords.match("订阅") == (Reply.OPT_IN, "zh")
    assert keywords.match("stop now") is None
    assert Keywords.of(["STOP"], []).match("stop") == (Reply.OPT_OUT, "")
    assert DEFAULT.match("TD") == (Reply.OPT_OUT, "zh")
    assert DEFAULT.match("UNSUBSCRIBE") == (Reply.OPT_OUT, "en")
    with pytest.raises(ValueError, match="both opt out and opt in"):
        Keywords.of({"en": ["STOP"]}, {"de": ["stop"]})
