"""Imported once in the forkserver process so that every LIBERO worker starts with robosuite and LIBERO loaded."""

from dagger_cli.envs._workers import prepare_worker_process
from dagger_cli.envs.libero.env import import_libero

prepare_worker_process()
import_libero()
