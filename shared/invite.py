"""Invite tokens: what ``cloud-hub invite`` prints once and ``edge-agent join`` redeems.

A token is ``er1.`` and URL-safe base64 of a small JSON object: the hub's CURVE public key, the
invite's id, its secret and its expiry, plus the hub's link endpoint when the hub knows one to
give. Carrying the hub's key is what makes joining safe: the edge opens its CURVE connection
insisting on that key, so only the hub that issued the token can complete the handshake and see
the secret, and the hub learns the edge's key from that same handshake rather than from anything
the edge claims. Whoever holds an unexpired, unused token can enrol one key, so it travels like a
password (chat message, ticket, provisioning secret), never in a URL or a log.

The hub keeps only a SHA-256 of the secret: the secret is 32 random bytes, so no slow hash is
needed to make a stolen invite database useless.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

import msgspec
from zmq.utils import z85

TOKEN_PREFIX = "er1."
_Z85_KEY_LEN = 40


class InviteTokenError(ValueError):
    """Text that is not an invite token (mistyped, truncated, or from another program)."""


class InviteToken(msgspec.Struct, frozen=True, omit_defaults=True):
    hub_key: str  # the hub's CURVE public key, Z85
    invite_id: str
    secret: str
    expires_at: float  # epoch seconds; informative here, the hub's record is what counts
    hub: str = ""  # the hub's link endpoint, when `cloud-hub invite` knew a reachable one


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_invite_id() -> str:
    return secrets.token_hex(8)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def encode_token(token: InviteToken) -> str:
    body = base64.urlsafe_b64encode(msgspec.json.encode(token)).rstrip(b"=")
    return TOKEN_PREFIX + body.decode("ascii")


def decode_token(text: str) -> InviteToken:
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX):
        raise InviteTokenError(f"an invite token starts with {TOKEN_PREFIX!r} (from `cloud-hub invite`)")
    body = text.removeprefix(TOKEN_PREFIX)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        token = msgspec.json.decode(raw, type=InviteToken)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InviteTokenError(f"the invite token is damaged or truncated ({exc})") from None
    if len(token.hub_key) != _Z85_KEY_LEN:
        raise InviteTokenError("the invite token's hub key is not a CURVE public key")
    try:
        z85.decode(token.hub_key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InviteTokenError("the invite token's hub key is not Z85") from None
    if not token.invite_id or not token.secret:
        raise InviteTokenError("the invite token has no id or no secret")
    return token
