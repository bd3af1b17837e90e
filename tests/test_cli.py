"""The command line without a simulator: help, presets, completion, and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dagger(*args, env=None, cwd=None):
    """Runs the installed console script as a user would."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DAGGER_DEBUG", None)
    return subprocess.run(["dagger", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def assert_eval_reproduces(run_dir, summary: dict, episodes: int) -> dict:
    """`dagger eval --ckpt RUN` gives the run's final evaluation: the same weights, seeds and deterministic
    student, so the same successes and interval."""
    result = dagger("eval", "--ckpt", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["episodes"] == episodes
    assert data["success_once"] == summary["student_final_sr"]
    assert data["success_at_end"] == summary["student_final_success_at_end"]
    assert data["success_once_ci95"] == summary["student_final_ci95"]
    return data


NO_HEAVY_IMPORTS = """
import sys
sys.argv = {argv!r}
from dagger_cli.cli.main import main
try:
    main()
except SystemExit:
    pass
heavy = [m for m in ("torch", "mani_skill", "sapien", "tensorboard", "gymnasium", "wandb") if m in sys.modules]
print("HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["dagger", "--help"], ["dagger", "train", "--help"], ["dagger", "presets"]])
def test_help_and_presets_import_nothing_heavy(argv):
    result = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS.format(argv=argv)], capture_output=True, text=True)
    assert "HEAVY []" in result.stderr, result.stderr


def test_completion_lists_presets_without_heavy_imports():
    env = {"_DAGGER_COMPLETE": "complete_bash", "COMP_WORDS": "dagger train pi", "COMP_CWORD": "2"}
    result = dagger(env=env)
    assert result.returncode == 0 and result.stdout.split() == ["pick-cube", "pick-cube-pi0"]
    code = NO_HEAVY_IMPORTS.format(argv=["dagger"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert "HEAVY []" in result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shipped_completion_scripts_are_current(shell):
    env = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    result = dagger("--show-completion", shell, env=env)
    assert result.returncode == 0
    assert (ROOT / "completions" / f"dagger.{shell}").read_text() == result.stdout


def test_install_completion_writes_the_bash_script(tmp_path):
    env = {"HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    result = dagger("--install-completion", "bash", env=env)
    assert result.returncode == 0, result.stderr
    assert "_DAGGER_COMPLETE" in (tmp_path / ".bash_completions" / "dagger.sh").read_text()
    assert "dagger.sh" in (tmp_path / ".bashrc").read_text()


def test_help_shows_examples():
    result = dagger("train", "--help")
    assert result.returncode == 0
    assert "Examples" in result.stdout and "dagger train pick-cube" in result.stdout and "--resume" in result.stdout


def test_presets_list_and_show():
    listed = dagger("presets", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)["presets"]
    assert any(r["name"] == "pick-cube" and "PickCube" in r["description"] for r in rows)
    shown = dagger("presets", "show", "pick-cube")
    assert shown.returncode == 0 and "control_mode: pd_joint_delta_pos" in shown.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "pick-cub"], 2, "unknown preset 'pick-cub' (did you mean 'pick-cube'?)"),
        (["train"], 2, "missing PRESET"),
        (["train", "pick-cube", "--set", "runner.max_epoch=3"], 2, "did you mean 'runner.max_epochs'"),
        (["train", "pick-cube", "--set", "algorithm.dagger.init_beta=2"], 2, "algorithm.dagger.init_beta"),
        (["train", "pick-cube", "--set", "novalue"], 2, "expected KEY=VALUE"),
        (["train", "pick-cube", "--config", "/nonexistent.yaml"], 2, "/nonexistent.yaml: no such file"),
        (["train", "--resume", "/nonexistent-run"], 2, "no such run dir"),
        (["eval", "--ckpt", "/nonexistent.safetensors"], 2, "no such file or directory"),
        (["check", "pick-cube", "--set", "env.num_envs=-1"], 2, "env.num_envs"),
        (["report", "/nonexistent-run"], 2, "no such run dir"),
        (["presets", "show", "nope"], 2, "unknown preset"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(args, code, message):
    result = dagger(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_yaml_overlay_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runner:\n  max_epochs: [1\n")
    result = dagger("train", "pick-cube", "--config", str(bad), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"{bad}: line" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing created for a failed start


def test_eval_of_a_bare_weights_file_needs_a_preset(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    result = dagger("eval", "--ckpt", str(weights))
    assert result.returncode == 2 and "--preset" in result.stderr


def test_existing_run_dir_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("important")
    result = dagger("train", "pick-cube", "--run-dir", str(tmp_path))
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "important"


def test_missing_expert_checkpoint_is_named(tmp_path):
    result = dagger(
        "train", "pick-cube", "--run-dir", str(tmp_path / "r"),
        "--set", "rollout.expert_model.model_type=mlp", "--set", f"runner.expert_ckpt_path={tmp_path}/expert.pt",
    )
    assert result.returncode == 2
    assert f"{tmp_path}/expert.pt: no such checkpoint file" in result.stderr
    assert not (tmp_path / "r").exists()


def test_debug_shows_the_traceback():
    result = dagger("--debug", "train", "pick-cub")
    assert result.returncode != 0 and "Traceback" in result.stderr


CHATTY_LIBRARIES = """
import logging, os, subprocess, sys, warnings
from dagger_cli.cli.check import library_output_captured

with library_output_captured() as captured:
    print("[info] print to stdout")
    print("[robosuite WARNING] print to stderr", file=sys.stderr)
    sys.stdout.flush()
    os.write(1, b"C-level write to fd 1\\n")
    os.write(2, b"C-level write to fd 2\\n")
    subprocess.run([sys.executable, "-c", "print('a child process started meanwhile')"])
    warnings.warn("a library's Python warning")
    logging.getLogger("robosuite").warning("a library's log record")
print("✓ a check's line")
with open(sys.argv[1], "w") as f:
    f.write(captured())
"""
CHATTER = ["print to stdout", "print to stderr", "C-level write to fd 1", "C-level write to fd 2",
           "a child process started meanwhile", "a library's Python warning", "a library's log record"]


@pytest.mark.parametrize("debug", [False, True])
def test_check_captures_what_libraries_print_unless_debug(tmp_path, debug):
    # GIVEN code that prints every way a simulator library does while a check runs
    env = {**os.environ, "DAGGER_DEBUG": "1" if debug else ""}
    result = subprocess.run([sys.executable, "-c", CHATTY_LIBRARIES, str(tmp_path / "captured")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    captured = (tmp_path / "captured").read_text()
    output = result.stdout + result.stderr
    if debug:  # THEN with --debug it all passes through
        assert all(c in output for c in CHATTER) and captured == ""
    else:  # THEN without, none of it is between check's lines, and all of it was captured
        assert result.stdout == "✓ a check's line\n" and result.stderr == ""
        assert all(c in captured for c in CHATTER), captured


def test_check_prints_a_warning_line_that_passes(monkeypatch, capsys):
    import dataclasses

    from dagger_cli.cli import check as check_command
    from dagger_cli.core import registry
    from dagger_cli.core.registry import CheckWarning

    # GIVEN checks that pass, the student's with a warning (as a full-size π₀ on a CPU gets)
    real = registry.env_adapter
    monkeypatch.setattr(registry, "env_adapter",
                        lambda name, key="env.type": dataclasses.replace(real(name, key), probes=None))
    monkeypatch.setattr(check_command, "_torch", lambda cfg, state: "torch ok")
    monkeypatch.setattr(check_command, "_env", lambda cfg, state: "env ok")
    monkeypatch.setattr(check_command, "_model", lambda cfg, state, student:
                        CheckWarning("too slow to use on this CPU") if student else "expert ok")
    # WHEN dagger check runs
    check_command.check("pick-cube")
    lines = capsys.readouterr().out.splitlines()
    # THEN the student's line is marked ! (not ✓), the others ✓, and the command succeeds (no typer.Exit)
    assert "! student: too slow to use on this CPU" in lines and "✓ expert: expert ok" in lines
    assert not any(line.startswith("✓ student") for line in lines)
    # AND --json says ok with the warning flagged
    check_command.check("pick-cube", json_mode=True)
    data = json.loads(capsys.readouterr().out)
    student = next(c for c in data["checks"] if c["name"] == "student")
    assert data["ok"] and student["ok"] and student["warning"]
    assert not next(c for c in data["checks"] if c["name"] == "expert")["warning"]
