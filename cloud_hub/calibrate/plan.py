"""Which model answers for each tier of this deployment, and whether it answers live or from records.

The tiers come from the same configuration the deployment starts from: the edge agent's local model
and, per hub tier, the model the hub tries first when a request pins that tier (the cheapest one in
it). A tier served by the ``replay`` backend answers with recorded real answers, so its outcomes are
read from those records instead of being asked again; every other tier is asked through the live
system.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloud_hub.demo.deploy import hub_models
from cloud_hub.demo.items import Item
from shared.config import EdgeSettings, HubModelEntry, load_settings
from shared.taxonomy import Tier

# the hub prices GPU-second entries at this decode speed when it orders a tier's models
_SECONDS_PER_TOKEN = 0.03


@dataclass(frozen=True)
class TierModel:
    tier: Tier
    model: str  # the name the deployment serves it under: the live outcomes CSV's column
    backend: str
    recorded_models: tuple[str, ...] = ()  # replay: the model's names in the recorded files

    @property
    def live(self) -> bool:
        return self.backend != "replay"

    def recorded_score(self, item: Item) -> float | None:
        """The item's recorded outcome for a replayed tier: the first of its names the source has."""
        return next((item.recorded[n] for n in self.recorded_models if n in item.recorded), None)


def _entry_cost(entry: HubModelEntry) -> float:
    seconds = _SECONDS_PER_TOKEN if entry.cost.usd_per_gpu_second > 0 else 0.0
    return entry.cost.estimate(100, 100, seconds)


def tier_models(models: Sequence[HubModelEntry], edge_model: str) -> list[TierModel]:
    """The edge's local model, then one model per hub tier, cheapest route first."""
    first: dict[Tier, HubModelEntry] = {}
    for entry in sorted(models, key=lambda m: (_entry_cost(m), m.name)):
        if entry.tier is not Tier.EDGE:
            first.setdefault(entry.tier, entry)
    out = [TierModel(Tier.EDGE, edge_model, "llamacpp")]
    for tier in sorted(first, key=lambda t: t.route.rank):
        entry = first[tier]
        names: tuple[str, ...] = ()
        if entry.backend == "replay":
            names = tuple(entry.recorded_models or [entry.served_model or entry.name])
        out.append(TierModel(tier, entry.name, entry.backend, names))
    return out


def deployed_tiers(
    home: Path, hub_config: Path | None = None, edge_config: Path | None = None, datasets: Sequence[Path] = ()
) -> list[TierModel]:
    """The tiers the deployment started from these configs serves (embedded defaults without them)."""
    edge = load_settings(EdgeSettings, yaml_file=edge_config, home=home / "edge")
    return tier_models(hub_models(hub_config, home / "hub", datasets), edge.local_model.name)


def describe(tiers: Sequence[TierModel]) -> dict[str, dict[str, str]]:
    """Tier -> model mapping for the manifest."""
    return {
        t.tier.value: {
            "model": t.model,
            "backend": t.backend,
            "outcomes": "live" if t.live else "recorded (" + ", ".join(t.recorded_models) + ")",
        }
        for t in tiers
    }
