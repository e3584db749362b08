from __future__ import annotations

import time

import msgspec
import pytest

from shared.codec import Codec
from shared.telemetry import ATTRIBUTE_NAMES, MAX_CONTENT_CHARS, TelemetryEvent, identity_hash, new_event_id
from shared.wire import TelemetryBatch


def _event(**kw: object) -> TelemetryEvent:
    base: dict[str, object] = {
        "response_id": "chatcmpl-1",
        "route": "edge_local",
        "request_model": "qwen",
        "input_tokens": 12,
        "output_tokens": 30,
        "latency_s": 0.8,
        "ttft_s": 0.1,
        "local_confidence": 0.91,
        "cost_usd": 1e-6,
    }
    base.update(kw)
    return TelemetryEvent(**base)  # type: ignore[arg-type]


def test_attributes_round_trip_through_the_link_codec() -> None:
    event = _event(escalation_reason="low_confidence", fallback=True, prompt="hi", completion="hello")
    codec = Codec()
    body = codec.decode(codec.encode(TelemetryBatch("b1", [event.to_attributes()])))
    assert isinstance(body, TelemetryBatch)
    back = TelemetryEvent.from_attributes(body.events[0])
    assert back == event


def test_attribute_names_follow_opentelemetry_genai_where_defined() -> None:
    attrs = _event().to_attributes()
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.request.model"] == "qwen"
    assert attrs["gen_ai.response.id"] == "chatcmpl-1"
    assert "gen_ai.server.time_to_first_token" in attrs
    # defaults are implied rather than sent, but identity and time always travel
    assert ATTRIBUTE_NAMES["fallback"] not in attrs
    assert {"edgeroute.event.id", "edgeroute.event.kind", "edgeroute.event.timestamp"} <= attrs.keys()


def test_an_event_at_its_defaults_sends_identity_and_time_only() -> None:
    attrs = TelemetryEvent().to_attributes()
    assert attrs.keys() == {"edgeroute.event.id", "edgeroute.event.kind", "edgeroute.event.timestamp"}
    assert attrs["edgeroute.event.kind"] == "request"
    # a field wins over an unknown attribute that claims its name
    clash = _event(extra={"gen_ai.request.model": "other"}).to_attributes()
    assert clash["gen_ai.request.model"] == "qwen"


def test_unknown_attributes_survive_validation() -> None:
    attrs = _event().to_attributes()
    attrs["vendor.custom"] = 3
    back = TelemetryEvent.from_attributes(attrs)
    assert back.extra == {"vendor.custom": 3}
    assert back.to_attributes()["vendor.custom"] == 3


@pytest.mark.parametrize(
    ("key", "value"),
    [("gen_ai.usage.input_tokens", "many"), ("edgeroute.event.kind", "bogus"), ("edgeroute.event.id", "")],
)
def test_invalid_attributes_are_rejected_with_the_name(key: str, value: object) -> None:
    attrs = _event().to_attributes()
    attrs[key] = value  # type: ignore[assignment]
    with pytest.raises(msgspec.ValidationError):
        TelemetryEvent.from_attributes(attrs)


def test_long_content_is_clipped_on_validation() -> None:
    attrs = _event(completion="x" * (MAX_CONTENT_CHARS + 50)).to_attributes()
    back = TelemetryEvent.from_attributes(attrs)
    assert back.completion is not None and len(back.completion) == MAX_CONTENT_CHARS


def test_identity_hash_is_salted_and_stable() -> None:
    assert identity_hash("acme", "s1") == identity_hash("acme", "s1")
    assert identity_hash("acme", "s1") != identity_hash("acme", "s2")
    assert identity_hash("", "s1") == ""
    assert "acme" not in identity_hash("acme")


def test_derived_flags() -> None:
    assert _event(route="semantic_cache").is_cache_hit
    assert not _event(route="hub_oss").is_cache_hit
    assert _event(escalation_reason="low_confidence").escalated


def test_event_ids_are_unique_and_sort_by_the_millisecond_they_were_made() -> None:
    first = [new_event_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_event_id()
    assert len(set(first)) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in first)
    assert later > max(first)  # the unique indexes on it grow at their end
    assert TelemetryEvent().event_id >= later[:12]  # the default id is one of these
