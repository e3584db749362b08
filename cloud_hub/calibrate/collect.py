"""Ask the live tiers: training items served through the running hub and edge agent, then graded.

Items are drawn per source from the ``train`` split only, seeded, and only where a ground truth
exists (open chat has none, so it cannot teach a success head) and every replayed tier has a
recorded outcome (a row missing one could not be calibrated on). Each live tier answers every
item in its own pinned pass with every cache bypassed; an answer counts only when that tier
itself produced it (``Record.covered``), so a fall-through to another tier is a missing outcome,
not a wrong one. The edge waits far longer for the hub than it does in service: calibration
measures what a tier answers, not how fast a loaded CPU host answers it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_hub.calibrate.outcomes import Answer, write_outcomes
from cloud_hub.calibrate.plan import TierModel
from cloud_hub.demo.deploy import deployed
from cloud_hub.demo.items import Item
from cloud_hub.demo.scoring import Grader
from cloud_hub.demo.traffic import Pass, Record, run_pass
from cloud_hub.demo.workload import Request
from shared.taxonomy import Tier

TENANT = "calibrate"
# below the traffic client's 600 s timeout, so a slow hub answer still arrives as an answer
HUB_TIMEOUT_S = 540.0


def usable(item: Item, tiers: Sequence[TierModel]) -> bool:
    """A train item with a ground truth and a recorded outcome for every replayed tier."""
    return (
        item.split == "train"
        and item.reference is not None
        and item.kind != "chat"
        and all(t.recorded_score(item) is not None for t in tiers if not t.live)
    )


def pick_items(
    items: Sequence[Item], tiers: Sequence[TierModel], per_source: int, seed: int = 0
) -> list[Item]:
    """Up to ``per_source`` usable items from each source, the same ones for the same data and seed."""
    rng = random.Random(seed)
    pool: dict[str, list[Item]] = {}
    for it in sorted(items, key=lambda i: i.item_id):
        if usable(it, tiers):
            pool.setdefault(it.source, []).append(it)
    picked: list[Item] = []
    for source in sorted(pool):
        have = pool[source]
        picked += rng.sample(have, min(per_source, len(have)))
    return picked


def patient_edge_config(path: Path, base: Path | None) -> Path:
    """``base`` (or the embedded defaults) with the edge's hub timeout raised to ``HUB_TIMEOUT_S``."""
    body = (yaml.safe_load(base.read_text(encoding="utf-8")) if base else None) or {}
    body["hub_timeout_s"] = max(float(body.get("hub_timeout_s", 0.0)), HUB_TIMEOUT_S)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def answers_of(records: Sequence[Record], tier: TierModel, grader: Grader) -> list[Answer | None]:
    """Graded answers in request order; None where the pinned tier did not answer itself."""
    ordered = sorted(records, key=lambda r: r.request.seq)
    out: list[Answer | None] = []
    for rec in ordered:
        if not rec.covered(tier.tier):
            out.append(None)
            continue
        out.append(Answer(grader.grade(rec), rec.text, rec.cost_usd))
    return out


def collect(
    items: Sequence[Item],
    tiers: Sequence[TierModel],
    *,
    home: Path,
    console: Console,
    outcomes: Path,
    hub_config: Path | None = None,
    edge_config: Path | None = None,
    datasets: Sequence[Path] = (),
    concurrency: int = 4,
    grader: Grader | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> dict[str, list[Answer | None]]:
    """Start the deployment, serve ``items`` once per live tier, grade, write ``outcomes``."""
    grader = grader or Grader()
    requests = [Request(seq, it, TENANT) for seq, it in enumerate(items)]
    live = [t for t in tiers if t.live]
    answers: dict[str, list[Answer | None]] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    edge_yaml = patient_edge_config(home / "edge-calibrate.yaml", edge_config)
    with deployed(
        home, console, tenants=(TENANT,), hub_config=hub_config, edge_config=edge_yaml, datasets=datasets
    ) as dep:
        served = {m.tier for m in dep.hub_models}
        missing = [t.tier.value for t in live if t.tier is not Tier.EDGE and t.tier not in served]
        if missing:
            raise RuntimeError(f"the hub serves no model in tier(s) {missing}")
        with Progress(*columns, console=console) as progress, ThreadPoolExecutor(len(live)) as pool:
            lock = threading.Lock()

            def serve(tier: TierModel) -> list[Record]:
                task = progress.add_task(f"{tier.tier.value:>9} ({tier.model})", total=len(requests))

                def done(rec: Record) -> None:
                    answered = "answered" if rec.covered(tier.tier) else f"not answered: {rec.route}"
                    progress.update(task, advance=1, description=f"{tier.tier.value:>9} · last {answered}")
                    if on_record is not None:
                        with lock:  # the passes run side by side
                            on_record(rec)

                p = Pass(tier.tier.value, tier.tier)
                return run_pass(
                    dep.base_url, requests, p, dep.api_keys, concurrency=concurrency, on_done=done
                )

            # llama.cpp in the edge and vLLM in the hub each keep to one core of a small host, so
            # the live tiers' passes run side by side rather than one after the other
            passes = {t.model: pool.submit(serve, t) for t in live}
            for t in live:
                answers[t.model] = answers_of(passes[t.model].result(), t, grader)
    write_outcomes(outcomes, items, answers)
    return answers
