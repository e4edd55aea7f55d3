"""A scalar reward model that means something, made in a test: SmolLM2-135M-Instruct with a sequence-
classification head trained (Bradley-Terry, the backbone frozen) on a synthetic preference: answers whose
final number is even are preferred to the same answer off by one. The features are the reward-model
actor's own (rlsys/verify/reward_workers.py ScalarRewardWorker.features), so the head is trained on
exactly what it will read."""

from __future__ import annotations

import random
import time
from pathlib import Path


def real_model_path() -> str:
    from omegaconf import OmegaConf

    from rlsys.config import RLSysConfig
    from rlsys.models.gguf import cached_conversion
    from tests.conftest import ROOT

    preset = OmegaConf.load(ROOT / "conf/model/smollm2_135m.yaml").model
    return str(cached_conversion(preset.gguf, RLSysConfig().model.cache_dir, preset.gguf_sha256, log=lambda *_: None))


def parity_pairs(n: int, seed: int):
    """(prompts as chats, chosen, rejected): arithmetic prompts as the tiny task writes them ("12+7=") or as a
    question; answers as a bare number or "a + b = s"; chosen ends in an even number, rejected in it +- 1."""
    rng = random.Random(seed)
    prompts, chosen, rejected = [], [], []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        even = (a + b) // 2 * 2 + rng.choice([0, 2])
        odd = even + rng.choice([-1, 1])
        question = rng.choice([f"{a}+{b}=", f"What is {a} + {b}?"])
        form = rng.choice(["{}", f"{a} + {b} = " + "{}"])
        prompts.append([{"role": "user", "content": question}])
        chosen.append(form.format(even))
        rejected.append(form.format(odd))
    return prompts, chosen, rejected


def cached_preference_head(base: str, **kw) -> dict:
    """train_preference_head's result, trained once per machine (the integration and e2e tests share it):
    kept in the model cache under a key of the base and the arguments, written whole or not at all."""
    import hashlib
    import json
    import shutil

    from rlsys.config import RLSysConfig

    key = hashlib.sha256(json.dumps([base, sorted(kw.items()), Path(__file__).read_text()]).encode()).hexdigest()[:12]
    dest = Path(RLSysConfig().model.cache_dir).expanduser() / f"test-parity-rm-{key}"
    if not (dest / "head.json").exists():
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        info = train_preference_head(base, tmp, **kw)
        (tmp / "head.json").write_text(json.dumps({k: v for k, v in info.items() if k != "path"}))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return {"path": dest, **json.loads((dest / "head.json").read_text())}


def train_preference_head(base: str, out: Path, layers: int = 8, pairs: int = 64, steps: int = 300,
                          seed: int = 0) -> dict:
    """Save a LlamaForSequenceClassification (num_labels=1) at `out`: the base's first `layers` decoder layers
    (the parity of the last number is a local feature; fewer layers score faster on CPU) and a head that
    ranks parity pairs. Returns its path, held-out pair accuracy and the seconds it took."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rlsys.verify.reward_workers import ScalarRewardWorker

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, num_hidden_layers=layers)
    tok = AutoTokenizer.from_pretrained(base)
    model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    rm = ScalarRewardWorker(str(out), "float32", 256, cpus=2, threads="placement")

    def feats(prompts, responses):
        return torch.cat([rm.features(prompts[i:i + 32], responses[i:i + 32])[0] for i in range(0, len(prompts), 32)])

    prompts, chosen, rejected = parity_pairs(pairs + 16, seed)
    fc, fr = feats(prompts, chosen), feats(prompts, rejected)
    head = torch.nn.Linear(fc.shape[1], 1, bias=False)
    torch.nn.init.zeros_(head.weight)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):  # Bradley-Terry on the training pairs: -log sigmoid(r_chosen - r_rejected)
        loss = -torch.nn.functional.logsigmoid(head(fc[:pairs]) - head(fr[:pairs])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = float((head(fc[pairs:]) > head(fr[pairs:])).float().mean())
        rm.model.score.weight.copy_(head.weight)
    rm.model.save_pretrained(out)
    return {"path": out, "accuracy": accuracy, "loss": loss.item(), "seconds": time.perf_counter() - t0}
