"""The DAgger engine: config, beta schedules, replay buffer, rollout, learner, runners, checkpoints, metrics.

Nothing here imports Typer, a simulator or a concrete model; environments and policies come in through the
protocols in `dagger_cli.core.protocols`.
"""
