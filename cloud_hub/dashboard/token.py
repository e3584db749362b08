"""The dashboard's bearer token: ``<home>/dashboard.token``, written once by ``cloud-hub keys init``.

The token guards fleet-wide figures (tenants' traffic mix, per-edge health), so the file is created
mode 0600 in one step and never rewritten: re-running ``keys init`` keeps the token operators
already bookmarked. To rotate it, delete the file and run ``keys init`` again.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Final

TOKEN_FILE: Final = "dashboard.token"
_MIN_CHARS: Final = 16


class TokenError(ValueError):
    """A token file that is missing, empty or readable by others."""


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def init_token(home: Path) -> Path:
    """Create the token file unless one exists; returns its path."""
    path = token_path(home)
    if path.exists():
        load_token(home)  # refuse to hand back a file the dashboard would reject
        return path
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    # O_EXCL with mode 0600: the secret is never readable by others, not even before a chmod
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_token(home: Path) -> str:
    path = token_path(home)
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read dashboard token {path}: {exc}") from None
    if mode & 0o077:
        raise TokenError(f"{path} is readable by other users (mode {mode & 0o777:o}); chmod 600 it")
    if len(token) < _MIN_CHARS:
        raise TokenError(f"{path} holds no usable token (at least {_MIN_CHARS} characters)")
    return token


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token``; constant time in the token's content."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
