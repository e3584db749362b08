"""Time the per-request routing work that runs on the edge, excluding the embedding itself:
three head evaluations, the text rules, the confidence update and the policy decision."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from shared.config import CostModel
from shared.routing.calibration import ThresholdTable
from shared.routing.cost import RouteOption
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.routing.policy import RoutingPolicy, refine_with_confidence
from shared.taxonomy import Route, Tier

PROMPTS = (
    "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many in total?",
    "Write a python function that returns the n-th Fibonacci number.",
    "Translate 'where is the station' into German.",
    "Which of these is a primary source for the French Revolution?\nA. a\nB. b\nC. c\nD. d",
)


@dataclass(frozen=True)
class LatencyReport:
    iterations: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def default_policy() -> RoutingPolicy:
    options = [
        RouteOption(Route.EDGE_LOCAL, "qwen2.5-coder-0.5b-instruct", CostModel(joules_per_token=0.05)),
        RouteOption(Route.HUB_OSS, "qwen2.5-coder-1.5b-instruct", CostModel(usd_per_gpu_second=0.0006), 0.03),
        RouteOption(
            Route.FRONTIER, "frontier", CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03)
        ),
    ]
    table = ThresholdTable.load(HEADS_DIR / THRESHOLDS_FILE)
    return RoutingPolicy(options, thresholds=table)


def measure(iterations: int = 3000, seed: int = 0) -> LatencyReport:
    heads = ClassifierHeads.load()
    policy = default_policy()
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(64, heads.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    tier_route = {
        Tier.EDGE.value: Route.EDGE_LOCAL,
        Tier.OSS.value: Route.HUB_OSS,
        Tier.FRONTIER.value: Route.FRONTIER,
    }
    samples = np.empty(iterations)
    for i in range(iterations + 200):
        prompt = PROMPTS[i % len(PROMPTS)]
        start = time.perf_counter_ns()
        c = heads.classify(vecs[i % len(vecs)], prompt)
        success = {tier_route[k]: v for k, v in c.success.items() if k in tier_route}
        success[Route.EDGE_LOCAL] = refine_with_confidence(success[Route.EDGE_LOCAL], 0.8)
        policy.decide(success, prompt_tokens=60, max_tokens=256, domain=c.domain, classification=c)
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if i >= 200:  # the first calls warm caches and allocators
            samples[i - 200] = elapsed
    return LatencyReport(
        iterations,
        float(np.percentile(samples, 50)),
        float(np.percentile(samples, 99)),
        float(samples.max()),
    )
