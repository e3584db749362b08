"""Invite tokens survive copy and paste, and damaged ones are named as such."""

from __future__ import annotations

import pytest
import zmq

from shared.invite import InviteToken, InviteTokenError, decode_token, encode_token, new_secret


def test_round_trip_and_copy_paste_whitespace() -> None:
    token = InviteToken(zmq.curve_keypair()[0].decode(), "ab12", new_secret(), 1e9, hub="tcp://h:5555")
    text = encode_token(token)
    assert text.startswith("er1.") and all(c.isalnum() or c in "._-" for c in text)
    assert decode_token(f"  {text}\n") == token


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-6], lambda t: "er2." + t[4:], lambda t: t.replace("e", "!")]
)
def test_damaged_tokens_are_refused(mangle: object) -> None:
    text = encode_token(InviteToken(zmq.curve_keypair()[0].decode(), "ab12", new_secret(), 1e9))
    with pytest.raises(InviteTokenError):
        decode_token(mangle(text))  # type: ignore[operator]


def test_a_token_whose_hub_key_is_not_a_curve_key_is_refused() -> None:
    with pytest.raises(InviteTokenError, match="hub key"):
        decode_token(encode_token(InviteToken("x" * 39, "ab12", new_secret(), 1e9)))
