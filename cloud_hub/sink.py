"""Where the hub hands telemetry batches from edges.

The hub calls ``ingest`` on its event loop and sends back the returned ack, so an
implementation must be quick (one batched insert) and idempotent per ``batch_id``: an edge whose
ack was lost sends the same batch again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from shared.wire import TelemetryAck, TelemetryBatch


class TelemetrySink(Protocol):
    def ingest(self, edge_id: str, batch: TelemetryBatch) -> TelemetryAck: ...

    def close(self) -> None: ...


class MemorySink:
    """Counts events per edge; the default until a durable store is configured."""

    def __init__(self, remember_batches: int = 10_000) -> None:
        self.events_by_edge: dict[str, int] = {}
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._remember = remember_batches

    def ingest(self, edge_id: str, batch: TelemetryBatch) -> TelemetryAck:
        key = (edge_id, batch.batch_id)
        if key not in self._seen:
            self.events_by_edge[edge_id] = self.events_by_edge.get(edge_id, 0) + len(batch.events)
            self._seen[key] = len(batch.events)
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        return TelemetryAck(batch_id=batch.batch_id, accepted=self._seen.get(key, len(batch.events)))

    def close(self) -> None:
        self._seen.clear()
