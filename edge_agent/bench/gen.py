"""Local generation speed through the agent's HTTP API vs raw llama-cpp-python, same run.

Both sides use one loaded model, the same chat prompt, greedy sampling and the same
``max_tokens``; runs interleave the four modes (raw and agent, plain and streaming) in rotating
order so background load hits all of them alike. Figures are medians over ``--runs``; the goal is
agent/raw >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from shared.config import EdgeSettings, LocalModelConfig

DEFAULT_PROMPT = "Implement a binary search tree class in Python with insert, search and delete methods."
GOAL = 0.95


@dataclass
class Sample:
    tokens: int
    seconds: float
    ttft: float | None
    text: str

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    edge_model = LocalModelConfig.model_fields["name"].default
    parser.add_argument("--model", default=edge_model, help="installed name or .gguf path")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")


def _raw(backend: LlamaCppBackend, messages: list[dict[str, str]], max_tokens: int, stream: bool) -> Sample:
    llm: Any = backend.llama  # llama-cpp's TypedDict unions add nothing to a timing loop
    start = time.perf_counter()
    if not stream:
        out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
        took = time.perf_counter() - start
        return Sample(
            out["usage"]["completion_tokens"], took, None, out["choices"][0]["message"]["content"] or ""
        )
    ttft: float | None = None
    pieces: list[str] = []
    for chunk in llm.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            ttft = ttft if ttft is not None else time.perf_counter() - start
            pieces.append(content)
    took = time.perf_counter() - start
    text = "".join(pieces)
    tokens = len(llm.tokenize(text.encode(), add_bos=False, special=False))
    return Sample(tokens, took, ttft, text)


def _agent(http: httpx.Client, payload: dict[str, object], stream: bool) -> Sample:
    start = time.perf_counter()
    if not stream:
        body = http.post("/v1/chat/completions", json=payload).raise_for_status().json()
        took = time.perf_counter() - start
        return Sample(
            body["usage"]["completion_tokens"], took, None, body["choices"][0]["message"]["content"]
        )
    ttft: float | None = None
    pieces: list[str] = []
    tokens = 0
    body = {**payload, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk["choices"]:
                content = choice["delta"].get("content")
                if content:
                    ttft = ttft if ttft is not None else time.perf_counter() - start
                    pieces.append(content)
    return Sample(tokens, time.perf_counter() - start, ttft, "".join(pieces))


def run(args: argparse.Namespace) -> int:
    console = Console()
    model = Path(args.model).expanduser()
    local = (
        LocalModelConfig(name=model.stem, path=model, n_threads=args.threads, n_ctx=2048)
        if model.suffix == ".gguf"
        else LocalModelConfig(name=args.model, n_threads=args.threads, n_ctx=2048)
    )
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as home:
        settings = EdgeSettings(home=Path(home), local_model=local, confidence_threshold=0.0)
        console.print(f"loading [bold]{local.name}[/] ({args.threads} threads)")
        # the raw llama-cpp-python runs compare against this backend, whatever the config names
        backend = LlamaCppBackend.from_config(settings)
        messages = [{"role": "user", "content": args.prompt}]
        payload: dict[str, object] = {
            "model": "auto",
            "messages": messages,
            "max_tokens": args.max_tokens,
            "temperature": 0,
        }
        results: dict[str, list[Sample]] = {"raw": [], "raw_stream": [], "agent": [], "agent_stream": []}
        with (
            BackgroundAgent(create_app(settings, backend, owns_backend=False)) as agent,
            httpx.Client(base_url=agent.base_url, timeout=600) as http,
        ):
            _raw(backend, messages, 8, False)  # warm-up: page in weights, fill the prompt cache
            _agent(http, {**payload, "max_tokens": 8}, False)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("generating", total=args.runs * 4)
                steps: list[tuple[str, Callable[[], Sample]]] = [
                    ("raw", partial(_raw, backend, messages, args.max_tokens, False)),
                    ("agent", partial(_agent, http, payload, False)),
                    ("raw_stream", partial(_raw, backend, messages, args.max_tokens, True)),
                    ("agent_stream", partial(_agent, http, payload, True)),
                ]
                for i in range(args.runs):
                    # rotate the order so no mode always runs right after the same other one
                    for key, fn in steps[i % len(steps) :] + steps[: i % len(steps)]:
                        results[key].append(fn())
                        progress.advance(task)
        asyncio.run(backend.close())
    return _report(console, results, args)


def _report(console: Console, results: dict[str, list[Sample]], args: argparse.Namespace) -> int:
    med = {k: statistics.median(s.tok_s for s in v) for k, v in results.items()}
    ttft = {
        k: statistics.median(s.ttft for s in v if s.ttft is not None)
        for k, v in results.items()
        if "stream" in k
    }
    same_text = all(a.text == b.text for a, b in zip(results["raw"], results["agent"], strict=True))
    table = Table(title=f"local generation, {args.max_tokens} max tokens, median of {args.runs} runs")
    columns = ("mode", "raw tok/s", "agent tok/s", "ratio", "paired ratio", "raw TTFT ms", "agent TTFT ms")
    for col in columns:
        table.add_column(col, justify="right")
    figures: dict[str, float] = {}
    for mode, raw_key, agent_key in (("plain", "raw", "agent"), ("stream", "raw_stream", "agent_stream")):
        ratio = med[agent_key] / med[raw_key] if med[raw_key] else 0.0
        # each agent run against the raw run next to it: robust to load that drifts over the bench
        pairs = zip(results[raw_key], results[agent_key], strict=True)
        paired = statistics.median(a.tok_s / r.tok_s for r, a in pairs if r.tok_s)
        figures[f"{mode}_ratio"], figures[f"{mode}_paired_ratio"] = ratio, paired
        figures[f"{mode}_raw_tok_s"], figures[f"{mode}_agent_tok_s"] = med[raw_key], med[agent_key]
        t_raw = f"{ttft[raw_key] * 1000:.0f}" if raw_key in ttft else "-"
        t_agent = f"{ttft[agent_key] * 1000:.0f}" if agent_key in ttft else "-"
        table.add_row(
            mode,
            f"{med[raw_key]:.1f}",
            f"{med[agent_key]:.1f}",
            _styled(ratio),
            _styled(paired),
            t_raw,
            t_agent,
        )
    console.print(table)
    console.print(
        f"tokens per answer: {results['agent'][0].tokens}; identical greedy text raw vs agent: {same_text}"
    )
    console.print("agent TTFT includes the confidence draft (settings.draft_tokens) held back before release")
    if args.json:
        args.json.write_text(json.dumps({**figures, "same_text": same_text}, indent=2))
    return 0


def _styled(ratio: float) -> str:
    return f"[{'green' if ratio >= GOAL else 'red'}]{ratio:.3f}[/]"
