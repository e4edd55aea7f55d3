"""The `rlsys` command: `rlsys train|eval [key=value ...]`."""

from __future__ import annotations

import sys

USAGE = """usage: rlsys <command> [hydra overrides ...]

commands:
  train    run RL training (no arguments: the embedded default on a local Ray cluster)
  eval     pass@k of checkpoints on an eval parquet (eval.checkpoints=[...] eval.n=256)
  verify   score a JSONL of responses with the verifier pool (rlsys verify rows.jsonl [-o out.jsonl] [--explain])

examples:
  rlsys train
  rlsys train trainer.steps=30 rollout.n=8 algorithm.optim.lr=2e-5
  rlsys train --cfg job          # print the composed config and exit
  rlsys eval eval.checkpoints=[runs/a/checkpoint,runs/b/checkpoint] eval.n=256
  rlsys verify rows.jsonl verifier.timeout_s=5 cluster.num_verifiers=2
  rlsys verify rows.jsonl --explain   # per row: the reason; for code, each test and its evidence
"""


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    command, rest = sys.argv[1], sys.argv[2:]
    if command not in ("train", "eval", "verify"):
        print(f"rlsys: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    from rlsys.train import reject_renamed_keys

    reject_renamed_keys(rest)  # every command composes the config from key=value overrides
    if command == "verify":
        from rlsys.verify.score_file import main as verify_main

        verify_main(rest)
    else:
        import importlib

        module = importlib.import_module("rlsys.train" if command == "train" else "rlsys.eval.__main__")
        sys.argv = [f"rlsys {command}", *rest]
        module.main()


if __name__ == "__main__":
    main()
