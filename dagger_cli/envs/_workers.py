"""Simulator worker processes: gymnasium AsyncVectorEnv over forkserver workers with the simulator preloaded."""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing import forkserver

from dagger_cli.core.errors import EnvUnavailableError


def start_forkserver(preload: str) -> None:
    """Starts this process's forkserver with `preload` imported in it (workers then fork already loaded); starting
    it early lets it import while this process imports the same modules."""
    multiprocessing.get_context("forkserver").set_forkserver_preload([preload])
    forkserver.ensure_running()


def start_workers(make_fns: list, preload: str, what: str, in_process: bool = False):
    """One worker per env, or (`in_process`) the envs stepped in this process; episodes are the engine's business,
    so gymnasium's auto-reset is off."""
    import gymnasium as gym

    disabled = gym.vector.AutoresetMode.DISABLED
    try:
        if in_process:
            return gym.vector.SyncVectorEnv(make_fns, autoreset_mode=disabled)
        start_forkserver(preload)
        return gym.vector.AsyncVectorEnv(make_fns, context="forkserver", autoreset_mode=disabled)
    except EnvUnavailableError:
        raise
    except Exception as e:  # a worker that cannot build its env
        raise EnvUnavailableError(f"{what}: cannot start the env workers: {e}") from None


def prepare_worker_process() -> None:
    """For preload modules: library chatter goes to stderr (stdout carries results only), and Ctrl-C, which a
    terminal sends to the whole process group, is left to the main process (it stops after the iteration)."""
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WorkerEnvMixin:
    """close() and garbage collection for adapters holding their workers in `self._env`."""

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            env.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
