"""The tree of error classes drawn in ``shared.errors`` is the tree the code has."""

from __future__ import annotations

import importlib
import re

import shared.errors

# "    │   ├── PromptTooLong        the prompt ..." / "├── HubBackendError   cloud_hub.backends.base: ..."
_NODE = re.compile(r"^(?P<indent>[ │├└─]*?)[├└]── (?P<name>\w+)\s+(?:(?P<module>[\w.]+): )?")


def _drawn() -> list[tuple[str, str, str]]:
    """(class, module, drawn parent) for every node of the docstring's tree."""
    doc = shared.errors.__doc__ or ""
    lines = doc[doc.index("    Exception\n") :].splitlines()[1:]
    parents: list[tuple[str, str]] = [("Exception", "builtins")]
    nodes: list[tuple[str, str, str]] = []
    for line in lines:
        match = _NODE.match(line[4:])
        if match is None:
            if not line.strip():
                break
            continue  # a description carried onto the next line
        depth = len(match["indent"]) // 4
        del parents[depth + 1 :]
        module = match["module"] or parents[-1][1]
        nodes.append((match["name"], module, parents[-1][0]))
        parents.append((match["name"], module))
    return nodes


def test_every_drawn_class_lives_where_drawn_under_its_drawn_parent() -> None:
    nodes = _drawn()
    assert len(nodes) >= 12
    for name, module, parent in nodes:
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, Exception), name
        bases = {b.__name__ for b in cls.__bases__}
        assert parent in bases, f"{name} is drawn under {parent} but derives from {bases}"


def test_the_two_sides_share_one_backend_base() -> None:
    from cloud_hub.backends.base import HubBackendError
    from edge_agent.backends.base import LocalBackendError

    assert issubclass(LocalBackendError, shared.errors.BackendError)
    assert issubclass(HubBackendError, shared.errors.BackendError)
    assert not issubclass(shared.errors.StreamInterrupted, shared.errors.BackendError)
