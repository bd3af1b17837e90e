"""Pretrained checkpoints and LeRobot datasets from the Hugging Face Hub: aliases, where they go, the download and a
check of what came. The adapters say what their downloads are (`registry.DownloadKind`: where each goes, what it
must hold, the key that reads it); this module names none of them.

The download is `huggingface_hub.snapshot_download`, so HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE apply as in any
Hub client, and a re-run skips the files already complete.
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from dagger_cli.core.errors import DaggerError, UsageError
from dagger_cli.core.registry import Alias, DownloadKind, Layout, download_kinds, fetch_aliases


# NAMES AND PLACES
DATASET = "dataset"
SEED_DATASET_KEY = "algorithm.replay_buffer.seed_dataset"


def resolve(name_or_repo: str, repo_type: str = "model") -> tuple[str, Alias | None]:
    """(repo id, alias) for an alias or a repo id; anything else is a UsageError with a suggestion."""
    if repo_type == DATASET:
        if name_or_repo.count("/") != 1:
            raise UsageError(f"unknown dataset {name_or_repo!r}: give a Hub dataset id owner/name")
        return name_or_repo, None
    known = fetch_aliases()
    if name_or_repo in known:
        alias = known[name_or_repo]
        return alias.repo_id, alias
    if "/" in name_or_repo:
        return name_or_repo, next((a for a in known.values() if a.repo_id == name_or_repo), None)
    hint = difflib.get_close_matches(name_or_repo, list(known), n=1)
    did = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise UsageError(
        f"unknown model {name_or_repo!r}{did}: give an alias or a Hub repo id owner/name, see `dagger fetch --list`"
    )


def dagger_home() -> Path:
    return Path(os.environ.get("DAGGER_HOME") or "~/.cache/dagger").expanduser()


def default_local_dir(name_or_repo: str, repo_type: str = "model") -> Path:
    """Where `dagger fetch NAME` puts a repo: $DAGGER_HOME/checkpoints/<repo_id> ($DAGGER_HOME/datasets/<repo_id> for
    a dataset), or where its alias's kind puts it."""
    repo_id, alias = resolve(name_or_repo, repo_type)
    if repo_type == DATASET:
        return dagger_home() / "datasets" / repo_id
    if alias is not None and alias.kind is not None and alias.kind.home is not None:
        return alias.kind.home()
    return dagger_home() / "checkpoints" / repo_id


def is_downloaded(alias: Alias) -> bool:
    local = default_local_dir(alias.name)
    if alias.kind is not None and alias.kind.downloaded is not None:
        return alias.kind.downloaded(local)
    return local.is_dir() and any(local.iterdir())


def list_aliases() -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "repo_id": a.repo_id,
            "description": a.description,
            "config_key": a.config_key,
            "local_dir": str(default_local_dir(a.name)),
            "downloaded": is_downloaded(a),
        }
        for a in fetch_aliases().values()
    ]


# LAYOUT
def inspect_layout(files: list[str], local_dir: Path, alias: Alias | None, repo_type: str
                   ) -> tuple[Layout, DownloadKind | None]:
    """What a download holds (`files`: its `/`-separated relative paths), read by its alias's kind, else by the first
    adapter's kind that claims the files; a dataset's is its meta/info.json."""
    if repo_type == DATASET:  # a LeRobot dataset: its info.json says what it is
        missing = {} if "meta/info.json" in files else {
            "meta/info.json": f"no meta/info.json in {local_dir}: not a LeRobot v3 dataset"}
        return Layout(DATASET, missing=missing), None
    kind = alias.kind if alias is not None else next((k for k in download_kinds() if k.claims(files)), None)
    if kind is None:
        return Layout("generic", summary=["nothing that an installed adapter reads recognised"]), None
    return kind.inspect(files, local_dir), kind


# FETCH
@dataclass
class FetchResult:
    repo_id: str
    alias: str | None
    revision: str
    commit: str | None
    local_dir: Path
    files: list[str]
    layout: Layout
    config_key: str | None
    hint: str | None
    summary: str
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "alias": self.alias,
            "revision": self.revision,
            "commit": self.commit,
            "local_dir": str(self.local_dir),
            "files": len(self.files),
            "layout": self.layout.to_json(),
            "config_key": self.config_key,
            "hint": self.hint,
            "warnings": self.warnings,
        }


def fetch(
    repo_or_alias: str,
    local_dir: Path | str | None = None,
    revision: str | None = None,
    include: list[str] | None = None,
    progress: bool = False,
    repo_type: str = "model",
) -> FetchResult:
    """Downloads a repo (or the files matching `include`) into `local_dir` and checks its layout."""
    repo_id, alias = resolve(repo_or_alias, repo_type)
    target = Path(local_dir).expanduser() if local_dir is not None else default_local_dir(repo_or_alias, repo_type)
    target = target.absolute()

    import warnings as py_warnings

    from huggingface_hub import snapshot_download  # also sets up its logger, which hub_log_captured then swaps
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

    # Download
    progress = progress and not are_progress_bars_disabled()
    if not progress:
        with py_warnings.catch_warnings():
            py_warnings.simplefilter("ignore")  # HF_HUB_DISABLE_PROGRESS_BARS=0 wins, with a warning we don't need
            disable_progress_bars()
    hub_warnings: list[str] = []
    try:
        with hub_log_captured(hub_warnings):
            if progress:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn

                bars = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    _amount_column(),
                    console=Console(stderr=True),
                    transient=True,
                )
                with bars:
                    snapshot_download(
                        repo_id=repo_id,
                        revision=revision,
                        repo_type=repo_type,
                        local_dir=target,
                        allow_patterns=include or None,
                        tqdm_class=rich_tqdm(bars),
                    )
            else:
                snapshot_download(repo_id=repo_id, revision=revision, repo_type=repo_type, local_dir=target,
                                  allow_patterns=include or None)
    except Exception as e:
        again = f"dagger fetch {repo_or_alias}" + (" --repo-type dataset" if repo_type == DATASET else "")
        mapped = map_hub_error(e, repo_or_alias, repo_id, revision, target, again)
        if mapped is None:
            raise
        raise mapped from e

    # Layout
    files = _present_files(repo_id, revision, target, repo_type)
    layout, kind = inspect_layout(files, target, alias, repo_type)
    config_key, setting, already = _config_hint(alias, kind, layout, target)
    hint = f"--set {config_key}={setting}" if setting is not None else None
    warnings = [_hub_warning(w, target) for w in dict.fromkeys(hub_warnings) if not w.startswith("No files matched")]
    if include and not any(_matches(f, include) for f in files):
        warnings.append(f"no file of {repo_id} matches --include {' '.join(include)}")
    warnings += list(layout.missing.values())
    return FetchResult(
        repo_id=repo_id,
        alias=alias.name if alias is not None else None,
        revision=revision or "main",
        commit=_commit(repo_id, revision, repo_type),
        local_dir=target,
        files=files,
        layout=layout,
        config_key=config_key,
        hint=hint,
        summary=_summary(layout, hint, config_key if already else None, target),
        warnings=warnings,
    )


def _present_files(repo_id: str, revision: str | None, local_dir: Path, repo_type: str) -> list[str]:
    """The repo's files (from the listing the download cached) that are in `local_dir`; else every file there."""
    from huggingface_hub import get_cached_repo_tree

    try:
        listed = [f.path for f in get_cached_repo_tree(repo_id, repo_type=repo_type, revision=revision,
                                                        local_dir=local_dir)]
    except Exception:  # no cached listing (older huggingface_hub, or a copy made by other means)
        listed = [
            p.relative_to(local_dir).as_posix()
            for p in local_dir.rglob("*")
            if p.is_file() and not p.relative_to(local_dir).parts[0].startswith(".")
        ]
    return sorted(f for f in listed if (local_dir / f).is_file())


def _matches(path: str, patterns: list[str]) -> bool:
    from huggingface_hub.utils import filter_repo_objects

    return bool(list(filter_repo_objects([path], allow_patterns=patterns)))


def _commit(repo_id: str, revision: str | None, repo_type: str) -> str | None:
    from huggingface_hub import constants
    from huggingface_hub.file_download import REGEX_COMMIT_HASH, repo_folder_name

    revision = revision or "main"
    if REGEX_COMMIT_HASH.fullmatch(revision):
        return revision
    ref = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type) / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def _config_hint(alias: Alias | None, kind: DownloadKind | None, layout: Layout, local_dir: Path
                 ) -> tuple[str | None, Path | str | None, bool]:
    """(the key that should point at the download, the value to `--set` it to (None: nothing to set), whether the
    key's default already points at it)."""
    if layout.kind == DATASET:
        return SEED_DATASET_KEY, local_dir, False
    key = alias.config_key if alias is not None else kind.config_key if kind is not None else None
    if alias is not None and kind is None:
        return key, local_dir, False
    if kind is None:
        return None, None, False
    setting = kind.setting(layout, local_dir)
    if setting is not None and kind.default_setting is not None and setting == kind.default_setting():
        return key, None, True
    return key, setting, False


def _summary(layout: Layout, hint: str | None, already_key: str | None, local_dir: Path) -> str:
    parts = []
    if layout.kind == DATASET and not layout.missing:
        import json

        info = json.loads((local_dir / "meta/info.json").read_text())
        parts.append(f"LeRobot {info.get('codebase_version')} dataset: {info.get('total_episodes')} episodes, "
                     f"{info.get('total_frames')} frames at {info.get('fps')} fps")
    parts += layout.summary
    if hint:
        parts.append(f"set {hint.removeprefix('--set ')}")
    elif already_key:
        parts.append(f"{already_key} already points at it")
    return "; ".join(parts)


def _hub_warning(message: str, local_dir: Path) -> str:
    if message.startswith("Returning existing local_dir"):
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE is set" if _offline() else f"the Hub at {constants.ENDPOINT} was not reached"
        return f"{why}: using the copy already in {local_dir} without checking for updates"
    return message


@contextmanager
def hub_log_captured(messages: list[str]) -> Iterator[None]:
    """Collects huggingface_hub's warnings (first lines) instead of letting them print."""

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage().strip()
            if text:
                messages.append(text.splitlines()[0])

    hub = logging.getLogger("huggingface_hub")
    saved = hub.handlers[:], hub.propagate
    hub.handlers[:] = [_Collect(logging.WARNING)]
    hub.propagate = False
    try:
        yield
    finally:
        hub.handlers[:], hub.propagate = saved


# ERRORS
def map_hub_error(e: Exception, name: str, repo_id: str, revision: str | None, local_dir: Path,
                  again: str | None = None) -> DaggerError | None:
    """A huggingface_hub failure as one actionable line (None: not one we know); `again` is the command that
    resumes (default `dagger fetch NAME`)."""
    from huggingface_hub import constants, errors

    def isa(error: BaseException, *names: str) -> bool:
        return any(isinstance(error, getattr(errors, n)) for n in names if hasattr(errors, n))

    endpoint = constants.ENDPOINT
    again = again or f"dagger fetch {name}"
    rerun = f"re-run `{again}` to resume"
    offline = _offline() or isa(e, "OfflineModeIsEnabled")
    if isa(e, "GatedRepoError"):
        return UsageError(
            f"{repo_id} is a gated repository: accept its conditions at {endpoint}/{repo_id} "
            "and set HF_TOKEN to a token of that account"
        )
    if isa(e, "RepositoryNotFoundError"):
        return UsageError(f"repository {repo_id} not found on {endpoint} (if it is private, set HF_TOKEN)")
    if isa(e, "RevisionNotFoundError"):
        return UsageError(f"revision {revision!r} not found in {repo_id}")
    if isa(e, "HFValidationError"):
        return UsageError(f"{repo_id!r} is not a valid repo id (expected owner/name)")
    if offline and isa(e, "LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        partial = isa(e, "IncompleteSnapshotError")
        return DaggerError(
            f"HF_HUB_OFFLINE is set and there is {'an incomplete' if partial else 'no'} copy of {repo_id} in "
            f"{local_dir}; unset it and re-run `{again}` to {'resume' if partial else 'fetch it'} "
            f"from {endpoint} (HF_ENDPOINT)"
        )
    if isa(e, "LocalEntryNotFoundError") and isa(e.__cause__, "HfHubHTTPError"):
        e = e.__cause__
    if isa(e, "HfHubHTTPError") and getattr(e, "response", None) is not None:
        said = (getattr(e, "server_message", None) or "").strip().splitlines()
        said = f" ({said[0]})" if said else ""
        return DaggerError(f"the Hub at {endpoint} answered HTTP {e.response.status_code}{said} for {repo_id}; {rerun}")
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return DaggerError(f"no space left on the device of {local_dir}; free some and {rerun}")
    if isa(e, "LocalEntryNotFoundError") or _is_network_error(e):
        cause = e.__cause__ if isa(e, "LocalEntryNotFoundError") and e.__cause__ is not None else e
        return DaggerError(
            f"cannot reach the Hub at {endpoint} (HF_ENDPOINT) for {repo_id}: {_first_line(cause)}; "
            f"check the connection and {rerun}"
        )
    if isinstance(e, OSError) and e.strerror:
        return DaggerError(f"{e.filename or local_dir}: {e.strerror}")
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline() if is_offline is not None else constants.HF_HUB_OFFLINE)


def _is_network_error(e: BaseException) -> bool:
    return isinstance(e, (ConnectionError, TimeoutError)) or type(e).__module__.split(".")[0] in (
        "httpx",
        "httpx2",
        "httpcore",
        "requests",
        "urllib3",
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


# PROGRESS
def rich_tqdm(progress: Any) -> type:
    """A tqdm stand-in for `snapshot_download(tqdm_class=...)` that draws on a `rich.progress.Progress`.

    snapshot_download makes a files bar, a bytes-on-disk bar and a network-bytes bar; the last one repeats the
    second for plain HTTP downloads, so it is kept hidden.
    """
    import threading

    lock = threading.RLock()

    class RichTqdm:
        def __init__(self, iterable=None, desc=None, total=None, initial=0, unit="it", **_: Any):
            self.iterable = iterable
            self.n = initial or 0
            self._total = total
            self.unit = unit
            label = "download" if unit == "B" else (desc or "")
            visible = not (unit == "B" and desc == "Downloading bytes")
            self.task = progress.add_task(label, total=total, completed=self.n, visible=visible, unit=unit)

        @property
        def total(self):
            return self._total

        @total.setter
        def total(self, value):
            self._total = value
            progress.update(self.task, total=value)

        def update(self, n=1):
            with lock:
                self.n += n or 0
            progress.update(self.task, advance=n or 0)

        @property
        def format_dict(self) -> dict[str, Any]:
            return {"n": self.n, "total": self._total, "rate": None}

        def __iter__(self):
            for item in self.iterable or ():
                yield item
                self.update(1)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

        @classmethod
        def get_lock(cls):
            return lock

        @classmethod
        def set_lock(cls, _lock): ...

        def refresh(self, *args, **kwargs): ...

        def close(self): ...

        def set_description(self, *args, **kwargs): ...

        def set_description_str(self, *args, **kwargs): ...

        def set_postfix_str(self, *args, **kwargs): ...

        def set_postfix(self, *args, **kwargs): ...

    return RichTqdm


def _amount_column():
    from rich.progress import DownloadColumn, ProgressColumn, TransferSpeedColumn
    from rich.text import Text

    class AmountColumn(ProgressColumn):
        """`12.3/45.6 MB 3.2 MB/s` for byte bars, `3/7` for file bars."""

        def render(self, task):
            if task.fields.get("unit") == "B":
                return Text.assemble(DownloadColumn().render(task), " ", TransferSpeedColumn().render(task))
            return Text(f"{int(task.completed)}/{int(task.total or 0)}", style="progress.download")

    return AmountColumn()
