from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq.auth

from shared.keys import (
    KeyFileError,
    enroll_public_key,
    fingerprint,
    init_keys,
    key_paths,
    load_public,
    load_secret,
)


def test_init_creates_private_pair(tmp_path: Path) -> None:
    public, secret = init_keys(tmp_path / "keys")
    assert (public, secret) == key_paths(tmp_path / "keys")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    pub, sec = load_secret(secret)
    assert load_public(public) == pub
    assert len(pub) == len(sec) == 40 and pub != sec
    # no scratch directories left behind
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["curve.key", "curve.key_secret"]


def test_init_never_overwrites(tmp_path: Path) -> None:
    public, secret = init_keys(tmp_path / "keys")
    before = (public.read_bytes(), secret.read_bytes())
    assert init_keys(tmp_path / "keys") == (public, secret)
    assert (public.read_bytes(), secret.read_bytes()) == before


def test_half_a_pair_is_refused(tmp_path: Path) -> None:
    public, secret = init_keys(tmp_path / "keys")
    secret.unlink()
    with pytest.raises(KeyFileError, match="half a key pair"):
        init_keys(tmp_path / "keys")
    assert public.exists()


def test_bad_key_files_raise_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.key"
    junk.write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(KeyFileError, match="no valid CURVE public key"):
        load_public(junk)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_public(tmp_path / "missing.key")
    public, _ = init_keys(tmp_path / "keys")
    with pytest.raises(KeyFileError, match="secret"):
        load_secret(public)  # a public file has no secret key


def test_enroll_is_idempotent_and_readable_by_zap(tmp_path: Path) -> None:
    public, _ = init_keys(tmp_path / "edge")
    enrolled = tmp_path / "enrolled"
    first = enroll_public_key(public, enrolled)
    assert enroll_public_key(public, enrolled) == first
    key = load_public(public)
    assert first.name == f"edge-{fingerprint(key)}.key"
    assert list(enrolled.iterdir()) == [first]
    # the allow-list loader pyzmq's authenticator uses must see exactly this key
    assert zmq.auth.load_certificates(enrolled) == {key: True}
