"""Pair scoring for semantic-cache verification: an ONNX cross-encoder, onnxruntime + ``tokenizers``.

A bi-encoder compresses each question into one vector before comparing, so "enable 2FA" and
"disable 2FA" land close together; a cross-encoder reads both questions at once, token against
token, which is what separates a paraphrase from a near-miss. The graph (``models/
train_cross_encoder.py``) ends in a sigmoid, so a score is already a probability; the threshold
calibrated at build time on held-out pairs ships beside it in ``cross_encoder.json``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

META_NAME = "cross_encoder.json"
MODEL_NAME = "model.onnx"

Scores = npt.NDArray[np.float32]


class PairScorer(Protocol):
    @property
    def threshold(self) -> float:
        """The calibrated score above which a pair is served as the same question."""
        ...

    def score(self, pairs: Sequence[tuple[str, str]]) -> Scores:
        """Probability, per (cached question, new question), that one answer serves both."""
        ...


class ScorerClosed(RuntimeError):
    pass


class OnnxCrossEncoder:
    """Thread-safe like ``OnnxEmbedder``: onnxruntime sessions and tokenizers allow concurrent calls."""

    def __init__(self, model_dir: Path, threads: int = 2, *, batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        for needed in (model_dir / MODEL_NAME, model_dir / "tokenizer.json", model_dir / META_NAME):
            if not needed.is_file():
                raise FileNotFoundError(
                    f"{needed} is missing: build the verifier with"
                    " `edgeroute-models install minilm-l6-qqp-cross-encoder`"
                )
        self.meta: dict[str, Any] = json.loads((model_dir / META_NAME).read_text(encoding="utf-8"))
        self._threshold = float(self.meta["threshold"])
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=int(self.meta.get("max_length", 128)))
        # the stored tokenizer pads every input to 128; padding to the batch's longest is 3-4x less work
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self._tokenizer: Any = tokenizer
        self._batch_size = batch_size
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session: Any = ort.InferenceSession(
            str(model_dir / MODEL_NAME), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()

    @property
    def threshold(self) -> float:
        return self._threshold

    def _run(self, pairs: Sequence[tuple[str, str]]) -> Scores:
        session = self._session
        if session is None:
            raise ScorerClosed("cross-encoder is closed")
        encodings = self._tokenizer.encode_batch([(a, b) for a, b in pairs])
        feeds = {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in encodings], dtype=np.int64),
        }
        out = session.run(None, feeds)[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def score(self, pairs: Sequence[tuple[str, str]]) -> Scores:
        out = np.empty(len(pairs), dtype=np.float32)
        # sorting by length keeps padding small inside each batch
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._run([pairs[i] for i in idx])
        return out

    def close(self) -> None:
        with self._lock:
            self._session = None
