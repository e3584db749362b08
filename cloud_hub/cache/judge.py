"""Hub-side judges of semantic-cache reuse: may the answer cached for one question serve another?

The edge's verifier serves only candidates it is sure of and sends the hub its grey zone (both
questions and the cached answer), off the request path. A judge answers a narrower question than
paraphrase detection: not "are these the same question" but "is this answer right for the new
one". Judges score in [0, 1] and approve at a per-domain threshold; reviewed verdicts (the edge's
audit format: one JSON object a line with ``domain``, ``cached``, ``query``, ``probability`` and
``correct`` true/false, ``verifier`` naming the judge's weights) set each domain's threshold.
Unlike the edge's audit, which only sees what it served, a judge's reviewed verdicts cover what it
rejected too, so a domain's threshold may move either way. A ``*`` entry stands for every domain
without its own (what a fit on training pairs, rather than on one domain's reviews, sets).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.paraphrase import operating_point

# reviewed verdicts a domain needs before its own threshold replaces the default
MIN_REVIEWED = 30
# a thresholds entry for every domain without its own (what a fit on training pairs sets)
ANY_DOMAIN = "*"


def domain_threshold(thresholds: dict[str, float], domain: str, default: float) -> float:
    """``domain``'s own threshold, else the ``ANY_DOMAIN`` one, else ``default``."""
    if domain in thresholds:
        return thresholds[domain]
    return thresholds.get(ANY_DOMAIN, default)


@dataclass(frozen=True)
class JudgeItem:
    """One grey-zone candidate: the stored question and answer, and the question now asked."""

    cached: str
    query: str
    answer: str = ""  # empty when only the questions are known (paraphrase benchmarks)
    domain: str = "general"


@dataclass(frozen=True)
class Judgement:
    probability: float
    approved: bool
    threshold: float
    judge: str


class AnswerJudge(Protocol):
    @property
    def name(self) -> str:
        """Names the judge and its weights, as reviewed verdicts record it."""
        ...

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        """The probability that each cached answer is correct for its new question."""
        ...

    def threshold(self, domain: str) -> float: ...


def judge(j: AnswerJudge, items: Sequence[JudgeItem]) -> list[Judgement]:
    probs = j.score(items)
    out = []
    for item, p in zip(items, probs, strict=True):
        t = j.threshold(item.domain)
        out.append(Judgement(p, p >= t, t, j.name))
    return out


class ReviewError(ValueError):
    """A reviewed-verdict file that cannot be used; nothing was applied."""


@dataclass(frozen=True)
class Reviewed:
    domain: str
    judge: str
    cached: str
    query: str
    probability: float
    correct: bool


def read_reviewed(path: Path) -> list[Reviewed]:
    """Rows with ``correct`` set; rows still ``null`` (not reviewed yet) are skipped."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            correct = raw.get("correct")
            if correct is None:
                continue
            if not isinstance(correct, bool):
                raise TypeError(f'"correct" must be true, false or null, not {correct!r}')
            row = Reviewed(
                str(raw["domain"]), str(raw["verifier"]), str(raw["cached"]), str(raw["query"]),
                float(raw["probability"]), correct,
            )  # fmt: skip
            out.append(row)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReviewError(f"{path}:{n}: not a reviewed verdict ({exc!r})") from exc
    return out


def fit_domain_thresholds(
    rows: Sequence[Reviewed], judge_name: str, max_false_rate: float, *, min_reviewed: int = MIN_REVIEWED
) -> dict[str, float]:
    """Per domain, the lowest score whose reviewed approvals keep wrong ones at ``max_false_rate``.

    A domain with fewer than ``min_reviewed`` verdicts keeps the default (it is left out); one
    where no threshold is clean enough gets 1.0 + ε: the judge approves nothing there.
    """
    foreign = {r.judge for r in rows} - {judge_name}
    if foreign:
        raise ReviewError(f"verdicts were scored by judge {sorted(foreign)}; this judge is {judge_name}")
    by_domain: dict[str, list[Reviewed]] = defaultdict(list)
    for r in rows:
        by_domain[r.domain].append(r)
    out = {}
    for domain, got in sorted(by_domain.items()):
        if len(got) < min_reviewed:
            continue
        point = operating_point([r.probability for r in got], [int(r.correct) for r in got], max_false_rate)
        out[domain] = point.threshold if point.served else 1.0 + 1e-9
    return out
