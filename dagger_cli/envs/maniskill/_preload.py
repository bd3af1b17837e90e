"""Imported once in the forkserver process so that every ManiSkill env worker starts with ManiSkill loaded.

Workers step one small env each; torch's intra-op threads would only contend with the other workers.
"""

import torch

from dagger_cli.envs._workers import prepare_worker_process
from dagger_cli.envs.maniskill.env import import_maniskill

torch.set_num_threads(1)
prepare_worker_process()
import_maniskill()
