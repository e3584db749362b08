"""The benchmark's workload: a seeded recipe over held-out checkable items, repeats and paraphrases.

Recipe (every draw from one ``random.Random(seed)``, so the same data and seed give the same
requests):

* unique requests: ``eval``-split items of each source in the proportions of ``DEFAULT_MIX``
  (checkable maths, multiple choice and code, plus open MT-Bench chat), and the first question of
  each Quora duplicate pair taken from the split no cache verifier was fitted on;
* repeats, ``repeat_share`` of all requests: three quarters exact repeats of an earlier request,
  the original picked with a Zipf popularity skew (a few items are asked often, most once), and one
  quarter the second question of a Quora pair (a real paraphrase of an earlier request);
* each repeat arrives at a random later point of the stream; tenants are drawn per item, and a repeat
  stays with the asker's tenant 70% of the time (the rest are other tenants asking the same thing).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cloud_hub.demo.items import Item, item_id
from shared.paraphrase import Pair

DEFAULT_MIX: dict[str, float] = {
    "mmlu": 0.28,
    "arc-challenge": 0.16,
    "winogrande": 0.16,
    "gsm8k": 0.16,
    "mbpp": 0.06,
    "mt_bench": 0.06,
    "qqp": 0.12,
}
PARAPHRASE_SHARE_OF_REPEATS = 0.25
SAME_TENANT = 0.7
ZIPF_S = 1.0
TENANTS = ("acme", "globex", "initech")


@dataclass(frozen=True)
class Request:
    seq: int
    item: Item
    tenant: str
    repeat: str = ""  # "", "exact" or "paraphrase"
    original: int | None = None  # seq of the request this one repeats


# (arrival time, item, repeat kind, index of the original among the unique items)
_Arrival = tuple[float, Item, str, int | None]


def _qqp_item(text: str) -> Item:
    return Item(item_id("qqp", text), "qqp", "chat", text.strip(), None, "eval")


def _allocate(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` over the mix, so the counts always add up to ``n``."""
    total = sum(mix.values())
    raw = {k: n * v / total for k, v in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def build_workload(
    items: Sequence[Item],
    pairs: Sequence[Pair],
    size: int,
    *,
    repeat_share: float = 0.31,
    seed: int = 0,
    mix: dict[str, float] | None = None,
    tenants: Sequence[str] = TENANTS,
) -> list[Request]:
    if not 0.0 <= repeat_share < 1.0:
        raise ValueError(f"repeat_share must be in [0, 1), got {repeat_share}")
    # every step draws from this one generator, in this order: reordering them changes the workload
    rng = random.Random(seed)
    pool = _eval_pool(items)
    dupes = [p for p in pairs if p.label == 1]
    if mix is None:
        mix = _default_mix(pool, dupes)
    n_repeat = round(size * repeat_share)
    n_para = min(round(n_repeat * PARAPHRASE_SHARE_OF_REPEATS), len(dupes)) if "qqp" in mix else 0
    counts = _allocate(size - n_repeat, mix)
    n_para = min(n_para, counts.get("qqp", 0))
    uniques, para_of = _draw_uniques(rng, counts, pool, dupes)
    timeline = _timeline(rng, uniques, para_of, n_repeat, n_para)
    return _assign_tenants(rng, timeline, len(uniques), tenants)


def _eval_pool(items: Sequence[Item]) -> dict[str, list[Item]]:
    pool: dict[str, list[Item]] = {}
    for it in items:
        if it.split == "eval":
            pool.setdefault(it.source, []).append(it)
    return pool


def _default_mix(pool: dict[str, list[Item]], dupes: Sequence[Pair]) -> dict[str, float]:
    mix = {k: v for k, v in DEFAULT_MIX.items() if k in pool or (k == "qqp" and dupes)}
    return mix or dict.fromkeys(pool, 1.0)  # a user's own datasets: an equal share each


def _draw_uniques(
    rng: random.Random, counts: dict[str, int], pool: dict[str, list[Item]], dupes: Sequence[Pair]
) -> tuple[list[Item], dict[int, str]]:
    """The unique items in arrival order, and for each Quora one the paraphrase that may repeat it."""
    uniques: list[Item] = []
    para_of: dict[int, str] = {}  # index in uniques -> the paraphrase that will repeat it
    for source, count in counts.items():
        if source == "qqp":
            for pair in rng.sample(dupes, min(count, len(dupes))):
                para_of[len(uniques)] = pair.b
                uniques.append(_qqp_item(pair.a))
            continue
        have = pool.get(source, [])
        uniques += rng.sample(have, min(count, len(have)))
    order = list(range(len(uniques)))
    rng.shuffle(order)
    return [uniques[i] for i in order], {order.index(i): b for i, b in para_of.items()}


def _timeline(
    rng: random.Random, uniques: list[Item], para_of: dict[int, str], n_repeat: int, n_para: int
) -> list[_Arrival]:
    """Every arrival sorted by time: uniques at their index, repeats at a random later point."""
    timeline: list[_Arrival] = [(float(i), it, "", None) for i, it in enumerate(uniques)]
    horizon = float(len(uniques) + n_repeat)
    for k in rng.sample(sorted(para_of), min(n_para, len(para_of))):
        timeline.append((rng.uniform(k + 1, horizon), _qqp_item(para_of[k]), "paraphrase", k))
    weights = [1.0 / (rank + 1) ** ZIPF_S for rank in range(len(uniques))]
    popular = list(range(len(uniques)))
    rng.shuffle(popular)  # popularity is independent of arrival order
    for _ in range(n_repeat - n_para if uniques else 0):
        k = rng.choices(popular, weights)[0]
        timeline.append((rng.uniform(k + 1, horizon), uniques[k], "exact", k))
    timeline.sort(key=lambda t: t[0])
    return timeline


def _assign_tenants(
    rng: random.Random, timeline: list[_Arrival], n_unique: int, tenants: Sequence[str]
) -> list[Request]:
    tenant_of = [rng.choice(list(tenants)) for _ in range(n_unique)]
    seq_of: dict[int, int] = {}
    out: list[Request] = []
    for seq, (at, item, kind, orig) in enumerate(timeline):
        if orig is None:  # a unique item arrives at the integer time of its index
            seq_of[int(at)] = seq
            out.append(Request(seq, item, tenant_of[int(at)]))
            continue
        tenant = tenant_of[orig] if rng.random() < SAME_TENANT else rng.choice(list(tenants))
        out.append(Request(seq, item, tenant, kind, seq_of.get(orig)))
    return out


def describe(requests: Sequence[Request]) -> dict[str, object]:
    return {
        "requests": len(requests),
        "unique_items": len({r.item.item_id for r in requests}),
        "by_source": dict(Counter(r.item.source for r in requests)),
        "repeats": dict(Counter(r.repeat for r in requests if r.repeat)),
        "tenants": dict(Counter(r.tenant for r in requests)),
        "graded": sum(1 for r in requests if r.item.graded),
    }
