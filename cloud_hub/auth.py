"""The ZAP allow-list: only enrolled edge keys complete the CURVE handshake.

``cloud-hub enroll`` (or ``join``) drops a public key file into the enrolled directory and
``cloud-hub revoke`` removes it; the running hub sees either within one poll interval (or at once
on SIGHUP) without a restart. ZAP only judges a connection's handshake, so a revoked key's
connection that is already up would live on: ``admits`` lets the server check every message
against the current list, and ``on_revoked`` names the keys that left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

log = logging.getLogger(__name__)

Snapshot = tuple[tuple[str, int, int], ...]


class Authenticator(Protocol):
    """What the hub needs from its allow-list; ``Enrolments`` is the one the hub ships with."""

    def start(self) -> None: ...

    def reload(self) -> int: ...

    def admits(self, user_id: str) -> bool: ...

    async def close(self) -> None: ...


class AuthenticatorFactory(Protocol):
    def __call__(
        self,
        context: zmq.asyncio.Context,
        enrolled_dir: Path,
        poll_s: float = ...,
        on_revoked: Callable[[frozenset[bytes]], object] | None = ...,
    ) -> Authenticator: ...


class Enrolments:
    def __init__(
        self,
        context: zmq.asyncio.Context,
        enrolled_dir: Path,
        poll_s: float = 1.0,
        on_revoked: Callable[[frozenset[bytes]], object] | None = None,
    ) -> None:
        self._context = context
        self._on_revoked = on_revoked
        self._keys: frozenset[bytes] = frozenset()  # Z85 public keys now on the list
        self._dir = enrolled_dir
        self._poll_s = poll_s
        self._auth: AsyncioAuthenticator | None = None
        self._task: asyncio.Task[None] | None = None
        self._snapshot: Snapshot = ()

    def start(self) -> None:
        """Must run before the server socket binds, so no handshake slips through unchecked."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._auth = AsyncioAuthenticator(self._context, log=logging.getLogger("cloud_hub.zap"))
        self._auth.start()
        self.reload()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="enrolment-watch")

    def _scan(self) -> Snapshot:
        entries = []
        for path in sorted(self._dir.glob("*.key")):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                entries.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(entries)

    def reload(self) -> int:
        """Re-read the allow-list; returns the number of enrolled keys."""
        if self._auth is None:
            raise RuntimeError("Enrolments.start() was not called")
        self._snapshot = self._scan()
        self._auth.configure_curve(domain="*", location=str(self._dir))
        keys = frozenset(self._auth.certs.get("*", {}))
        removed, self._keys = self._keys - keys, keys
        log.info("allow-list loaded: %d enrolled edge key(s)", len(keys))
        if removed:
            log.warning("%d edge key(s) revoked", len(removed))
            if self._on_revoked is not None:
                self._on_revoked(removed)
        return len(keys)

    def admits(self, user_id: str) -> bool:
        """Whether the Z85 key a connection authenticated with (ZAP ``User-Id``) is still enrolled."""
        return bool(user_id) and user_id.encode("ascii", errors="replace") in self._keys

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                if self._scan() != self._snapshot:
                    self.reload()
            except OSError:
                log.exception("cannot read enrolment directory %s", self._dir)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
