"""Request bodies of the OpenAI endpoints we serve, validated strictly.

Strict types (no "0.5" → 0.5 coercion) and unknown top-level fields rejected, as the OpenAI API
does, so a misspelled parameter is an error instead of a silent default. Parameters we accept but
cannot honour (``n > 1``, ``logprobs``, tools, penalties, non-text content) are refused with a 400 that names
them, never ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.api.errors import ApiError
from shared.wire import ChatMessage, SamplingParams

DEFAULT_CHAT_MAX_TOKENS = 512
DEFAULT_COMPLETION_MAX_TOKENS = 16  # the OpenAI default for /v1/completions

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
MaxTokens = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: str


class Message(BaseModel):
    # extra keys (tool_calls: [], refusal: null, ...) come from clients echoing earlier turns
    model_config = ConfigDict(strict=True, extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart | OtherPart] | None  # required; null only on assistant tool turns
    name: str | None = None

    def text(self, index: int) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts: list[str] = []
        for part in self.content:
            if not isinstance(part, TextPart):
                raise ApiError(
                    400,
                    f"content part of type '{part.type}' is not supported; only 'text' parts are",
                    param=f"messages.{index}.content",
                    code="unsupported_content",
                )
            parts.append(part.text)
        return "".join(parts)


class StreamOptions(_Strict):
    include_usage: bool = False


# 0 < t <= 1: the share of the best route's expected quality this request must keep
QualityTarget = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]


CacheMode = Literal["bypass", "default"]  # "bypass": no cache is read or written for the request


class RouteOverride(_Strict):
    route: Literal["edge_local", "hub"] | None = None
    hub_model: str | None = None
    quality_target: QualityTarget | None = None
    cache: CacheMode | None = None


class _Sampling(_Strict):
    model: str
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    max_tokens: MaxTokens | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    edgeroute: RouteOverride | None = None

    def check_supported(self) -> None:
        if self.n not in (None, 1):
            raise ApiError(
                400, "n > 1 is not supported by this router; send one request per choice", param="n"
            )
        if self.logit_bias:
            raise ApiError(400, "logit_bias is not supported by this router", param="logit_bias")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ApiError(400, f"a non-zero {name} is not supported by this router", param=name)
        if self.stream_options is not None and not self.stream:
            raise ApiError(400, "stream_options is only allowed when stream is true", param="stream_options")

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_tokens or default_max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=stop,
            seed=self.seed,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs or self.top_logprobs:
            raise ApiError(400, "logprobs are not returned by this router", param="logprobs")
        if self.tools or self.functions:
            raise ApiError(400, "tool and function calling are not supported by this router", param="tools")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise ApiError(400, "only response_format type 'text' is supported", param="response_format")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ApiError(400, "set max_tokens or max_completion_tokens, not both", param="max_tokens")

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        return tuple(
            ChatMessage(role=m.role, content=m.text(i), name=m.name) for i, m in enumerate(self.messages)
        )

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        params = super().sampling(default_max_tokens)
        if self.max_completion_tokens is None:
            return params
        return SamplingParams(
            max_tokens=self.max_completion_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=params.stop,
            seed=params.seed,
        )


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.echo:
            raise ApiError(400, "echo is not supported by this router", param="echo")
        if self.suffix:
            raise ApiError(400, "suffix (insertion) is not supported by this router", param="suffix")
        if self.logprobs:
            raise ApiError(400, "logprobs are not returned by this router", param="logprobs")
        if self.best_of not in (None, 1):
            raise ApiError(400, "best_of > 1 is not supported by this router", param="best_of")

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]
