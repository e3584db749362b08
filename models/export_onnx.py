"""Sentence-embedding export: a BERT-style encoder → ONNX with pooling inside the graph → int8.

Mean pooling and L2 normalisation are part of the exported graph, so the runtime (``shared.embedding``)
needs only onnxruntime and ``tokenizers``. Dynamic int8 quantisation is per channel: per-tensor scales
lose too much (cosine to fp32 ≈ 0.95 instead of ≈ 0.99 for MiniLM).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.derive import DeriveError

INT8_NAME = "model.onnx"
FP32_NAME = "model_fp32.onnx"
META_NAME = "embedding.json"


def _pooled_encoder(model_dir: Path) -> tuple[Any, int]:
    import torch
    from transformers import AutoModel

    # eager attention traces to plain MatMul/Softmax, which the legacy exporter and the quantiser handle
    encoder = AutoModel.from_pretrained(model_dir, attn_implementation="eager")
    encoder.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return Pooled().eval(), int(encoder.config.hidden_size)


def export_fp32(model_dir: Path, out_path: Path, opset: int = 17) -> int:
    """Export the pooled encoder to ``out_path``; returns the embedding dimension."""
    import torch

    model, dim = _pooled_encoder(model_dir)
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, mask),
            str(out_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embedding": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    return dim


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(fp32_path, int8_path, per_channel=True, weight_type=QuantType.QInt8)


def _max_positions(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings", 512))


class OnnxExport:
    def libraries(self) -> list[str]:
        return ["torch", "transformers", "onnx", "onnxruntime"]

    def derive(self, input_path: Path, output_dir: Path, options: Mapping[str, Any]) -> None:
        tokenizer = input_path / "tokenizer.json"
        if not (input_path / "config.json").is_file() or not tokenizer.is_file():
            raise DeriveError(
                f"onnx_export needs an HF folder with config.json and tokenizer.json: {input_path}"
            )
        opset = int(options.get("opset", 17))
        max_length = int(options.get("max_length", 128))
        keep_fp32 = bool(options.get("keep_fp32", True))
        try:
            fp32 = output_dir / FP32_NAME
            dim = export_fp32(input_path, fp32, opset)
            quantize_int8(fp32, output_dir / INT8_NAME)
        except ImportError as exc:
            raise DeriveError(f"onnx_export needs torch, transformers, onnx and onnxruntime: {exc}") from exc
        if not keep_fp32:
            fp32.unlink()
        shutil.copyfile(tokenizer, output_dir / "tokenizer.json")
        meta = {
            "dim": dim,
            "max_positions": _max_positions(input_path),
            "max_length": max_length,
            "pooling": "mean",
            "normalized": True,
            "model": INT8_NAME,
            "fp32_model": FP32_NAME if keep_fp32 else None,
            "inputs": ["input_ids", "attention_mask"],
        }
        (output_dir / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
