"""Peak memory of one learner forward/backward on SmolLM2-135M (49,152-token vocabulary) against
micro-batch size: rlsys's chunked log-prob head vs the plain path (full [B, L, V] fp32 logits,
log-softmax, gather), measured in the same run, each case in a fresh process.

    .venv/bin/python benchmarks/learner_memory.py [--sizes 1 2 4 8 16] [--prompt 70] [--response 96]

Peak = the process's resident-set high-water mark (VmHWM) during the forward/backward, minus the
resident set just before it (weights and optimizer-free model already loaded), so the figure is
what the step itself adds: activations, logits and gradients.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def one(path: str, mode: str, batch: int, prompt: int, response: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from rlsys.learner.logprobs import install_logprob_head, token_logprobs
    from rlsys.runtime.memory import peak_gb, reset_peak

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if mode == "chunked":
        install_logprob_head(model)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, prompt + response))
    attn = torch.ones_like(ids)
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[:, prompt:] = True
    reset_peak()
    base = peak_gb()
    if mode == "chunked":
        logp = token_logprobs(model, ids, attn, 1.0, with_entropy=True, positions=positions).logp
    else:  # what a plain implementation does: all logits, all log-probs, then pick
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        logp_all = torch.log_softmax(logits, -1)
        logp = torch.nn.functional.pad(torch.gather(logp_all, -1, ids[:, 1:, None]).squeeze(-1), (1, 0))
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        logp = logp + 0 * entropy.sum()
    logp[positions].sum().backward()
    return {"mode": mode, "batch": batch, "tokens": batch * (prompt + response), "step_peak_gb": peak_gb() - base}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--prompt", type=int, default=70)
    p.add_argument("--response", type=int, default=96)
    p.add_argument("--one", nargs=2, metavar=("MODE", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help="HF dir (default: the smollm2_135m preset's conversion)")
    args = p.parse_args()
    if args.model is None:
        from omegaconf import OmegaConf

        from rlsys.models.gguf import cached_conversion

        preset = OmegaConf.load("conf/model/smollm2_135m.yaml").model
        args.model = str(cached_conversion(preset.gguf, "~/.cache/rlsys", preset.gguf_sha256))
    if args.one:
        print(json.dumps(one(args.model, args.one[0], int(args.one[1]), args.prompt, args.response)))
        return
    rows = []
    for b in args.sizes:
        for mode in ("plain", "chunked"):
            cmd = [sys.executable, __file__, "--one", mode, str(b), "--model", args.model,
                   "--prompt", str(args.prompt), "--response", str(args.response)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
    print(f"{'micro-batch':>11} {'tokens':>7} {'plain GB':>9} {'chunked GB':>11} {'chunked/plain':>14}")
    for b in args.sizes:
        plain, chunked = (next(r for r in rows if r["batch"] == b and r["mode"] == m) for m in ("plain", "chunked"))
        print(f"{b:>11} {plain['tokens']:>7} {plain['step_peak_gb']:>9.2f} {chunked['step_peak_gb']:>11.2f} "
              f"{chunked['step_peak_gb'] / max(plain['step_peak_gb'], 1e-9):>14.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
