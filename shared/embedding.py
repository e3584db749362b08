"""Sentence embeddings for the semantic caches: onnxruntime + ``tokenizers``, no torch at run time.

The ONNX graph (see ``models/export_onnx.py``) already mean-pools and L2-normalises, so a cosine
similarity is a plain dot product of two rows. Code that needs embeddings depends on the ``Embedder``
protocol, not on this class.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

DEFAULT_MODEL_FILE = "model.onnx"


@runtime_checkable
class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> Vectors:
        """float32 array of shape ``(len(texts), dim)``, each row of unit length."""
        ...


class EmbedderClosed(RuntimeError):
    pass


class OnnxEmbedder:
    """A sentence encoder exported by ``edgeroute-models`` (``minilm-l6-v2-onnx``).

    ``InferenceSession.run`` and ``Tokenizer.encode_batch`` are safe to call from several threads at
    once, so one instance can serve a thread pool; ``close`` waits for no one and is idempotent.
    """

    def __init__(
        self,
        model_dir: Path,
        threads: int = 2,
        max_length: int = 128,
        *,
        batch_size: int = 32,
        model_file: str = DEFAULT_MODEL_FILE,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path = model_dir / model_file
        tokenizer_path = model_dir / "tokenizer.json"
        for needed in (model_path, tokenizer_path):
            if not needed.is_file():
                raise FileNotFoundError(
                    f"{needed} is missing: install the embedding model with"
                    " `edgeroute-models install minilm-l6-v2-onnx`"
                )
        if max_length < 2 or batch_size < 1 or threads < 1:
            raise ValueError("max_length must be ≥ 2, batch_size and threads ≥ 1")
        meta = self._read_meta(model_dir)
        # longer inputs would index past the position table inside the graph: an opaque ORT error
        limit = int(meta.get("max_positions", 512))
        if max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
        self._batch_size = batch_size
        self._max_length = max_length
        self._lock = threading.Lock()

        # a second copy, neither truncating nor padding, counts what a text really holds
        counter = Tokenizer.from_file(str(tokenizer_path))
        counter.no_truncation()
        counter.no_padding()
        self._counter: Any = counter
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=max_length)
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self._tokenizer: Any = tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session: Any = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._dim = self._read_dim(meta)

    @staticmethod
    def _read_meta(model_dir: Path) -> dict[str, Any]:
        path = model_dir / "embedding.json"
        if not path.is_file():
            return {}
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return meta

    def _read_dim(self, meta: dict[str, Any]) -> int:
        declared = self._session.get_outputs()[0].shape[-1]
        if isinstance(declared, int):
            return declared
        if "dim" in meta:
            return int(meta["dim"])
        return int(self._run(["dimension probe"]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_length(self) -> int:
        """Tokens read per text (special tokens included); the rest of a longer text is cut off."""
        return self._max_length

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text before any truncation, special tokens included."""
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    def _run(self, texts: Sequence[str]) -> Vectors:
        session = self._session
        if session is None:
            raise EmbedderClosed("embedder is closed")
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        out = session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Any sequence of strings (a bare ``str`` is refused: it would embed each character)."""
        if isinstance(texts, str):
            raise TypeError("embed takes a list of strings; use embed_one for a single text")
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        if self._session is None:
            raise EmbedderClosed("embedder is closed")
        # sorting by length keeps padding (wasted compute) small inside each batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._run([texts[i] for i in idx])
        return out

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        """One text → a vector of shape ``(dim,)``."""
        vector: npt.NDArray[np.float32] = self.embed([text])[0]
        return vector

    def close(self) -> None:
        with self._lock:
            self._session = None

    def __enter__(self) -> OnnxEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
