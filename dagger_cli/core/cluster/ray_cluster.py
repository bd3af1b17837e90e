"""Ray for the runs that use it (async rollout workers, a data-parallel learner): an embedded local instance, or the
cluster at cluster.ray_address / RAY_ADDRESS, joined with the variables its workers need."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagger_cli.core.config import Config
from dagger_cli.core.errors import DaggerError

KEPT_VERSIONS = 2
"""weights versions a rollout worker keeps: the one it collects with and the one it may still be evaluating"""


def object_store_bytes(cfg: Config) -> int:
    """The embedded object store: cluster.object_store_gib, else room for the weights versions in flight (each
    worker keeps KEPT_VERSIONS, the learner publishes one more) and the trajectories, at least 256 MiB."""
    if cfg.cluster.object_store_gib:
        return int(cfg.cluster.object_store_gib * 2**30)
    from dagger_cli.core.registry import policy_adapter

    adapter = policy_adapter(cfg.actor.model.model_type)
    weights = adapter.weight_bytes(cfg.actor.model) if adapter.weight_bytes else 0
    wanted = (KEPT_VERSIONS + 1) * weights + 256 * 2**20
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(min(wanted, 0.5 * ram))


FORWARDED_ENV = ("DAGGER_HOME", "HF_HOME", "HF_HUB_OFFLINE")
"""variables every rollout worker reads, passed to the workers of a joined cluster with those its adapters name"""


def forwarded_env(cfg: Config) -> dict[str, str]:
    """The variables set here that the run's rollout workers need: the generic ones, and those the env adapter and
    the policy adapters declare (`worker_env`)."""
    from dagger_cli.core.registry import SCRIPTED, env_adapter, policy_adapter

    names = list(FORWARDED_ENV) + list(env_adapter(cfg.env.type).worker_env)
    for model in (cfg.actor.model, cfg.rollout.expert_model):
        if model.model_type != SCRIPTED:
            names += policy_adapter(model.model_type).worker_env
    return {k: os.environ[k] for k in dict.fromkeys(names) if k in os.environ}


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A HOST:PORT nobody listens on is one error line (ray.init would retry for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray:// client addresses: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise DaggerError(f"cannot join the Ray cluster at {address}: nothing answers there ({e.strerror or e}); "
                          "start it with `ray start --head` or fix cluster.ray_address / --ray-address / RAY_ADDRESS") from None


def _token_auth_for_joining() -> None:
    """Ray >= 2.59 clusters want an auth token, and a driver sends its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token) only in token mode, decided when Ray is imported; clusters without auth accept it too."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    found = token or (Path.home() / ".ray" / "auth_token").is_file()
    if found and "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules:
        os.environ["RAY_AUTH_MODE"] = "token"


def connect(cfg: Config, what: str) -> bool:
    """Ray, started here or joined; True when this process started it (and so shuts it down)."""
    address = cfg.cluster.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        _token_auth_for_joining()  # read when Ray is imported
    try:
        import ray
    except ImportError:
        raise DaggerError(f"{what} needs Ray: pip install 'dagger-cli[ray]'") from None
    if ray.is_initialized():
        return False
    if address:
        _join(ray, address, cfg)
        return False
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, namespace="dagger",
             object_store_memory=object_store_bytes(cfg))
    return True


def release(actors: list, owned: bool) -> None:
    """Ends `actors`, and Ray itself when this process started it (`connect` returned True)."""
    import ray

    for actor in actors:
        ray.kill(actor)
    if owned:
        ray.shutdown()


def _join(ray, address: str, cfg: Config) -> None:
    """Connects to a running cluster, passing on the variables its workers need (they would not see them)."""
    _check_reachable(address)
    forwarded = forwarded_env(cfg)
    try:
        ray.init(address=address, namespace="dagger", log_to_driver=False,
                 runtime_env={"env_vars": forwarded} if forwarded else None)
    except (ConnectionError, RuntimeError) as e:
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DaggerError(
            f"cannot join the Ray cluster at {address} ({line}); check the address (cluster.ray_address, "
            "--ray-address, RAY_ADDRESS) and that RAY_AUTH_TOKEN or ~/.ray/auth_token matches the cluster's"
        ) from None
