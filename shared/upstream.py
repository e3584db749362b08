"""A scripted OpenAI-compatible upstream: the frontier API a hub model calls, failing on cue.

Each served model name follows its own script of behaviours, one per request, the last repeated
(``ok``, ``status:429``, ``hang``, ``malformed``, ``cut:3``, ``redirect:URL``, ...), so a scenario
can make the hub's ``openai_http`` backend meet exactly the failures real providers produce: rate limits with
``Retry-After``, 5xx, 4xx, read timeouts, a 200 whose body is not a completion, streams cut after
some tokens, streams that carry an error event in a 200. It records every call, and which calls
the client abandoned before they finished (a disconnect is how a cancelled hub request shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KEY = "sk-scripted-upstream"


@dataclass
class Call:
    model: str
    behaviour: str
    stream: bool
    finished: bool = False
    abandoned: bool = False  # the client went away before the answer was complete


@dataclass
class ScriptedUpstream:
    scripts: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    base_url: str = ""
    in_flight: int = 0
    _runner: web.AppRunner | None = None
    _served: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def script(self, model: str, *behaviours: str) -> None:
        self.scripts[model] = list(behaviours)
        self._served[model] = 0

    def calls_to(self, model: str) -> list[Call]:
        return [c for c in self.calls if c.model == model]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _next(self, model: str) -> str:
        script = self.scripts.get(model) or ["ok"]
        i = self._served[model]
        self._served[model] = i + 1
        return script[min(i, len(script) - 1)]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        behaviour = self._next(model)
        call = Call(model, behaviour, bool(body.get("stream")))
        self.calls.append(call)
        self.in_flight += 1
        try:
            response = await self._behave(request, body, behaviour, call)
            call.finished = True
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            call.abandoned = True
            raise
        finally:
            self.in_flight -= 1

    async def _behave(
        self, request: web.Request, body: dict[str, Any], behaviour: str, call: Call
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return _error(401, "Incorrect API key provided")
        kind, _, arg = behaviour.partition(":")
        user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        # "<model> says: <question>": never the text a local echo would give, so a splice shows
        words = [body.get("model", "?"), "says:", *str(user).split(" ")]
        if kind == "status":
            headers = {"Retry-After": "1"} if arg == "429" else {}
            return _error(int(arg), f"scripted status {arg}", headers)
        if kind == "lag":  # a slow failure: the worst kind for whoever waits on it
            await _wait_unless_gone(request, float(arg))
            return _error(503, f"scripted 503 after {arg} s")
        if kind in ("hang", "slow"):
            await _wait_unless_gone(request, 3600.0 if kind == "hang" else float(arg))
        if kind == "redirect":  # a provider (or a poisoned DNS answer) pointing elsewhere
            raise web.HTTPTemporaryRedirect(location=arg)
        if kind == "malformed":
            return web.Response(status=200, text='{"choices": oops', content_type="application/json")
        if not call.stream:
            message = {"role": "assistant", "content": " ".join(words)}
            usage = {"prompt_tokens": len(words), "completion_tokens": len(words)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response({"object": "chat.completion", "choices": [choice], "usage": usage})
        return await self._stream(request, words, kind, int(arg) if arg.isdigit() else 0)

    async def _stream(
        self, request: web.Request, words: list[str], kind: str, after: int
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, word in enumerate(words):
            if kind == "cut" and i == after:
                assert request.transport is not None
                request.transport.abort()  # the provider's connection drops mid-answer
                return resp
            if kind == "inband" and i == after:
                await _event(resp, {"error": {"message": "scripted in-band error", "type": "server_error"}})
                await resp.write(b"data: [DONE]\n\n")
                return resp
            if kind == "slowstream":
                await asyncio.sleep(0.05)
            delta = {"content": word if i == 0 else " " + word}
            await _event(resp, {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})
        done = {"index": 0, "delta": {}, "finish_reason": "stop"}
        usage = {"prompt_tokens": len(words), "completion_tokens": len(words)}
        await _event(resp, {"object": "chat.completion.chunk", "choices": [done], "usage": usage})
        with contextlib.suppress(ConnectionResetError):
            await resp.write(b"data: [DONE]\n\n")
        return resp


async def _wait_unless_gone(request: web.Request, seconds: float) -> None:
    """Sleep, but notice a client that hangs up meanwhile (aiohttp does not cancel the handler)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        await asyncio.sleep(0.02)


async def _event(resp: web.StreamResponse, payload: dict[str, Any]) -> None:
    await resp.write(f"data: {json.dumps(payload)}\n\n".encode())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers or {})


def model_entries(base_url: str, names: list[str], tier: str = "frontier") -> list[dict[str, Any]]:
    """Hub config entries: one ``openai_http`` model per scripted name, all on this upstream."""
    return [
        {
            "name": n,
            "backend": "openai_http",
            "base_url": base_url,
            "api_key": KEY,
            "tier": tier,
            "served_model": n,
        }
        for n in names
    ]
