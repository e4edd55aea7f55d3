"""The `rlsys` command: `rlsys train [key=value ...]`."""

from __future__ import annotations

import sys

USAGE = """usage: rlsys <command> [hydra overrides ...]

commands:
  train    run RL training (no arguments: the embedded default on a local Ray cluster)

examples:
  rlsys train
  rlsys train trainer.steps=30 rollout.n=8 algorithm.lr=2e-5
  rlsys train --cfg job          # print the composed config and exit
"""


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "train":
        from rlsys import train

        sys.argv = [f"rlsys {command}", *rest]
        train.main()
    else:
        print(f"rlsys: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
