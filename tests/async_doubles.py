"""Rollout-worker builders for tests/test_async.py (imported by Ray workers, so they live in their own module)."""

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
