"""Why an escalation did not come back with an answer.

``HubUnavailable``: the hub is not reachable now (not connected, or it went silent mid-request);
the edge should answer locally. ``HubError``: the hub answered with a typed error. ``HubTimeout``
is the ``deadline_exceeded`` case of ``HubError``, raised whether the edge's own timer or the
hub's deadline check fired first. ``HubRefused`` is the case of a request the hub judged invalid.
"""

from __future__ import annotations


class HubLinkError(Exception):
    """Base of everything the link raises for a failed call."""


class HubUnavailable(HubLinkError):
    pass


class HubError(HubLinkError):
    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class HubTimeout(HubError, TimeoutError):
    def __init__(self, message: str) -> None:
        super().__init__("deadline_exceeded", message, retryable=False)


# codes of a request that is wrong wherever it goes: no other route may answer it instead
REFUSAL_CODES = frozenset({"invalid_request", "unknown_model"})


class HubRefused(HubError):
    """The hub refused the request itself (``REFUSAL_CODES``): the client gets a 4xx, not a
    local answer to a request it got wrong."""
