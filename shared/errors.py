"""Why a request did not get its answer: the project's error classes, in one tree.

Each class lives next to the code that raises it; the two bases both programs raise live here, so
the edge and the hub share their meaning without importing each other::

    Exception
    ├── BackendError                 shared.errors: a model could not answer this request
    │   ├── LocalBackendError        edge_agent.backends.base: the edge's own model failed
    │   │   └── PromptTooLong        the prompt does not fit the local model's context window
    │   └── HubBackendError          cloud_hub.backends.base: a hub model failed (.retryable, .status)
    │       └── NotRecorded          cloud_hub.backends.replay: no recorded answer to this prompt
    ├── StreamInterrupted            shared.errors: an answer broke off after part of it was delivered
    ├── AttemptFailed                shared.routing.fallback: one target's failure, as the fallback
    │                                chain judges it (.status, .declined, .retryable)
    ├── AllTargetsFailed             shared.routing.fallback: no target of a plan answered
    ├── HubLinkError                 edge_agent.hub_link.errors: an escalation got no answer back
    │   ├── HubUnavailable           the hub is not reachable now: answer locally
    │   └── HubError                 the hub answered with a typed error (.code, .retryable)
    │       ├── HubTimeout           its ``deadline_exceeded`` case (also a ``TimeoutError``)
    │       └── HubRefused           the request is invalid wherever it goes: the client gets a 4xx
    └── NoRouteAvailable             edge_agent.request: neither the hub nor the local model answered

A ``BackendError`` before any text was delivered leaves the request open: the next tier or the
other side of the link may still answer it. A ``StreamInterrupted`` closes it, because the client
already holds the start of one model's answer and no other model can continue it; it is raised
on purpose instead of letting the backend's own error travel on, so no fallback catches it.
"""

from __future__ import annotations


class BackendError(Exception):
    """A model backend could not answer the request; it can be caught without knowing the side."""


class StreamInterrupted(Exception):
    """A stream failed after part of its answer was delivered, so nothing else may take it over.

    ``retryable``: whether asking again from the start may succeed (the cause was transient).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
