"""Every path through the assembler (`dagger_cli.assembly`) fails in one line naming what is wrong: checkpoint paths
(missing, a run without a checkpoint, bare weights without a preset), weights (corrupt, of the wrong shapes), the env
(sizes that do not fit the models, a simulator that does not start), seed datasets, experts and resumes; and one
corrupt `student.safetensors` reads as the same line whichever way it is reached."""

import pytest
import torch

from conftest import PointEnv, PointExpert, point_config
from dagger_cli import assembly
from dagger_cli.core.errors import CheckpointError, ConfigError, DaggerError, EnvUnavailableError, UsageError
from dagger_cli.core.io.run_dir import create_run_dir, locate
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.policies.mlp import MLPPolicy


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, text
    return text


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-iteration point-env run with its checkpoint."""
    cfg = point_config(**{"runner.max_epochs": 1})
    run_dir = create_run_dir(tmp_path_factory.mktemp("assembly") / "run", cfg, ["test"])
    torch.manual_seed(cfg.seed)
    SyncRunner(cfg, run_dir, PointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), tensorboard=False).run()
    return run_dir


def test_a_run_dir_a_checkpoint_and_its_student_file_mean_the_same_weights(run):
    ckpt = run / "checkpoints" / "iter_000001"
    student = ckpt / "student.safetensors"
    assert locate(run).weights == locate(ckpt).weights == student and locate(student).weights == student
    assert locate(run).run_dir == locate(ckpt).run_dir == run and locate(student).checkpoint is None
    source = assembly.student_source(run, None, [])
    assert (source.weights, source.checkpoint_dir, source.config.runner.max_epochs) == (student, ckpt, 1)
    # AND a warm start from the run dir (runner.ckpt_path) loads that student
    from safetensors.torch import load_file

    warm = assembly.student(point_config(**{"runner.ckpt_path": str(run)}), "cpu").module.state_dict()
    assert all(torch.equal(v, warm[k]) for k, v in load_file(str(student)).items())


@pytest.mark.parametrize("make, needle", [
    (lambda tmp: tmp / "nothing", "no such file or directory"),
    (lambda tmp: create_run_dir(tmp / "fresh", point_config(), ["test"]), "the run has no checkpoint yet"),
    (lambda tmp: (tmp / "w.safetensors").write_bytes(b"") or tmp / "w.safetensors", "--preset"),
])
def test_checkpoint_paths_that_name_no_student_are_one_usage_line(tmp_path, make, needle):
    with pytest.raises(UsageError) as e:
        assembly.student_source(make(tmp_path), None, [])
    assert needle in one_line(e.value) and one_line(e.value).startswith("--ckpt ")


def test_a_corrupt_student_file_is_the_same_line_for_eval_warm_start_and_resume(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    student = copy / "checkpoints" / "iter_000001" / "student.safetensors"
    student.write_bytes(b"\x00" * 10)
    line = f"{student}: not a readable safetensors file"
    # eval and export (the run dir, the checkpoint dir), a warm start (runner.ckpt_path) and a plain weights path
    for path in (copy, student.parent, student):
        source = assembly.student_source(path, "pick-cube" if path == student else None, [])
        with pytest.raises(CheckpointError) as e:
            assembly.trained_student(source, "cpu")
        assert one_line(e.value).startswith(line)
    warm = point_config(**{"runner.ckpt_path": str(copy)})
    with pytest.raises(CheckpointError) as e:
        assembly.student(warm, "cpu")
    assert one_line(e.value).startswith(line)
    # resume: the broken checkpoint is named in the warning and in the one error line
    warned = []
    with pytest.raises(UsageError) as e:
        assembly.resume_checkpoint(copy, warn=warned.append)
    assert line in one_line(e.value) and len(warned) == 1 and warned[0].startswith(line)


def test_weights_of_the_wrong_shapes_name_the_tensor(tmp_path):
    from safetensors.torch import save_file

    wide = MLPPolicy(point_config(**{"actor.model.hidden_dim": 64}).actor.model)
    save_file(wide.module.state_dict(), str(tmp_path / "wide.safetensors"))
    with pytest.raises(CheckpointError) as e:
        assembly.student(point_config(**{"runner.ckpt_path": str(tmp_path / "wide.safetensors")}), "cpu")
    assert "has shape" in one_line(e.value) and "wide.safetensors" in one_line(e.value)


def test_an_expert_checkpoint_that_is_not_there_is_named(tmp_path):
    cfg = point_config(**{"rollout.expert_model.model_type": "mlp", "rollout.expert_model.obs_dim": 2,
                          "rollout.expert_model.action_dim": 1,
                          "runner.expert_ckpt_path": str(tmp_path / "expert.pt")})
    with pytest.raises(CheckpointError) as e:
        assembly.expert(cfg, "cpu")
    assert f"{tmp_path}/expert.pt: no such checkpoint file" in one_line(e.value)


class ClosingPointEnv(PointEnv):
    closed = 0

    def close(self):
        ClosingPointEnv.closed += 1


def test_an_env_that_does_not_fit_the_models_is_one_line_and_closed(monkeypatch):
    monkeypatch.setattr("dagger_cli.envs.make_vec_env", lambda env_cfg, chunks: ClosingPointEnv(env_cfg.num_envs))
    ClosingPointEnv.closed = 0
    with pytest.raises(ConfigError) as e:
        assembly.env(point_config(**{"actor.model.obs_dim": 3}))
    assert one_line(e.value) == "actor.model.obs_dim is 3 but the env's observations are (2,)"
    with pytest.raises(ConfigError) as e:
        assembly.rollout_components(point_config(**{"actor.model.action_dim": 2}), worker_id=1)
    assert one_line(e.value).startswith("actor.model.action_dim is 2 but PickCube-v1 actions have 1")
    assert ClosingPointEnv.closed == 2
    # AND an env that fits is handed over open, with the envs asked for
    env = assembly.env(point_config(), num_envs=1)
    assert env.num_envs == 1 and ClosingPointEnv.closed == 2


def test_a_simulator_that_does_not_start_is_its_own_line(monkeypatch):
    def missing(env_cfg, chunks):
        raise EnvUnavailableError("ManiSkill is not installed; pip install 'dagger-cli[maniskill]'")

    monkeypatch.setattr("dagger_cli.envs.make_vec_env", missing)
    with pytest.raises(EnvUnavailableError) as e:
        assembly.rollout_components(point_config())
    assert one_line(e.value).startswith("ManiSkill is not installed")


def test_a_seed_dataset_that_is_neither_a_folder_nor_a_hub_id_is_one_line(tmp_path):
    cfg = point_config(**{"algorithm.replay_buffer.seed_dataset": str(tmp_path / "no" / "such" / "dataset")})
    with pytest.raises(DaggerError) as e:
        assembly.seed_samples(cfg, (1, 1))
    assert one_line(e.value).startswith("algorithm.replay_buffer.seed_dataset: ")
    assert assembly.seed_samples(point_config(), (1, 1)) is None


def test_a_resume_of_a_run_of_another_preset_or_without_a_checkpoint_is_one_line(run, tmp_path):
    with pytest.raises(UsageError) as e:
        assembly.resumed_run(run, "pick-cube-pi0", [], False, warn=pytest.fail)
    assert "is a 'pick-cube' run, not 'pick-cube-pi0'" in one_line(e.value)
    fresh = create_run_dir(tmp_path / "fresh", point_config(), ["test"])
    with pytest.raises(UsageError) as e:
        assembly.resumed_run(fresh, None, [], False, warn=pytest.fail)
    assert "no checkpoint to resume from" in one_line(e.value)
