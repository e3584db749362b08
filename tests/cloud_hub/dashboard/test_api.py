"""``/api/summary`` over a hub store filled by real edges: the token gate, and every panel's figures
recomputed here from the stored events and verdicts."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from typing import Any

import aiohttp
import pytest

from cloud_hub.dashboard.summary import Sources, build_summary
from cloud_hub.evaluation.sampling import weighted_wilson
from shared.telemetry import TelemetryEvent
from tests.cloud_hub.dashboard.conftest import PRICE, Deployment
from tests.cloud_hub.dashboard.fleet_traffic import BATCH, LATE_EVENTS

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _get(
    d: Deployment, path: str, token: str | None = None, scheme: str = "Bearer"
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(d.board.url.rstrip("/") + path, headers=headers) as r,
    ):
        await r.read()
        return r


async def _summary(d: Deployment, query: str = "") -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{d.board.url}api/summary{query}", headers={"Authorization": f"Bearer {d.token}"}) as r,
    ):
        assert r.status == 200, await r.text()
        assert r.headers["Cache-Control"] == "no-store"
        body: dict[str, Any] = await r.json()
        return body


def _requests(d: Deployment) -> list[TelemetryEvent]:
    return [e for _, e in d.sink.store.events()]


async def test_summary_needs_the_token(deployment: Deployment) -> None:
    d = deployment
    for token, scheme in ((None, "Bearer"), ("not-the-token", "Bearer"), (d.token, "Basic"), ("", "Bearer")):
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{d.board.url}api/summary",
                headers={"Authorization": f"{scheme} {token}"} if token is not None else {},
            ) as r,
        ):
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            body = await r.json()
            assert body["error"]["code"] == "invalid_api_key"
            assert body["error"]["type"] == "invalid_request_error"
            assert "totals" not in body
    wrong_length = d.token + "x"
    assert (await _get(d, "/api/summary", wrong_length)).status == 401
    assert (await _get(d, "/api/summary", d.token)).status == 200


async def test_the_page_is_public_but_holds_no_figures(deployment: Deployment) -> None:
    d = deployment
    async with aiohttp.ClientSession() as http:
        async with http.get(d.board.url) as page:
            assert page.status == 200
            html = await page.text()
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        async with http.get(f"{d.board.url}static/dashboard.js") as js:
            assert js.status == 200 and js.content_type == "text/javascript"
            assert "Authorization" in await js.text()
        async with http.get(f"{d.board.url}static/../token.py") as escape:
            assert escape.status == 404
    assert '<script src="/static/dashboard.js"' in html
    assert "tenant" not in html and str(d.now)[:6] not in html


async def test_bad_parameters_are_refused(deployment: Deployment) -> None:
    d = deployment
    for query in ("?hours=abc", "?hours=0", "?hours=nan", "?buckets=0", "?buckets=2.5", "?hours=100000"):
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{d.board.url}api/summary{query}", headers={"Authorization": f"Bearer {d.token}"}) as r,
        ):
            assert r.status == 400, query
            assert (await r.json())["error"]["code"] == "invalid_value"


async def test_traffic_figures_match_the_store(deployment: Deployment) -> None:
    d = deployment
    s = await _summary(d)
    events = _requests(d)
    stored = Counter(edge for edge, _ in d.sink.store.events())
    assert stored[d.keys.ids["a"]] == len(d.edges["a"].events) - (LATE_EVENTS - BATCH)
    assert 0 < stored[d.keys.ids["b"]] < len(d.edges["b"].events)  # b's spool dropped some
    answered = [e for e in events if not e.error_type]
    t = s["totals"]
    assert t["requests"] == len(events)
    assert t["errors"] == 1
    assert t["cost_usd"] == pytest.approx(sum(e.cost_usd for e in events))
    assert t["cache_hit_rate"] == pytest.approx(sum(e.is_cache_hit for e in events) / len(events))
    assert t["escalation_rate"] == pytest.approx(sum(bool(e.escalation_reason) for e in events) / len(events))
    assert t["fallback_rate"] == pytest.approx(sum(e.fallback for e in events) / len(events))
    assert t["regeneration_rate"] == pytest.approx(sum(e.regeneration for e in events) / len(events))
    assert t["regeneration_rate"] > 0  # the recorder spotted the re-asked question
    ns = s["north_star"]
    frontier = sum(e.route == "frontier" for e in answered)
    assert frontier == 3
    assert ns["served_without_frontier"] == pytest.approx((len(answered) - frontier) / len(answered))
    priced = [e for e in answered if e.input_tokens or e.output_tokens]
    always = sum(PRICE.cost.estimate(e.input_tokens, e.output_tokens) for e in priced)
    cost = ns["cost_vs_frontier"]
    assert cost["frontier_usd"] == pytest.approx(always)
    assert cost["ratio"] == pytest.approx(sum(e.cost_usd for e in priced) / always)
    assert cost["coverage"] == pytest.approx(len(priced) / len(answered))
    assert cost["times_cheaper"] == pytest.approx(1 / cost["ratio"])
    assert ns["frontier_price"]["model"] == "gpt-test"

    by_route: dict[str, list[TelemetryEvent]] = defaultdict(list)
    for e in events:
        by_route[e.route].append(e)
    assert [r["route"] for r in s["routes"]] == [
        r for r in ("exact_cache", "semantic_cache", "edge_local", "hub_oss", "frontier") if r in by_route
    ]
    for row in s["routes"]:
        group = by_route[row["route"]]
        lat = [e.latency_s for e in group if e.latency_s is not None]
        assert row["requests"] == len(group)
        assert row["share"] == pytest.approx(len(group) / len(events))
        assert row["cost_usd"] == pytest.approx(sum(e.cost_usd for e in group))
        assert row["latency_p50_s"] == pytest.approx(statistics.median(lat))
        p95 = statistics.quantiles(lat, n=20, method="inclusive")[-1] if len(lat) > 1 else lat[0]
        assert row["latency_p95_s"] == pytest.approx(p95)

    c = s["cache"]
    assert c["exact_hit_rate"] == pytest.approx(len(by_route["exact_cache"]) / len(events))
    assert c["semantic_hit_rate"] == pytest.approx(len(by_route["semantic_cache"]) / len(events))
    reasked = {e.regenerates for e in events if e.regenerates}
    ratings = d.sink.store.feedback_by_response()
    audit = {a["domain"]: a for a in c["semantic_audit"]}
    hits_by_domain = Counter(e.domain for e in by_route["semantic_cache"])
    assert {k: a["hits"] for k, a in audit.items()} == dict(hits_by_domain)
    for domain, a in audit.items():
        hits = [e for e in by_route["semantic_cache"] if e.domain == domain]
        sims = [e.cache_similarity for e in hits if e.cache_similarity is not None]
        assert a["similarity_mean"] == pytest.approx(sum(sims) / len(sims))
        assert a["similarity_min"] == min(sims)
        assert a["reasked"] == sum(e.response_id in reasked for e in hits)
        assert a["rated_down"] == sum(ratings.get(e.response_id, 0) < 0 for e in hits)
    assert audit["general"]["reasked"] == 1 and audit["general"]["rated_down"] == 1


async def test_north_star_buckets_match_the_store(deployment: Deployment) -> None:
    d = deployment
    s = await _summary(d, "?hours=6&buckets=12")
    width = s["window"]["bucket_s"]
    assert width == pytest.approx(1800.0)
    events = [e for e in _requests(d) if e.timestamp >= s["window"]["since"]]
    buckets: dict[float, list[TelemetryEvent]] = defaultdict(list)
    for e in events:
        buckets[math.floor(e.timestamp / width) * width].append(e)
    series = s["north_star"]["series"]
    assert [p["start"] for p in series] == pytest.approx(sorted(buckets))
    assert len(series) >= 5
    for point in series:
        group = buckets[min(buckets, key=lambda b: abs(b - point["start"]))]
        ok = [e for e in group if not e.error_type]
        priced = [e for e in ok if e.input_tokens or e.output_tokens]
        assert point["requests"] == len(group)
        assert point["served_without_frontier"] == pytest.approx(
            sum(e.route != "frontier" for e in ok) / len(ok)
        )
        if priced:
            always = sum(PRICE.cost.estimate(e.input_tokens, e.output_tokens) for e in priced)
            assert point["cost_ratio"] == pytest.approx(sum(e.cost_usd for e in priced) / always)
        else:
            assert point["cost_ratio"] is None
    assert sum(p["requests"] for p in series) == s["totals"]["requests"]


async def test_fleet_health_matches_the_edges(deployment: Deployment) -> None:
    d = deployment
    s = await _summary(d)
    fleet = {row["edge"]: row for row in s["fleet"]}
    ids = d.keys.ids
    assert set(fleet) == set(ids.values())
    a, b, idle = fleet[ids["a"]], fleet[ids["b"]], fleet[ids["idle"]]
    assert all(row["enrolled"] for row in fleet.values())
    # edge a's link is still up and heartbeating; the idle edge never connected
    assert a["online"] and a["last_seen"] is not None and a["seen_ago_s"] < 3 * 0.5
    assert not idle["online"] and idle["last_seen"] is None and idle["requests"] == 0
    assert idle["spool_backlog"] is None
    a_spool, b_spool = d.edges["a"].spool.stats(), d.edges["b"].spool.stats()
    assert a["spool_backlog"] == a_spool.pending_events == LATE_EVENTS - BATCH
    assert b["spool_backlog"] == b_spool.pending_events == 0
    assert b_spool.dropped_events > 0
    assert b["dropped_events"] == b_spool.dropped_events
    assert a["dropped_events"] == 0
    stored = Counter(edge for edge, _ in d.sink.store.events())
    assert a["requests"] == stored[ids["a"]] and b["requests"] == stored[ids["b"]]
    assert a["errors"] == 1


async def test_quality_flags_and_canary_match_the_evaluation(deployment: Deployment) -> None:
    d = deployment
    s = await _summary(d)
    q = s["quality"]
    with d.sink.store.transaction() as db:
        run_id = db.execute("SELECT run_id FROM eval_runs ORDER BY finished DESC LIMIT 1").fetchone()[0]
        verdicts = db.execute(
            "SELECT domain, route, passed, weight, policy_version, canary FROM eval_results WHERE run_id = ?",
            (run_id,),
        ).fetchall()
    assert q["run"]["run_id"] == run_id and q["run"]["scored"] == len(verdicts)
    by_domain: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for domain, _, passed, weight, _, _ in verdicts:
        by_domain[domain].append((bool(passed), float(weight)))
    assert [row["domain"] for row in q["domains"]] == sorted(by_domain)
    for row in q["domains"]:
        rows = by_domain[row["domain"]]
        rate = sum(w for ok, w in rows if ok) / sum(w for _, w in rows)
        assert row["pass_rate"] == pytest.approx(rate)
        assert row["n"] == len(rows)
        assert row["ci_low"] <= rate <= row["ci_high"]
        assert row["ci_high"] - row["ci_low"] > 0.05  # a handful of answers: a wide interval
    math_row = next(r for r in q["domains"] if r["domain"] == "math")
    assert math_row["pass_rate"] == pytest.approx(0.7) and math_row["target"] == 0.9
    assert math_row["status"] == "below"
    flags = {(f["domain"], f["route"]): f for f in q["flags"]}
    assert flags[("math", "edge_local")]["status"] == "below"
    assert flags[("math", "edge_local")]["top_failure"] == "wrong_answer"
    assert all(f["status"] in ("below", "watch") for f in q["flags"])

    c = s["canary"]
    assert c["running"] and c["canary_version"] == "v1" and c["canary_threshold"] == 0.7
    events = _requests(d)
    assert c["canary"]["requests"] == sum(e.policy_version == "v1" and e.canary for e in events)
    assert c["control"]["requests"] == sum(e.policy_version == "v0" and not e.canary for e in events)
    arm = [(bool(p), float(w)) for _, _, p, w, pv, _ in verdicts if pv == "v1"]
    ci = weighted_wilson([ok for ok, _ in arm], [w for _, w in arm])
    assert c["canary"]["eval"]["scored"] == len(arm) == 4
    assert c["canary"]["eval"]["pass_rate"] == pytest.approx(ci.rate) == pytest.approx(0.75)
    control = [(bool(p), float(w)) for _, _, p, w, pv, canary in verdicts if pv == "v0" and not canary]
    control_rate = sum(w for ok, w in control if ok) / sum(w for _, w in control)
    assert c["control"]["eval"]["pass_rate"] == pytest.approx(control_rate) == pytest.approx(10 / 12)
    lo, hi = c["difference_ci"]
    assert lo < 0.75 - control_rate < hi


async def test_without_a_frontier_price_the_cost_ratio_is_unknown(deployment: Deployment) -> None:
    d = deployment
    src = Sources(d.sink.store, d.home, None, d.home / "enrolled")
    s = build_summary(src, hours=24)
    assert s["north_star"]["frontier_price"] is None
    assert s["north_star"]["cost_vs_frontier"]["ratio"] is None
    assert all(p["cost_ratio"] is None for p in s["north_star"]["series"])
    assert (
        s["north_star"]["served_without_frontier"]
        == (await _summary(d))["north_star"]["served_without_frontier"]
    )
    # a window with no traffic: figures are unknown, not zero
    empty = build_summary(src, hours=1, now=d.now - 10 * 3600)
    assert empty["totals"]["requests"] == 0
    assert empty["north_star"]["served_without_frontier"] is None
    assert empty["routes"] == [] and empty["cache"]["hit_rate"] is None
