"""README's two opening commands: what they name exists, and CI runs the test command exactly as written."""

import re
import tomllib
from pathlib import Path

from dagger_cli.core.config import load_config, preset_names

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line.strip() == "```bash"][:2]


def extras(command: str) -> set[str]:
    (spec,) = re.findall(r"pip install -e '\.\[([a-z0-9,]+)\]'", command)
    return set(spec.split(","))


def test_the_main_job_trains_a_bundled_preset_with_extras_the_project_declares():
    train, tests = readme_commands()
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert extras(train) <= declared and extras(tests) <= declared
    preset = re.fullmatch(r".* && dagger train ([a-z0-9-]+)", train).group(1)
    assert preset in preset_names()
    cfg = load_config(preset)
    assert cfg.env.type in extras(train)  # the simulator the main job needs is installed by its command
    assert "test" in extras(tests) and "python -m pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = readme_commands()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == tests
    assert re.search(r"python -m pytest .*--durations=\d+", tests)  # every CI log shows where the suite's time goes
