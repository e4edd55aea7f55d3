"""Model-based rewards (verifier.models, verifier.combine): reward models and LLM judges served by actors
of their own, and rewards that combine several verifiers. docs/verifiers.md "Reward models and judges"."""

from __future__ import annotations

from dataclasses import dataclass, field

JUDGE_TEMPLATE = ("Here is a question and an answer to it.\n\nQuestion: {prompt}\n\nAnswer: {response}\n\n"
                  "Is the answer correct and helpful? Reply with yes or no.")
KINDS = ("judge", "scalar")
VERDICTS = ("yes_no", "score")
PLACEMENTS = ("standalone", "colocated")


@dataclass
class RewardModelConfig:
    """A reward model or LLM judge; rows whose data_source is its name (a key of verifier.models) get its reward."""

    kind: str = "judge"  # judge (a generative model's verdict, parsed) | scalar (an HF sequence-classification model's score)
    path: str = ""  # HF checkpoint dir, or a GGUF file as model.gguf takes it ("package:file.gguf"), converted once
    template: str = JUDGE_TEMPLATE  # judge: its user message; {prompt}, {response}, {ground_truth} are filled in
    verdict: str = "yes_no"  # judge: yes_no (yes = 1, no = 0) | score (a number in [score_min, score_max], scaled to [0, 1])
    score_min: float = 1.0  # judge, verdict=score: the lowest score (reward 0)
    score_max: float = 10.0  # judge, verdict=score: the highest score (reward 1)
    pattern: str | None = None  # judge: a regex whose first group is the verdict (null: the built-in reading of `verdict`)
    max_new_tokens: int = 32  # judge: tokens of its answer (greedy)
    normalize: str = "raw"  # scalar: raw (reward = the head's value; Bradley-Terry heads have an arbitrary offset) | sigmoid (in (0, 1), for a head whose 0 means even odds)
    batch_size: int = 32  # samples per call to one actor
    num_actors: int = 1  # actors serving this model (each loads it)
    placement: str = "standalone"  # standalone (own resources, cluster.reward_model; scores while the fleet generates) | colocated (in the rollout engines' bundles; scores while the fleet is idle, sleeps while it generates)
    timeout_s: float = 300.0  # per batch: an actor past it is killed and restarted, and the batch scored again
    dtype: str = "float32"  # float32 | bfloat16
    max_model_len: int = 2048  # prompt + response (+ judge answer) tokens; longer samples are cut from the left of the prompt


@dataclass
class CombinedRewardConfig:
    """A data_source's reward from several verifiers (rule verifiers and verifier.models entries, by name). Keyed by
    a rule verifier's name it replaces that verifier for the rows naming it (its terms may name it: the rule itself)."""

    terms: dict[str, float] = field(default_factory=dict)  # name -> weight: reward = sum of weight x that verifier's reward
    gate: str | None = None  # a verifier that must give full marks (reward >= 1) first; else reward 0 and the terms are not scored


def model_sources(v) -> set[str]:
    """data_sources (verifier config v) whose reward needs a reward model, directly or in a combination."""
    direct = set(v.models)
    return direct | {s for s, c in v.combine.items() if direct & ({*c.terms, c.gate} - {None})}


def check_rewards(v, rule_names: set[str], check) -> None:
    """verifier.models and verifier.combine (v: the VerifierConfig; check(ok, key, msg) raises ConfigError)."""
    for name, m in v.models.items():
        key = f"verifier.models.{name}"
        check(name not in rule_names, key, f"{name!r} is a built-in verifier's data_source; give the model another name")
        check(m.kind in KINDS, f"{key}.kind", f"must be one of {', '.join(KINDS)}, got {m.kind!r}")
        check(bool(m.path), f"{key}.path", "set the model's HF checkpoint dir")
        check(m.verdict in VERDICTS, f"{key}.verdict", f"must be one of {', '.join(VERDICTS)}, got {m.verdict!r}")
        check(m.score_max > m.score_min, f"{key}.score_max", f"must exceed score_min ({m.score_min}), got {m.score_max}")
        check(m.normalize in ("sigmoid", "raw"), f"{key}.normalize", f"must be sigmoid or raw, got {m.normalize!r}")
        check(m.placement in PLACEMENTS, f"{key}.placement", f"must be one of {', '.join(PLACEMENTS)}, got {m.placement!r}")
        check(m.dtype in ("float32", "bfloat16"), f"{key}.dtype", f"must be float32 or bfloat16, got {m.dtype!r}")
        for k in ("max_new_tokens", "batch_size", "num_actors", "timeout_s", "max_model_len"):
            check(getattr(m, k) > 0, f"{key}.{k}", f"must be > 0, got {getattr(m, k)}")
        if m.kind == "judge":
            _check_template(m, key, check)
        if m.pattern is not None:
            _check_pattern(m.pattern, f"{key}.pattern", check)
    known = rule_names | set(v.models)
    for source, c in v.combine.items():
        key = f"verifier.combine.{source}"
        check(source not in v.models, key, f"{source!r} is a verifier.models entry; name the combination after a "
                                           f"built-in verifier (it then replaces it) or a new data_source")
        check(bool(c.terms) or c.gate is not None, f"{key}.terms", "name at least one verifier, e.g. {math: 1.0, judge: 0.5}")
        for name in [*c.terms, *([c.gate] if c.gate is not None else [])]:
            check(name in known, f"{key}.terms", f"no verifier or verifier.models entry named {name!r}; "
                                                 f"known: {', '.join(sorted(known))}")
        for name, w in c.terms.items():
            check(isinstance(w, (int, float)), f"{key}.terms.{name}", f"the weight must be a number, got {w!r}")


def _check_template(m: RewardModelConfig, key: str, check) -> None:
    import string

    try:
        names = {f for _, f, _, _ in string.Formatter().parse(m.template) if f is not None}
    except ValueError as e:
        names = {f"<{e}>"}
    check(names <= {"prompt", "response", "ground_truth"}, f"{key}.template",
          f"may use {{prompt}}, {{response}} and {{ground_truth}} only (write {{{{ and }}}} for braces); got {sorted(names)}")
    check("response" in names, f"{key}.template", "must contain {response}: the judge has to see what it judges")


def _check_pattern(pattern: str, key: str, check) -> None:
    import re

    try:
        groups = re.compile(pattern).groups
    except re.error as e:
        groups, why = -1, str(e)
    check(groups >= 1, key, "must be a regex with a group that captures the verdict, e.g. 'Verdict: (\\w+)'"
          + (f" ({why})" if groups == -1 else f"; {pattern!r} has none"))
