"""Typed configuration: one dataclass per Hydra group, registered in a ConfigStore.

Hydra merges conf/ onto these schemas, so an unknown key or a value of the wrong type fails at
start with the key's full name. `check_config` adds range and cross-field checks that name the key
(rlsys.config.validation.validate runs them and each part's checks of its own section).
Batch sizes are global counts; micro-batch sizes are per learner rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from rlsys.config.agent import AgentConfig, check_agent
from rlsys.config.lora import LoraConfig, check_lora
from rlsys.config.rewards import CombinedRewardConfig, RewardModelConfig
from rlsys.config.updates import check_updates
from rlsys.errors import ConfigError  # noqa: F401  (re-exported: raised by check_config)


@dataclass
class ModelConfig:
    path: str | None = None  # HF checkpoint dir to train; null = model.gguf, else build the embedded tiny model
    gguf: str | None = None  # GGUF file (or "package:file" in an installed package), converted once to HF in cache_dir
    gguf_sha256: str | None = None  # pinned digest of the GGUF file (a mismatch fails; null = not checked)
    cache_dir: str = "~/.cache/rlsys"  # where converted and embedded tiny models are cached
    hidden_size: int = 128  # tiny model: width
    num_layers: int = 4  # tiny model: decoder layers
    num_heads: int = 4  # tiny model: attention heads (2 key/value heads)
    pretrain_steps: int = 800  # tiny model: supervised pretraining steps on the task before RL (0 = none)
    pretrain_lr: float = 1e-3  # tiny model: learning rate of that pretraining
    dtype: str = "float32"  # float32 | bfloat16 (learner, reference and engine)


@dataclass
class TaskConfig:
    name: str = "arithmetic"  # built-in task when no paths are given: arithmetic | word_problems (chat, \boxed{}) | reverse_words (chat, dense reward) | calc, calc_chat (products with a calculator tool: episodes)
    train_path: str | None = None  # prompt parquet (prompt, ground_truth, data_source); null = built-in
    eval_path: str | None = None  # held-out parquet; null = built-in
    num_train: int = 4000  # built-in task: training prompts to generate
    num_eval: int = 128  # built-in task: held-out prompts to generate
    max_digits: int = 2  # built-in task: numbers have 1..max_digits digits
    max_ops: int = 2  # word_problems: 1..max_ops arithmetic operations per problem
    max_words: int = 5  # reverse_words: 3..max_words words per list
    seed: int = 1234  # built-in task: data seed (held-out uses seed + 1)


@dataclass
class OptimConfig:
    lr: float = 1e-4  # learner optimizer (AdamW) learning rate
    warmup_steps: int = 0  # linear lr warm-up over the first N RL steps
    schedule: str = "constant"  # after warm-up: constant | cosine (to 0 at the last step)
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global grad norm (0 = off)


@dataclass
class KLConfig:
    coef: float = 0.0  # weight of the KL-to-reference penalty (0 = metric only)
    estimator: str = "k3"  # k1 | k2 | k3 per-token estimator used in the loss
    placement: str = "loss"  # loss (estimator as a loss term) | reward (k1, detached, in the returns)
    metric: bool = False  # run the reference forward for the actor/kl_loss metric even when no term needs it


@dataclass
class CriticConfig:
    enabled: bool = False  # train a value model in the learner group (advantage=gae needs it)
    lr: float = 1e-3  # value model learning rate
    gamma: float = 1.0  # gae: discount
    gae_lambda: float = 0.95  # gae: lambda


@dataclass
class SamplingConfig:
    dynamic: bool = False  # DAPO: keep groups with 0 < #correct < G, refill the batch
    max_rounds: int = 8  # dynamic sampling: generation rounds per step before failing
    overlong_buffer: float = 0.0  # DAPO overlong shaping: buffer Lc as a fraction of max_new_tokens (0 = off)


@dataclass
class DivergenceConfig:
    name: str = "none"  # DPH-RL penalty on initial-policy samples: none | forward_kl | js
    coef: float = 0.05  # DPH-RL eta
    anchor_samples: int = 64  # initial-policy samples mixed into each step
    anchor_pool: int = 1024  # initial-policy samples drawn once at start (cycled)


@dataclass
class DistillConfig:
    teacher_path: str | None = None  # teacher checkpoint (a second reference server)
    scale: float = 1.0  # g_opd: weight lambda of (logp_teacher - logp_ref); 1 = OPD, > 1 extrapolates
    kl_coef: float = 0.0  # KDRL: beta of k2 KL to the teacher in the loss (0 = off)
    kl_coef_end: float | None = None  # KDRL: anneal beta linearly to this by the last step (null = constant)
    kl_mask_correct: bool = False  # KDRL: no teacher KL on responses the verifier accepted


@dataclass
class LpRegConfig:
    coef: float = 1.0  # loss=lp_reg: weight of k3(pi_theta, proxy) on the regularised tokens
    kappa: float = 0.02  # loss=lp_reg: proxy drops tokens below kappa * max-prob
    rho: float = 0.01  # loss=lp_reg: lowest-probability fraction of tokens eligible


@dataclass
class RolloutCorrectionConfig:
    mode: str = "auto"  # behaviour-vs-learner IS correction: none | tis | mis | icepop (auto = tis when trainer.max_staleness >= 1, i.e. decoupled PPO; else none)
    level: str = "token"  # ratio the correction reads: token | sequence (product) | geometric (per-token geometric mean)
    cap: float = 2.0  # tis: IS weight truncated at this cap C
    low: float = 0.5  # mis/icepop: ratios below this are masked (weight 0)
    high: float = 5.0  # mis/icepop: ratios above this are masked (weight 0)
    bypass: bool = False  # logp_old = the engines' behaviour log-probs (no learner recompute, no IS weight)


@dataclass
class AlgorithmConfig:
    name: str = "grpo"  # preset name, for logs
    advantage: str = "grpo"  # advantage estimator (registry in rlsys/learner/advantages.py)
    norm_std: bool = True  # grpo: divide by group std (false = Dr. GRPO)
    loss: str = "ppo_clip"  # policy loss (registry in rlsys/learner/losses.py)
    loss_agg: str = "seq_mean_token_mean"  # token_mean | seq_mean_token_mean | seq_mean_token_sum_norm
    clip_low: float = 0.2  # PPO ratio clip below 1
    clip_high: float = 0.2  # PPO ratio clip above 1 (DAPO clip-higher: 0.28)
    dual_clip: float = 0.0  # dual-clip bound c > 1 on negative-advantage losses (0 = off)
    w_lambda: float = 0.1  # w_reinforce: advantage of correct samples (wrong ones get -1)
    entropy_coef: float = 0.0  # entropy bonus weight
    optim: OptimConfig = field(default_factory=OptimConfig)  # algorithm.optim.lr, .warmup_steps, ...
    kl: KLConfig = field(default_factory=KLConfig)  # KL to the reference: algorithm.kl.coef, .estimator, ...
    critic: CriticConfig = field(default_factory=CriticConfig)  # PPO's value model and GAE
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # DAPO's dynamic sampling and overlong shaping
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)  # DPH-RL
    distill: DistillConfig = field(default_factory=DistillConfig)  # OPD / G-OPD / KDRL teacher
    lp_reg: LpRegConfig = field(default_factory=LpRegConfig)  # loss=lp_reg
    rollout_correction: RolloutCorrectionConfig = field(default_factory=RolloutCorrectionConfig)  # off-policy IS correction
    modules: list[str] = field(default_factory=list)  # Python modules to import first: they register more objective terms


def algorithm_config(**keys) -> AlgorithmConfig:
    """An AlgorithmConfig from keyword arguments, a group as a dict: algorithm_config(kl={"coef": 0.1})."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AlgorithmConfig), keys))  # type: ignore[return-value]


def get_key(obj, dotted: str):
    """obj.a.b for dotted = "a.b" (a knob of a grouped config)."""
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class RolloutConfig:
    n: int = 8  # samples per prompt (group size G)
    temperature: float = 1.0  # sampling temperature (the learner scales its logits the same way)
    top_p: float = 1.0  # nucleus sampling
    max_new_tokens: int = 8  # response length cap
    max_model_len: int = 128  # engine context length (prompt + response)
    num_engines: int = 1  # rollout engines in the fleet
    tensor_parallel_size: int = 1  # TP ranks per engine
    max_engine_restarts: int = 3  # engines that die are restarted (groups re-sent) this many times per run
    enforce_eager: bool = True  # no CUDA graphs / torch.compile (needed on CPU)
    gpu_memory_utilization: float = 0.5  # GPU engines: fraction of memory for weights + KV cache
    kv_cache_gb: int = 1  # CPU engines: KV cache size in GiB
    sync_backend: str = "object_store"  # weight-sync backend (registry in rlsys/sync/)
    sync_bucket_mb: int = 64  # weight-sync bucket size
    sync_transport: str = "auto"  # object_store: auto (shared memory on the sender's node, Ray objects across nodes) | shm | ray
    sync_dtype: str = "auto"  # dtype weights travel in: auto (the engine's, model.dtype) | float32 | bfloat16 | float16
    sync_frozen: bool = False  # also send parameters with requires_grad=False (false: they never change, they stay home)
    check_weights: str = "auto"  # after each sync, check the engines serve what was sent: off | probe (log-probs of a fixed text) | checksum (probe + sha256 of every tensor) | auto (probe; + checksum for LoRA adapters) (rlsys/sync/check.py)
    cpu_gemm: str = "packed"  # CPU engines' linears: packed (vLLM's oneDNN layout; a sync re-packs them) | plain (checkpoint layout from the first sync on: the sender then writes the engines' weights itself, generation is slower; benchmarks/README.md)
    speculative: str = "none"  # speculative decoding: none | ngram | draft | eagle | mtp (lossless: same distribution)
    num_speculative_tokens: int = 3  # tokens proposed per step when speculative != none
    draft_model: str | None = None  # draft: HF checkpoint with the policy's tokenizer, or "layers:K" (the policy's first K layers); eagle: the EAGLE head
    draft_sync: bool = False  # draft: load the policy's new weights into the draft at every sync (false = draft stays frozen)
    agent: AgentConfig = field(default_factory=AgentConfig)  # multi-turn episodes of rows with an environment (rlsys/config/agent.py, docs/agents.md)


@dataclass
class LearnerConfig:
    world_size: int = 2  # learner ranks (one FSDP2 data-parallel group)
    micro_batch_size: int = 64  # sequences per forward/backward, per rank
    ppo_mini_batch_size: int = 0  # samples per optimizer step, global (0 = the whole step's batch: one update per epoch)
    ppo_epochs: int = 1  # passes over the step's batch (each pass: one optimizer step per mini-batch)
    backend: str = "auto"  # torch.distributed backend: auto (nccl on GPU, gloo on CPU) | gloo | nccl
    max_tokens_per_micro_batch: int = 0  # token budget (prompt + response) per micro-batch, per rank; 0 = micro_batch_size samples
    packed: bool = True  # padding-free: a micro-batch is one row of samples (position ids restart per sample); false = padded rows
    attn_implementation: str = "auto"  # auto (flash_attention_2 on CUDA if importable, else sdpa) | flash_attention_2 | sdpa | eager; reference and critic follow
    activation_checkpointing: bool = False  # recompute each decoder layer in backward (less memory, ~1/3 more compute)
    mixed_precision: str = "auto"  # auto (bf16 compute + fp32 master weights on GPU, fp32 on CPU) | float32 | bfloat16 (CPU: only with native bf16)
    lora: LoraConfig = field(default_factory=LoraConfig)  # LoRA adapters instead of full fine-tuning (rlsys/config/lora.py, docs/lora.md)


@dataclass
class RoleResources:
    """What one actor of a role reserves in its placement group."""

    cpus: float = 0.5  # CPUs per actor
    gpus: float = 0.0  # GPUs per actor (a fraction shares one)
    resources: Any = None  # dict[str, float] | None: custom Ray resources per actor, e.g. {rollout_node: 1}: the actors go to nodes started with them


ROLES = ("rollout", "learner", "verifier", "reference", "reward_model")  # the roles of cluster.<role>.{cpus,gpus,resources}


@dataclass
class RoleDeadlines:
    """Seconds a call of each role may take before its actor counts as hung; 0 = derived from measured times."""
    rollout: float = 0.0  # an engine's streaming call without a message
    verifier: float = 0.0  # a verify call
    reference: float = 0.0  # a reference or teacher log-prob call
    learner: float = 0.0  # any learner call (train step, weight push, checkpoint)


@dataclass
class ClusterConfig:
    address: str | None = None  # Ray address; null = join a running cluster if any, else start one; "local" = always start one
    num_cpus: int | None = None  # CPUs for a locally started Ray (null = all); set = always start a local one
    rollout: RoleResources = field(default_factory=lambda: RoleResources(cpus=0.5))  # per engine (gpus x rollout.tensor_parallel_size)
    learner: RoleResources = field(default_factory=lambda: RoleResources(cpus=0.5))  # per learner rank
    verifier: RoleResources = field(default_factory=lambda: RoleResources(cpus=0.25))  # per verifier actor
    reference: RoleResources = field(default_factory=lambda: RoleResources(cpus=0.25))  # the reference server (and the teacher's)
    reward_model: RoleResources = field(default_factory=lambda: RoleResources(cpus=0.25))  # per actor of a verifier.models entry (colocated ones: added to the rollout bundles)
    num_verifiers: int = 1  # verifier actors in the pool
    reference_with_learners: bool = False  # the reference lives FSDP-sharded in the learner ranks (like verl's ref in the actor group), not in a server: models too big for one device
    placement_timeout_s: float = 60.0  # how long to wait for placement groups before failing
    deadline_scale: float = 1.0  # multiplies the deadlines derived from measured times (rlsys/runtime/deadlines.py); 0 = wait forever
    deadline_s: RoleDeadlines = field(default_factory=RoleDeadlines)  # per-role fixed deadlines, overriding the derived ones
    colocate: bool = False  # GPU only: engine i shares learner rank i's GPU; engines sleep while the learners train
    threads: str = "auto"  # torch threads per actor: auto (its CPUs; a stage running alone shares the node's cores) | placement (its CPUs only)


@dataclass
class TrainerConfig:
    steps: int = 30  # RL steps (one optimizer step and one weight sync each)
    prompts_per_step: int = 64  # global prompts per step; samples = prompts_per_step * rollout.n
    seed: int = 0  # seed for sampling, data order and learner init
    output_dir: str = "runs"  # run directories are created under this
    max_staleness: int = 0  # async: the fleet generates up to k steps ahead; no trained sample is > k versions old (0 = sync)
    in_flight_updates: bool = False  # async: a sync pauses running requests, swaps the weights, they go on (tokens carry their version)
    save_checkpoint: bool = True  # write the final HF checkpoint
    save_every: int = 0  # resumable checkpoint (sharded learner state + run state) every N steps (0 = off)
    keep_last: int = 2  # resumable checkpoints kept (older ones are deleted)
    resume: str = "none"  # none | auto (latest in this run dir, else the newest run under output_dir) | PATH
    max_restarts: int = 2  # a learner rank or the rollout manager that dies: rebuild it, go on from the last checkpoint, at most this often


@dataclass
class LoggerConfig:
    log_rollouts: bool = True  # write each step's batch as parquet under <run>/rollouts/
    print_every: int = 1  # console without a terminal: print the progress line every N steps
    backends: list[str] = field(default_factory=lambda: ["console", "jsonl"])  # any of console, jsonl, tensorboard, wandb, mlflow
    modules: list[str] = field(default_factory=list)  # Python modules to import first: they register more backends
    samples_every: int = 10  # log a table of sample completions every N steps (0 = never)
    samples_n: int = 4  # rows (prompts, first sample of each) per samples table
    project: str = "rlsys"  # wandb project / MLflow experiment name
    run_name: str | None = None  # wandb / MLflow run name; null = the run directory's name
    wandb_mode: str = "offline"  # offline (files under <run>/wandb; `wandb sync` uploads) | online | disabled
    mlflow_uri: str | None = None  # MLflow tracking URI; null = a file store at <run>/mlruns
    verbose: bool = False  # library warnings and actor logs on the console too (else only in <run>/rlsys.log)


@dataclass
class VerifierConfig:
    timeout_s: float = 10.0  # per-sample limit for every verifier (code: all its tests together); then reward 0
    concurrency: int = 2  # samples scored at once per verifier actor (one scorer process each)
    memory_mb: int = 1024  # code sandbox: address-space limit of the program
    max_output_kb: int = 1024  # code sandbox: largest file or stdout/stderr the program may write
    max_processes: int = 32  # code sandbox: processes/threads the program may run at once
    remote_url: str | None = None  # data_source "remote": POST {response, ground_truth, data_source}, read {"reward": x}
    modules: list[str] = field(default_factory=list)  # Python modules every verifier process imports (they register more)
    format_score: float = 0.0  # math: reward for a well-formed but wrong \\boxed{} answer (verl's format_score; correct = 1)
    models: dict[str, RewardModelConfig] = field(default_factory=dict)  # reward models and LLM judges by name: rows whose data_source is the name get their reward
    combine: dict[str, CombinedRewardConfig] = field(default_factory=dict)  # data_source -> a reward combining verifiers (weights, a gate)


@dataclass
class EvalConfig:
    checkpoints: list[str] = field(default_factory=list)  # `rlsys eval`: HF checkpoints (empty = the model of model.*)
    data_path: str | None = None  # eval parquet; null = the task's held-out split
    n: int = 64  # samples per problem; pass@k is reported for k = 1, 2, 4, ..., n
    temperature: float = 0.6  # sampling temperature for pass@k
    top_p: float = 0.95  # nucleus sampling for pass@k
    every: int = 0  # during `rlsys train`: pass@k on the held-out set every N steps (0 = off)
    before_after_samples: int = 8  # `rlsys train`: samples per held-out prompt for pass@1 and reward before and after RL (0 = skip)


@dataclass
class RLSysConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    run_dir: str = MISSING  # set from Hydra's output dir; where everything of one run goes


BUILTIN_TASKS = ("arithmetic", "word_problems", "reverse_words", "calc", "calc_chat")


def register_configs() -> None:
    ConfigStore.instance().store(name="rlsys_schema", node=RLSysConfig)


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {msg}")


def to_dataclass(cfg: DictConfig | RLSysConfig) -> RLSysConfig:
    if isinstance(cfg, RLSysConfig):
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(RLSysConfig), cfg)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def check_config(cfg: RLSysConfig) -> RLSysConfig:
    """Range and cross-field checks; registries are checked by name here too. The rollout's own
    rules (speculative decoding, sync backend, colocation) live with the rollout: rlsys.config.validation
    runs both."""
    from rlsys.sync import SYNC_BACKENDS

    a, r, t, lr_, c = cfg.algorithm, cfg.rollout, cfg.trainer, cfg.learner, cfg.cluster
    _validate_algorithm(a)
    _check(r.n >= 1, "rollout.n", f"must be >= 1, got {r.n}")
    _check(r.n >= 2 or not a.sampling.dynamic, "rollout.n", "algorithm.sampling.dynamic needs groups of >= 2 samples")
    _check(r.temperature > 0, "rollout.temperature", f"must be > 0, got {r.temperature}")
    _check(0 < r.top_p <= 1, "rollout.top_p", f"must be in (0, 1], got {r.top_p}")
    _check(r.max_new_tokens >= 1, "rollout.max_new_tokens", f"must be >= 1, got {r.max_new_tokens}")
    _check(r.max_model_len > r.max_new_tokens, "rollout.max_model_len", "must exceed rollout.max_new_tokens")
    _check(r.num_engines >= 1, "rollout.num_engines", f"must be >= 1, got {r.num_engines}")
    check_agent(r.agent, _check)
    _check(r.max_engine_restarts >= 0, "rollout.max_engine_restarts", f"must be >= 0, got {r.max_engine_restarts}")
    _check(r.sync_backend in SYNC_BACKENDS, "rollout.sync_backend", f"unknown backend {r.sync_backend!r}; known: {sorted(SYNC_BACKENDS)}")
    _check(r.sync_bucket_mb >= 1, "rollout.sync_bucket_mb", f"must be >= 1, got {r.sync_bucket_mb}")
    _check(r.sync_transport in ("auto", "shm", "ray"), "rollout.sync_transport",
           f"must be auto, shm or ray, got {r.sync_transport!r}")
    _check(r.sync_dtype in ("auto", "float32", "bfloat16", "float16"), "rollout.sync_dtype",
           f"must be auto, float32, bfloat16 or float16, got {r.sync_dtype!r}")
    _check(r.check_weights in ("off", "probe", "checksum", "auto"), "rollout.check_weights",
           f"must be off, probe, checksum or auto, got {r.check_weights!r}")
    _check(r.cpu_gemm in ("packed", "plain"), "rollout.cpu_gemm", f"must be packed or plain, got {r.cpu_gemm!r}")
    _check(lr_.world_size >= 1, "learner.world_size", f"must be >= 1, got {lr_.world_size}")
    _check(lr_.micro_batch_size >= 1, "learner.micro_batch_size", f"must be >= 1, got {lr_.micro_batch_size}")
    _check(lr_.backend in ("auto", "gloo", "nccl"), "learner.backend", f"must be auto, gloo or nccl, got {lr_.backend!r}")
    _validate_learner_speed(lr_, c)
    check_lora(cfg, _check)
    _check(cfg.model.dtype in ("float32", "bfloat16"), "model.dtype", f"must be float32 or bfloat16, got {cfg.model.dtype!r}")
    _check(c.num_verifiers >= 1, "cluster.num_verifiers", f"must be >= 1, got {c.num_verifiers}")
    _check(c.deadline_scale >= 0, "cluster.deadline_scale", f"must be >= 0 (0 = wait forever), got {c.deadline_scale}")
    for role, seconds in vars(c.deadline_s).items():
        _check(seconds >= 0, f"cluster.deadline_s.{role}", f"must be >= 0 seconds (0 = derived), got {seconds}")
    for role in ROLES:
        _validate_role_resources(role, getattr(c, role))
    _check(t.steps >= 0, "trainer.steps", f"must be >= 0, got {t.steps}")
    _check(t.prompts_per_step >= 1, "trainer.prompts_per_step", f"must be >= 1, got {t.prompts_per_step}")
    _check(t.prompts_per_step * r.n >= lr_.world_size, "trainer.prompts_per_step",
           f"{t.prompts_per_step} prompts x rollout.n={r.n} samples cannot feed learner.world_size={lr_.world_size} ranks")
    _check(t.save_every >= 0, "trainer.save_every", f"must be >= 0, got {t.save_every}")
    _check(t.keep_last >= 1, "trainer.keep_last", f"must be >= 1, got {t.keep_last}")
    _check(t.max_restarts >= 0, "trainer.max_restarts", f"must be >= 0, got {t.max_restarts}")
    check_updates(cfg, _check)
    _check(not (cfg.model.path and cfg.model.gguf), "model.gguf", "set either model.path or model.gguf, not both")
    _check(cfg.task.name in BUILTIN_TASKS, "task.name",
           f"no built-in task {cfg.task.name!r}; known: {', '.join(BUILTIN_TASKS)}")
    _check(cfg.task.max_ops >= 1, "task.max_ops", f"must be >= 1, got {cfg.task.max_ops}")
    _check(cfg.task.max_digits >= 1, "task.max_digits", f"must be >= 1, got {cfg.task.max_digits}")
    _check(cfg.task.max_words >= 3, "task.max_words", f"must be >= 3, got {cfg.task.max_words}")
    e = cfg.eval
    _check(1 <= e.n <= 1024, "eval.n", f"must be in [1, 1024], got {e.n}")
    _check(e.temperature > 0, "eval.temperature", f"must be > 0, got {e.temperature}")
    _check(0 < e.top_p <= 1, "eval.top_p", f"must be in (0, 1], got {e.top_p}")
    _check(e.every >= 0, "eval.every", f"must be >= 0, got {e.every}")
    _check(e.before_after_samples >= 0, "eval.before_after_samples", f"must be >= 0, got {e.before_after_samples}")
    _validate_logger(cfg.logger)
    v = cfg.verifier
    for key in ("timeout_s", "concurrency", "memory_mb", "max_output_kb", "max_processes"):
        _check(getattr(v, key) > 0, f"verifier.{key}", f"must be > 0, got {getattr(v, key)}")
    _check(0 <= v.format_score < 1, "verifier.format_score", f"must be in [0, 1) (a correct answer gets 1), got {v.format_score}")
    return cfg


def _validate_role_resources(role: str, res: RoleResources) -> None:
    key = f"cluster.{role}"
    _check(res.cpus >= 0, f"{key}.cpus", f"must be >= 0, got {res.cpus}")
    _check(res.gpus >= 0, f"{key}.gpus", f"must be >= 0, got {res.gpus}")
    custom = res.resources or {}
    _check(isinstance(custom, dict) and all(
        isinstance(k, str) and k not in ("CPU", "GPU", "memory") and isinstance(v, (int, float)) and v > 0
        for k, v in custom.items()), f"{key}.resources",
        f"must map custom resource names (not CPU/GPU/memory: use {key}.cpus/.gpus) to positive "
        f"amounts, e.g. {{{role}_node: 1}}; got {custom!r}")


def _validate_logger(lg: LoggerConfig) -> None:
    from rlsys.loggers import BACKENDS, load_modules, missing_package

    try:
        load_modules(lg.modules)
    except ImportError as e:
        raise ConfigError(f"config key 'logger.modules': cannot import {e.name!r} ({e})") from e
    for name in lg.backends:
        _check(name in BACKENDS, "logger.backends", f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
        pkg = missing_package(name)
        _check(pkg is None, "logger.backends", f"backend {name!r} needs the package {pkg!r}: pip install {pkg}")
    _check(lg.wandb_mode in ("offline", "online", "disabled"), "logger.wandb_mode",
           f"must be offline, online or disabled, got {lg.wandb_mode!r}")
    _check(lg.samples_every >= 0 and lg.samples_n >= 1, "logger.samples_every", "samples_every must be >= 0, samples_n >= 1")
    _check(lg.print_every >= 1, "logger.print_every", f"must be >= 1, got {lg.print_every}")


def _validate_learner_speed(lr_: LearnerConfig, c: ClusterConfig) -> None:
    from rlsys.learner.build import MIXED_PRECISION
    from rlsys.learner.packing import ATTN_IMPLEMENTATIONS

    _check(lr_.max_tokens_per_micro_batch >= 0, "learner.max_tokens_per_micro_batch",
           f"must be >= 0 (0 = learner.micro_batch_size samples), got {lr_.max_tokens_per_micro_batch}")
    _check(lr_.attn_implementation in ATTN_IMPLEMENTATIONS, "learner.attn_implementation",
           f"unknown {lr_.attn_implementation!r}; known: {', '.join(ATTN_IMPLEMENTATIONS)}")
    _check(lr_.mixed_precision in MIXED_PRECISION, "learner.mixed_precision",
           f"unknown {lr_.mixed_precision!r}; known: {', '.join(MIXED_PRECISION)}")
    _check(c.threads in ("auto", "placement"), "cluster.threads", f"must be auto or placement, got {c.threads!r}")


def _validate_algorithm(a: AlgorithmConfig) -> None:
    from rlsys.learner.advantages import ADVANTAGES
    from rlsys.learner.objective import load_plugins, needs
    from rlsys.learner.losses import AGGREGATIONS, DIVERGENCES, KL_ESTIMATORS, POLICY_LOSSES
    from rlsys.learner.spec import spec

    try:
        load_plugins(a.modules)
    except ImportError as e:
        raise ConfigError(f"config key 'algorithm.modules': cannot import {e.name!r} ({e})") from e

    for key, table in (("advantage", ADVANTAGES), ("loss", POLICY_LOSSES), ("loss_agg", AGGREGATIONS),
                       ("kl.estimator", KL_ESTIMATORS), ("divergence.name", {"none": None, **DIVERGENCES})):
        value = get_key(a, key)
        _check(value in table, f"algorithm.{key}", f"unknown {key} {value!r}; known: {sorted(table)}")
    _check(a.optim.schedule in ("constant", "cosine"), "algorithm.optim.schedule",
           f"must be constant or cosine, got {a.optim.schedule!r}")
    _check(a.optim.warmup_steps >= 0, "algorithm.optim.warmup_steps", f"must be >= 0, got {a.optim.warmup_steps}")
    _check(a.kl.placement in ("loss", "reward"), "algorithm.kl.placement", f"must be loss or reward, got {a.kl.placement!r}")
    _check(a.dual_clip == 0 or a.dual_clip > 1, "algorithm.dual_clip", f"must be 0 (off) or > 1, got {a.dual_clip}")
    for key in ("clip_low", "clip_high", "kl.coef", "entropy_coef", "optim.weight_decay", "optim.grad_clip", "w_lambda",
                "lp_reg.coef", "divergence.coef", "distill.scale", "distill.kl_coef", "sampling.overlong_buffer"):
        _check(get_key(a, key) >= 0, f"algorithm.{key}", f"must be >= 0, got {get_key(a, key)}")
    _check(a.distill.kl_coef_end is None or a.distill.kl_coef_end >= 0, "algorithm.distill.kl_coef_end",
           f"must be >= 0, got {a.distill.kl_coef_end}")
    for key in ("optim.lr", "critic.lr", "lp_reg.kappa", "lp_reg.rho", "critic.gae_lambda", "critic.gamma"):
        _check(get_key(a, key) > 0, f"algorithm.{key}", f"must be > 0, got {get_key(a, key)}")
    for key in ("lp_reg.kappa", "lp_reg.rho", "critic.gae_lambda", "critic.gamma"):
        _check(get_key(a, key) <= 1, f"algorithm.{key}", f"must be <= 1, got {get_key(a, key)}")
    _check(a.sampling.overlong_buffer < 1, "algorithm.sampling.overlong_buffer",
           f"must be a fraction < 1 of max_new_tokens, got {a.sampling.overlong_buffer}")
    _check(a.sampling.max_rounds >= 1, "algorithm.sampling.max_rounds", f"must be >= 1, got {a.sampling.max_rounds}")
    d = a.divergence
    _check(d.anchor_samples >= 1 and d.anchor_pool >= d.anchor_samples, "algorithm.divergence.anchor_pool",
           f"need 1 <= algorithm.divergence.anchor_samples ({d.anchor_samples}) <= "
           f"algorithm.divergence.anchor_pool ({d.anchor_pool})")
    # Knobs that only mean something together, from the active terms' declared needs (learner/spec.py):
    # refuse the combinations that would be silently ignored.
    need, adv = needs(a), spec("advantage", a.advantage)
    terms = f"advantage={a.advantage}, loss={a.loss} and the regularisers switched on"
    _check(a.critic.enabled == ("critic" in need), "algorithm.critic.enabled",
           f"advantage={a.advantage} needs a learned critic: set algorithm.critic.enabled=true" if "critic" in need
           else f"{terms} use no critic (set algorithm.critic.enabled=false)")
    _check("teacher" not in need or a.distill.teacher_path, "algorithm.distill.teacher_path",
           f"{terms} distil from a teacher: set it to an HF checkpoint with the student's tokenizer")
    _check(not a.distill.teacher_path or "teacher" in need, "algorithm.distill.teacher_path",
           f"a teacher is set but unused by {terms} (distill.kl_coef=0)")
    _check("sequence_ratio" not in need or not adv.per_token_advantage, "algorithm.loss",
           f"{a.loss} is a sequence-level loss; advantage={a.advantage} gives per-token advantages")


def as_dict(cfg: RLSysConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
