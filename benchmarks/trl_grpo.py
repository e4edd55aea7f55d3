"""TRL's GRPOTrainer on rlsys's real-model workload (run by benchmarks/real_model.py in .venv-trl).

    .venv-trl/bin/python benchmarks/trl_grpo.py MODEL_DIR TRAIN_PARQUET STEPS PROMPTS G NEW_TOKENS LR

Same model, prompts (chat messages), batch (PROMPTS x G completions per step), completion length,
learning rate and reward (rlsys's math verifier). Prints one JSON line: median seconds per step
over steps 2..STEPS (step 1 pays start-up).
"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # rlsys's verifier, not its deps


def main():
    model, data, steps, prompts, g, new_tokens, lr = sys.argv[1:8]
    steps, prompts, g, new_tokens, lr = int(steps), int(prompts), int(g), int(new_tokens), float(lr)
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlsys.verify.math_answer import math_equivalence

    torch.set_num_threads(torch.get_num_threads())
    rows = pq.read_table(data).to_pylist()[: prompts * steps]
    ds = Dataset.from_list([{"prompt": r["prompt"], "ground_truth": r["ground_truth"]} for r in rows])

    def reward(completions, ground_truth, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [math_equivalence(t, gt)[0] for t, gt in zip(texts, ground_truth)]

    stamps = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    cfg = GRPOConfig(output_dir="/tmp/trl_grpo_bench", per_device_train_batch_size=prompts * g, num_generations=g,
                     gradient_accumulation_steps=1, max_completion_length=new_tokens, learning_rate=lr,
                     max_steps=steps, logging_steps=1, save_strategy="no", report_to=[], temperature=1.0,
                     beta=0.0, lr_scheduler_type="constant", use_cpu=True, bf16=False, seed=0, shuffle_dataset=False)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, callbacks=[Stamp()])
    t0 = time.perf_counter()
    trainer.train()
    per_step = [b - a for a, b in zip([t0] + stamps, stamps)]
    print(json.dumps({"step_seconds": statistics.median(per_step[1:] or per_step), "per_step": per_step}))


if __name__ == "__main__":
    main()
