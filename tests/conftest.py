from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from shared import paths
from shared.paraphrase import QQP_FILE, mrpc_file, qqp_part

PARAPHRASES = [
    ("How do I learn Python quickly?", "What is the fastest way to learn Python?", 1),
    ("How can I lose weight fast?", "How do I lose weight quickly?", 1),
    ("What is the capital of France?", "What is the population of France?", 0),
    ("How do I bake bread?", "How do I repair a bicycle tyre?", 0),
]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = paths.models_dir()
    if not d.is_dir():
        pytest.fail(f"models directory {d} is missing: run `make models` (the test command does)")
    return d


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = paths.data_dir()
    if not d.is_dir():
        pytest.fail(f"data directory {d} is missing: set EDGEROUTE_DATA_DIR or `cloud-hub data download DIR`")
    return d


def tiny_paraphrase_data(root: Path) -> Path:
    """QQP-shaped and MRPC-shaped files with a few pairs in every split (fit, calib, eval)."""
    rows, pair_id, parts = [], 0, {"fit": 0, "calib": 0, "eval": 0}
    while min(parts.values()) < 8:
        a, b, label = PARAPHRASES[pair_id % len(PARAPHRASES)]
        rows.append({"pair_id": pair_id, "text_a": a, "text_b": b, "label": label})
        parts[qqp_part(pair_id)] += 1
        pair_id += 1
    (root / QQP_FILE).parent.mkdir(parents=True)
    with gzip.open(root / QQP_FILE, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    (root / mrpc_file("train")).parent.mkdir(parents=True)
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    lines += [f"{label}\t1\t2\t{a}\t{b}" for a, b, label in PARAPHRASES]
    (root / mrpc_file("train")).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_cross_encoder(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir holding a cross-encoder trained for a few real steps on ``PARAPHRASES``.

    Its scores mean little; tests that need a decision set the threshold themselves.
    """
    from models.installer import Installer
    from models.manifest import artifact_path, load_manifest

    root = tmp_path_factory.mktemp("cross-encoder")
    src = root / "minilm-src"
    shutil.copytree(artifact_path("all-minilm-l6-v2", models_dir), src)
    (src / ".edgeroute-stamp.json").unlink()
    manifest = root / "m.yaml"
    manifest.write_text(
        f"""
models:
  - name: my-minilm
    kind: hf_dir
    source: {{local: {{path: {src}}}}}
  - name: minilm-l6-qqp-cross-encoder
    kind: onnx_cross_encoder
    derive: {{method: cross_encoder_train, input: my-minilm, options: {{epochs: 1, batch_size: 8}}}}
""",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEROUTE_DATA_DIR", str(tiny_paraphrase_data(root / "data")))
        Installer(load_manifest(manifest), root / "models").install(["minilm-l6-qqp-cross-encoder"])
    return root / "models"
