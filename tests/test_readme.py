"""README as the front door, kept true: its two opening commands name what exists and CI runs the test command
exactly as written; its presets table names every bundled preset with what it needs; it stays short; every relative
link in it and in docs/*.md resolves."""

import re
import tomllib
from pathlib import Path

from dagger_cli.core.config_loader import load_config, preset_names

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
    assert re.search(r"python -m pytest .*-n \d+ --dist loadfile", tests)  # two workers, a test file's fixtures once


def section(text: str, title: str) -> list[str]:
    """The lines of the `## title` section of a markdown text."""
    lines = text.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_the_presets_table_names_every_preset_with_its_extras_and_checkpoints():
    from dagger_cli.core.registry import fetch_aliases
    from dagger_cli.core.config_loader import preset_path
    from dagger_cli.policies.pi0.tokenizer import TOKENIZER_FILE

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    aliases = fetch_aliases()
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in section((ROOT / "README.md").read_text(), "Presets") if line.startswith("| `")]
    table = {row[0].strip("`"): row for row in rows}
    assert sorted(table) == sorted(preset_names())
    for name, (_, _, runs_on, install, fetch_cell, _) in table.items():
        cfg, yaml_text = load_config(name), preset_path(name).read_text()
        (spec,) = re.findall(r"\.\[([a-z0-9,]+)\]", install)
        extras = set(spec.split(","))
        assert extras <= declared, name
        if cfg.env.type in declared:
            assert cfg.env.type in extras, f"{name}: the {cfg.env.type} extra"
        for model in (cfg.actor.model.model_type, cfg.rollout.expert_model.model_type):
            if model in declared:
                assert model in extras, f"{name}: the {model} extra"
        assert ("GPU" in runs_on) == (cfg.actor.model.model_type == "pi0" and cfg.actor.model.pi0.variant == "full"), name
        named = set(re.findall(r"`([a-z0-9-]+)`", fetch_cell))
        assert named <= set(aliases), f"{name}: unknown dagger fetch aliases {named - set(aliases)}"
        needed = {a.name for a in aliases.values()
                  if (a.repo_id in yaml_text if a.kind.name != "tokenizer" else TOKENIZER_FILE in yaml_text)}
        assert named == needed, f"{name}: fetch {sorted(needed)}, the table says {sorted(named)}"


def test_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) < 300


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
    titles = re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", t.strip().lower()).replace(" ", "-") for t in titles}


def test_every_relative_link_in_readme_and_docs_resolves():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(docs) > 1
    broken = []
    for doc in docs:
        text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)  # code blocks hold no links
        text = re.sub(r"`[^`\n]*`", "", text)  # nor do code spans
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not this test's business
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
