"""LeRobot datasets through the Hub, with the real huggingface_hub client against the fake Hub (`fake_hub.py`):
`dagger export --push-to-hub`, `dagger fetch --repo-type dataset` and `seed_dataset: owner/name`."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from fake_hub import Hub, fake_hub  # noqa: E402
from test_cli import dagger  # noqa: E402
from test_fetch import hub_env  # noqa: E402
from test_report import train  # noqa: E402

from dagger_cli.interop import lerobot_dataset  # noqa: E402

TOKEN = "hf_fake_write_token"
REPO = "me/point-dagger"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    train(run, **{"runner.max_epochs": 2})
    return run


def one_error_line(result) -> str:
    """The one `error:` line (progress lines may come before it), with no traceback."""
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_push_to_hub_uploads_the_export_as_one_tagged_commit(run, tmp_path):
    # GIVEN a fake Hub that takes writes with one token
    with fake_hub(Hub(token=TOKEN)) as (url, hub):
        env = hub_env(tmp_path, url, HF_TOKEN=TOKEN)
        # WHEN a run's buffer is exported under a repo id and pushed
        result = dagger("export", str(run), "--format", "lerobot", "--repo-id", REPO, "--push-to-hub", "--json",
                        env=env)
        # THEN the dataset sits in LeRobot's local home under the repo id, and the Hub holds exactly its files in
        # one commit, tagged with the codebase version LeRobot's loader looks for, with a card LeRobot tags
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        local = tmp_path / "hf" / "lerobot" / REPO
        assert data["path"] == str(local) and data["frames"] > 0
        assert hub.files(REPO, "dataset") == local_files(local)
        repo = hub.repos[("dataset", REPO)]
        assert repo.tags == {"v3.0": repo.head} and data["pushed"]["commit"] == repo.head
        assert data["pushed"]["url"].endswith(f"/datasets/{REPO}/commit/{repo.head}")
        card = hub.files(REPO, "dataset")["README.md"].decode()
        assert "- LeRobot" in card and f"{data['frames']} frames" in card
        assert not repo.private
        # WHEN another checkpoint of the run is pushed to the same repo
        again = dagger("export", str(run / "checkpoints" / "iter_000001"), "--format", "lerobot", "--out",
                       str(tmp_path / "first"), "--repo-id", REPO, "--push-to-hub", env=env)
        # THEN a second commit, and the tag moved to it
        assert again.returncode == 0, again.stderr
        assert len(repo.commits) == 3 and repo.tags == {"v3.0": repo.head}  # the empty initial commit, two pushes
        assert hub.files(REPO, "dataset") == local_files(tmp_path / "first")


def test_a_refused_push_keeps_the_export_and_a_rerun_pushes_it(run, tmp_path):
    with fake_hub(Hub(token=TOKEN)) as (url, hub):
        out = tmp_path / "ds"
        args = ("export", str(run), "--format", "lerobot", "--out", str(out), "--repo-id", REPO, "--push-to-hub")
        # WHEN pushing without a token
        refused = dagger(*args, env=hub_env(tmp_path, url))
        # THEN exit 1, one line saying which token is needed, and the export kept
        assert refused.returncode == 1
        line = one_error_line(refused)
        assert "no valid token" in line and "HF_TOKEN" in line and str(out) in line
        assert (out / "meta" / "info.json").is_file() and ("dataset", REPO) not in hub.repos
        written = (out / "data" / "chunk-000" / "file-000.parquet").stat().st_mtime_ns
        # WHEN the same command is re-run with a token
        pushed = dagger(*args, env=hub_env(tmp_path, url, HF_TOKEN=TOKEN))
        # THEN the export is not written again but pushed
        assert pushed.returncode == 0, pushed.stderr
        assert "already holds this export" in pushed.stderr
        assert (out / "data" / "chunk-000" / "file-000.parquet").stat().st_mtime_ns == written
        assert hub.files(REPO, "dataset") == local_files(out)
        # WHEN a different export is asked into that directory
        other = dagger("export", str(run), "--format", "lerobot", "--only-expert-labels", "--out", str(out),
                       env=hub_env(tmp_path, url))
        # THEN it is refused, as any non-empty directory
        assert other.returncode == 2 and "exists and is not empty" in one_error_line(other)


@pytest.mark.parametrize("args, needle", [
    (["--push-to-hub"], "--push-to-hub needs --repo-id"),
    (["--private"], "--private applies to --push-to-hub"),
    (["--repo-id", "a/b/c", "--push-to-hub"], "not a valid repo id"),
])
def test_push_usage_errors_are_one_line(run, tmp_path, args, needle):
    with fake_hub(Hub(token=TOKEN)) as (url, _):
        result = dagger("export", str(run), "--format", "lerobot", "--out", str(tmp_path / "ds"), *args,
                        env=hub_env(tmp_path, url, HF_TOKEN=TOKEN))
    assert result.returncode == 2 and needle in one_error_line(result)


def test_a_checkpoint_export_pushes_to_a_model_repo(run, tmp_path):
    with fake_hub(Hub(token=TOKEN)) as (url, hub):
        result = dagger("export", str(run), "--format", "checkpoint", "--out", str(tmp_path / "ckpt"), "--repo-id",
                        "me/point-mlp", "--push-to-hub", "--private", env=hub_env(tmp_path, url, HF_TOKEN=TOKEN))
        assert result.returncode == 0, result.stderr
        repo = hub.repos[("model", "me/point-mlp")]
        assert repo.private and not repo.tags
        assert hub.files("me/point-mlp") == local_files(tmp_path / "ckpt")


def seeded_run(run_dir: Path, env: dict, **sets) -> subprocess.CompletedProcess:
    """A point-env run in a fresh Python (huggingface_hub reads HF_ENDPOINT when it is imported)."""
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(TESTS)!r})
        from test_report import train
        print(json.dumps(train(Path({str(run_dir)!r}), **{sets!r})))
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env}, cwd=TESTS)


def test_a_pushed_dataset_seeds_a_run_by_its_repo_id_and_fetches_as_a_dataset(run, tmp_path):
    with fake_hub(Hub(token=TOKEN)) as (url, hub):
        env = hub_env(tmp_path, url, HF_TOKEN=TOKEN)
        pushed = dagger("export", str(run), "--format", "lerobot", "--only-expert-labels", "--repo-id", REPO,
                        "--push-to-hub", "--json", env=env)
        assert pushed.returncode == 0, pushed.stderr
        frames = json.loads(pushed.stdout)["frames"]
        # WHEN `dagger fetch` is asked for the dataset
        fetched = dagger("fetch", REPO, "--repo-type", "dataset", env=env)
        # THEN it lands under DAGGER_HOME/datasets with the key to set
        target = tmp_path / "dagger" / "datasets" / REPO
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout.strip() == str(target)
        assert "LeRobot v3.0 dataset: " in fetched.stderr and f"{frames} frames" in fetched.stderr
        assert f"algorithm.replay_buffer.seed_dataset={target}" in fetched.stderr
        # WHEN a run names the repo id (at its version tag) as its seed dataset
        seeded = seeded_run(tmp_path / "seeded", env, **{"runner.max_epochs": 1,
                                                         "algorithm.replay_buffer.seed_dataset": f"{REPO}@v3.0",
                                                         "algorithm.dagger.bc_warmup_updates": 100})
        # THEN the Hub's samples are in its buffer as iteration -1
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        from dagger_cli.core.io import checkpoint
        from dagger_cli.core.engine.run_checkpoint import checkpoint_samples

        stored = checkpoint_samples(checkpoint.list_checkpoints(tmp_path / "seeded" / "checkpoints")[-1])
        demos = stored["iteration"] == -1
        assert demos.sum() == frames
        assert np.array_equal(stored["expert_action"][demos], lerobot_dataset.read(target)["expert_action"])
        # WHEN the seed names a dataset the Hub does not have
        missing = seeded_run(tmp_path / "missing", env, **{"algorithm.replay_buffer.seed_dataset": "me/nothing"})
        # THEN one line naming the key and the repo
        assert missing.returncode != 0
        assert "algorithm.replay_buffer.seed_dataset: repository me/nothing not found" in missing.stderr


LEROBOT_PYTHON = os.environ.get("DAGGER_LEROBOT_PYTHON")


@pytest.mark.skipif(not LEROBOT_PYTHON, reason="DAGGER_LEROBOT_PYTHON (a Python with lerobot) is not set")
def test_lerobot_loads_the_pushed_dataset_from_the_hub_by_repo_id(run, tmp_path):
    with fake_hub(Hub(token=TOKEN)) as (url, _):
        env = hub_env(tmp_path, url, HF_TOKEN=TOKEN)
        pushed = dagger("export", str(run), "--format", "lerobot", "--out", str(tmp_path / "ds"), "--repo-id", REPO,
                        "--push-to-hub", "--json", env=env)
        assert pushed.returncode == 0, pushed.stderr
        script = textwrap.dedent(f"""
            import json
            from lerobot.datasets.lerobot_dataset import LeRobotDataset
            ds = LeRobotDataset({REPO!r}, root={str(tmp_path / "lerobot-cache")!r}, video_backend="pyav")
            print(json.dumps({{"len": len(ds), "episodes": ds.num_episodes, "revision": ds.revision,
                               "state": ds[3]["observation.state"].tolist()}}))
        """)
        result = subprocess.run([LEROBOT_PYTHON, "-c", script], capture_output=True, text=True, timeout=600,
                                env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    local = lerobot_dataset.read(tmp_path / "ds")
    assert seen["len"] == len(local["episode_id"]) and seen["revision"] == "v3.0"
    assert seen["episodes"] == len(lerobot_dataset.episodes_of(local))
    assert np.allclose(seen["state"], local["obs"][3], atol=1e-6)
