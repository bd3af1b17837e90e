"""An exported dataset or checkpoint directory pushed to the Hugging Face Hub with huggingface_hub's `upload_folder`,
so HF_TOKEN and HF_ENDPOINT apply as in any Hub client.

A dataset is also tagged with its LeRobot codebase version (`v3.0`), moved to the new commit: LeRobot's
`LeRobotDataset(repo_id)` loads the newest revision tagged with a version it reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagger_cli.core.errors import DaggerError, UsageError


@dataclass
class Pushed:
    repo_id: str
    repo_type: str
    url: str
    commit: str
    tag: str | None

    def to_json(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "repo_type": self.repo_type, "url": self.url, "commit": self.commit,
                "tag": self.tag}


def lerobot_home() -> Path:
    """Where LeRobot keeps local datasets: $HF_LEROBOT_HOME, else $HF_HOME/lerobot."""
    if os.environ.get("HF_LEROBOT_HOME"):
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "lerobot"


def push(folder: Path, repo_id: str, repo_type: str, private: bool = False, tag: str | None = None,
         message: str = "Upload with dagger export", ignore: list[str] | None = None,
         again: str | None = None) -> Pushed:
    """Creates the repo if missing, uploads `folder` as one commit, and points `tag` (if given) at that commit;
    files matching `ignore` stay local; `again` is the command that retries (named in errors)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from dagger_cli.fetching import hub_log_captured, map_hub_error

    api = HfApi()
    said: list[str] = []
    try:
        with hub_log_captured(said):
            api.create_repo(repo_id, repo_type=repo_type, private=private or None, exist_ok=True)  # None: the default
            commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                                       commit_message=message, ignore_patterns=ignore)
            if tag:
                try:
                    api.delete_tag(repo_id, tag=tag, repo_type=repo_type)
                except HfHubHTTPError as e:
                    if e.response is None or e.response.status_code != 404:
                        raise
                api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type=repo_type)
    except Exception as e:
        mapped = _push_error(e, repo_id, folder) or map_hub_error(e, repo_id, repo_id, None, folder, again)
        if mapped is None:
            raise
        raise mapped from e
    return Pushed(repo_id, repo_type, commit.commit_url, commit.oid, tag)


def _push_error(e: Exception, repo_id: str, folder: Path) -> DaggerError | None:
    """Refusals that only a push meets: no token, or one without write access to the repo."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    if isinstance(e, HFValidationError):
        return UsageError(f"--repo-id {repo_id!r} is not a valid repo id (expected owner/name)")
    response = getattr(e, "response", None) if isinstance(e, HfHubHTTPError) else None
    if response is None:
        return None
    if response.status_code == 401:
        return DaggerError(f"the Hub at {constants.ENDPOINT} refused the push to {repo_id}: no valid token; set "
                           f"HF_TOKEN to a token with write access (the export is kept in {folder})")
    if response.status_code == 403:
        return DaggerError(f"the Hub at {constants.ENDPOINT} refused the push to {repo_id}: HF_TOKEN's account may "
                           f"not write to it (the export is kept in {folder})")
    return None
