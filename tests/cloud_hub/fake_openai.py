"""A small local server speaking the OpenAI chat-completions protocol.

It stands in for a paid frontier API (the only kind of fake the test suite allows): it answers
``POST /v1/chat/completions`` in full or as SSE, checks the bearer key, and can be told to fail
the way real providers do (HTTP errors with an OpenAI error body, an error event mid-stream).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "sk-test-frontier"


@dataclass
class FakeOpenAI:
    fail_status: int | None = None  # answer every request with this HTTP status
    fail_mid_stream: bool = False  # send one delta, then an error event
    include_usage: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _error(status: int, message: str, kind: str) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return web.json_response(body, status=status)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._error(401, "Incorrect API key provided", "invalid_request_error")
        body = await request.json()
        self.requests.append(body)
        if self.fail_status is not None:
            return self._error(self.fail_status, f"simulated failure {self.fail_status}", "server_error")
        user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        words = f"frontier says: {user}".split(" ")[: body.get("max_tokens", 256)]
        text = " ".join(words)
        usage = {
            "prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
            "completion_tokens": len(words),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": "chatcmpl-fake", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            return web.json_response(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(payload: dict[str, Any]) -> None:
            await resp.write(f"data: {json.dumps(payload)}\n\n".encode())

        await resp.write(b": keep-alive comment\n\n")
        for i, word in enumerate(words):
            delta = {"content": word if i == 0 else " " + word}
            await event(
                {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
            )
            if self.fail_mid_stream:
                await event({"error": {"message": "upstream overloaded", "type": "server_error"}})
                return resp
        final = {"index": 0, "delta": {}, "finish_reason": "stop"}
        await event({**base, "object": "chat.completion.chunk", "choices": [final]})
        if self.include_usage and (body.get("stream_options") or {}).get("include_usage"):
            await event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        return resp
