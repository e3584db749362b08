"""One-time, expiring invites in ``<home>/invites.db``: issued by ``cloud-hub invite``, redeemed by
the running hub's enrolment socket.

Both programs open the same SQLite file; a redemption is one ``BEGIN IMMEDIATE`` transaction that
checks the invite, writes the allow-list file and marks the invite used, so two edges racing with
one token cannot both get in, and a failed file write leaves the invite unused. Only a digest of
each secret is stored (``shared.invite``), compared in constant time.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.invite import InviteToken, encode_token, new_invite_id, new_secret, secret_digest
from shared.keys import fingerprint, valid_edge_name
from shared.sqlite import connect

INVITES_FILE = "invites.db"
_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# compared against when the invite id is unknown, so a miss costs the same as a wrong secret
_NO_DIGEST = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invites (
    invite_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    used_by TEXT  -- the fingerprint of the key that redeemed it
)
"""


class InviteRefused(Exception):
    """A redemption the hub turns down; ``code`` travels to the edge in an ``Error`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Invite:
    invite_id: str
    name: str
    created_at: float
    expires_at: float
    used_at: float | None
    used_by: str | None


def parse_ttl(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``1h`` or ``7d``."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or float(match["n"]) <= 0:
        raise ValueError(f"not a duration: {text!r} (examples: 600, 30m, 1h, 7d)")
    return float(match["n"]) * _UNIT_S[match["unit"]]


class InviteStore:
    def __init__(self, path: Path) -> None:
        # FULL: an acknowledged redemption must survive a power cut, or a used token could work twice
        self._conn = connect(path, synchronous="FULL")
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()  # redemptions run in worker threads

    @classmethod
    def open(cls, home: Path) -> InviteStore:
        return cls(home / INVITES_FILE)

    def issue(
        self,
        *,
        hub_key: bytes,
        ttl_s: float,
        name: str = "",
        hub_endpoint: str = "",
        now: float | None = None,
    ) -> tuple[str, Invite]:
        """A new invite and its token; the token (with the secret) exists only in the return value."""
        if name and not valid_edge_name(name):
            raise ValueError(f"edge name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if ttl_s <= 0:
            raise ValueError("an invite needs a positive lifetime")
        created = time.time() if now is None else now
        invite = Invite(new_invite_id(), name, created, created + ttl_s, None, None)
        secret = new_secret()
        with self._lock:
            self._conn.execute(
                "INSERT INTO invites (invite_id, secret_sha256, name, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (invite.invite_id, secret_digest(secret), name, invite.created_at, invite.expires_at),
            )
        token = InviteToken(
            hub_key=hub_key.decode("ascii"),
            invite_id=invite.invite_id,
            secret=secret,
            expires_at=invite.expires_at,
            hub=hub_endpoint,
        )
        return encode_token(token), invite

    def redeem(
        self,
        invite_id: str,
        secret: str,
        edge_key: bytes,
        *,
        enrol: Callable[[Invite], object],
        is_enrolled: Callable[[bytes], bool],
        now: float | None = None,
    ) -> tuple[Invite, bool]:
        """Spend the invite on ``edge_key``: (the invite, whether the key was enrolled by it before).

        ``enrol`` puts the key on the allow-list inside the transaction; if it raises, the invite
        stays unused. A used invite is refused, except to the very key it enrolled while that key
        is still enrolled: an edge whose reply was lost may retry, but a revoked edge cannot use
        its old token to come back.
        """
        moment = time.time() if now is None else now
        edge_id = fingerprint(edge_key)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                invite = self._check(invite_id, secret, moment)
                if invite.used_at is not None:
                    if invite.used_by == edge_id and is_enrolled(edge_key):
                        self._conn.execute("ROLLBACK")
                        return invite, True
                    raise InviteRefused("invite_used", "this invite was already used; ask for a new one")
                enrol(invite)
                self._conn.execute(
                    "UPDATE invites SET used_at = ?, used_by = ? WHERE invite_id = ? AND used_at IS NULL",
                    (moment, edge_id, invite_id),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        spent = Invite(invite.invite_id, invite.name, invite.created_at, invite.expires_at, moment, edge_id)
        return spent, False

    def _check(self, invite_id: str, secret: str, moment: float) -> Invite:
        row = self._conn.execute(
            "SELECT invite_id, secret_sha256, name, created_at, expires_at, used_at, used_by "
            "FROM invites WHERE invite_id = ?",
            (invite_id,),
        ).fetchone()
        stored = row[1] if row is not None else _NO_DIGEST
        if not hmac.compare_digest(stored, secret_digest(secret)) or row is None:
            # one answer for both: a guesser learns nothing about which invite ids exist
            raise InviteRefused(
                "invite_invalid", "no such invite at this hub (wrong hub, or a mistyped token)"
            )
        invite = Invite(row[0], row[2], row[3], row[4], row[5], row[6])
        if invite.used_at is None and moment >= invite.expires_at:
            raise InviteRefused("invite_expired", "this invite has expired; ask for a new one")
        return invite

    def pending(self, now: float | None = None) -> list[Invite]:
        """Invites that can still be redeemed, oldest first."""
        moment = time.time() if now is None else now
        with self._lock:
            rows = self._conn.execute(
                "SELECT invite_id, name, created_at, expires_at, used_at, used_by FROM invites "
                "WHERE used_at IS NULL AND expires_at > ? ORDER BY created_at",
                (moment,),
            ).fetchall()
        return [Invite(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
