"""A hub as a child process with a key set of its own, for scenarios that kill, stop and restart it.

``HubServer`` runs the hub's ``serve`` command (``cloud_hub.reliability.serve_hub`` holds only that
command, so a start does not pay for importing every other subcommand) with a YAML config written
from a dict. The edge-side scenarios need it without importing the hub's code, which is why it is
here. After the first start the bound port is pinned, so a restart comes back where edges (and
fault proxies) expect it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.keys import enroll_public_key, init_keys, load_public
from shared.procs import ChildProcess


@dataclass(frozen=True)
class LinkKeys:
    """A hub key pair and one edge key pair, the edge enrolled (or not) at the hub."""

    hub_home: Path
    hub_public: bytes
    hub_public_file: Path
    edge_public_file: Path
    edge_secret_file: Path

    @classmethod
    def make(cls, root: Path, *, enroll: bool = True) -> LinkKeys:
        hub_public, _ = init_keys(root / "hub" / "keys")
        edge_public, edge_secret = init_keys(root / "edge" / "keys")
        (root / "hub" / "enrolled").mkdir(parents=True, exist_ok=True)
        if enroll:
            enroll_public_key(edge_public, root / "hub" / "enrolled")
        return cls(root / "hub", load_public(hub_public), hub_public, edge_public, edge_secret)

    def another_edge(self, root: Path, *, enroll: bool = True) -> tuple[Path, Path]:
        """A further edge key pair (public, secret file), enrolled at the same hub unless told not."""
        public, secret = init_keys(root / "keys")
        if enroll:
            enroll_public_key(public, self.hub_home / "enrolled")
        return public, secret


ECHO_MODELS: list[dict[str, Any]] = [{"name": "echo", "backend": "echo"}]


class HubServer(ChildProcess):
    def __init__(
        self,
        keys: LinkKeys,
        *,
        models: list[dict[str, Any]] | None = None,
        default_model: str = "echo",
        heartbeat_s: float = 0.5,
        global_cache: bool = False,
        extra: dict[str, Any] | None = None,
        bind: str = "tcp://127.0.0.1:0",
        memory_sink: bool = False,
    ) -> None:
        self.keys = keys
        self.bind = bind
        config: dict[str, Any] = {
            "models": models or ECHO_MODELS,
            "default_model": default_model,
            "heartbeat_s": heartbeat_s,
            "global_cache": {"enabled": global_cache},
            **(extra or {}),
        }
        self.config_file = keys.hub_home / "hub.yaml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.memory_sink = memory_sink
        super().__init__("hub", self._argv(), keys.hub_home / "hub.log", ready_prefix="hub ready on ")

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "cloud_hub.reliability.serve_hub", "--home", str(self.keys.hub_home)]
        argv += ["--bind", self.bind, "--config", str(self.config_file)]
        return argv + (["--telemetry-sink", "memory"] if self.memory_sink else [])

    def start(self, timeout_s: float = 60.0) -> str:
        self.argv = self._argv()
        address = super().start(timeout_s)
        self.bind = address  # a restart binds the same port
        return address

    @property
    def endpoint(self) -> str:
        return self.address

    @property
    def port(self) -> int:
        return int(self.bind.rsplit(":", 1)[1])

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def pause(self) -> None:
        """SIGSTOP: the process stays, its sockets stay open, nothing is answered."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)

    @property
    def telemetry_db(self) -> Path:
        return self.keys.hub_home / "telemetry" / "events.db"

    def stored_events(self) -> list[tuple[str, str]]:
        """(event id, response id) of each request event in the hub's telemetry store, read-only,
        so it works while the hub runs and after it was killed."""
        if not self.telemetry_db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.telemetry_db}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT event_id, response_id FROM events WHERE kind = 'request'")
            return [(str(e), str(r)) for e, r in rows]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def stored_event_ids(self) -> list[str]:
        return [e for e, _ in self.stored_events()]

    def store_counts(self) -> dict[str, int]:
        """Request events by route, plus ``rejects``: events the hub quarantined as invalid."""
        if not self.telemetry_db.exists():
            return {}
        conn = sqlite3.connect(f"file:{self.telemetry_db}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT route, count(*) FROM events WHERE kind = 'request' GROUP BY route")
            counts = {str(route): int(n) for route, n in rows}
            counts["rejects"] = int(conn.execute("SELECT count(*) FROM rejects").fetchone()[0])
            return counts
        except sqlite3.OperationalError:
            return {}
        finally:
            conn.close()
