"""Cross-encoder verifier: fine-tune a BERT-style encoder on paraphrase pairs → int8 ONNX + threshold.

No pair classifier ships on a package index, so the installer builds one from an encoder entry and
the paraphrase data (``EDGEROUTE_DATA_DIR``): one epoch of MiniLM-L6 over the QQP ``fit`` split and
MRPC train takes about 17 minutes on two CPU cores, seconds on a GPU. The threshold is read off the
QQP ``calib`` split with the int8 graph that will serve, so it describes the artifact, not the fp32
model it came from; the QQP ``eval`` split stays untouched for ``edge-agent bench cache``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.derive import DeriveError
from models.export_onnx import quantize_int8
from models.fetch import Reporter
from shared import paths
from shared.cross_encoder import META_NAME, MODEL_NAME, OnnxCrossEncoder
from shared.paraphrase import QQP_FILE, Pair, mrpc, mrpc_file, operating_point, qqp_split

FP32_NAME = "model_fp32.onnx"
MIN_SERVED = 50  # a threshold read off fewer accepted calib pairs is noise


def _batches(pairs: Sequence[Pair], size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: padding is most of the cost of short questions."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    out: list[list[int]] = []
    for start in range(0, len(order), size * 50):
        chunk = sorted(order[start : start + size * 50], key=lambda i: len(pairs[i].a) + len(pairs[i].b))
        out += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(out)
    return out


def train(
    model_dir: Path, pairs: Sequence[Pair], options: Mapping[str, Any], advance: Callable[[int], None]
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune with BCE on one logit; each pair is shown in a random order so scores are symmetric."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    seed = int(options.get("seed", 0))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    # a GPU hub trains in seconds what takes two CPU cores a quarter of an hour
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = int(options.get("batch_size", 32))
    epochs = float(options.get("epochs", 1.0))
    max_length = int(options.get("max_length", 128))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=1, attn_implementation="eager"
    ).to(device)
    # the word-embedding table is half the weights; freezing it halves the optimiser's work and
    # keeps rare words where pre-training put them
    model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(options.get("lr", 4e-5)), weight_decay=0.01)
    total = max(1, int(math.ceil(len(pairs) / batch) * epochs))
    warmup = max(1, int(0.1 * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    step, started, recent = 0, time.monotonic(), 0.0
    while step < total:
        for idx in _batches(pairs, batch, rng):
            if step >= total:
                break
            flips = [rng.random() < 0.5 for _ in idx]
            first = [pairs[i].b if f else pairs[i].a for i, f in zip(idx, flips, strict=True)]
            second = [pairs[i].a if f else pairs[i].b for i, f in zip(idx, flips, strict=True)]
            enc = tokenizer(
                first, second, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            target = torch.tensor([float(pairs[i].label) for i in idx], device=device)
            loss = loss_fn(model(**enc.to(device)).logits.squeeze(-1), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            recent = 0.98 * recent + 0.02 * float(loss) if step else float(loss)
            step += 1
            advance(1)
    model.to("cpu").eval()
    stats: dict[str, Any] = {"pairs": len(pairs), "steps": step, "epochs": epochs, "batch_size": batch}
    stats["device"] = device.type
    stats |= {"final_loss_ema": round(recent, 4), "seconds": round(time.monotonic() - started, 1)}
    return model, stats


def export(model: Any, out_path: Path, opset: int = 17) -> None:
    """fp32 ONNX with a sigmoid on the logit, so the runtime reads a probability."""
    import torch

    class Scored(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            logits = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).logits
            return torch.sigmoid(logits.squeeze(-1))

    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Scored().eval(),
            (sample, sample, torch.zeros_like(sample)),
            str(out_path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["probability"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "probability": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )


def calibrate(scores: Sequence[float], labels: Sequence[int], max_false_rate: float) -> dict[str, Any]:
    """The lowest threshold whose accepted calib pairs keep wrong hits at or under the target."""
    return asdict(operating_point(scores, labels, max_false_rate, min_served=MIN_SERVED))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CrossEncoderTrain:
    def libraries(self) -> list[str]:
        return ["torch", "transformers", "onnx", "onnxruntime", "tokenizers"]

    def derive(
        self, input_path: Path, output_dir: Path, options: Mapping[str, Any], report: Reporter
    ) -> None:
        data = paths.data_dir()
        needed = [QQP_FILE, mrpc_file("train")]
        missing = [str(data / rel) for rel in needed if not (data / rel).is_file()]
        if missing:
            raise DeriveError(
                f"cross_encoder_train needs the paraphrase data ({', '.join(missing)}): set"
                " EDGEROUTE_DATA_DIR or fetch it with `cloud-hub data download DIR`"
            )
        fit = qqp_split("fit", data) + mrpc("train", data)
        limit = options.get("max_pairs")
        if limit is not None:
            fit = random.Random(0).sample(fit, min(int(limit), len(fit)))
        calib = qqp_split("calib", data)
        batch = int(options.get("batch_size", 32))
        steps = max(1, int(math.ceil(len(fit) / batch) * float(options.get("epochs", 1.0))))
        advance = report.steps(f"train cross-encoder on {len(fit)} pairs", steps)
        model, stats = train(input_path, fit, options, advance)
        try:
            fp32 = output_dir / FP32_NAME
            export(model, fp32, int(options.get("opset", 17)))
            quantize_int8(fp32, output_dir / MODEL_NAME)
        except ImportError as exc:
            raise DeriveError(f"cross_encoder_train needs torch, transformers and onnx: {exc}") from exc
        fp32.unlink()
        shutil.copyfile(input_path / "tokenizer.json", output_dir / "tokenizer.json")
        meta: dict[str, Any] = {
            "model": MODEL_NAME,
            "max_length": int(options.get("max_length", 128)),
            "threshold": 1.0,
            "train": stats,
            "data": {str(rel): _digest(data / rel) for rel in needed},
        }
        (output_dir / META_NAME).write_text(json.dumps(meta), encoding="utf-8")
        report.status(f"calibrate on {len(calib)} held-out QQP pairs")
        scorer = OnnxCrossEncoder(output_dir)
        try:
            scores = scorer.score([(p.a, p.b) for p in calib])
        finally:
            scorer.close()
        target = float(options.get("max_false_rate", 0.05))
        meta["calibration"] = {"pairs": len(calib), "max_false_rate": target} | calibrate(
            [float(s) for s in scores], [p.label for p in calib], target
        )
        meta["threshold"] = meta["calibration"]["threshold"]
        (output_dir / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
