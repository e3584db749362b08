"""The enrolled edges as an operator sees them: ``cloud-hub edges`` lists them, ``cloud-hub revoke``
takes one off.

The allow-list is whatever public keys the files in ``<home>/enrolled`` hold, whatever the files
are called (``cloud-hub enroll`` and ``join`` write ``edge-<id>.key``; an operator may have copied
others in), so revoking removes every file holding the edge's key, not just the one named after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.keys import KeyFileError, certificate_name, fingerprint, load_public


@dataclass(frozen=True, slots=True)
class EnrolledEdge:
    edge_id: str  # fingerprint of the key: the id the hub's logs, telemetry and dashboard use
    name: str
    key: bytes
    path: Path


class RevokeError(ValueError):
    """A selector that matches no enrolled edge, or more than one."""


def enrolled_edges(enrolled_dir: Path) -> list[EnrolledEdge]:
    edges = []
    for path in sorted(enrolled_dir.glob("*.key")) if enrolled_dir.is_dir() else []:
        try:
            key = load_public(path)
        except KeyFileError:
            continue  # ZAP skips an unreadable file too, so it admits nobody
        edges.append(EnrolledEdge(fingerprint(key), certificate_name(path), key, path))
    return edges


def select(enrolled_dir: Path, selector: str) -> list[EnrolledEdge]:
    """The enrolled files for ``selector``: a public key file, an edge id, a name or a file name.

    A name shared by several keys is refused rather than guessed at: revoking the wrong edge is
    worse than asking for its id.
    """
    edges = enrolled_edges(enrolled_dir)
    candidate = Path(selector).expanduser()
    if candidate.is_file():
        key = load_public(candidate)
        matches = [e for e in edges if e.key == key]
    else:
        by_id = [e for e in edges if e.edge_id == selector or e.path.name == selector]
        matches = by_id or [e for e in edges if e.name == selector]
    if not matches:
        raise RevokeError(f"no enrolled edge matches {selector!r}; `cloud-hub edges` lists them")
    if len({e.key for e in matches}) > 1:
        ids = ", ".join(sorted({e.edge_id for e in matches}))
        raise RevokeError(f"{selector!r} names several edges ({ids}); revoke one by its id")
    key = matches[0].key
    return [e for e in edges if e.key == key]


def revoke(enrolled_dir: Path, selector: str) -> list[EnrolledEdge]:
    """Remove every file holding the selected edge's key; returns what was removed."""
    removed = select(enrolled_dir, selector)
    for edge in removed:
        edge.path.unlink(missing_ok=True)
    return removed
