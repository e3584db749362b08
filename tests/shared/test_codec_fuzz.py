"""Hypothesis on the link codec: every message round-trips; any bytes are a message or a typed
refusal (``DecodeFailure``), never another exception. ``cloud-hub bench reliability`` runs the
million-input mutation fuzzer (``cloud_hub.reliability.fuzz``) on top."""

from __future__ import annotations

import contextlib
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.codec import Codec, DecodeFailure
from shared.wire import Body, Hello

BODY_TYPES: tuple[type[Any], ...] = typing.get_args(Body)
_text = st.text(max_size=12)
_scalar: dict[type[Any], st.SearchStrategy[Any]] = {
    msgspec.inspect.StrType: _text,
    msgspec.inspect.BoolType: st.booleans(),
    msgspec.inspect.IntType: st.integers(min_value=-(2**63), max_value=2**64 - 1),
    msgspec.inspect.FloatType: st.floats(allow_nan=False),
    msgspec.inspect.NoneType: st.none(),
    msgspec.inspect.BytesType: st.binary(max_size=16),
}


def strategy(info: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of a wire type, from msgspec's own introspection: a new message is covered for free."""
    i = msgspec.inspect
    if type(info) in _scalar:
        return _scalar[type(info)]
    if isinstance(info, i.UnionType):
        return st.one_of([strategy(t) for t in info.types])
    if isinstance(info, i.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, i.ListType):
        return st.lists(strategy(info.item_type), max_size=3)
    if isinstance(info, i.DictType):
        return st.dictionaries(_text, strategy(info.value_type), max_size=3)
    if isinstance(info, i.StructType):
        fields = {f.name: strategy(f.type) for f in info.fields}
        return st.fixed_dictionaries(fields).map(lambda kw: info.cls(**kw))
    raise TypeError(f"no strategy for wire type {info!r}")


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("cls", BODY_TYPES, ids=lambda c: c.__name__)
def test_every_message_type_round_trips(cls: type[Any]) -> None:
    codec = Codec(max_frame=1 << 24)

    @FUZZ
    @given(body=strategy(msgspec.inspect.type_info(cls)))
    def check(body: Body) -> None:
        assert codec.decode(codec.encode(body)) == body

    check()


def _decodes_or_refuses(frame: bytes) -> None:
    # anything other than a DecodeFailure escapes and fails the example
    with contextlib.suppress(DecodeFailure):
        Codec().decode(frame)


@FUZZ
@given(frame=st.binary(max_size=512))
def test_arbitrary_bytes_are_a_message_or_a_typed_refusal(frame: bytes) -> None:
    _decodes_or_refuses(frame)


@FUZZ
@given(data=st.data())
def test_mutated_valid_frames_are_a_message_or_a_typed_refusal(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(BODY_TYPES))
    frame = bytearray(Codec(max_frame=1 << 24).encode(data.draw(strategy(msgspec.inspect.type_info(cls)))))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    _decodes_or_refuses(bytes(frame[: data.draw(st.integers(0, len(frame)))]))


def test_a_string_that_is_not_utf8_is_a_typed_refusal() -> None:
    # msgspec raises UnicodeDecodeError for it, which the codec used to let through untyped
    good = Codec().encode(Hello(agent_version="ab"))
    bad = good.replace(b"\xa2ab", b"\xa2\xc3\x28")
    assert bad != good and isinstance(Codec().decode(good), Hello)
    with pytest.raises(DecodeFailure) as err:
        Codec().decode(bad)
    assert err.value.code == "malformed"
