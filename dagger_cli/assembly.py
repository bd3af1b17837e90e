"""The one assembler: a config (and a run dir or a checkpoint path) becomes live parts here, and only here.

The parts: the student with its weights, the expert, the env checked against both models, a new run's seed samples
(read from a LeRobot dataset, local or on the Hub), the env, student and expert of an async rollout worker, and a
whole run (new or resumed) ready to go. `dagger train`, `eval`, `check` and `export` and the Ray rollout workers
build through these functions; the engine (`core`) receives parts and reads no file a config names.

Heavy libraries (torch, simulators, models, Ray) load inside the functions, when a part is built.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from dagger_cli.core.config import Config
from dagger_cli.core.config_loader import load_config
from dagger_cli.core.errors import CheckpointError, ConfigError, UsageError
from dagger_cli.core.io.metrics import require_backends
from dagger_cli.core.registry import SCRIPTED, policy_adapter
from dagger_cli.core.io.run_dir import (
    checkpoints_of, create_run_dir, default_run_dir, ensure_new_run_dir, locate, record_resume, resume_config,
    run_config, run_mode,
)

if TYPE_CHECKING:
    from dagger_cli.core.protocols import Policy, RunnerHooks, TrainablePolicy, VecEnv
    from dagger_cli.core.engine.run_checkpoint import Loaded
    from dagger_cli.core.engine.run_state import SeedSamples


# MODELS
def device(cfg: Config) -> str:
    """runner.device as torch names it: `auto` is cuda where CUDA is available, else cpu."""
    import torch

    name = cfg.runner.device
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runner.device: 'cuda' requested but CUDA is not available")
    return name


def student(cfg: Config, on: str, weights: str | Path | None = None) -> TrainablePolicy:
    """The student: loaded from `weights` (default runner.ckpt_path; any path `run_dir.locate` reads), else randomly
    initialised (torch RNG)."""
    adapter = policy_adapter(cfg.actor.model.model_type)
    if adapter.student is None:
        raise ConfigError(f"actor.model.model_type: {adapter.name} cannot be trained as a student")
    return adapter.student(cfg, on, weights if weights is not None else cfg.runner.ckpt_path)


def expert(cfg: Config, on: str) -> Policy:
    """The task's scripted expert, or the expert model `rollout.expert_model` names."""
    model_type = cfg.rollout.expert_model.model_type
    if model_type == SCRIPTED:
        from dagger_cli.envs import make_scripted_expert

        return make_scripted_expert(cfg.env, cfg.actor.model.num_action_chunks)
    adapter = policy_adapter(model_type, "rollout.expert_model.model_type")
    if adapter.expert is None:
        raise ConfigError(f"rollout.expert_model.model_type: {adapter.name} cannot serve as an expert")
    return adapter.expert(cfg, on)


# ENV
def env(cfg: Config, num_envs: int | None = None) -> VecEnv:
    """The configured simulator with env.num_envs envs (or `num_envs`), checked against the models' sizes; the
    caller closes it."""
    import dataclasses

    from dagger_cli.envs import make_vec_env

    section = cfg.env if num_envs is None else dataclasses.replace(cfg.env, num_envs=num_envs)
    made = make_vec_env(section, cfg.actor.model.num_action_chunks)
    try:
        validate_env(cfg, made)
    except Exception:
        made.close()
        raise
    return made


def validate_env(cfg: Config, made: VecEnv) -> None:
    """The env's observation and action sizes must be those the models were configured for."""
    for key, model in (("actor.model", cfg.actor.model), ("rollout.expert_model", cfg.rollout.expert_model)):
        if model.model_type == SCRIPTED:
            continue
        if made.action_dim != model.action_dim:
            raise ConfigError(f"{key}.action_dim is {model.action_dim} but {cfg.env.task} actions have "
                              f"{made.action_dim}")
        fits_env = policy_adapter(model.model_type, f"{key}.model_type").fits_env
        if fits_env is not None:
            fits_env(model, made, key)


def rollout_components(cfg: Config, worker_id: int = 0) -> tuple[VecEnv, TrainablePolicy, Policy]:
    """(env, student, expert) for one rollout worker of the async pipeline; the student's weights come later."""
    import torch

    torch.manual_seed(cfg.seed + worker_id)
    on = device(cfg)
    trainee, teacher = student(cfg, on), expert(cfg, on)
    return env(cfg), trainee, teacher


# DATA
SEED_KEY = "algorithm.replay_buffer.seed_dataset"


def seed_samples(cfg: Config, label_shape: tuple[int, ...], say: Callable[[str], None] = lambda text: None
                 ) -> SeedSamples | None:
    """algorithm.replay_buffer.seed_dataset (a directory, or a Hub dataset id fetched first) read as buffer
    samples for a student whose labels have `label_shape`; None when the config names none."""
    rb = cfg.algorithm.replay_buffer
    if not rb.seed_dataset:
        return None
    from dagger_cli.core.engine.run_state import SeedSamples
    from dagger_cli.interop import lerobot_dataset

    path = lerobot_dataset.locate(rb.seed_dataset, SEED_KEY, say)
    samples = lerobot_dataset.read(path, SEED_KEY, rb.seed_features, tuple(label_shape),
                                   cfg.actor.model.num_action_chunks)
    return SeedSamples(path, samples, lerobot_dataset.episodes_of(samples))


# CHECKPOINT PATHS
@dataclass
class StudentSource:
    """A checkpoint path given to `dagger eval --ckpt` or `dagger export`: the config and the student weights."""

    config: Config
    weights: Path
    checkpoint_dir: Path | None
    """the dagger checkpoint it names (None: a weights file or model directory)"""


def student_source(path: Path, preset: str | None, overrides: list[str]) -> StudentSource:
    """A run dir, a checkpoint dir (iter_*) or weights (with `preset`) as `run_dir.locate` reads them -> the config
    (the run's, or the preset's) and the weights."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UsageError(f"--ckpt {path}: no such file or directory")
    located = locate(path)
    if located.weights is None:
        raise UsageError(f"--ckpt {path}: the run has no checkpoint yet")
    if preset is not None:
        cfg = load_config(preset, overrides=list(overrides))
    elif located.run_dir is not None:
        cfg = run_config(located.run_dir, overrides)
    else:
        raise UsageError(f"--ckpt {path}: not inside a dagger run dir; say which preset it belongs to with --preset")
    return StudentSource(cfg, located.weights, located.checkpoint)


def trained_student(source: StudentSource, on: str | None = None) -> TrainablePolicy:
    """The student of a checkpoint path, to evaluate or export, in eval mode, on `on` (default runner.device): a π₀
    saved before it had norm stats is refused."""
    policy = student(source.config, on or device(source.config), source.weights)
    if getattr(policy, "needs_norm_stats", False):
        raise CheckpointError(f"{source.weights}: the student has no norm stats (a checkpoint saved before its first "
                              "iteration?); set actor.model.pi0.norm_stats_path")
    policy.module.eval()
    return policy


def resume_checkpoint(run_dir: Path, warn: Callable[[str], None]) -> Loaded:
    """The newest kept checkpoint that reads whole; each broken newer one is one `warn` line naming the bad file.
    None intact is one UsageError line."""
    from dagger_cli.core.engine.run_checkpoint import RunCheckpoint

    found = checkpoints_of(run_dir)
    if not found:
        raise UsageError(f"--resume {run_dir}: no checkpoint to resume from")
    problems = []
    for ckpt in reversed(found):
        try:
            return RunCheckpoint.read(ckpt)
        except CheckpointError as e:
            problems.append(str(e))
            warn(f"{e}; trying the checkpoint before it")
    raise UsageError(f"--resume {run_dir}: no intact checkpoint ({len(found)} kept, each broken; newest: "
                     f"{problems[0]})")


# RUNS
@dataclass
class RunPlan:
    """A run to start or to resume, before anything is built."""

    config: Config
    run_dir: Path
    loaded: Loaded | None
    """a resumed run's checkpoint, read whole"""
    async_mode: bool


def new_run(preset: str, config_file: Path | None, overrides: list[str], run_dir: Path | None,
            async_mode: bool) -> RunPlan:
    """A new run of `preset`: into `run_dir` (which must be new or empty), else a fresh `runs/PRESET/TIME`."""
    cfg = load_config(preset, config_file, overrides)
    if run_dir is not None:
        ensure_new_run_dir(run_dir)
    return RunPlan(cfg, Path(run_dir) if run_dir is not None else default_run_dir(cfg), None, async_mode)


def resumed_run(run_dir: Path, preset: str | None, overrides: list[str], async_mode: bool,
                warn: Callable[[str], None]) -> RunPlan:
    """A run continued from its newest intact checkpoint, with the `--set` changes a resume allows (saved into the
    run dir); async when asked or when it started async."""
    cfg, changed = resume_config(run_dir, overrides)
    if preset is not None and preset != cfg.name:
        raise UsageError(f"--resume {run_dir} is a {cfg.name!r} run, not {preset!r}")
    loaded = resume_checkpoint(run_dir, warn)
    record_resume(run_dir, cfg, changed)
    return RunPlan(cfg, Path(run_dir), loaded, async_mode or run_mode(run_dir) == "async")


@contextlib.contextmanager
def runner(plan: RunPlan, hooks: RunnerHooks, argv: list[str]) -> Iterator:
    """The run's runner, its parts built (async: the rollout workers first, as they build theirs meanwhile; then the
    weights, which fail fast; then the simulator), restored from the plan's checkpoint or with its new run dir made.
    On leaving: the env closed, the workers shut down, and a run that failed before it began leaves no empty dir."""
    cfg, target = plan.config, plan.run_dir
    require_backends(cfg.runner.logger.logger_backends)  # a missing logger package: one line, before anything is built
    made = workers = None
    try:
        if plan.async_mode:
            from dagger_cli.core.cluster.async_runner import RolloutWorkerGroup

            workers = RolloutWorkerGroup(cfg, rollout_components).start()
        import torch

        torch.manual_seed(cfg.seed)
        on = device(cfg)
        trainee = student(cfg, on)
        if workers is not None:
            from dagger_cli.core.cluster.async_runner import AsyncRunner

            workers.wait_ready()  # a worker's bad expert checkpoint or missing simulator fails here
            samples = seed_samples(cfg, trainee.action_shape, hooks.phase) if plan.loaded is None else None
            built = AsyncRunner(cfg, target, trainee, workers, hooks=hooks, seed_samples=samples)
        else:
            from dagger_cli.core.engine.runner import SyncRunner

            teacher = expert(cfg, on)
            samples = seed_samples(cfg, trainee.action_shape, hooks.phase) if plan.loaded is None else None
            made = env(cfg)
            built = SyncRunner(cfg, target, made, trainee, teacher, hooks=hooks, seed_samples=samples)
        if plan.loaded is not None:
            built.state.restore(plan.loaded)
        else:
            create_run_dir(target, cfg, argv, mode="async" if plan.async_mode else "sync")
        yield built
    finally:
        if made is not None:
            made.close()
        if workers is not None:
            workers.shutdown()
        if plan.loaded is None and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
