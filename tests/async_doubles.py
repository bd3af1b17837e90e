"""Rollout-worker builders for tests/test_async.py (imported by Ray workers, so they live in their own module)."""

from contextlib import contextmanager

from conftest import PointEnv, PointExpert, point_config  # noqa: F401  (point_config re-exported for the tests)


class CrashingEnv(PointEnv):
    """Fails on its 100th step, in its third collection of 40 (a simulator crash inside a rollout worker)."""

    def step(self, actions):
        if self.steps >= 99:
            raise RuntimeError("simulated simulator crash")
        return super().step(actions)


def build_point(cfg, worker_id):
    from dagger_cli.policies.mlp import MLPPolicy

    return PointEnv(cfg.env.num_envs), MLPPolicy(cfg.actor.model), PointExpert()


def build_crashing(cfg, worker_id):
    from dagger_cli.policies.mlp import MLPPolicy

    env = CrashingEnv(cfg.env.num_envs) if worker_id == 1 else PointEnv(cfg.env.num_envs)
    return env, MLPPolicy(cfg.actor.model), PointExpert()


@contextmanager
def plain_init():
    """MLPs built inside keep torch's default layer init instead of the orthogonal one: for a 5000-wide student (a QR
    of each 5000² layer, seconds on a CPU) whose values do not matter, as a worker's are replaced by the first weights
    the learner sends."""
    import torch.nn as nn

    orthogonal = nn.init.orthogonal_
    nn.init.orthogonal_ = lambda tensor, gain=1: tensor
    try:
        yield
    finally:
        nn.init.orthogonal_ = orthogonal


def build_point_plain_init(cfg, worker_id):
    """build_point, its student built under `plain_init`."""
    with plain_init():
        return build_point(cfg, worker_id)
