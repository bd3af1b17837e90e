"""Imported once in the forkserver process so that every ManiSkill env worker starts with ManiSkill loaded.

Workers step one small env each; torch's intra-op threads would only contend with the other workers.
"""

import os
import signal

import torch

from dagger_cli.envs.maniskill import import_maniskill

torch.set_num_threads(1)
os.dup2(2, 1)  # workers' library output goes to stderr; stdout carries results only
import_maniskill()

# Ctrl-C in a terminal reaches the whole process group; the workers leave it to the main process, which stops the
# run cleanly after the current iteration.
signal.signal(signal.SIGINT, signal.SIG_IGN)
