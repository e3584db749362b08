"""Send a workload through the agent's OpenAI API and keep what the router did with each request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import openai
from rich.progress import Progress

from cloud_hub.demo.workload import WorkItem
from cloud_hub.evaluation.scorers import extract_letter, extract_number


def is_correct(item: WorkItem, text: str) -> bool | None:
    if item.reference is None:
        return None
    if item.kind == "math":
        got = extract_number(text)
        return got is not None and got == extract_number(item.reference)
    return extract_letter(text) == item.reference


@dataclass
class Record:
    item: WorkItem
    route: str = "error"
    model: str = ""  # the model that answered (the response's ``model``)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    correct: bool | None = None
    baseline_correct: bool | None = None
    error: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)


def _max_tokens(item: WorkItem) -> int:
    return {"mcq": 8, "math": 320, "chat": 96, "code": 192, "writing": 192}.get(item.kind, 128)


def _ask(client: openai.OpenAI, item: WorkItem, route: str | None) -> Record:
    rec = Record(item=item)
    headers = {"x-edgeroute-route": route} if route else None
    start = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": item.prompt}],
            max_tokens=_max_tokens(item),
            temperature=0.0,
            extra_headers=headers,
        )
    except openai.APIError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"
        return rec
    rec.latency_s = time.perf_counter() - start
    completion = raw.parse()
    info: dict[str, Any] = (completion.model_extra or {}).get("edgeroute") or {}
    rec.route = raw.headers.get("x-edgeroute-route", info.get("route", "unknown"))
    rec.model = completion.model
    rec.cost_usd = float(info.get("cost_usd") or 0.0)
    rec.trace = list(info.get("trace") or [])
    rec.text = completion.choices[0].message.content or ""
    if completion.usage is not None:
        rec.prompt_tokens = completion.usage.prompt_tokens
        rec.completion_tokens = completion.usage.completion_tokens
    rec.correct = is_correct(item, rec.text)
    return rec


def replay(base_url: str, items: list[WorkItem], baseline_route: str | None) -> list[Record]:
    """Each request goes through the router; checkable ones also go to ``baseline_route`` for
    the quality comparison, in the same run and on the same models."""
    client = openai.OpenAI(base_url=base_url, api_key="local", timeout=300.0, max_retries=0)
    records: list[Record] = []
    with Progress() as progress:
        task = progress.add_task("replaying workload", total=len(items))
        for item in items:
            rec = _ask(client, item, None)
            if baseline_route and item.reference is not None:
                base = _ask(client, item, baseline_route)
                rec.baseline_correct = base.correct
            records.append(rec)
            progress.update(task, advance=1, description=f"replaying workload · last: {rec.route}")
    client.close()
    return records
