"""The invite store on a real SQLite file, with real allow-list files written by the enrol step."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zmq

from cloud_hub.enrolment.allowlist import RevokeError, enrolled_edges, revoke, select
from cloud_hub.enrolment.invites import InviteRefused, InviteStore, parse_ttl
from shared.invite import decode_token
from shared.keys import certificate_name, enroll_key, enroll_public_key, fingerprint, init_keys, load_public

HUB_KEY = zmq.curve_keypair()[0]


def _key() -> bytes:
    return zmq.curve_keypair()[0]


def _redeem(store: InviteStore, token: str, key: bytes, enrolled: Path, now: float | None = None) -> bool:
    parsed = decode_token(token)

    def holds(k: bytes) -> bool:
        return any(e.key == k for e in enrolled_edges(enrolled))

    _, already = store.redeem(
        parsed.invite_id,
        parsed.secret,
        key,
        enrol=lambda inv: enroll_key(key, enrolled, source="test", name=inv.name),
        is_enrolled=holds,
        now=now,
    )
    return already


def test_a_token_enrols_one_key_once(tmp_path: Path) -> None:
    store = InviteStore.open(tmp_path)
    token, _ = store.issue(hub_key=HUB_KEY, ttl_s=60, name="laptop", hub_endpoint="tcp://h:5555")
    parsed = decode_token(token)
    assert parsed.hub_key == HUB_KEY.decode() and parsed.hub == "tcp://h:5555"
    first, second = _key(), _key()
    assert _redeem(store, token, first, tmp_path / "enrolled") is False
    [edge] = enrolled_edges(tmp_path / "enrolled")
    assert edge.key == first and edge.name == "laptop" and edge.edge_id == fingerprint(first)
    with pytest.raises(InviteRefused) as refused:
        _redeem(store, token, second, tmp_path / "enrolled")
    assert refused.value.code == "invite_used"
    assert [e.key for e in enrolled_edges(tmp_path / "enrolled")] == [first]
    # the key it enrolled may ask again (a lost reply) and is told it is in
    assert _redeem(store, token, first, tmp_path / "enrolled") is True
    assert store.pending() == []
    store.close()


def test_a_revoked_key_cannot_come_back_with_its_old_token(tmp_path: Path) -> None:
    store = InviteStore.open(tmp_path)
    token, _ = store.issue(hub_key=HUB_KEY, ttl_s=60, name="laptop")
    key = _key()
    _redeem(store, token, key, tmp_path / "enrolled")
    revoke(tmp_path / "enrolled", "laptop")
    with pytest.raises(InviteRefused) as refused:
        _redeem(store, token, key, tmp_path / "enrolled")
    assert refused.value.code == "invite_used"
    assert enrolled_edges(tmp_path / "enrolled") == []


def test_expired_wrong_secret_and_unknown_id_are_refused(tmp_path: Path) -> None:
    store = InviteStore.open(tmp_path)
    token, _ = store.issue(hub_key=HUB_KEY, ttl_s=60, now=1000.0)
    parsed = decode_token(token)
    enrolled = tmp_path / "enrolled"
    with pytest.raises(InviteRefused) as late:
        _redeem(store, token, _key(), enrolled, now=1060.0)
    assert late.value.code == "invite_expired"
    for invite_id, secret in ((parsed.invite_id, parsed.secret + "x"), ("0" * 16, parsed.secret)):
        with pytest.raises(InviteRefused) as bad:
            store.redeem(invite_id, secret, _key(), enrol=lambda _i: None, is_enrolled=lambda _k: False)
        assert bad.value.code == "invite_invalid"
    assert not enrolled.exists() or enrolled_edges(enrolled) == []
    # still valid inside its lifetime: the refusals above spent nothing
    assert _redeem(store, token, _key(), enrolled, now=1059.0) is False


def test_a_failed_enrol_step_leaves_the_invite_unused(tmp_path: Path) -> None:
    store = InviteStore.open(tmp_path)
    token, _ = store.issue(hub_key=HUB_KEY, ttl_s=60)
    parsed = decode_token(token)

    def broken(_invite: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.redeem(parsed.invite_id, parsed.secret, _key(), enrol=broken, is_enrolled=lambda _k: False)
    assert len(store.pending()) == 1
    assert _redeem(store, token, _key(), tmp_path / "enrolled") is False


def test_two_processes_racing_with_one_token_enrol_one_key(tmp_path: Path) -> None:
    token, _ = InviteStore.open(tmp_path).issue(hub_key=HUB_KEY, ttl_s=60)
    outcomes: list[str] = []

    def attempt() -> None:
        store = InviteStore.open(tmp_path)  # a connection of its own, as another process has
        try:
            _redeem(store, token, _key(), tmp_path / "enrolled")
            outcomes.append("in")
        except InviteRefused as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["in"] + ["invite_used"] * 5
    assert len(enrolled_edges(tmp_path / "enrolled")) == 1


def test_only_a_digest_of_the_secret_is_stored(tmp_path: Path) -> None:
    store = InviteStore.open(tmp_path)
    token, _ = store.issue(hub_key=HUB_KEY, ttl_s=60)
    store.close()
    raw = (tmp_path / "invites.db").read_bytes()
    assert decode_token(token).secret.encode() not in raw


def test_ttl_and_name_validation(tmp_path: Path) -> None:
    assert parse_ttl("90") == 90 and parse_ttl("30m") == 1800 and parse_ttl("1h") == 3600
    assert parse_ttl("7d") == 7 * 86400 and parse_ttl("1.5h") == 5400
    for bad in ("", "0", "-1h", "1w", "h"):
        with pytest.raises(ValueError):
            parse_ttl(bad)
    with pytest.raises(ValueError):
        InviteStore.open(tmp_path).issue(hub_key=HUB_KEY, ttl_s=60, name='a"b')


def test_revoke_selects_by_key_file_id_or_name_and_refuses_ambiguity(tmp_path: Path) -> None:
    enrolled = tmp_path / "enrolled"
    pub, _ = init_keys(tmp_path / "edge" / "keys")
    enroll_public_key(pub, enrolled, name="shop")
    key = load_public(pub)
    # the same key copied in under another file name is the same edge: both files go
    (enrolled / "copied.key").write_text((enrolled / f"edge-{fingerprint(key)}.key").read_text())
    assert certificate_name(enrolled / "copied.key") == "shop"
    assert {e.path.name for e in select(enrolled, str(pub))} == {"copied.key", f"edge-{fingerprint(key)}.key"}
    assert len(select(enrolled, fingerprint(key))) == 2
    other, twin = _key(), _key()
    enroll_key(other, enrolled, source="t", name="twin")
    enroll_key(twin, enrolled, source="t", name="twin")
    with pytest.raises(RevokeError, match="several edges"):
        revoke(enrolled, "twin")
    with pytest.raises(RevokeError, match="no enrolled edge"):
        revoke(enrolled, "nobody")
    removed = revoke(enrolled, "shop")
    assert len(removed) == 2
    assert {e.key for e in enrolled_edges(enrolled)} == {other, twin}
