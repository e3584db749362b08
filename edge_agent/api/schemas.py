"""Request bodies of the OpenAI endpoints we serve, validated strictly.

Strict types (no "0.5" → 0.5 coercion), integer ranges from the OpenAI description, and unknown
top-level fields rejected, as the OpenAI API does, so a misspelled parameter is an error instead of
a silent default. Every field of the current ``CreateChatCompletionRequest`` is known; each is
honoured, ignored because it cannot change a text answer from this router, or refused with a 400
that names it because ignoring it would hand back something other than what was asked for:

Honoured
    model, messages, max_tokens, max_completion_tokens, temperature, top_p, stop, seed, stream;
    ``stream_options.include_usage`` (a last chunk with ``usage``); ``response_format`` of type
    ``text``; ``modalities: ["text"]``; ``user`` and ``safety_identifier`` (hashed within the
    tenant for telemetry, so regenerations and ratings are per user; never stored or sent raw);
    ``edgeroute`` (our extension: route, hub model, quality target, cache, evaluation probe).
Accepted at their defaults only, other values refused
    n (1), logprobs (false), top_logprobs (0), logit_bias (empty), presence_penalty and
    frequency_penalty (0), tools and functions (empty), audio (null).
Refused
    ``modalities`` with ``"audio"``, ``response_format`` ``json_object`` / ``json_schema``, and
    ``moderation``: no answer may look moderated that was not.
Ignored, because they cannot change a text answer from this router
    prompt_cache_key, prompt_cache_retention, prompt_cache_options (the edge's caches key on the
    conversation itself, per tenant); reasoning_effort, verbosity (not forwarded to any model);
    prediction (a latency hint: the answer is the same without it); web_search_options (no route
    searches the web); ``stream_options.include_obfuscation`` (chunks carry no padding);
    metadata, store, service_tier (no stored-completions list, one service tier); tool_choice,
    function_call, parallel_tool_calls (moot without tools).

Legacy completions take the same sampling fields, plus ``echo``/``suffix``/``logprobs``/``best_of``
at their defaults only. ``EmbeddingRequest`` is the body of ``POST /v1/embeddings``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from edge_agent.api.errors import ApiError
from shared.wire import ChatMessage, SamplingParams

DEFAULT_CHAT_MAX_TOKENS = 512
DEFAULT_COMPLETION_MAX_TOKENS = 16  # the OpenAI default for /v1/completions

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


def _integral(value: Any) -> Any:
    # JSON has one number type and JSON Schema counts 2.0 as an integer; 2.5 (and true) stay errors
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_integral)]
# the largest count every backend reads without overflow (llama.cpp and vLLM take an int32)
MAX_TOKENS_LIMIT = 2**31 - 1
MaxTokens = Annotated[Int, Field(ge=1, le=MAX_TOKENS_LIMIT)]
Seed = Annotated[Int, Field(ge=-(2**63), le=2**63 - 1)]  # the spec's int64


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TextPart(BaseModel):
    # the spec allows properties beyond these two (clients add e.g. cache hints): ignored
    model_config = ConfigDict(strict=True, extra="ignore")

    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: str


class Message(BaseModel):
    # extra keys (tool_calls: [], refusal: null, ...) come from clients echoing earlier turns
    model_config = ConfigDict(strict=True, extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    # required, except on assistant turns (tool-call turns carry none); null only there too
    content: str | list[TextPart | OtherPart] | None = None
    name: str | None = None

    def text(self, index: int) -> str:
        if self.role != "assistant" and ("content" not in self.model_fields_set or self.content is None):
            raise ApiError(
                400, f"'messages.{index}.content' is a required property", param=f"messages.{index}.content"
            )
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
    include_usage: bool | None = False
    include_obfuscation: bool | None = None  # ignored: no padding is added to chunks


# 0 < t <= 1: the share of the best route's expected quality this request must keep
QualityTarget = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]


CacheMode = Literal["bypass", "default"]  # "bypass": no cache is read or written for the request


class Probe(_Strict):
    """A known answer for evaluation traffic: telemetry carries it so the hub can grade the reply
    (``gsm8k``: the final number, ``mcq``: the letter, ``code``: tests to run against the code)."""

    reference: Annotated[str, Field(min_length=1, max_length=8000)]
    kind: Literal["gsm8k", "mcq", "code"]


class RouteOverride(_Strict):
    route: Literal["edge_local", "hub"] | None = None
    hub_model: str | None = None
    quality_target: QualityTarget | None = None
    cache: CacheMode | None = None
    probe: Probe | None = None


class _Sampling(_Strict):
    model: str
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[Int, Field(ge=1, le=128)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    max_tokens: MaxTokens | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    edgeroute: RouteOverride | None = None

    @property
    def end_user(self) -> str:
        """The caller's end-user id, for telemetry only (hashed there); "" when none was sent."""
        return self.user or ""

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
    top_logprobs: Annotated[Int, Field(ge=0, le=20)] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None
    # accepted and ignored (see the table above)
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None

    @property
    def end_user(self) -> str:
        # the spec's replacement for ``user``; either names the same person
        return self.safety_identifier or self.user or ""

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs or self.top_logprobs:
            raise ApiError(400, "logprobs are not returned by this router", param="logprobs")
        if self.modalities is not None and "audio" in self.modalities:
            raise ApiError(400, "this router answers in text only", param="modalities")
        if self.audio is not None:
            raise ApiError(400, "audio output is not supported by this router", param="audio")
        if self.moderation is not None:
            raise ApiError(400, "moderation is not run by this router", param="moderation")
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
    logprobs: Annotated[Int, Field(ge=0, le=5)] | None = None
    best_of: Annotated[Int, Field(ge=0, le=20)] | None = None

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
        if not self.prompt_text:
            # no text to continue: a model without a begin-of-text token has nothing to read
            raise ApiError(400, "prompt is empty: send the text to continue", param="prompt")

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingRequest(_Strict):
    model: str
    # token arrays are valid in the spec but name another tokenizer's ids: refused by the handler
    input: str | Annotated[list[str | int | list[int]], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[Int, Field(ge=1)] | None = None
    user: str | None = None

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        texts: list[str] = []
        for i, item in enumerate(self.input):
            if not isinstance(item, str):
                raise ApiError(
                    400,
                    "token arrays are not accepted: this router embeds text with its own tokenizer; "
                    "send the text itself",
                    param=f"input.{i}",
                    code="invalid_value",
                )
            texts.append(item)
        return texts
