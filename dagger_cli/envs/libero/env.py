"""LIBERO adapter (`libero.libero` API: `benchmark`, `OffScreenRenderEnv`), envs in forkserver worker processes.

- Rendering: EGL where an NVIDIA GPU is present, Mesa's OSMesa otherwise, chosen before robosuite is imported.
- Reset seed s selects task `s % n_tasks` and init state `(s // n_tasks) % 50`: evaluation seeds 0, 1, 2, ... give
  RLinf's fixed, task-interleaved protocol; a new task rebuilds the worker's env.
- `hard_reset` (LIBERO's default) rebuilds the MuJoCo model at every reset; without it only the data is reset
  before the init state is set. `fast_render` turns multisampling and reflections off (≈2× cheaper renders on a CPU,
  pixels slightly different: train and evaluate alike).
- After each reset: `settle_steps` steps of zero motion with the gripper open (RLinf: 15).
- An action is a chunk of `num_action_chunks` 7-D steps; cameras render only on the chunk's last step (the only
  observation the policy reads), through robosuite's sensor functions, so the images are pixel-identical to
  rendering every step. Images are rotated 180° (agentview and wrist), as openpi and RLinf do.
- Observation: `image`, `wrist_image` (uint8 H×W×3), `state` = eef pos + axis-angle + gripper qpos (8-D),
  `prompt` = the task's language instruction. Success = the task's goal predicate, checked every step.
- With `env.scripted_expert`, each worker also computes the scripted expert's chunk for the state each observation
  shows (`expert.py`: simulated open loop without rendering, then undone) and returns it as the privileged
  observation `expert_chunk`, which only `ScriptedExpertLabels` reads (the engine strips it for everyone else).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import OrderedDict
from functools import partial

import gymnasium as gym
import numpy as np

from dagger_cli.core.errors import EnvUnavailableError
from dagger_cli.envs._workers import WorkerEnvMixin, start_workers

MUJOCO_RANGE = ">=2.3.7,<3.4"
"""MuJoCo versions under which LIBERO's saved init states settle as recorded (the `libero` extra pins it): from 3.4,
a box-box contact fix tips libero_spatial task 5's bowl onto its ramekin's rim during reset (RLinf #1460)"""
EXPERT_KEY = "expert_chunk"
"""the privileged observation with the scripted expert's label chunk, computed in the worker from the simulator"""
CAMERAS = {"image": "agentview_image", "wrist_image": "robot0_eye_in_hand_image"}
WORKER_PARTS = ("reset", "physics", "render", "expert")
"""where an env worker's time goes (`LiberoTaskEnv.take_seconds`): reset and settling, stepping, camera renders,
the scripted expert's open-loop chunk"""
SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)


def choose_renderer() -> str:
    """Sets MUJOCO_GL / PYOPENGL_PLATFORM (unless the user did): egl with an NVIDIA GPU, osmesa otherwise."""
    if "MUJOCO_GL" not in os.environ:
        gpu = os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia/version")
        os.environ["MUJOCO_GL"] = "egl" if gpu else "osmesa"
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    return os.environ["MUJOCO_GL"]


def import_libero():
    """The `libero.libero` benchmark module; a missing install is a one-line error."""
    choose_renderer()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # robosuite and LIBERO print on import
            from libero.libero import benchmark
    except ImportError as e:
        raise EnvUnavailableError(
            f"LIBERO is not installed ({e.name or e}); install it with: pip install 'dagger-cli[libero]'"
        ) from None
    return benchmark


def mujoco_outside_range() -> str | None:
    """A one-line problem when the installed MuJoCo is outside `MUJOCO_RANGE`, else None."""
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    installed = version("mujoco")
    if SpecifierSet(MUJOCO_RANGE).contains(installed, prereleases=True):
        return None
    return (
        f"mujoco {installed} is outside {MUJOCO_RANGE}: LIBERO's init states do not settle as recorded (task 5's "
        f"bowl tips off its ramekin, published checkpoints drop from ≈98% to ≈12% there); "
        f"pip install 'mujoco{MUJOCO_RANGE}'"
    )


def load_suite(benchmark, name: str):
    with contextlib.redirect_stdout(sys.stderr):  # "[info] Applying task order ..."
        return benchmark.get_benchmark_dict()[name]()


def task_of(seed: int, n_tasks: int) -> tuple[int, int]:
    """(task id, init state id) for a reset seed."""
    return seed % n_tasks, (seed // n_tasks) % 50


def task_share(env_index: int, num_envs: int, n_tasks: int) -> range:
    """The contiguous block of tasks that env `env_index` trains on under `env.task_affinity` (the blocks evaluation
    deals the envs, `rollout.episode_order`, fall about the same way)."""
    blocks = min(num_envs, n_tasks)
    b = env_index % blocks
    return range(b * n_tasks // blocks, (b + 1) * n_tasks // blocks)


def seed_in_share(seed: int, share: range, n_tasks: int) -> int:
    """A reset seed in `share` for a drawn training seed: the drawn seed's init state and fixture seed's magnitude,
    and a task uniform over the share (for uniformly drawn seeds)."""
    high = seed // n_tasks
    return high * n_tasks + share[(high // 50) % len(share)]


def skip_repeated_forward(raw) -> None:
    """Every control substep of robosuite 1.4's `step` runs `sim.forward()` and then `_pre_action`, whose OSC
    controller (`update`) runs `sim.forward()` again on the same state; the second is made a no-op. The forward
    dynamics of a substep are then computed once besides `sim.step`'s own, bit for bit the same (nothing `_pre_action`
    does before it changes what forward reads), ≈30% less physics for the env and the expert's open-loop chunks."""
    pre_action = raw._pre_action

    def after_forward(action, policy_step=False):
        sim = raw.sim  # a hard reset makes a new one
        sim.forward = _no_forward
        try:
            pre_action(action, policy_step=policy_step)
        finally:
            del sim.forward

    raw._pre_action = after_forward


def _no_forward() -> None:
    pass


class LiberoTaskEnv(gym.Env):
    """One LIBERO env in a worker process, any task of the suite (chunked actions)."""

    def __init__(self, suite: str, image_size: int, settle_steps: int, chunk: int, render_every_step: bool = False,
                 scripted_expert: bool = False, hard_reset: bool = True, fast_render: bool = False, task_sims: int = 1):
        self.suite = load_suite(import_libero(), suite)
        self.image_size, self.settle_steps, self.chunk = image_size, settle_steps, chunk
        self.hard_reset, self.fast_render = hard_reset, fast_render
        self.render_every_step = render_every_step
        image = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        spaces = {"image": image, "wrist_image": image, "state": gym.spaces.Box(-np.inf, np.inf, (8,), np.float32)}
        if scripted_expert:
            spaces[EXPERT_KEY] = gym.spaces.Box(-1.0, 1.0, (chunk, 7), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (chunk, 7), np.float32)
        self._expert = None
        self.labelling = True
        """compute the expert's chunk (else zeros): off while a policy that cannot read it is evaluated"""
        if scripted_expert:
            from dagger_cli.envs.libero.expert import LiberoSpatialExpert

            self._expert = LiberoSpatialExpert()
        self._env = None
        self._task: int | None = None
        self._first_reset = None
        self.task_sims = task_sims
        self._kept: OrderedDict[int, tuple] = OrderedDict()
        """task id -> (env, init states, first-reset snapshot) of the built tasks other than the current one, the
        least recently used first"""
        self.skip_repeated_forward = True
        """a control substep computes MuJoCo's forward dynamics once before stepping, not twice
        (`skip_repeated_forward`)"""
        self._render = True
        self.seconds = dict.fromkeys(WORKER_PARTS, 0.0)
        """time spent per part since the last `take_seconds()`"""

    # TASKS AND RENDERING
    def _switch(self, task_id: int) -> None:
        """Makes `task_id` the current task: its kept simulation if there is one, else a new one. The one it replaces
        is kept, at most `task_sims` in all (the least recently used closed first, before anything is built)."""
        target = self._kept.pop(task_id, None)
        if self._env is not None:
            self._kept[self._task] = (self._env, self._init_states, self._first_reset)
            self._env = None
        while len(self._kept) >= self.task_sims:
            self._kept.popitem(last=False)[1][0].close()
        if target is None:
            self._make(task_id)
            return
        self._env, self._init_states, self._first_reset = target
        self._task = task_id
        context = self._env.env.sim._render_context_offscreen
        if context is not None:  # robosuite renders into whichever GL context is current
            context.gl_ctx.make_current()

    def _make(self, task_id: int) -> None:
        from libero.libero import get_libero_path
        from libero.libero.envs import OffScreenRenderEnv

        task = self.suite.get_task(task_id)
        bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        self._env = OffScreenRenderEnv(
            bddl_file_name=bddl, camera_heights=self.image_size, camera_widths=self.image_size,
            hard_reset=self.hard_reset,
        )
        self._env.seed(0)
        if self.skip_repeated_forward:
            skip_repeated_forward(self._env.env)
        self._init_states = self.suite.get_task_init_states(task_id)
        self._task = task_id
        self._first_reset = None

    def _as_first_reset(self) -> None:
        """Without a hard reset, puts back the sim, controller and gripper state of this task env's first reset (a
        soft reset alone leaves them as the last episode did: 1e-3 differences after settling), so an episode
        depends on its seed alone."""
        if self.hard_reset:
            return
        from dagger_cli.envs.libero.expert import SimSnapshot

        if self._first_reset is None:
            self._first_reset = SimSnapshot(self._env)
        else:
            self._first_reset.restore()

    def _cheap_rendering(self) -> None:
        """Multisampling and reflections off in the offscreen context (re-done after every reset: a hard reset
        makes a new one)."""
        import mujoco

        context = self._env.env.sim._render_context_offscreen
        if context is None or getattr(context, "_dagger_fast", False):
            return
        context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        context.model.vis.quality.offsamples = 0
        context.con.free()
        context._set_mujoco_context_and_buffers()
        context._dagger_fast = True

    def _wrap_cameras(self) -> None:
        """Camera sensors return their last image unless `self._render` is set (re-done after every reset)."""
        observables = self._env.env._observables
        for name in CAMERAS.values():
            observable = observables[name]
            sensor = observable._sensor
            if getattr(sensor, "_dagger_lazy", False):
                continue

            def lazy(obs_cache, sensor=sensor, observable=observable):
                if self._render or self.render_every_step:
                    start = time.perf_counter()
                    image = sensor(obs_cache)
                    self.seconds["render"] += time.perf_counter() - start
                    return image
                return observable._current_observed_value

            lazy.__modality__ = sensor.__modality__
            lazy._dagger_lazy = True
            observable._sensor = lazy

    def _obs(self, raw: dict) -> dict:
        from robosuite.utils.transform_utils import quat2axisangle

        state = np.concatenate(
            [raw["robot0_eef_pos"], quat2axisangle(np.array(raw["robot0_eef_quat"])), raw["robot0_gripper_qpos"]]
        )
        obs = {
            "image": np.ascontiguousarray(raw[CAMERAS["image"]][::-1, ::-1]),
            "wrist_image": np.ascontiguousarray(raw[CAMERAS["wrist_image"]][::-1, ::-1]),
            "state": state.astype(np.float32),
        }
        if self._expert is not None and not self.labelling:
            obs[EXPERT_KEY] = np.zeros((self.chunk, 7), dtype=np.float32)
        elif self._expert is not None:  # what the expert does from this state, simulated and undone
            from dagger_cli.envs.libero.expert import expert_chunk

            start = time.perf_counter()
            obs[EXPERT_KEY] = expert_chunk(self._expert, self._env, self.chunk).astype(np.float32)
            self.seconds["expert"] += time.perf_counter() - start
        return obs

    def take_seconds(self) -> dict[str, float]:
        """Seconds per part (reset, physics, render, expert) since the last call; the counters restart."""
        out, self.seconds = self.seconds, dict.fromkeys(WORKER_PARTS, 0.0)
        return out

    # GYMNASIUM API
    @contextlib.contextmanager
    def _timed(self, part: str):
        """Adds the block's seconds to `self.seconds[part]`, less the camera renders it made (counted as `render`)."""
        start, rendered = time.perf_counter(), self.seconds["render"]
        yield
        self.seconds[part] += time.perf_counter() - start - (self.seconds["render"] - rendered)

    def reset(self, *, seed: int | None = None, options=None):
        task, init = task_of(int(seed or 0), self.suite.n_tasks)
        with self._timed("reset"):
            if task != self._task:
                self._switch(task)
            self._env.seed(int(seed or 0))  # LIBERO re-places the fixtures at every reset, from numpy's global stream
            self._env.reset()
            self._as_first_reset()
            self._wrap_cameras()
            if self.fast_render:
                self._cheap_rendering()
            self._render = self.settle_steps == 0
            raw = self._env.set_init_state(self._init_states[init])
            for k in range(self.settle_steps):
                self._render = k == self.settle_steps - 1
                raw, _, _, _ = self._env.step(SETTLE_ACTION)
        return self._obs(raw), {"task_id": task}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, 7)
        success_bits = 0
        raw = None
        with self._timed("physics"):
            for c, action in enumerate(actions):
                self._render = c == len(actions) - 1
                raw, _, done, _ = self._env.step(action)
                if done:
                    success_bits |= 1 << c
        return self._obs(raw), 0.0, False, False, {"success_bits": success_bits}

    def close(self):
        for env, _, _ in self._kept.values():
            env.close()
        self._kept.clear()
        if self._env is not None:
            self._env.close()
            self._env = None


def _make_worker_env(suite: str, image_size: int, settle_steps: int, chunk: int, scripted_expert: bool,
                     hard_reset: bool, fast_render: bool, task_sims: int):
    return LiberoTaskEnv(suite, image_size, settle_steps, chunk, scripted_expert=scripted_expert,
                         hard_reset=hard_reset, fast_render=fast_render, task_sims=task_sims)


class ScriptedExpertLabels:
    """The scripted expert (`expert.LiberoSpatialExpert`) as a policy: the label chunk its env worker computed from
    the simulator's state, read from the privileged observation `EXPERT_KEY`."""

    reads_privileged = True

    def __init__(self, chunk: int):
        self.action_shape = (chunk, 7)

    def act(self, obs) -> np.ndarray:
        return np.asarray(obs[EXPERT_KEY], dtype=np.float32)


class LiberoVecEnv(WorkerEnvMixin):
    """`VecEnv` over LIBERO tasks in gymnasium AsyncVectorEnv workers."""

    def __init__(self, cfg, num_action_chunks: int):
        benchmark = import_libero()
        suites = benchmark.get_benchmark_dict()
        if cfg.task not in suites:
            raise EnvUnavailableError(f"env.task: LIBERO has no suite {cfg.task!r} (known: {', '.join(sorted(suites))})")
        suite = load_suite(benchmark, cfg.task)
        self.prompts = [suite.get_task(i).language for i in range(suite.n_tasks)]
        self.task_names = [suite.get_task(i).name for i in range(suite.n_tasks)]
        self.num_envs = cfg.num_envs
        self.num_action_chunks = num_action_chunks
        self.action_dim = 7
        self.obs_shape = (8,)
        self.backend = os.environ["MUJOCO_GL"]
        self._task_ids = np.zeros(self.num_envs, dtype=np.int64)
        self.task_affinity = cfg.task_affinity
        self.privileged_keys = (EXPERT_KEY,) if cfg.scripted_expert else ()
        make = partial(_make_worker_env, cfg.task, cfg.image_size, cfg.settle_steps, num_action_chunks,
                       cfg.scripted_expert, cfg.hard_reset, cfg.fast_render, cfg.task_sims)
        self._env = start_workers([make] * cfg.num_envs, "dagger_cli.envs.libero._preload", f"LIBERO {cfg.task}")

    @property
    def video_fps(self) -> float:
        """LIBERO controls at 20 Hz; a frame per chunk of `num_action_chunks` steps."""
        return 20.0 / self.num_action_chunks

    def episode_group(self, seed: int) -> int:
        """The task a reset seed picks: evaluation runs each worker's episodes task by task (a new task rebuilds the
        worker's simulation, ≈3–5 s)."""
        return task_of(seed, len(self.prompts))[0]

    def training_seeds(self, seeds: list[int]) -> list[int]:
        """The training reset seeds the envs run for the engine's draw: with `env.task_affinity`, each env's moved
        into its share of the tasks (`task_share`), else the draw itself."""
        if not self.task_affinity:
            return list(seeds)
        n_tasks = len(self.prompts)
        return [seed_in_share(int(s), task_share(i, self.num_envs, n_tasks), n_tasks) for i, s in enumerate(seeds)]

    def episode_tasks(self) -> list[str]:
        """The task of each env's current episode (per-task success in evaluation)."""
        return [self.task_names[t] for t in self._task_ids]

    def worker_seconds(self) -> dict[str, float]:
        """Seconds the workers spent per part since the last call, summed over workers (they run in parallel)."""
        parts = self._env.call("take_seconds")
        return {k: float(sum(p[k] for p in parts)) for k in WORKER_PARTS}

    def compute_privileged(self, on: bool) -> None:
        """Whether the workers compute the scripted expert's chunk (evaluation of the student needs none)."""
        if self.privileged_keys:
            self._env.set_attr("labelling", on)

    def video_frames(self, obs: dict) -> dict[str, np.ndarray]:
        """The two cameras the policy sees: no extra rendering."""
        return {"image": obs["image"], "wrist_image": obs["wrist_image"]}

    def _with_prompts(self, obs: dict) -> dict:
        return {**obs, "prompt": np.array([self.prompts[t] for t in self._task_ids])}

    def reset(self, seeds: list[int], mask: np.ndarray | None = None) -> dict:
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        obs, _ = self._env.reset(seed=[int(s) for s in seeds], options={"reset_mask": mask})
        for i in np.flatnonzero(mask):
            self._task_ids[i] = task_of(int(seeds[i]), len(self.prompts))[0]
        return self._with_prompts(obs)

    def step(self, actions: np.ndarray) -> tuple[dict, np.ndarray]:
        actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, self.num_action_chunks, 7)
        obs, _, _, _, info = self._env.step(actions)
        bits = np.asarray(info["success_bits"], dtype=np.int64)
        success = (bits[:, None] >> np.arange(self.num_action_chunks)) & 1
        return self._with_prompts(obs), success.astype(bool)
