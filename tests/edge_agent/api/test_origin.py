"""Host and Origin checks against DNS rebinding, as the API's middleware applies them."""

from __future__ import annotations

import pytest

from edge_agent.api.origin import host_refusal


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8080", None),
        ("localhost:8080", "http://localhost:3000"),
        ("[::1]:8080", None),
        ("10.1.2.3", None),  # an IP literal: not a name anyone can rebind
        (None, None),  # HTTP/1.0, not a browser
    ],
)
def test_loopback_and_ip_hosts_pass(host: str | None, origin: str | None) -> None:
    assert host_refusal(host, origin, []) is None


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("rebind.example:8080", None),
        ("127.0.0.1:8080", "http://rebind.example"),
        ("127.0.0.1:8080", "null"),
        ("127.0.0.1:8080", "not a url"),
        ("bad host", None),
    ],
)
def test_rebound_names_and_foreign_origins_are_refused(host: str, origin: str | None) -> None:
    assert host_refusal(host, origin, []) is not None


def test_allowed_names_subdomains_and_the_off_switch() -> None:
    assert host_refusal("edge.corp.example", None, ["edge.corp.example"]) is None
    assert host_refusal("a.corp.example", "https://b.corp.example", [".corp.example"]) is None
    assert host_refusal("corp.example.evil", None, [".corp.example"]) is not None
    assert host_refusal("anything.at.all", "null", ["*"]) is None
