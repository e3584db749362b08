"""Derived artifacts: the real ONNX export run through the installer, and the installed HF folder."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from models.installer import Action, Installer
from models.manifest import artifact_path, load_manifest
from models.stamp import read_stamp
from shared.embedding import OnnxEmbedder
from tests.models.conftest import write_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def derived(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Installer, Path, Path]:
    root = tmp_path_factory.mktemp("derive")
    src = root / "minilm-src"
    shutil.copytree(artifact_path("all-minilm-l6-v2", models_dir), src)
    (src / ".edgeroute-stamp.json").unlink()
    extra = write_manifest(
        root / "m.yaml",
        f"""
models:
  - name: my-minilm
    kind: hf_dir
    source: {{local: {{path: {src}}}}}
  - name: my-minilm-onnx
    kind: onnx_embedding
    derive: {{method: onnx_export, input: my-minilm, options: {{opset: 17, keep_fp32: false}}}}
""",
    )
    target = root / "models"
    installer = Installer(load_manifest(extra), target)
    outcomes = installer.install(["my-minilm-onnx"])
    assert [o.action for o in outcomes] == [Action.INSTALLED, Action.INSTALLED]
    return installer, src, target


def test_export_is_stamped_with_inputs_and_libraries(derived: tuple[Installer, Path, Path]) -> None:
    _, _, target = derived
    stamp = read_stamp(target / "my-minilm-onnx")
    source_stamp = read_stamp(target / "my-minilm")
    assert stamp is not None and stamp.derived is not None and source_stamp is not None
    assert stamp.derived.input_files == source_stamp.digests()
    assert set(stamp.derived.libraries) == {"torch", "transformers", "onnx", "onnxruntime"}
    assert set(stamp.files) == {"model.onnx", "tokenizer.json", "embedding.json"}  # keep_fp32: false
    meta = json.loads((target / "my-minilm-onnx" / "embedding.json").read_text())
    assert meta["dim"] == 384 and meta["normalized"] is True and meta["max_positions"] == 512


def test_exported_model_embeds(derived: tuple[Installer, Path, Path]) -> None:
    _, _, target = derived
    with OnnxEmbedder(target / "my-minilm-onnx") as emb:
        v = emb.embed(["cache me if you can"])
    assert v.shape == (1, 384)
    assert abs(float(np.linalg.norm(v[0])) - 1.0) < 1e-4


def test_second_install_is_free_and_changed_input_rederives(derived: tuple[Installer, Path, Path]) -> None:
    installer, src, target = derived
    assert [o.action for o in installer.install(["my-minilm-onnx"])] == [Action.PRESENT, Action.PRESENT]
    before = read_stamp(target / "my-minilm-onnx")
    (src / "NOTES.md").write_text("an extra file changes the input's recorded hashes\n")
    assert [o.action for o in installer.install(["my-minilm-onnx"])] == [Action.INSTALLED, Action.INSTALLED]
    after = read_stamp(target / "my-minilm-onnx")
    assert before is not None and after is not None and after.derived is not None
    assert "NOTES.md" in after.derived.input_files and before.derived is not None
    assert "NOTES.md" not in before.derived.input_files


def _safetensors_dtypes(path: Path) -> set[str]:
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_installed_hf_folder_is_a_plain_bf16_checkpoint(models_dir: Path) -> None:
    folder = artifact_path("qwen2.5-coder-0.5b-instruct-hf", models_dir)
    config = json.loads((folder / "config.json").read_text())
    # a leftover GGUF quantization_config would make vLLM look for GGUF weights
    assert "quantization_config" not in config
    assert config["model_type"] == "qwen2"
    assert _safetensors_dtypes(folder / "model.safetensors") == {"BF16"}
    assert (folder / "tokenizer.json").is_file()
    stamp = read_stamp(folder)
    assert stamp is not None and stamp.derived is not None
    assert stamp.derived.options == {"dtype": "bfloat16"}


def test_installed_default_set_verifies_without_work(models_dir: Path) -> None:
    # offline: a test must not download; an up-to-date install needs only a stat per file
    outcomes = Installer(load_manifest(), models_dir, offline=True).install(["default"])
    assert {o.name for o in outcomes} >= {
        "smollm2-135m-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-0.5b-instruct-hf",
        "minilm-l6-v2-onnx",
    }
    assert all(o.action is Action.PRESENT for o in outcomes), outcomes
