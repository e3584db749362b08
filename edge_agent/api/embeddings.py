"""``POST /v1/embeddings``: the edge's sentence embedder, served the OpenAI way.

The model is the one the semantic cache already loaded (``minilm-l6-v2-onnx``, 384 dimensions,
unit-length rows), so the endpoint costs no extra memory. It runs on the edge for every tenant
(the tenant comes from the API key, as for chat); nothing is cached, because embedding a text is
cheaper than looking it up.

What differs from OpenAI's models, and why:

- ``input`` is a string or a list of up to 2048 strings. Token arrays are refused: they name the
  ids of OpenAI's tokenizer, not of this model's.
- A text longer than the model reads (``max_length`` tokens, special tokens included) is refused
  with ``context_length_exceeded``, as OpenAI refuses one over its context: a truncated text's
  vector would silently describe only its beginning.
- ``dimensions`` must be the model's own: MiniLM was not trained to be shortened (OpenAI's
  ``text-embedding-3`` models were), so a cut vector would lose meaning without saying so.
- ``encoding_format: "base64"`` is little-endian float32, what the ``openai`` client decodes.
- Texts are embedded one at a time, so a text's vector does not depend on the rest of the list.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
from aiohttp import web
from pydantic import ValidationError

from edge_agent.api.errors import ApiError, from_validation, parse_json_object
from edge_agent.api.schemas import EmbeddingRequest
from edge_agent.api.state import STATE, TextEmbedder
from shared.embedding import EmbedderClosed, Vectors


def _embed_each(embedder: TextEmbedder, texts: list[str]) -> list[Vectors]:
    # one text per call: the int8 model quantizes activations per batch, so a batched text's
    # vector would depend on its neighbours; alone, a text always gets the same vector
    return [embedder.embed([text])[0] for text in texts]


def _vector(row: Vectors, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")
    values: list[float] = row.tolist()
    return values


async def embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        parsed = EmbeddingRequest.model_validate(parse_json_object(await request.read()))
    except ValidationError as exc:
        raise from_validation(exc) from None
    served = state.embeddings
    if served is None or not served.serves(parsed.model):
        raise ApiError(
            404,
            f"The model '{parsed.model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    texts = parsed.texts()
    embedder = served.embedder
    if parsed.dimensions is not None and parsed.dimensions != embedder.dim:
        raise ApiError(
            400,
            f"{served.name} gives {embedder.dim}-dimensional embeddings only; "
            f"it cannot be shortened to {parsed.dimensions}",
            param="dimensions",
            code="invalid_value",
        )
    try:
        counts = await asyncio.to_thread(embedder.token_counts, texts)
        for i, count in enumerate(counts):
            if count > embedder.max_length:
                where = "input" if isinstance(parsed.input, str) else f"input.{i}"
                raise ApiError(
                    400,
                    f"{served.name} reads at most {embedder.max_length} tokens per input; "
                    f"'{where}' has {count}. Shorten or split it.",
                    param=where,
                    code="context_length_exceeded",
                )
        vectors = await asyncio.to_thread(_embed_each, embedder, texts)
    except EmbedderClosed:
        raise ApiError(503, "the embedding model is shutting down", code="embedder_unavailable") from None
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": i, "embedding": _vector(row, parsed.encoding_format)}
        for i, row in enumerate(vectors)
    ]
    tokens = sum(counts)
    body = {
        "object": "list",
        "data": data,
        "model": served.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return web.json_response(body)
