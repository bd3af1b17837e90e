"""`dagger fetch` with the real huggingface_hub client against a small fake Hub on 127.0.0.1 (`fake_hub.py`)."""

import errno
import hashlib
import io
import json
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_hub import Hub, fake_hub
from test_cli import dagger

LIBERO = "RLinf/RLinf-Pi0-LIBERO-Spatial-Object-Goal-SFT"
TOKENIZER = "RLinf/openpi_tokenizer"
EXPERT = "RLinf/RLinf-Pi0-RoboTwin-PPO-adjust_bottle"
NO_STATS = "acme/pi0-no-stats"
GATED = "acme/gated-pi0"
BROKEN = "acme/broken"


def safetensors_bytes() -> bytes:
    """A valid one-tensor safetensors file (float32 [1.0, 2.0]), written by hand."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0)


WEIGHTS = safetensors_bytes()
NORM_STATS = json.dumps(
    {"norm_stats": {"state": {"mean": [0.0], "std": [1.0]}, "actions": {"mean": [0.0], "std": [1.0]}}}
)
NORM_STATS = NORM_STATS.encode()
SPM = b"\x0a\x0b\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02fake-sentencepiece"

REPOS = {
    LIBERO: {"model.safetensors": WEIGHTS, "physical-intelligence/libero/norm_stats.json": NORM_STATS},
    TOKENIZER: {"big_vision/paligemma_tokenizer.model": SPM, "README.md": b"# tokenizer\n"},
    EXPERT: {"model.safetensors": WEIGHTS},
    NO_STATS: {"model.safetensors": WEIGHTS, "config.json": b"{}"},
}
SHAS = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in [*REPOS, GATED, BROKEN]}


def fetch_hub() -> Hub:
    """The repos `dagger fetch` is tried on: the aliases' (at fixed shas), a gated one and a broken one."""
    hub = Hub()
    for repo, files in REPOS.items():
        hub.add(repo, files, sha=SHAS[repo])
    hub.gated.add(GATED)
    hub.broken.add(BROKEN)
    return hub


@pytest.fixture(scope="module")
def hub():
    with fake_hub(fetch_hub()) as (url, server):
        yield url, server


def hub_env(tmp_path: Path, endpoint: str, **extra) -> dict:
    """Points the client at `endpoint` with every cache and home under tmp_path (no real cache, token or proxy)."""
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": "",
        "HUGGING_FACE_HUB_TOKEN": "",
        "DAGGER_HOME": str(tmp_path / "dagger"),
        "OPENPI_DATA_HOME": str(tmp_path / "openpi"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    return {**env, **extra}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_alias_downloads_the_exact_files_and_prints_the_dir(hub, tmp_path):
    # GIVEN the fake Hub serving the pi0-libero repo
    url, _ = hub
    target = tmp_path / "ckpt"
    # WHEN fetching the alias into a chosen dir
    result = dagger("fetch", "pi0-libero", "--local-dir", str(target), env=hub_env(tmp_path, url))
    # THEN both files arrive byte for byte, stdout is only the dir, stderr says what was found and which key to set
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{target}\n"
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "physical-intelligence/libero/norm_stats.json").read_bytes() == NORM_STATS
    assert "weights: model.safetensors (1 file)" in result.stderr
    assert "norm stats: physical-intelligence/libero" in result.stderr
    assert f"actor.model.model_path={target}" in result.stderr
    assert "warning" not in result.stderr


def test_json_reports_layout_and_config_key(hub, tmp_path):
    # GIVEN the fake Hub
    url, _ = hub
    target = tmp_path / "ckpt"
    # WHEN fetching with --json
    result = dagger("fetch", "pi0-libero", "--local-dir", str(target), "--json", env=hub_env(tmp_path, url))
    # THEN one JSON object on stdout with the repo, the layout, the key and the --set to use; nothing on stderr
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["repo_id"] == LIBERO and data["alias"] == "pi0-libero" and data["revision"] == "main"
    assert data["commit"] == SHAS[LIBERO]
    assert data["local_dir"] == str(target) and data["files"] == 2
    assert data["layout"]["weights"] == ["model.safetensors"]
    assert data["layout"]["norm_stats"] == {
        "physical-intelligence/libero": "physical-intelligence/libero/norm_stats.json"
    }
    assert data["layout"]["missing"] == []
    assert data["config_key"] == "actor.model.model_path"
    assert data["hint"] == f"--set actor.model.model_path={target}"
    assert data["warnings"] == []


def test_default_local_dir_is_under_dagger_home(hub, tmp_path):
    # GIVEN DAGGER_HOME pointing into tmp_path
    url, _ = hub
    env = hub_env(tmp_path, url)
    # WHEN fetching by repo id without --local-dir
    result = dagger("fetch", LIBERO, "--json", env=env)
    # THEN the files land at $DAGGER_HOME/checkpoints/<repo_id>, and the repo id is recognised as the alias
    assert result.returncode == 0, result.stderr
    expected = tmp_path / "dagger" / "checkpoints" / LIBERO
    data = json.loads(result.stdout)
    assert data["local_dir"] == str(expected) and data["alias"] == "pi0-libero"
    assert (expected / "model.safetensors").read_bytes() == WEIGHTS


def test_include_fetches_only_the_matching_files(hub, tmp_path):
    # GIVEN the fake Hub
    url, _ = hub
    target = tmp_path / "stats"
    # WHEN fetching only *.json
    result = dagger(
        "fetch", "pi0-libero", "--local-dir", str(target), "--include", "*.json", "--json", env=hub_env(tmp_path, url)
    )
    # THEN only the norm stats are there, and the layout says the weights are missing
    assert result.returncode == 0, result.stderr
    files = sorted(
        p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file() and ".cache" not in p.parts
    )
    assert files == ["physical-intelligence/libero/norm_stats.json"]
    data = json.loads(result.stdout)
    assert data["files"] == 1 and data["layout"]["missing"] == ["weights"]


def test_tokenizer_lands_in_openpi_data_home(hub, tmp_path):
    # GIVEN OPENPI_DATA_HOME pointing into tmp_path
    url, _ = hub
    env = hub_env(tmp_path, url)
    # WHEN fetching the tokenizer alias without --local-dir
    result = dagger("fetch", "openpi-tokenizer", "--json", env=env)
    # THEN the model file is at $OPENPI_DATA_HOME/big_vision/paligemma_tokenizer.model, which is where the presets'
    # default tokenizer path resolves with OPENPI_DATA_HOME set (as openpi's does): no --set is needed
    assert result.returncode == 0, result.stderr
    model = tmp_path / "openpi" / "big_vision" / "paligemma_tokenizer.model"
    assert model.read_bytes() == SPM
    data = json.loads(result.stdout)
    assert data["local_dir"] == str(tmp_path / "openpi")
    assert data["layout"]["tokenizer"] == "big_vision/paligemma_tokenizer.model"
    assert data["config_key"] == "actor.model.pi0.tokenizer_path"
    assert data["hint"] is None
    from dagger_cli.policies.pi0.tokenizer import DEFAULT_TOKENIZER_PATH, resolve_tokenizer_path

    os_env = {"OPENPI_DATA_HOME": str(tmp_path / "openpi")}
    import unittest.mock

    with unittest.mock.patch.dict("os.environ", os_env):
        assert resolve_tokenizer_path(DEFAULT_TOKENIZER_PATH) == model


def test_default_local_dir_function_follows_the_environment(tmp_path, monkeypatch):
    # GIVEN DAGGER_HOME and OPENPI_DATA_HOME set
    from dagger_cli.fetching import default_local_dir

    monkeypatch.setenv("DAGGER_HOME", str(tmp_path / "d"))
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tmp_path / "o"))
    # WHEN / THEN models go under DAGGER_HOME/checkpoints, the tokenizer (alias or repo id) to OPENPI_DATA_HOME
    assert default_local_dir("pi0-robotwin-expert") == tmp_path / "d" / "checkpoints" / EXPERT
    assert default_local_dir("someone/else") == tmp_path / "d" / "checkpoints" / "someone" / "else"
    assert default_local_dir("openpi-tokenizer") == default_local_dir(TOKENIZER) == tmp_path / "o"


@pytest.mark.parametrize(
    "args, code, needles",
    [
        (["acme/does-not-exist"], 2, ["acme/does-not-exist", "not found", "HF_TOKEN"]),
        ([GATED], 2, [GATED, "gated", "HF_TOKEN", "accept"]),
        (["pi0-libro"], 2, ["did you mean 'pi0-libero'", "dagger fetch --list"]),
        (["pi0-libero", "--revision", "v9"], 2, ["revision 'v9' not found", LIBERO]),
        ([BROKEN], 1, ["HTTP 500", BROKEN]),
    ],
)
def test_hub_errors_are_one_line_and_an_exit_code(hub, tmp_path, args, code, needles):
    # GIVEN the fake Hub (unknown repos are 404 RepoNotFound, the gated one 403 GatedRepo, the broken one 500)
    url, _ = hub
    # WHEN fetching something that cannot be fetched
    result = dagger("fetch", *args, "--local-dir", str(tmp_path / "out"), env=hub_env(tmp_path, url))
    # THEN one line on stderr naming the problem, the expected exit code, nothing on stdout
    assert result.returncode == code, result.stderr
    line = one_error_line(result)
    for needle in needles:
        assert needle in line
    assert result.stdout == ""


def test_offline_uses_the_downloaded_copy_and_fails_cleanly_without_one(tmp_path):
    # GIVEN pi0-libero fetched to its default dir from a fake Hub that is then stopped
    with fake_hub(fetch_hub()) as (url, _):
        first = dagger("fetch", "pi0-libero", env=hub_env(tmp_path, url))
        assert first.returncode == 0, first.stderr
    offline = hub_env(tmp_path, url, HF_HUB_OFFLINE="1")
    # WHEN fetching it again with HF_HUB_OFFLINE=1
    again = dagger("fetch", "pi0-libero", "--json", env=offline)
    # THEN it succeeds from the local copy with the same layout
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["local_dir"] == first.stdout.strip()
    assert data["files"] == 2 and data["layout"]["weights"] == ["model.safetensors"]
    assert data["commit"] == SHAS[LIBERO]
    human = dagger("fetch", "pi0-libero", env=offline)
    assert human.returncode == 0 and human.stdout == first.stdout
    assert human.stderr.splitlines()[0].startswith("warning: HF_HUB_OFFLINE is set: using the copy already in")
    assert "Returning existing local_dir" not in human.stderr  # the library's own log line is not shown
    # WHEN the Hub is unreachable without offline mode
    unreachable = dagger("fetch", "pi0-libero", env=hub_env(tmp_path, closed_port_url()))
    # THEN the complete local copy is used, with a warning naming the endpoint
    assert unreachable.returncode == 0 and unreachable.stdout == first.stdout
    assert "was not reached: using the copy already in" in unreachable.stderr
    # WHEN a file of the copy is lost and the Hub is offline
    (Path(first.stdout.strip()) / "model.safetensors").unlink()
    partial = dagger("fetch", "pi0-libero", env=offline)
    # THEN exit 1: the copy is incomplete, and a re-run online resumes it
    assert partial.returncode == 1
    line = one_error_line(partial)
    assert "incomplete copy" in line and "re-run `dagger fetch pi0-libero` to resume" in line
    # WHEN fetching a repo never downloaded, offline
    never = dagger("fetch", "openpi-tokenizer", env=offline)
    # THEN exit 1 and one line saying offline mode is on and nothing is there
    assert never.returncode == 1
    line = one_error_line(never)
    assert "HF_HUB_OFFLINE" in line and TOKENIZER in line and "no copy" in line


def test_unreachable_hub_names_the_endpoint(tmp_path):
    # GIVEN HF_ENDPOINT pointing at a closed port
    endpoint = closed_port_url()
    # WHEN fetching
    started = time.monotonic()
    result = dagger("fetch", "pi0-libero", "--local-dir", str(tmp_path / "out"), env=hub_env(tmp_path, endpoint))
    # THEN exit 1, one line naming the endpoint and saying a re-run resumes, quickly
    assert result.returncode == 1
    line = one_error_line(result)
    assert endpoint in line and "HF_ENDPOINT" in line and "re-run `dagger fetch pi0-libero`" in line
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("name", [NO_STATS, "pi0-robotwin-expert"])
def test_missing_norm_stats_is_a_warning(hub, tmp_path, name):
    # GIVEN a π₀ repo with weights but no norm stats (by repo id, and by alias)
    url, _ = hub
    target = tmp_path / "ckpt"
    # WHEN fetching it
    result = dagger("fetch", name, "--local-dir", str(target), env=hub_env(tmp_path, url))
    # THEN exit 0, the dir on stdout, and a warning line naming norm_stats.json
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{target}\n"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "norm_stats.json" in warnings[0] and str(target) in warnings[0]
    assert (target / "model.safetensors").read_bytes() == WEIGHTS


def test_list_json_names_the_seven_aliases(tmp_path):
    # GIVEN DAGGER_HOME with pi0-robotwin already downloaded
    home = tmp_path / "dagger"
    (home / "checkpoints" / "RLinf/RLinf-Pi0-RoboTwin-SFT-adjust_bottle").mkdir(parents=True)
    (home / "checkpoints" / "RLinf/RLinf-Pi0-RoboTwin-SFT-adjust_bottle" / "model.safetensors").write_bytes(WEIGHTS)
    # WHEN listing
    result = dagger("fetch", "--list", "--json", env={"DAGGER_HOME": str(home), "OPENPI_DATA_HOME": str(tmp_path)})
    # THEN the seven aliases with their repo ids, keys and local dirs, and which one is there
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)["aliases"]}
    assert {name: r["repo_id"] for name, r in rows.items()} == {
        "pi0-libero": LIBERO,
        "pi0-libero-long": "RLinf/RLinf-Pi0-LIBERO-Long-SFT",
        "pi0-robotwin": "RLinf/RLinf-Pi0-RoboTwin-SFT-adjust_bottle",
        "pi0-robotwin-expert": EXPERT,
        "pi05-libero-expert": "lerobot/pi05_libero_finetuned",
        "pi05-libero-rlinf": "RLinf/RLinf-Pi05-LIBERO-SFT",
        "openpi-tokenizer": TOKENIZER,
    }
    assert rows["pi0-robotwin-expert"]["config_key"] == "rollout.expert_model.model_path"
    assert rows["openpi-tokenizer"]["local_dir"] == str(tmp_path)
    assert [name for name, r in rows.items() if r["downloaded"]] == ["pi0-robotwin"]


def test_progress_is_drawn_on_a_terminal_stderr_only(hub, tmp_path):
    # GIVEN stderr is a terminal and stdout a pipe
    url, _ = hub
    target = tmp_path / "ckpt"
    master, slave = pty.openpty()
    env = {**os.environ, **hub_env(tmp_path, url), "COLUMNS": "100"}
    env.pop("DAGGER_DEBUG", None)
    # WHEN fetching
    proc = subprocess.Popen(
        ["dagger", "fetch", "pi0-libero", "--local-dir", str(target)], stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    stderr = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            stderr += chunk
        elif proc.poll() is not None:
            break
    stdout = proc.communicate(timeout=60)[0].decode()
    os.close(master)
    # THEN stdout is still only the dir; the terminal got the file bar (2/2) and the summary
    assert proc.returncode == 0, stderr
    assert stdout == f"{target}\n"
    text = stderr.decode(errors="replace")
    assert "Fetching 2 files" in text and "2/2" in text
    assert "weights: model.safetensors" in text


def test_rich_progress_adapter_counts_files_and_bytes(hub, tmp_path):
    # GIVEN snapshot_download driving the Rich adapter in this process
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants
    from rich.console import Console
    from rich.progress import Progress

    from dagger_cli.fetching import rich_tqdm

    if constants.is_offline_mode():
        pytest.skip("HF_HUB_OFFLINE is set for this test process")
    url, _ = hub
    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    # WHEN downloading the libero repo through it
    with progress:
        huggingface_hub.snapshot_download(
            LIBERO,
            endpoint=url,
            cache_dir=tmp_path / "cache",
            local_dir=tmp_path / "out",
            token=False,
            tqdm_class=rich_tqdm(progress),
        )
    # THEN the files bar reached 2 of 2 and the visible bytes bar counted every byte
    tasks = {t.description: t for t in progress.tasks}
    assert tasks["Fetching 2 files"].completed == tasks["Fetching 2 files"].total == 2
    shown = [t for t in progress.tasks if t.visible and t.fields.get("unit") == "B"]
    assert len(shown) == 1 and shown[0].completed == len(WEIGHTS) + len(NORM_STATS)


def test_disk_full_and_other_errors_map_to_one_line(tmp_path):
    # GIVEN the errors a download can raise besides the Hub's answers
    from dagger_cli.core.errors import DaggerError, UsageError
    from dagger_cli.fetching import map_hub_error

    # WHEN / THEN a full disk names the local dir (exit 1); a bad repo id is a usage error; unknown errors pass
    full = map_hub_error(OSError(errno.ENOSPC, "No space left on device"), "pi0-libero", LIBERO, None, tmp_path)
    assert type(full) is DaggerError and full.exit_code == 1 and str(tmp_path) in str(full)
    assert "re-run `dagger fetch pi0-libero`" in str(full)
    from huggingface_hub.errors import HFValidationError

    bad = map_hub_error(HFValidationError("Repo id must be in the form"), "a/b/c", "a/b/c", None, tmp_path)
    assert isinstance(bad, UsageError) and "'a/b/c' is not a valid repo id" in str(bad)
    assert map_hub_error(RuntimeError("boom"), "x/y", "x/y", None, tmp_path) is None


@pytest.mark.parametrize("argv", [["dagger", "--help"], ["dagger", "fetch", "--help"], ["dagger", "fetch", "--list"]])
def test_help_and_list_do_not_import_huggingface_hub(argv):
    # GIVEN the CLI entry point run in a fresh interpreter
    code = (
        f"import sys; sys.argv = {argv!r}\n"
        "from dagger_cli.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('huggingface_hub', 'torch', 'httpx', 'httpx2') if m in sys.modules), "
        "file=sys.stderr)\n"
    )
    # WHEN printing help or the alias list
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # THEN neither the Hub client nor torch was imported
    assert "LOADED []" in result.stderr, result.stderr


def test_completion_offers_the_aliases():
    # GIVEN bash completion of `dagger fetch pi0`
    env = {"_DAGGER_COMPLETE": "complete_bash", "COMP_WORDS": "dagger fetch pi0", "COMP_CWORD": "2"}
    # WHEN the completion callback runs
    result = dagger(env=env)
    # THEN the π₀ and π0.5 aliases are offered
    assert result.returncode == 0
    assert result.stdout.split() == ["pi0-libero", "pi0-libero-long", "pi0-robotwin", "pi0-robotwin-expert",
                                     "pi05-libero-expert", "pi05-libero-rlinf"]
