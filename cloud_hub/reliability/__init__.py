"""The hub's reliability scenarios (catalogue in ``shared.reliability``), by catalogue id.

Each entry is ``"module:function"``, imported only when it runs; ``python -m
cloud_hub.reliability run ID`` runs one in a process of its own, the way the bench does.
"""

from __future__ import annotations

SCENARIOS: dict[str, str] = {
    "T12": "cloud_hub.reliability.transport:t12_stalled",
    "T14": "cloud_hub.reliability.transport:t14_big_frame",
    "T15": "cloud_hub.reliability.peers:t15_peers",
    "T16": "cloud_hub.reliability.peers:t16_no_pickle",
    "T17": "cloud_hub.reliability.fuzz:t17_fuzz",
    "T30": "cloud_hub.reliability.upstream:t30_retries",
    "T31": "cloud_hub.reliability.upstream:t31_breaker",
}
