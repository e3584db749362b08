"""Semantic hits are logged, sampled for review, and reviewed verdicts raise thresholds for good."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from edge_agent.cache.audit import AuditError, AuditRow, HitAudit, read_jsonl, write_jsonl
from edge_agent.cache.db import VERSION_MAX_AGE_S, Database
from edge_agent.cache.service import CacheService
from edge_agent.cache.verifier import Verifier, load_verifier
from edge_agent.cli import main
from shared.config import CacheSettings
from shared.embedding import Embedder
from tests.edge_agent.cache.test_semantic import req

STORED = "How do I reverse a list in Python?"
ASKED = "how can I reverse a python list"
SETTINGS = CacheSettings(relaxed_domains={"general": 0.08})  # the shipped point serves no paraphrase


def served_hit(db_path: Path, embedder: Embedder) -> float:
    """Store one answer, hit it with a paraphrase; returns the hit's verifier probability."""
    with CacheService(db_path, SETTINGS, embedder=embedder) as svc:
        svc.store(req(STORED), "Use lst[::-1].", "m")
        hit = svc.lookup(req(ASKED)).answer
        assert hit is not None and hit.verifier is not None
        return hit.verifier


def test_hits_are_logged_and_sampled_per_domain(tmp_path: Path, embedder: Embedder) -> None:
    prob = served_hit(tmp_path / "c.db", embedder)
    with Database(tmp_path / "c.db") as db:
        audit = HitAudit(db)
        for i in range(30):  # a busy second domain must not crowd the first out of the sample
            audit.record(
                ts=1.0, tenant="t", domain="code", verifier="v", entry_id=1,
                cached=f"q{i}", query=f"p{i}", cosine=0.9, probability=0.9,
            )  # fmt: skip
        rows = audit.sample(10)
    general = [r for r in rows if r.domain == "general"]
    assert len(rows) == 6 and len(general) == 1  # 5 per domain; general has one
    assert general[0].cached == STORED and general[0].query.lower() == ASKED.lower()
    assert general[0].probability == pytest.approx(prob) and general[0].correct is None


def test_a_reviewed_wrong_hit_raises_the_threshold_across_restarts(
    tmp_path: Path, embedder: Embedder
) -> None:
    db_path = tmp_path / "c.db"
    served_hit(db_path, embedder)
    with Database(db_path) as db:
        audit = HitAudit(db)
        (row,) = audit.sample(10)
        verifier = load_verifier(SETTINGS)
        before = verifier.threshold("general")
        raised = audit.apply(verifier, [replace(row, correct=False)], 0.0)
    assert raised["general"] > before
    with CacheService(db_path, SETTINGS, embedder=embedder) as svc:
        assert svc.semantic is not None and svc.semantic.verifier.threshold("general") == raised["general"]
        res = svc.lookup(req(ASKED))
        # nothing audited was clean: the domain now serves identical questions only
        assert res.answer is None and res.trace[-1].reason == "identical_only"
        assert res.trace[-1].detail["operating_point"] == "audited:general"
        assert svc.semantic.verifier.point("general") == "audited:general"
        assert svc.semantic.verifier.threshold("code") == Verifier.load().default_threshold  # untouched


def test_a_running_cache_takes_an_audit_without_restart(tmp_path: Path, embedder: Embedder) -> None:
    db_path = tmp_path / "c.db"
    with CacheService(db_path, SETTINGS, embedder=embedder) as svc:
        svc.store(req(STORED), "Use lst[::-1].", "m")
        assert svc.lookup(req(ASKED)).answer is not None
        # the review is applied by another process, through its own connection
        with Database(db_path) as other:
            audit = HitAudit(other)
            (row,) = audit.sample(10)
            audit.apply(load_verifier(SETTINGS), [replace(row, correct=False)], 0.0)
        time.sleep(2 * VERSION_MAX_AGE_S)  # how soon another process's commit is looked for
        res = svc.lookup(req(ASKED))
        assert res.answer is None and res.trace[-1].reason == "identical_only"
        assert res.trace[-1].detail["operating_point"] == "audited:general"


def test_unusable_review_files_are_refused_with_the_line(tmp_path: Path, embedder: Embedder) -> None:
    good = AuditRow(1, "general", Verifier.load().identity, "a?", "b?", 0.9, None)
    path = tmp_path / "a.jsonl"
    write_jsonl([good], path)
    assert read_jsonl(path) == [good]
    with Database(tmp_path / "c.db") as db, CacheService(":memory:", SETTINGS, embedder=embedder) as svc:
        assert svc.semantic is not None
        with pytest.raises(AuditError, match="no labelled rows"):
            HitAudit(db).apply(svc.semantic.verifier, [good], 0.02)
        other = AuditRow(1, "general", "0123456789abcdef", "a?", "b?", 0.9, True)
        with pytest.raises(AuditError, match="0123456789abcdef"):
            HitAudit(db).apply(svc.semantic.verifier, [other], 0.02)
    path.write_text(json.dumps({**asdict(good), "correct": "yes"}) + "\n")
    with pytest.raises(AuditError, match=r"a\.jsonl:1: \"correct\" must be"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n')
    with pytest.raises(AuditError, match=r"a\.jsonl:1: not an audit row"):
        read_jsonl(path)


def test_cli_round_trip(tmp_path: Path, embedder: Embedder, capsys: pytest.CaptureFixture[str]) -> None:
    served_hit(tmp_path / "cache.db", embedder)
    out = tmp_path / "review.jsonl"
    assert main(["cache", "audit", "sample", "--home", str(tmp_path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["correct"] is None
    out.write_text(json.dumps({**rows[0], "correct": False}) + "\n")
    capsys.readouterr()
    assert main(["cache", "audit", "apply", str(out), "--home", str(tmp_path), "--max-false-rate", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["thresholds"]["general"] > rows[0]["probability"]
    assert main(["cache", "audit", "sample", "--home", str(tmp_path / "none"), "--out", str(out)]) == 2
