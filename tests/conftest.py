"""Shared fixtures: a tiny deterministic vector env and its expert, for fast tests of the engine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
"""One torch (OpenMP) thread in this process and every process the tests start (`dagger` commands, env workers),
unless set otherwise: the suite runs several processes at once on a 2-core machine, and OpenMP threads whose core is
busy make each other wait (measured while another job used one core: an MLP update on a 1024 batch took 214 ms on
2 threads, 6 ms on 1; a 4-iteration `dagger train pick-cube` of test_cli_sim 39 s, 13 s). Set before torch loads."""

import numpy as np
import pytest

from dagger_cli.core.config import Config
from dagger_cli.core.config_loader import load_config
from dagger_cli.core.protocols import RunnerHooks
from dagger_cli.policies.mlp.model import MLPPolicy

HAVE_MANISKILL = importlib.util.find_spec("mani_skill") is not None
requires_maniskill = pytest.mark.skipif(not HAVE_MANISKILL, reason="mani-skill is not installed")
def _libero_can_render() -> bool:
    """LIBERO is installed and Mesa's OSMesa (or a GPU's EGL, when MUJOCO_GL=egl) is there to render with."""
    import ctypes.util
    import os

    if importlib.util.find_spec("libero") is None:
        return False
    return os.environ.get("MUJOCO_GL") == "egl" or ctypes.util.find_library("OSMesa") is not None


HAVE_LIBERO = _libero_can_render()
requires_libero = pytest.mark.skipif(not HAVE_LIBERO, reason="LIBERO or OSMesa (apt-get install libosmesa6) missing")
HAVE_PI0 = all(importlib.util.find_spec(m) is not None for m in ("transformers", "sentencepiece"))
requires_pi0 = pytest.mark.skipif(not HAVE_PI0, reason="the pi0 extra (transformers, sentencepiece) is not installed")


class PointEnv:
    """Batch of 1-D points that must reach a goal: obs [position, goal], action a velocity in [-1, 1].

    Success when within 0.05 of the goal. Reset with seed s puts the point and the goal at values drawn from s.
    """

    num_action_chunks = 1
    action_dim = 1
    obs_shape = (2,)

    def __init__(self, num_envs: int = 3):
        self.num_envs = num_envs
        self.state = np.zeros((num_envs, 2), dtype=np.float32)
        self.resets: list[tuple[list[int], np.ndarray]] = []
        self.steps = 0

    def reset(self, seeds, mask=None):
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else mask
        self.resets.append((list(seeds), mask.copy()))
        for i in np.flatnonzero(mask):
            rng = np.random.default_rng(seeds[i])
            self.state[i] = rng.uniform(-1, 1, size=2)
        return self.state.copy()

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        self.state[:, 0] += 0.2 * np.clip(actions[:, 0], -1, 1)
        self.steps += 1
        success = np.abs(self.state[:, 0] - self.state[:, 1]) < 0.05
        return self.state.copy(), success[:, None]

    def close(self):
        pass


class FilmedPointEnv(PointEnv):
    """PointEnv whose episodes name a task (the goal's side) and render a 24×32 frame: the point (white) and the
    goal (red) on a line; a second 24×16 camera shows the distance."""

    video_fps = 10.0

    def episode_tasks(self):
        return ["goal_left" if g < 0 else "goal_right" for g in self.state[:, 1]]

    def video_frames(self, obs):
        n = self.num_envs
        wide = np.zeros((n, 24, 32, 3), np.uint8)
        for i in range(n):
            wide[i, 10:14, int((obs[i, 1] + 1) * 15.5)] = (255, 0, 0)
            wide[i, 10:14, int(np.clip((obs[i, 0] + 1) * 15.5, 0, 31))] = (255, 255, 255)
        near = np.zeros((n, 24, 16, 3), np.uint8)
        near[..., 1] = (255 * np.clip(1 - np.abs(obs[:, 0] - obs[:, 1]), 0, 1)).astype(np.uint8)[:, None, None]
        return {"line": wide, "distance": near}


INSTRUCTIONS = ["go", "reach the goal", "move the point to the goal and stop there",
                "déplace le point jusqu'au but → ✓, puis arrête-toi là, s'il te plaît"]


class PromptPointEnv(PointEnv):
    """PointEnv with dict observations {"state", "prompt"}: each episode's instruction, one of INSTRUCTIONS (2 to 67
    characters), follows from its reset seed, as LIBERO's task does."""

    def __init__(self, num_envs: int = 3):
        super().__init__(num_envs)
        self.prompts = np.array([INSTRUCTIONS[0]] * num_envs, dtype=object)

    def _obs(self, state):
        return {"state": state, "prompt": np.array(self.prompts.tolist())}

    def reset(self, seeds, mask=None):
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else mask
        for i in np.flatnonzero(mask):
            self.prompts[i] = INSTRUCTIONS[seeds[i] % len(INSTRUCTIONS)]
        return self._obs(super().reset(seeds, mask))

    def step(self, actions):
        state, success = super().step(actions)
        return self._obs(state), success


class StateOf:
    """A policy for PromptPointEnv: `inner` on obs["state"], recording every prompt it is shown."""

    def __init__(self, inner):
        self.inner = inner
        self.action_shape = inner.action_shape
        self.module = getattr(inner, "module", None)
        self.prompts: set[str] = set()

    def _state(self, obs):
        self.prompts.update(str(p) for p in obs["prompt"])
        return obs["state"]

    def act(self, obs):
        return self.inner.act(self._state(obs))

    def loss(self, obs, expert_actions):
        return self.inner.loss(self._state(obs), expert_actions)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


class PointExpert:
    """Moves straight to the goal."""

    action_shape = (1, 1)

    def __init__(self):
        self.calls: list[np.ndarray] = []

    def act(self, obs):
        obs = np.asarray(obs)
        self.calls.append(obs.copy())
        return np.clip((obs[:, 1] - obs[:, 0]) / 0.2, -1, 1)[:, None, None].astype(np.float32)


class ConstantPolicy:
    """Always the same action; records what it saw."""

    def __init__(self, value: float):
        self.value = value
        self.action_shape = (1, 1)
        self.calls: list[np.ndarray] = []

    def act(self, obs):
        self.calls.append(np.asarray(obs).copy())
        return np.full((len(obs), 1, 1), self.value, dtype=np.float32)


class StatsFittingMLP(MLPPolicy):
    """An MLP student that starts without norm stats, as a new task's π₀ does: it records what it is fitted on, and
    its weights then."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.needs_norm_stats = True
        self.initial = {k: v.clone() for k, v in self.module.state_dict().items()}
        self.fitted: list[tuple[np.ndarray, np.ndarray, dict]] = []

    def fit_norm_stats(self, obs, expert_actions):
        weights = {k: v.clone() for k, v in self.module.state_dict().items()}
        self.fitted.append((np.array(obs), np.array(expert_actions), weights))
        self.needs_norm_stats = False


class StopAfter(RunnerHooks):
    """Runner hooks that request a clean stop after iteration `n` (as a first Ctrl-C does)."""

    def __init__(self, n):
        self.n, self.runner = n, None

    def iteration_done(self, iteration, total, metrics):
        if iteration == self.n:
            self.runner.state.progress.request_stop()


def straight_and_resumed(make_runner, run_dir, stop_after: int):
    """(an uninterrupted run in run_dir/a, a run in run_dir/b stopped after iteration `stop_after` then resumed from
    its last checkpoint by a new runner), both run to their end; `make_runner(dir, hooks=None)` builds a runner."""
    from dagger_cli.core.io import checkpoint

    straight = make_runner(run_dir / "a")
    straight.run()
    hooks = StopAfter(stop_after)
    first = make_runner(run_dir / "b", hooks)
    hooks.runner = first
    first.run()
    resumed = make_runner(run_dir / "b")
    resumed.state.restore(checkpoint.list_checkpoints(run_dir / "b" / "checkpoints")[-1])
    resumed.run()
    return straight, resumed


def point_config(**overrides) -> Config:
    """A small config for PointEnv (obs 2, action 1) with `--set`-style overrides."""
    sets = [
        "actor.model.obs_dim=2",
        "actor.model.action_dim=1",
        "actor.model.hidden_dim=32",
        "env.max_episode_steps=20",
        "env.max_steps_per_rollout_epoch=40",
        "env.eval.num_episodes=6",
        "algorithm.replay_buffer.min_buffer_size=50",
        "algorithm.replay_buffer.sample_window_size=500",
        "actor.update_epoch=30",
        "actor.global_batch_size=64",
        "actor.micro_batch_size=32",
        "runner.max_epochs=4",
        "runner.val_check_interval=0",  # the student evaluated after the last iteration only, whatever pick-cube does
        "env.eval.interim_episodes=0",
        "runner.device=cpu",
    ] + [f"{k}={v}" for k, v in overrides.items()]
    return load_config("pick-cube", overrides=sets)


# π₀: a tokenizer trained here and tiny random checkpoints laid out as RLinf's
PROMPTS = [
    "pick up the black bowl between the plate and the ramekin and place it on the plate",
    "pick up the black bowl next to the cookie box and place it on the plate",
    "put the bowl on the stove",
    "adjust the bottle",
]


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory):
    """A SentencePiece model trained here on a few instructions (the PaliGemma one cannot be downloaded)."""
    from dagger_cli.policies.pi0.testing import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tok"), PROMPTS)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory, tokenizer_path):
    """A tiny random π₀ laid out as RLinf's checkpoints: model.safetensors + <asset_id>/norm_stats.json."""
    from dagger_cli.policies.pi0.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("pi0"))


@pytest.fixture(scope="session")
def robotwin_checkpoint_dir(tmp_path_factory, tokenizer_path):
    """A tiny random π₀ with RoboTwin's 14-D norm stats under physical-intelligence/robotwin."""
    from dagger_cli.policies.pi0.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("pi0-robotwin"), asset="physical-intelligence/robotwin",
                                state_dim=14, action_dim=14)


FAKE_ROBOTWIN = Path(__file__).resolve().parent / "fake_robotwin"
"""A stand-in RoboTwin runtime with the real VectorEnv contract: point ROBOTWIN_PATH at it."""


@pytest.fixture
def point_env():
    return PointEnv()


# RAY: one local instance for the in-process Ray tests
SHARED_RAY = {"num_cpus": 2, "num_gpus": 2, "include_dashboard": False, "log_to_driver": False,
              "namespace": "dagger-tests", "object_store_memory": 100 * 1024**2,
              "runtime_env": {"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent)}}}
"""2 CPUs; 2 GPUs advertised only (CPU work asks for none; the learner ranks' GPU checks count them); this folder on
the workers' PYTHONPATH (tests/async_doubles.py)"""
_shared_ray: dict = {}


@pytest.fixture
def shared_ray():
    """The local Ray (SHARED_RAY) of the tests that use Ray in this process (test_async.py,
    test_distributed_learner.py; under pytest-xdist, in each worker that runs one of those files): started by the first
    of them, kept for the next, and shut down after the last. They run one after another (pytest_collection_modifyitems
    below). A test that needs a Ray of its own (sized from its
    model, a cluster joined by address, `dagger train --async` in a subprocess) does not use it."""
    ray = pytest.importorskip("ray")
    if not (ray.is_initialized() and _shared_ray.get("gcs") == ray.get_runtime_context().gcs_address):
        if ray.is_initialized():
            ray.shutdown()
        ray.init(**SHARED_RAY)
        _shared_ray["gcs"] = ray.get_runtime_context().gcs_address
    return ray


def pytest_collection_modifyitems(config, items):
    """The tests that use `shared_ray` run together, where the first of them is, so that one Ray serves them all."""
    users = [item for item in items if "shared_ray" in getattr(item, "fixturenames", ())]
    if users:
        first = items.index(users[0])
        rest = [item for item in items if "shared_ray" not in getattr(item, "fixturenames", ())]
        items[:] = rest[:first] + users + rest[first:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    uses = "shared_ray" in getattr(item, "fixturenames", ())
    if uses and (nextitem is None or "shared_ray" not in getattr(nextitem, "fixturenames", ())) and _shared_ray:
        import ray

        _shared_ray.clear()
        if ray.is_initialized():
            ray.shutdown()
