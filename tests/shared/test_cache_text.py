from __future__ import annotations

import hashlib
import re
import unicodedata

import pytest

from shared.cache_text import (
    _PERSONAL,
    _TIME_SENSITIVE,
    digest,
    is_generic,
    is_personal,
    is_time_sensitive,
    normalize_text,
    question_form,
)

QUESTIONS = [
    "What is the WEATHER like in Paris?",
    "Is it raining Today?",
    "what's the Latest news on the election",
    "Show me This Week's headlines",
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "Tell me about My account",
    "Remember Me when I come back",
    "I'm looking for a good book on tides",
    "Im tired of this",
    "Why is the sky blue?",
    "Is a Newsletter the same as news?",  # "news" as a word, not inside "Newsletter"
    "What is a headliner at a festival?",  # no whole keyword
    "Deliver the mines to Oursburg",  # "mine" and "ours" only inside longer words
    "Who won the Nobel prize in 1921?",
]


@pytest.mark.parametrize("text", QUESTIONS)
def test_lowered_matching_agrees_with_the_case_insensitive_rules(text: str) -> None:
    # the rules as they read before matching moved to the lowered text
    personal = re.compile(_PERSONAL.pattern, re.IGNORECASE)
    timely = re.compile(_TIME_SENSITIVE.pattern, re.IGNORECASE)
    assert is_personal(text) == (personal.search(text) is not None)
    assert is_time_sensitive(text) == (timely.search(text) is not None)


def test_the_rules_read_case_and_whole_words() -> None:
    assert is_time_sensitive("What is the WEATHER like in Paris?")
    assert is_time_sensitive("Show me This Week's headlines")
    assert not is_time_sensitive("What is a headliner at a festival?")
    assert is_personal("Tell me about My account") and is_personal("I'm looking for a good book")
    assert not is_personal("Deliver the mines to Oursburg")
    assert is_generic("Why is the sky blue?") and not is_generic("  ")
    assert question_form("  Why is the SKY blue?? ") == "why is the sky blue"


# whitespace of every kind str.isspace knows, runs of it, and text NFKC changes
SPACED = [
    "  What\tis\u00a0the  capital\n\nof France?  ",
    "\u3000全角\u3000スペース\u2003and em\u2003space",
    "ﬁnancial ①②③ \x1c\x1dfile separators\x1e\x1f",
    "",
    "   ",
    "no-space-at-all",
    "ligatures ﬀ and width ＡＢＣ",
]


@pytest.mark.parametrize("text", SPACED)
def test_normalize_text_matches_the_regex_form_it_replaced(text: str) -> None:
    # stored keys and the hub's keys were made with this form: a change would orphan every entry
    assert normalize_text(text) == re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


@pytest.mark.parametrize("parts", [(), ("",), ("a", "b"), ("ab",), ("exact-v1", "é" * 300, "-1")])
def test_digest_is_the_one_stored_keys_were_made_with(parts: tuple[str, ...]) -> None:
    h = hashlib.sha256()
    for part in parts:
        raw = part.encode("utf-8")
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    assert digest(*parts) == h.hexdigest()
