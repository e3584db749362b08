"""Preference pairs from reference checks, the judge-free kind.

When one prompt was answered several times in a run (different tiers, or the same tier at
different times) and a reference check passed some answers and failed others, each failed answer
is paired with a passed one: ``chosen`` is an answer the check accepted, ``rejected`` one it
refused. The verdicts are the check's, not a model's opinion, so these are the cleanest pairs a run
gives the training team; the pair's domain and route are the failed answer's, the cell to train.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from cloud_hub.evaluation.results import PairRow
from cloud_hub.evaluation.sampling import Sampled
from cloud_hub.evaluation.scorers import Verdict

REFERENCE_PREFIX = "reference:"  # the scorer names of the reference checks


def reference_pairs(run_id: str, scored: Iterable[tuple[Sampled, Verdict]]) -> list[PairRow]:
    """One pair per distinct failed answer of every prompt that also has a passed answer."""
    by_prompt: dict[str, list[tuple[Sampled, Verdict]]] = defaultdict(list)
    for item, verdict in scored:
        ev = item.event
        if verdict.scorer.startswith(REFERENCE_PREFIX) and ev.prompt and ev.completion:
            by_prompt[ev.prompt].append((item, verdict))
    pairs: list[PairRow] = []
    for prompt, answers in by_prompt.items():
        passed = [(item, v) for item, v in answers if v.passed]
        if not passed:
            continue
        # the best-scored accepted answer, the shortest among equals: a target, not a ramble
        chosen = min(
            passed, key=lambda a: (-a[1].score, len(a[0].event.completion or ""), a[0].event.event_id)
        )
        chosen_text = chosen[0].event.completion or ""
        seen = {chosen_text}
        for item, verdict in sorted(answers, key=lambda a: a[0].event.event_id):
            text = item.event.completion or ""
            if verdict.passed or text in seen:
                continue
            seen.add(text)
            ev = item.event
            pairs.append(
                PairRow(
                    run_id,
                    item.edge_id,
                    ev.event_id,
                    "reference",
                    ev.domain,
                    ev.route,
                    prompt,
                    chosen_text,
                    text,
                )
            )
    return pairs
