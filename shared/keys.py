"""CURVE key pairs for the edge ↔ hub link, in ZeroMQ's certificate file format.

Both programs keep ``<keys_dir>/curve.key`` (public, safe to share) and ``curve.key_secret``
(mode 0600). A pair is never overwritten: re-running ``init`` returns the existing files, because a
new hub key would lock every enrolled edge out and a new edge key would void its enrolment.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import zmq.auth
from zmq.utils import z85

KEY_NAME = "curve"
_Z85_KEY_LEN = 40


class KeyFileError(ValueError):
    """A key file that is missing, half-written or not a CURVE certificate."""


def key_paths(keys_dir: Path) -> tuple[Path, Path]:
    """Where ``init_keys`` puts the public and secret files of ``keys_dir``."""
    return keys_dir / f"{KEY_NAME}.key", keys_dir / f"{KEY_NAME}.key_secret"


def init_keys(keys_dir: Path) -> tuple[Path, Path]:
    """Create a CURVE key pair in ``keys_dir`` unless one is there; return (public, secret) paths."""
    public, secret = key_paths(keys_dir)
    if public.exists() and secret.exists():
        load_secret(secret)  # refuse to hand back a pair that cannot be used
        return public, secret
    if public.exists() or secret.exists():
        raise KeyFileError(f"{keys_dir} holds half a key pair; remove it or restore the missing file")
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    # Written in a private (0700) scratch dir and moved in, so the secret is never readable by
    # others, not even between creation and chmod, and a crash never leaves half a pair.
    with tempfile.TemporaryDirectory(dir=keys_dir, prefix=".new-") as scratch:
        tmp_public, tmp_secret = zmq.auth.create_certificates(scratch, KEY_NAME)
        os.chmod(tmp_secret, 0o600)
        os.chmod(tmp_public, 0o644)
        os.replace(tmp_secret, secret)
        os.replace(tmp_public, public)
    return public, secret


def _check_key(key: bytes | None, path: Path, what: str) -> bytes:
    if key is None or len(key) != _Z85_KEY_LEN:
        raise KeyFileError(f"{path}: no valid CURVE {what} key")
    try:
        z85.decode(key)
    except ValueError as exc:
        raise KeyFileError(f"{path}: {what} key is not Z85: {exc}") from None
    return key


def load_public(path: Path) -> bytes:
    """The Z85 public key from a ``.key`` (or ``.key_secret``) file."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc}") from None
    return _check_key(public, path, "public")


def load_secret(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read secret key {path}: {exc}") from None
    return _check_key(public, path, "public"), _check_key(secret, path, "secret")


def fingerprint(public_key: bytes) -> str:
    """A short, filename-safe name for a public key (Z85 contains ``/`` and ``.``)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def enroll_public_key(public_key_file: Path, enrolled_dir: Path, *, name: str = "") -> Path:
    """Copy an edge's public key into the hub's allow-list; idempotent, returns the enrolled file."""
    return enroll_key(load_public(public_key_file), enrolled_dir, source=public_key_file.name, name=name)


def enroll_key(key: bytes, enrolled_dir: Path, *, source: str, name: str = "") -> Path:
    """Put a Z85 public key on the allow-list as ``edge-<fingerprint>.key``, with ``name`` (for
    ``cloud-hub revoke NAME``) in the certificate's metadata section, which ZAP ignores."""
    if name and not valid_edge_name(name):
        raise KeyFileError(f"edge name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    _check_key(key, Path(source), "public")
    enrolled_dir.mkdir(parents=True, exist_ok=True)
    target = enrolled_dir / f"edge-{fingerprint(key)}.key"
    meta = f'metadata\n    name = "{name}"\n' if name else ""
    body = f'# enrolled from {source}\n{meta}curve\n    public-key = "{key.decode("ascii")}"\n'
    if target.exists() and load_public(target) == key and (not name or certificate_name(target) == name):
        return target  # already there; a plain re-enrol keeps the name the file has
    # Atomic so a hub reloading the directory never reads a half-written certificate.
    fd, tmp = tempfile.mkstemp(dir=enrolled_dir, prefix=".enroll-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(body)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def valid_edge_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name) is not None


def certificate_name(path: Path) -> str:
    """The ``name`` in a certificate's metadata section ("" when it has none)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    found = re.search(r'^\s+name\s*=\s*"([^"]*)"', text, flags=re.MULTILINE)
    return found.group(1) if found else ""
