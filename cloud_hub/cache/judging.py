"""The hub's judge service: grey-zone candidates in, verdicts out, approvals published as aliases.

An edge sends a ``CacheJudgeRequest`` for a candidate its verifier would not serve alone, off its
request path. The service judges it (the configured judges must all approve), remembers the
verdict under the pair's identity so the same pair is never judged twice, and on approval adds an
alias to the global cache: the new question, filed for the asking tenant of the asking edge, with
the answer the judge found right for it. The publisher then announces the alias; only that edge
can fetch it, so the next time the paraphrase arrives there it is an exact hit on its question
text, with no judge on the path.

Judges run one at a time in a worker thread (a llama.cpp context is not re-entrant, and a pair
head is milliseconds); at most ``max_pending`` requests wait, beyond that an edge is told the hub
is overloaded and drops the candidate. Per-domain thresholds fitted from reviewed verdicts
(``cloud-hub cache judge fit``) live in ``thresholds_file`` and are re-read when it changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from cloud_hub.cache.judge import AnswerJudge, JudgeItem, judge
from cloud_hub.cache.store import GlobalCacheStore
from shared.cache_text import GlobalEntry, digest, question_form
from shared.config import GlobalCacheSettings
from shared.wire import CacheJudgeRequest, CacheJudgeVerdict

log = logging.getLogger(__name__)

THRESHOLDS_FILE = "judge_thresholds.json"


class Overloaded(Exception):
    """More candidates are waiting than the service takes; the edge drops this one."""


@runtime_checkable
class TunableJudge(Protocol):
    """A judge whose per-domain thresholds can be replaced while it runs."""

    @property
    def name(self) -> str: ...

    def set_thresholds(self, thresholds: dict[str, float]) -> None: ...


def pair_key(edge: str, req: CacheJudgeRequest) -> str:
    """What a verdict is remembered under: who asked, in which scope, which two questions, which answer."""
    answer = hashlib.sha256(req.answer.encode()).hexdigest()
    return digest(
        "judged", edge, req.tenant, req.family, req.sys_hash,
        question_form(req.question), question_form(req.cached_question), answer,
    )[:40]  # fmt: skip


class JudgeService:
    def __init__(
        self,
        store: GlobalCacheStore,
        judges: Sequence[AnswerJudge],
        *,
        publish: Callable[[GlobalEntry], object] | None = None,
        thresholds_file: Path | None = None,
        max_pending: int = 256,
    ) -> None:
        if not judges:
            raise ValueError("a judge service needs at least one judge")
        self.store = store
        self.judges = list(judges)
        self.publish = publish
        self.thresholds_file = thresholds_file
        self.max_pending = max_pending
        self.name = "+".join(j.name for j in self.judges)
        self._one = asyncio.Lock()
        self._pending = 0
        self._thresholds_mtime: float | None = None
        # counters for the dashboard and the benchmarks
        self.judged = 0
        self.remembered = 0
        self.approved = 0
        self.refused = 0

    async def handle(self, req: CacheJudgeRequest, edge: str) -> CacheJudgeVerdict:
        """The verdict on one candidate from ``edge`` (the id its CURVE key proved)."""
        pair = pair_key(edge, req)
        known = await asyncio.to_thread(self.store.verdict, pair)
        if known is not None:
            self.remembered += 1
            return CacheJudgeVerdict(req.judge_id, known.approved, known.score, known.judge, remembered=True)
        if self._pending >= self.max_pending:
            self.refused += 1
            raise Overloaded(f"{self._pending} candidates already wait for the judge")
        self._pending += 1
        try:
            async with self._one:
                known = await asyncio.to_thread(self.store.verdict, pair)  # judged while this one waited
                if known is not None:
                    self.remembered += 1
                    return CacheJudgeVerdict(req.judge_id, known.approved, known.score, known.judge, True)
                approved, scores = await asyncio.to_thread(self._judge, req)
                score = min(scores.values())  # the least convinced judge's
                await asyncio.to_thread(self._record, pair, req, edge, approved, scores)
        finally:
            self._pending -= 1
        return CacheJudgeVerdict(req.judge_id, approved, score, self.name)

    def _judge(self, req: CacheJudgeRequest) -> tuple[bool, dict[str, float]]:
        """(every judge approves, the score of each judge that ran: they stop at the first refusal)."""
        self._refresh_thresholds()
        item = JudgeItem(req.cached_question, req.question, req.answer, req.domain)
        verdicts = []
        for j in self.judges:  # cheapest first: a refusal spares the costlier judges
            verdicts.append(judge(j, [item])[0])
            if not verdicts[-1].approved:
                break
        self.judged += 1
        return all(v.approved for v in verdicts), {v.judge: v.probability for v in verdicts}

    def _record(
        self, pair: str, req: CacheJudgeRequest, edge: str, approved: bool, scores: dict[str, float]
    ) -> None:
        self.store.remember(
            pair, approved, min(scores.values()), self.name,
            domain=req.domain, cached=req.cached_question, query=req.question, scores=scores,
        )  # fmt: skip
        if not approved:
            return
        self.approved += 1
        entry = self.store.add_alias(
            edge=edge, tenant=req.tenant, question=req.question, answer=req.answer,
            family=req.family, sys_hash=req.sys_hash, domain=req.domain,
        )  # fmt: skip
        if self.publish is not None:
            self.publish(entry)

    def _refresh_thresholds(self) -> None:
        path = self.thresholds_file
        if path is None:
            return
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._thresholds_mtime:
            return
        self._thresholds_mtime = mtime
        try:
            fitted = load_thresholds(path)
        except (OSError, ValueError) as exc:
            log.error("judge thresholds in %s not applied: %s", path, exc)
            return
        for j in self.judges:
            if j.name in fitted and isinstance(j, TunableJudge):
                j.set_thresholds(fitted[j.name])
                log.info("judge %s: domain thresholds %s", j.name, fitted[j.name])


def open_judges(settings: GlobalCacheSettings, models_dir: Path) -> list[AnswerJudge]:
    """The judges ``settings.judge`` names, after the trap guard, loaded (blocking: models are read here)."""
    from cloud_hub.cache.judge_guards import TrapGuard

    judges: list[AnswerJudge] = [TrapGuard()]
    if settings.judge in ("head", "both"):
        from cloud_hub.cache.judge_head import HeadJudge

        judges.append(HeadJudge.load(models_dir=models_dir))
    if settings.judge in ("llm", "both"):
        from cloud_hub.cache.judge_llm import LlmJudge

        model = Path(settings.judge_model).expanduser()
        judges.append(LlmJudge(model if model.exists() else models_dir / settings.judge_model,
                               n_threads=settings.judge_threads))  # fmt: skip
    return judges


def load_thresholds(path: Path) -> dict[str, dict[str, float]]:
    """``{judge name: {domain: threshold}}`` as ``cloud-hub cache judge fit`` writes it."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("expected an object of judge names")
    return {str(j): {str(d): float(t) for d, t in by.items()} for j, by in raw.items()}


def save_thresholds(path: Path, fitted: dict[str, dict[str, float]]) -> None:
    """Merge ``fitted`` into the file (other judges' thresholds are kept); atomic."""
    merged = load_thresholds(path) if path.is_file() else {}
    for name, by_domain in fitted.items():
        merged.setdefault(name, {}).update(by_domain)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
