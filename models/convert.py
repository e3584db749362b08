"""GGUF → Hugging Face folder, so vLLM (which cannot read a GGUF here) serves the same weights.

transformers dequantises the GGUF tensors (``gguf_file=``, needs the ``gguf`` package) and the model
is saved as safetensors in the requested dtype; bfloat16 halves the 2.4 GB fp32 folder and is what
the vLLM CPU backend runs fastest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.derive import DeriveError

_DTYPES = ("bfloat16", "float16", "float32")


class GgufToHf:
    def libraries(self) -> list[str]:
        return ["transformers", "gguf", "torch"]

    def derive(self, input_path: Path, output_dir: Path, options: Mapping[str, Any]) -> None:
        if not input_path.is_file() or input_path.suffix != ".gguf":
            raise DeriveError(f"gguf_to_hf needs a .gguf file as input, got {input_path}")
        dtype_name = str(options.get("dtype", "bfloat16"))
        if dtype_name not in _DTYPES:
            raise DeriveError(f"gguf_to_hf: dtype must be one of {_DTYPES}, got {dtype_name!r}")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
        except ImportError as exc:
            raise DeriveError(f"gguf_to_hf needs torch, transformers and gguf: {exc}") from exc

        folder, name = input_path.parent, input_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # transformers keeps GGUF blocks packed unless told to unpack them, and a packed model
        # cannot be saved; once unpacked it is a plain dense model, so the quantizer is detached
        # and the saved config must not claim a GGUF quantisation vLLM would then look for
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            dtype=getattr(torch, dtype_name),
            quantization_config=GgufConfig(dequantize=True),
        )
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(output_dir, safe_serialization=True)
        tokenizer.save_pretrained(output_dir)
        del model
