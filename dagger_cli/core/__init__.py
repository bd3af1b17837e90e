"""The DAgger engine, in floors: this package holds what every floor shares (the config schema and its loader, the
registry of adapters, the protocols, the errors); `io` the run directory and its files (atomic writes, checkpoints,
metrics, videos, process status); `engine` DAgger itself (beta, replay, rollout, learner, the sync runner and the
run's state); `cluster` what runs on Ray (the async runner, the data-parallel learner, the local or remote cluster).
Each floor imports only the ones before it, except the engine's one lazy import of the data-parallel learner.

Nothing here imports Typer, a simulator or a concrete model; environments and policies come in through the
protocols in `dagger_cli.core.protocols`.
"""
