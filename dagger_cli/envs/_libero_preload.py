"""Imported once in the forkserver process so that every LIBERO worker starts with robosuite and LIBERO loaded."""

import os
import signal

from dagger_cli.envs.libero import import_libero

# Workers print library chatter ("[info] Applying task order ...", robosuite warnings); stdout carries results only.
os.dup2(2, 1)

import_libero()

# Ctrl-C reaches the whole process group; the main process stops the run cleanly after the current iteration.
signal.signal(signal.SIGINT, signal.SIG_IGN)
