"""The small interfaces the engine drives: a batched environment, a policy, and the hooks a front end listens with.

Observations are a numpy array with a leading batch dimension, or a dict of such arrays (image + state policies).
Actions are float arrays shaped (batch, horizon, action_dim) in env units; an env executes the first
`num_action_chunks` steps of the horizon and a label keeps all of it.
"""

from __future__ import annotations

from typing import Any, Protocol, Union

import numpy as np

Obs = Union[np.ndarray, dict[str, np.ndarray]]


class VecEnv(Protocol):
    """A batch of environments whose episodes the engine starts and ends itself (no auto-reset)."""

    num_envs: int
    """batch size"""
    num_action_chunks: int
    """env steps executed per `step` call"""
    action_dim: int
    """size of one env action"""
    obs_shape: tuple[int, ...]
    """shape of one env's observation"""

    def reset(self, seeds: list[int], mask: np.ndarray | None = None) -> Obs:
        """Resets the envs where `mask` is True (all when None) with `seeds[i]`; returns every env's current obs."""
        ...

    def step(self, actions: np.ndarray) -> tuple[Obs, np.ndarray]:
        """Executes `actions[:, :num_action_chunks]`; returns (obs, success of shape (batch, num_action_chunks))."""
        ...

    def close(self) -> None: ...

    # Optional, found with getattr: `episode_tasks() -> list[str]`, the task of each env's current episode
    # (evaluation reports success per task); `video_frames(obs) -> {camera: (batch, H, W, 3) uint8}` and
    # `video_fps`, the frames evaluation videos are made of (asked for only while filming); `privileged_keys`, the
    # dict observation keys only an expert that says so may read (the simulator's own state, or a scripted expert's
    # label computed where the simulator runs): the engine hands them to a policy with `reads_privileged` set and
    # strips them from what the student sees, what the replay buffer stores, and every other policy's input;
    # `compute_privileged(on)`, which evaluation turns off while a policy that cannot read them acts (their values
    # are then zeros); `worker_seconds() -> {part: seconds}`, where the env's workers spent their time since the last
    # call, summed over workers (logged per rollout as `time/rollout_worker_<part>_s`); `episode_group(seed)`, a key
    # of what a reset seed sets up that is costly to change (a LIBERO task): evaluation gives each env its episodes
    # grouped by it; `training_seeds(seeds) -> seeds`, the reset seeds the envs run for the engine's draw of training
    # seeds (env i's at index i; never asked for evaluation's), e.g. each LIBERO worker kept on its share of the tasks.


class Policy(Protocol):
    """Maps a batch of observations to a batch of action chunks, deterministically."""

    action_shape: tuple[int, int]
    """(horizon, action_dim) of every action chunk `act` returns"""

    def act(self, obs: Obs) -> np.ndarray:
        """Returns actions shaped (batch, horizon, action_dim) in env units."""
        ...


class TrainablePolicy(Policy, Protocol):
    """A student: a policy with parameters and a DAgger loss against expert labels.

    Optional: a student that normalises its inputs and labels but has no stats yet sets `needs_norm_stats` and
    implements `fit_norm_stats(obs, expert_actions)`; the runners call it once, with the expert-labelled samples
    of the first `actor.norm_stats_iterations` iterations, train only from then on, and `state_dict` then carries
    the stats.

    Optional: a student whose loss is random (π₀'s flow-matching time and noise) implements
    `loss_noise(batch_size) -> dict of tensors` (each with a leading batch dim: what `loss` draws for that many
    samples) and takes them back as `loss(obs, expert_actions, noise=...)`. The learner draws them where it samples
    the global batch, from torch's global generator (checkpointed), and gives each micro-batch and data-parallel
    rank its rows, so N ranks compute the single learner's gradient.

    Optional: `per_sample_loss(obs, expert_actions[, noise=...])`, each sample's loss (a (batch,) tensor whose mean
    is `loss`), which loss weights by who acted (algorithm.dagger.expert_loss_weight, student_loss_weight) need.
    """

    module: Any
    """the torch.nn.Module holding every trainable parameter"""

    def loss(self, obs: Obs, expert_actions: np.ndarray) -> Any:
        """Mean DAgger loss (a torch scalar) of the student on `obs` against `expert_actions` (env units)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Weights as CPU tensors, under the names the policy's checkpoints use (no shared storage)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RunnerHooks:
    """What a front end wants to hear about a run; the default hears nothing."""

    def phase(self, text: str) -> None:
        """A new phase started (collect, train, eval, save)."""

    def evaluated(self, label: str, result: dict[str, Any]) -> None:
        """An evaluation before training finished (`label`: "initial student" or "expert")."""

    def note(self, text: str) -> None:
        """Something the user should know once (e.g. no video: the env renders no frames)."""

    def iteration_done(self, iteration: int, total: int, metrics: dict[str, float]) -> None:
        """Iteration `iteration` (1-based) of `total` finished with `metrics`."""
