"""The run configuration's schema (the bottom floor: it imports nothing of dagger but its errors): one dataclass per
section, one docstring line per key, and the range and consistency checks types alone cannot express. Loading
(presets, YAML, `--set`) is `dagger_cli.core.config_loader`.

Key names follow RLinf's embodied configs where RLinf has them (`algorithm.dagger.*`, `algorithm.replay_buffer.*`,
`actor.optim.*`, `runner.*`). Differences from RLinf, on purpose:
- replay-buffer sizes count samples (env steps), not trajectories;
- unknown keys are errors, with a "did you mean" hint;
- `algorithm.dagger.beta_schedule` also accepts `linear` and `constant`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from dagger_cli.core.errors import ConfigError

EVAL_SEED_LIMIT = 2**20
"""evaluation episodes reset with fixed seeds below this (env.eval.reset_seed_base + i); envs that keep separate
training and evaluation scenes (RoboTwin's seed lists) tell the two apart by it"""
TRAIN_SEED_RANGE = (EVAL_SEED_LIMIT, 2**31)
"""training episodes reset with seeds drawn from this range, from (run seed, iteration)"""


# ALGORITHM
@dataclass
class DaggerConfig:
    init_beta: float = 1.0
    """probability that the expert acts at iteration 0"""
    beta_schedule: Literal["exponential", "linear", "constant"] = "exponential"
    """how beta falls with the iteration k (see `dagger_cli.core.engine.beta`)"""
    beta_decay: float = 0.99
    """exponential: factor per iteration; linear: amount subtracted per iteration; constant: unused"""
    beta_min: float = 0.05
    """floor of beta"""
    only_save_expert: bool = False
    """keep only steps the expert executed (HG-DAgger style); False labels every visited state (classic DAgger)"""
    only_success: bool = False
    """keep only the samples of training episodes that succeeded (RLinf's online_lerobot.only_success); an episode
    the iteration's end cuts short counts by its outcome so far (with terminate_on_success: never a success)"""
    expert_loss_weight: float = 1.0
    """loss weight of samples the expert acted on (expert_used; the loss is the weighted mean over a batch)"""
    student_loss_weight: float = 1.0
    """loss weight of samples the student acted on (relabelled by the expert); equal weights: the plain mean"""
    mixing: Literal["env", "batch"] = "env"
    """one expert/student coin per env per step (`env`), or one per step for all envs (`batch`, RLinf's behaviour)"""
    bc_warmup_updates: int = 0
    """with replay_buffer.seed_dataset: behaviour-cloning optimizer steps on it before the initial evaluation"""
    max_policy_lag: int = 1
    """async: most learner iterations by which trained-on data may trail the learner (0: as fresh as sync mode)"""
    query: Literal["always", "gated"] = "always"
    """which states the expert labels: every visited one (`always`), or those the expert acts in plus the student-acted
    ones where the student is unsure (`gated`: its uncertainty score above query_threshold, within query_budget)"""
    query_threshold: float | None = None
    """gated: label a student-acted step only where the student's uncertainty score exceeds this (null: no floor)"""
    query_budget: int | None = None
    """gated: at most this many student-acted steps labelled per collection (sync: an iteration, all envs; async: each
    worker's collection), the most uncertain ones so far in it (null: no budget)"""


@dataclass
class ReplayBufferConfig:
    min_buffer_size: int = 1000
    """labelled samples stored before the learner starts training"""
    sample_window_size: int = 20000
    """the learner samples uniformly from this many most recent samples; it is also the buffer's capacity"""
    storage: str = "memory"
    """memory: a RAM ring; disk: files written once under the run dir (or `path`), flat RAM at any window size"""
    path: str | None = None
    """storage=disk: the directory (a fast local disk) that holds the buffer's files, one subdirectory per run"""
    seed_dataset: str | None = None
    """a LeRobot v3.0 dataset of expert-labelled demonstrations (a directory, or a Hub dataset id `owner/name[@rev]`),
    put into the buffer before iteration 0 as iteration -1"""
    seed_features: dict[str, str] = field(default_factory=dict)
    """seed_dataset not written by dagger: sample field -> the dataset's feature (`expert_action: action`, `obs/state:
    observation.state`, `obs/prompt: task`); per-step actions become the student's chunks"""


@dataclass
class AlgorithmConfig:
    dagger: DaggerConfig = field(default_factory=DaggerConfig)
    """beta schedule, mixing and relabelling"""
    replay_buffer: ReplayBufferConfig = field(default_factory=ReplayBufferConfig)
    """bounded buffer of labelled samples"""


# ENVIRONMENT
@dataclass
class EvalConfig:
    num_episodes: int = 128
    """student-only evaluation episodes, each run to max_episode_steps"""
    reset_seed_base: int = 0
    """evaluation episode i resets with seed reset_seed_base + i (the same initial states in every run)"""
    interim_episodes: int = 0
    """episodes of the evaluations before the last (the initial student, the expert, every val_check_interval):
    the first this many of the final one's (at most num_episodes); 0 = num_episodes"""

    @property
    def seeds(self) -> list[int]:
        return [self.reset_seed_base + i for i in range(self.num_episodes)]

    def seeds_for(self, final: bool) -> list[int]:
        """The seeds of the run's last evaluation (final) or of one before it."""
        n = self.num_episodes if final or not self.interim_episodes else min(self.interim_episodes, self.num_episodes)
        return self.seeds[:n]


@dataclass
class EnvConfig:
    """The generic part of the `env` section; each env adapter's config subclasses it with its own keys (all in
    `env.*`), and `type` picks the adapter (see `dagger_cli.core.registry`)."""

    type: str = ""
    """simulator adapter, by its registered name (built in: docs/adapters.md; packages add more by entry points)"""
    task: str = ""
    """task id inside the simulator"""
    num_envs: int = 2
    """parallel environments"""
    max_episode_steps: int = 50
    """time limit of one episode"""
    max_steps_per_rollout_epoch: int = 500
    """env steps each env takes per DAgger iteration (episodes reset at the start of every iteration)"""
    terminate_on_success: bool = True
    """end a training episode at its first success (evaluation always runs max_episode_steps)"""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """evaluation protocol"""

    @classmethod
    def adapter_config(cls, data: dict[str, Any], key: str) -> type:
        from dagger_cli.core.registry import env_adapter

        return env_adapter(data.get("type", cls.type), f"{key}.type").config

    def check(self, key: str, cfg: "Config") -> None:
        """Range checks of the adapter's own keys (the generic ones are checked by `validate`)."""


# MODELS
@dataclass
class ModelConfig:
    """The generic part of a model section (`actor.model`, `rollout.expert_model`); each policy adapter's config
    subclasses it with its own keys, and `model_type` picks the adapter."""

    model_type: str = ""
    """policy adapter (`mlp`, `pi0`, ...), or `scripted` (the env's built-in expert; expert only)"""
    model_path: str | None = None
    """the model's checkpoint directory (π₀: safetensors or RLinf full_weights.pt, with norm stats); null = random
    init (MLP weights come from runner.ckpt_path / runner.expert_ckpt_path)"""
    action_dim: int = 8
    """env action size"""
    num_action_chunks: int = 1
    """actions predicted and executed per policy call"""

    @classmethod
    def adapter_config(cls, data: dict[str, Any], key: str) -> type:
        from dagger_cli.core.registry import SCRIPTED, policy_adapter

        name = data.get("model_type", cls.model_type)
        if name == SCRIPTED and key == "actor.model":
            raise ConfigError(f"{key}.model_type: the student must be a learnable model, not {SCRIPTED!r}")
        return cls if name == SCRIPTED else policy_adapter(name, f"{key}.model_type").config

    def check(self, key: str, cfg: "Config") -> None:
        """Range checks of the adapter's own keys (`key`: where the section is, e.g. `actor.model`)."""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    """peak learning rate (AdamW)"""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    clip_grad: float = 1.0
    """max gradient norm; 0 disables clipping"""
    lr_scheduler: Literal["constant", "cosine", "linear"] = "constant"
    """shape after warm-up"""
    lr_warmup_steps: int = 0
    """linear warm-up from 0 over this many optimizer steps"""
    total_training_steps: int = 0
    """optimizer steps over which cosine/linear decay to min_lr, counted from the run's first (the BC warm-up's);
    0 = algorithm.dagger.bc_warmup_updates + runner.max_epochs * actor.update_epoch"""
    min_lr: float = 0.0
    """floor of the cosine/linear schedules"""


@dataclass
class ActorConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """student architecture"""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """optimizer and learning-rate schedule"""
    update_epoch: int = 200
    """optimizer steps per DAgger iteration"""
    norm_stats_iterations: int = 1
    """a student without norm stats (π₀ on a new task) takes them from the expert labels of this many first
    iterations (at most runner.max_epochs; async: collections, this many per worker), and trains only from then on"""
    ema_decay: float | None = None
    """the student acts (rollouts, evaluations, the checkpoints' and exports' weights) with an exponential moving
    average of its trained weights, updated after each optimizer step with this decay, warmed up as
    min(decay, (1 + n) / (10 + n)) at the n-th update; null = with the trained weights themselves (RLinf)"""
    global_batch_size: int = 1024
    """samples per optimizer step"""
    micro_batch_size: int = 1024
    """samples per forward/backward pass (gradient accumulation = global / micro)"""


@dataclass
class RolloutConfig:
    expert_model: ModelConfig = field(default_factory=lambda: ModelConfig(model_type="scripted"))
    """expert: `scripted`, an `mlp` loaded from runner.expert_ckpt_path, a `pi0` from its model_path, ..."""


# ASYNC (Ray)
@dataclass
class ClusterConfig:
    num_rollout_workers: int = 2
    """async: Ray actors running env + student + expert; env.num_envs is split evenly between them"""
    rollout_worker_cpus: float = 1.0
    """async: CPUs Ray reserves per rollout worker"""
    rollout_worker_gpus: float | None = None
    """async: GPUs Ray reserves per rollout worker (fractions share a GPU); unset: the cluster's GPUs shared evenly
    (at most 1 each), none when runner.device is cpu"""
    object_store_gib: float = 0.0
    """async, embedded Ray: object store size; 0 = room for 3 versions of the student's weights + 256 MiB"""
    learner_procs: int = 1
    """learner processes training data-parallel (torch.distributed: NCCL on GPUs, one GPU each; gloo on CPUs),
    placed by Ray; each takes a shard of every global batch"""
    learner_threads: int = 0
    """async: torch CPU threads of the learner (in the driver); 0 = the CPUs an embedded Ray leaves to it"""
    ray_address: str | None = None
    """async: an existing Ray cluster to join (else RAY_ADDRESS, else an embedded local instance)"""


# RUNNER
LOGGER_BACKENDS = ("tensorboard", "wandb")
"""where `runner.logger.logger_backends` may send the metrics beside `metrics.jsonl`"""


@dataclass
class LoggerConfig:
    logger_backends: list[str] = field(default_factory=lambda: ["tensorboard"])
    """where the metrics go beside metrics.jsonl (always written): tensorboard (RUN_DIR/tb), wandb (extra wandb)"""
    project_name: str = "dagger"
    """wandb: the project the run is logged to"""
    experiment_name: str | None = None
    """wandb: the run's display name; null = <preset>/<run dir name>"""
    wandb_entity: str | None = None
    """wandb: the team or user that owns the run; null = the logged-in account's default"""


@dataclass
class RunnerConfig:
    max_epochs: int = 10
    """DAgger iterations (collect, then train)"""
    val_check_interval: int = 0
    """evaluate the student every this many iterations; 0 = only after the last"""
    save_interval: int = 1
    """checkpoint every this many iterations; -1 = only after the last"""
    keep_checkpoints: int = 2
    """checkpoints kept on disk (oldest deleted first)"""
    ckpt_path: str | None = None
    """student warm start: a .safetensors file or RLinf full_weights.pt (weights only, new run)"""
    expert_ckpt_path: str | None = None
    """expert weights for rollout.expert_model.model_type = mlp"""
    eval_video_episodes: int = 0
    """film the first this many episodes of each evaluation into RUN_DIR/videos/<iteration>/ (mp4, extra report)"""
    eval_student_init: bool = True
    """evaluate the student before training (the results table's "Student init SR")"""
    eval_expert: bool = True
    """evaluate the expert alone before training (the results table's "Expert SR")"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where the student and the learner run"""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """metric sinks beside metrics.jsonl (RLinf's runner.logger keys; its log_path is the run dir here)"""


@dataclass
class Config:
    name: str = "custom"
    """preset name"""
    description: str = ""
    """one line shown by `dagger presets`"""
    seed: int = 0
    """seeds model init, learner sampling, mixing coins and training episode resets"""
    env: EnvConfig = field(default_factory=EnvConfig)
    """simulator and episodes"""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """DAgger and replay buffer"""
    actor: ActorConfig = field(default_factory=ActorConfig)
    """student and learner"""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """expert"""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """async pipeline placement (dagger train --async)"""
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    """iterations, evaluation, checkpoints"""

    @property
    def norm_stats_iterations(self) -> int:
        """The iterations a student without norm stats takes them from: actor.norm_stats_iterations, or the whole
        run where it is shorter."""
        return min(self.actor.norm_stats_iterations, self.runner.max_epochs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# KEYS
def all_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a config, e.g. `algorithm.dagger.beta_decay`; the sections adapters own contribute
    their adapter's keys."""
    keys = []
    for f in dataclasses.fields(cfg):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(cfg, f.name)
        keys += all_keys(value, dotted) if dataclasses.is_dataclass(value) else [dotted]
    return keys


# CHECKS
def check(ok: bool, key: str, message: str) -> None:
    """A ConfigError naming `key` unless `ok` (for the adapters' `check` methods too)."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


def check_positive(section: Any, key: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        check(value > 0, f"{key}.{name}", f"must be positive, got {value}")


def validate(cfg: Config) -> Config:
    """Range and consistency checks that types alone cannot express. Raises ConfigError naming the key."""
    from dagger_cli.core.registry import SCRIPTED

    d, rb, a, r, e = cfg.algorithm.dagger, cfg.algorithm.replay_buffer, cfg.actor, cfg.runner, cfg.env
    check(0.0 <= d.init_beta <= 1.0, "algorithm.dagger.init_beta", f"must be in [0, 1], got {d.init_beta}")
    check(0.0 <= d.beta_min <= 1.0, "algorithm.dagger.beta_min", f"must be in [0, 1], got {d.beta_min}")
    check(
        d.beta_min <= d.init_beta,
        "algorithm.dagger.beta_min",
        f"{d.beta_min} is above algorithm.dagger.init_beta {d.init_beta}",
    )
    if d.beta_schedule == "exponential":
        check(0.0 < d.beta_decay <= 1.0, "algorithm.dagger.beta_decay", f"must be in (0, 1], got {d.beta_decay}")
    if d.beta_schedule == "linear":
        check(0.0 <= d.beta_decay <= 1.0, "algorithm.dagger.beta_decay", f"must be in [0, 1], got {d.beta_decay}")
    check(rb.sample_window_size > 0, "algorithm.replay_buffer.sample_window_size", "must be positive")
    check(rb.storage in ("memory", "disk"), "algorithm.replay_buffer.storage", f"must be memory or disk, got {rb.storage!r}")
    check(d.bc_warmup_updates >= 0, "algorithm.dagger.bc_warmup_updates", "must not be negative")
    check(d.bc_warmup_updates == 0 or rb.seed_dataset is not None, "algorithm.dagger.bc_warmup_updates",
          "needs algorithm.replay_buffer.seed_dataset (the data it clones)")
    check(not rb.seed_features or rb.seed_dataset is not None, "algorithm.replay_buffer.seed_features",
          "needs algorithm.replay_buffer.seed_dataset (the dataset it names features of)")
    check(not rb.seed_features or "expert_action" in rb.seed_features, "algorithm.replay_buffer.seed_features",
          "must name the dataset's label feature as expert_action (e.g. expert_action: action)")
    check(rb.min_buffer_size >= 0, "algorithm.replay_buffer.min_buffer_size", "must not be negative")
    check(
        rb.min_buffer_size <= rb.sample_window_size,
        "algorithm.replay_buffer.min_buffer_size",
        f"{rb.min_buffer_size} exceeds sample_window_size {rb.sample_window_size}; training would never start",
    )
    check_positive(e, "env", "num_envs", "max_episode_steps", "max_steps_per_rollout_epoch")
    check_positive(e.eval, "env.eval", "num_episodes")
    check(e.eval.interim_episodes >= 0, "env.eval.interim_episodes",
          f"must not be negative, got {e.eval.interim_episodes}")
    for key, model in (("actor.model", a.model), ("rollout.expert_model", cfg.rollout.expert_model)):
        check_positive(model, key, "action_dim", "num_action_chunks")
    check_positive(a, "actor", "global_batch_size", "micro_batch_size", "norm_stats_iterations")
    check(a.ema_decay is None or 0.0 < a.ema_decay < 1.0, "actor.ema_decay",
          f"a moving average's decay must be in (0, 1), got {a.ema_decay}")
    check_positive(r, "runner", "max_epochs", "keep_checkpoints")
    for key, value in [
        ("actor.update_epoch", a.update_epoch),
        ("runner.val_check_interval", r.val_check_interval),
        ("env.eval.reset_seed_base", e.eval.reset_seed_base),
        ("actor.optim.lr_warmup_steps", a.optim.lr_warmup_steps),
        ("actor.optim.total_training_steps", a.optim.total_training_steps),
    ]:
        check(value >= 0, key, f"must not be negative, got {value}")
    check(
        e.eval.reset_seed_base + e.eval.num_episodes <= EVAL_SEED_LIMIT,
        "env.eval.reset_seed_base",
        f"evaluation seeds must stay below {EVAL_SEED_LIMIT} (training episodes reset with the seeds above)",
    )
    check(r.save_interval == -1 or r.save_interval > 0, "runner.save_interval", "must be positive or -1")
    for name in ("expert_loss_weight", "student_loss_weight"):
        value = getattr(d, name)
        check(value >= 0 and math.isfinite(value), f"algorithm.dagger.{name}",
              f"must be a finite number >= 0, got {value}")
    check(d.expert_loss_weight + d.student_loss_weight > 0, "algorithm.dagger.student_loss_weight",
          "and algorithm.dagger.expert_loss_weight are both 0: no sample would train")
    check(d.max_policy_lag >= 0, "algorithm.dagger.max_policy_lag", f"must not be negative, got {d.max_policy_lag}")
    if d.query == "gated":
        check(d.query_threshold is not None or d.query_budget is not None, "algorithm.dagger.query",
              "gated needs algorithm.dagger.query_threshold or algorithm.dagger.query_budget")
        check(not d.only_save_expert, "algorithm.dagger.query",
              "gated labels student-acted steps, which only_save_expert would drop: set one of them")
    check(d.query_threshold is None or d.query_threshold >= 0, "algorithm.dagger.query_threshold",
          f"must not be negative, got {d.query_threshold}")
    check(d.query_budget is None or d.query_budget >= 0, "algorithm.dagger.query_budget",
          f"must not be negative, got {d.query_budget}")
    c = cfg.cluster
    check(c.num_rollout_workers > 0, "cluster.num_rollout_workers", "must be positive")
    check(c.rollout_worker_cpus >= 0, "cluster.rollout_worker_cpus", "must not be negative")
    check(c.rollout_worker_gpus is None or c.rollout_worker_gpus >= 0, "cluster.rollout_worker_gpus", "must not be negative")
    check(cfg.runner.eval_video_episodes >= 0, "runner.eval_video_episodes", "must not be negative")
    for backend in r.logger.logger_backends:
        hint = difflib.get_close_matches(backend, LOGGER_BACKENDS, n=1)
        check(backend in LOGGER_BACKENDS, "runner.logger.logger_backends",
              f"{backend!r} is not one of {', '.join(map(repr, LOGGER_BACKENDS))}"
              + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    check(c.learner_procs >= 1, "cluster.learner_procs", f"must be at least 1, got {c.learner_procs}")
    check(c.object_store_gib >= 0, "cluster.object_store_gib", "must not be negative")
    check(c.learner_threads >= 0, "cluster.learner_threads", f"must not be negative, got {c.learner_threads}")
    check(a.optim.lr > 0, "actor.optim.lr", f"must be positive, got {a.optim.lr}")
    check(0 <= a.optim.min_lr <= a.optim.lr, "actor.optim.min_lr", "must be in [0, actor.optim.lr]")
    check(a.optim.weight_decay >= 0, "actor.optim.weight_decay", "must not be negative")
    check(a.optim.clip_grad >= 0, "actor.optim.clip_grad", "must not be negative")
    check(
        len(a.optim.betas) == 2 and all(0 <= b < 1 for b in a.optim.betas),
        "actor.optim.betas",
        f"must be two numbers in [0, 1), got {a.optim.betas}",
    )
    check(
        a.global_batch_size % a.micro_batch_size == 0,
        "actor.global_batch_size",
        f"{a.global_batch_size} is not a multiple of actor.micro_batch_size {a.micro_batch_size}",
    )
    # ADAPTERS: each checks its own keys
    e.check("env", cfg)
    a.model.check("actor.model", cfg)
    x = cfg.rollout.expert_model
    x.check("rollout.expert_model", cfg)
    if x.model_type == SCRIPTED:
        check(
            r.expert_ckpt_path is None,
            "runner.expert_ckpt_path",
            "is set but rollout.expert_model.model_type is 'scripted'; set it to 'mlp' to use the checkpoint",
        )
    else:
        check(
            x.action_dim == a.model.action_dim, "rollout.expert_model.action_dim", "differs from actor.model.action_dim"
        )
    return cfg
