"""Image and video jobs over the hub link: submit, poll, and fetch results frame by frame.

Every frame the hub sends stays within this edge's codec limit: jobs and polls announce it
(``max_bytes``), the hub puts an asset's bytes inline only while they fit, and the rest come as
``MediaChunk``s fetched one at a time. Each assembled asset is checked against the size and
SHA-256 its status named, so a result bigger than a frame arrives whole or not at all.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Protocol

from edge_agent.hub_link.errors import REFUSAL_CODES, HubError, HubRefused
from shared.wire import MediaAsset, MediaChunk, MediaFetch, MediaJob, MediaPoll, MediaStatus


class MediaLink(Protocol):
    """What ``HubLink`` offers for media."""

    @property
    def connected(self) -> bool: ...

    @property
    def max_frame(self) -> int: ...

    async def media(
        self, body: MediaJob | MediaPoll | MediaFetch, timeout: float
    ) -> MediaStatus | MediaChunk: ...


@dataclass(frozen=True)
class Fetched:
    meta: MediaAsset
    data: bytes
    chunks: int  # frames it took after the status (0: it came inline)


def _request_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def failure(status: MediaStatus) -> HubError:
    """The exception a ``failed`` status stands for."""
    message = status.error or f"the hub's {status.kind} job failed"
    if status.error_code in REFUSAL_CODES:
        return HubRefused(status.error_code, message)
    return HubError(status.error_code or "backend_error", message)


class MediaClient:
    def __init__(self, link: MediaLink, timeout_s: float) -> None:
        self.link = link
        self.timeout_s = timeout_s

    async def submit(self, job: MediaJob) -> MediaStatus:
        """Send ``job``; images come back done (or raise), a video comes back queued."""
        status = await self._status(job, self.timeout_s)
        if status.state == "failed":
            raise failure(status)
        return status

    async def poll(self, job_id: str) -> MediaStatus:
        poll = MediaPoll(_request_id("poll"), job_id, max_bytes=self.link.max_frame)
        return await self._status(poll, self.timeout_s)

    async def fetch(self, status: MediaStatus) -> list[Fetched]:
        """Every asset of a done job, whole and verified."""
        return [await self._fetch_one(status.job_id, i, meta) for i, meta in enumerate(status.assets)]

    async def _status(self, body: MediaJob | MediaPoll, timeout: float) -> MediaStatus:
        answer = await self.link.media(body, timeout)
        if not isinstance(answer, MediaStatus):
            raise HubError("bad_frame", f"the hub answered a {type(body).__name__} with a chunk")
        return answer

    async def _fetch_one(self, job_id: str, index: int, meta: MediaAsset) -> Fetched:
        data, chunks = meta.data, 0
        if not data:
            parts: list[bytes] = []
            offset = 0
            while offset < meta.size:
                body = MediaFetch(_request_id("fetch"), job_id, index, offset, self.link.max_frame)
                chunk = await self.link.media(body, self.timeout_s)
                if not isinstance(chunk, MediaChunk) or chunk.offset != offset or not chunk.data:
                    raise HubError("bad_frame", f"asset {meta.asset_id}: no chunk at offset {offset}")
                parts.append(chunk.data)
                offset += len(chunk.data)
                chunks += 1
            data = b"".join(parts)
        if len(data) != meta.size or hashlib.sha256(data).hexdigest() != meta.sha256:
            raise HubError("corrupt_asset", f"asset {meta.asset_id} arrived damaged", retryable=True)
        return Fetched(meta, data, chunks)
