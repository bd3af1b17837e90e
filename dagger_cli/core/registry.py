"""Env and policy adapters by name: the built-in ones and those other packages register through entry points.

An adapter is one record, `EnvAdapter` (selected by `env.type`) or `PolicyAdapter` (by `actor.model.model_type` /
`rollout.expert_model.model_type`), holding its config dataclass, its factories, its `dagger check` probes, the
environment variables its Ray workers need and what `dagger fetch` brings for it (aliases, and how it checks each
kind of download). A package adds one with an entry point:

    [project.entry-points."dagger.envs"]
    point-mass = "dagger_pointmass:ENV"          # an EnvAdapter
    [project.entry-points."dagger.policies"]
    linear = "dagger_pointmass:POLICY"           # a PolicyAdapter

The built-in adapters register the same way, in dagger's own pyproject.toml. An adapter is imported only when its
name is looked up, so that `dagger --help` imports no simulator and no model.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from dagger_cli.core.errors import ConfigError

ENV_GROUP, POLICY_GROUP = "dagger.envs", "dagger.policies"

SCRIPTED = "scripted"
"""the expert model_type that asks the env adapter for its task's built-in expert"""


@dataclass
class Layout:
    """What a download holds, in the terms of the adapter that reads it (`dagger fetch` prints and checks it)."""

    kind: str
    """the `DownloadKind` that read it, or `dataset` / `generic` (nothing an adapter recognised)"""
    found: dict[str, Any] = field(default_factory=dict)
    """what was recognised, by name (a π₀ checkpoint: weights, norm_stats, tokenizer)"""
    missing: dict[str, str] = field(default_factory=dict)
    """what should be there and is not -> the warning that says so"""
    summary: list[str] = field(default_factory=list)
    """what `dagger fetch` says it found, a part a line"""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.found, "missing": list(self.missing)}


@dataclass(frozen=True)
class DownloadKind:
    """A kind of download an adapter reads: the key that points at it, how `dagger fetch` checks what came, and
    where it goes. An `Alias` names its kind; a repository fetched by id is read by the first kind that `claims` its
    files."""

    name: str
    config_key: str
    """the key that reads it, for a download fetched by repo id (an alias names its own)"""
    inspect: Callable[[list[str], Path], Layout]
    """(the download's `/`-separated relative paths, its folder) -> its layout"""
    claims: Callable[[list[str]], bool]
    """(relative paths) -> whether a repository fetched by id is of this kind"""
    setting: Callable[[Layout, Path], Path | None]
    """(layout, folder) -> the path the key should name (None: there is nothing to name)"""
    default_setting: Callable[[], Path] | None = None
    """-> the path the key names by default (a download there needs no `--set`)"""
    home: Callable[[], Path] | None = None
    """-> its folder when `--local-dir` is not given (None: $DAGGER_HOME/checkpoints/<repo id>)"""
    downloaded: Callable[[Path], bool] | None = None
    """(its folder) -> whether it is there (None: the folder holds anything)"""


@dataclass(frozen=True)
class Alias:
    """A `dagger fetch` name for a Hub repository, and the config key its local folder goes to."""

    name: str
    repo_id: str
    description: str
    config_key: str
    kind: DownloadKind | None = None
    """how its download is placed and checked (None: a folder nothing checks)"""


class CheckWarning(str):
    """A `dagger check` detail for a line that passes with a warning (`!` instead of `✓`, exit code 0): what a
    probe's `run` or a policy adapter's `describe` returns when things work but not usably as configured."""


@dataclass(frozen=True)
class Probe:
    """One `dagger check` line: `run()` returns what it found (a `CheckWarning` to warn) or raises with what is
    wrong."""

    name: str
    run: Callable[[], str]
    needs: tuple[str, ...] = ()
    """probes that must have passed for this one to run"""


@dataclass(frozen=True)
class EnvAdapter:
    name: str
    """the `env.type` that selects it"""
    config: type
    """its `env` section: a subclass of `dagger_cli.core.config.EnvConfig`"""
    make: Callable[[Any, int], Any]
    """(env config, num_action_chunks) -> a `VecEnv` with env config's num_envs envs"""
    scripted_expert: Callable[[Any, int], Any] | None = None
    """(env config, actions per env step) -> the task's built-in expert `Policy` (for rollout.expert_model.model_type:
    scripted)"""
    probes: Callable[[Any], list[Probe]] | None = None
    """full config -> `dagger check` probes of the simulator, in order (a generic env step test follows them)"""
    worker_env: tuple[str, ...] = ()
    """environment variables its simulator reads, passed to the Ray workers of a joined cluster"""
    fetch_aliases: tuple[Alias, ...] = ()
    download_kinds: tuple[DownloadKind, ...] = ()
    """what `dagger fetch` may bring for it, by repo id too (its aliases' kinds among them)"""
    presets: Callable[[], Path] | None = None
    """-> a folder of preset YAMLs it ships (`dagger presets`, `dagger train NAME`)"""
    control_hz: float | None = None
    """env steps (control steps) the simulator takes per simulated second: `dagger export --format lerobot` writes
    a frame per policy decision, `num_action_chunks` of them, at control_hz / num_action_chunks fps by default"""


@dataclass(frozen=True)
class PolicyAdapter:
    name: str
    """the `model_type` that selects it"""
    config: type
    """its model section: a subclass of `dagger_cli.core.config.ModelConfig`"""
    student: Callable[[Any, str, Any], Any] | None
    """(full config, device, weights path or None) -> a `TrainablePolicy`; None: cannot be a student"""
    expert: Callable[[Any, str], Any] | None
    """(full config, device) -> a `Policy` for rollout.expert_model; None: cannot be an expert"""
    describe: Callable[[Any, Any, str, bool], str] | None = None
    """(model config, built policy, device, is student) -> extra `dagger check` detail (memory, sizes); a
    `CheckWarning` marks the line a warning (e.g. a model too large for the device to train on)"""
    fits_env: Callable[[Any, Any, str], None] | None = None
    """(model config, env, config key) -> raises a ConfigError when the model cannot read the env's observations"""
    export: Callable[[Any, Any, Path, str], Path] | None = None
    """(built student, its model config, directory, format) -> a self-contained checkpoint there (`dagger export`)"""
    export_formats: tuple[str, ...] = ()
    """the `dagger export --format` values `export` writes"""
    weight_bytes: Callable[[Any], int] | None = None
    """(model config) -> bytes of its state dict (sizes Ray's object store for async weight versions)"""
    worker_env: tuple[str, ...] = ()
    fetch_aliases: tuple[Alias, ...] = ()
    download_kinds: tuple[DownloadKind, ...] = ()
    presets: Callable[[], Path] | None = None


@dataclass
class _Registry:
    group: str
    kind: str
    loaded: dict[str, Any] = field(default_factory=dict)

    def _targets(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        return sorted(self._targets())

    def get(self, name: str, key: str) -> Any:
        """The adapter called `name`; an unknown one is a ConfigError naming `key`, with a suggestion."""
        if name in self.loaded:
            return self.loaded[name]
        targets = self._targets()
        if not name:
            raise ConfigError(f"{key}: missing; name the {self.kind} adapter (installed: {', '.join(sorted(targets))})")
        if name not in targets:
            hint = difflib.get_close_matches(str(name), list(targets), n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{key}: no {self.kind} adapter {name!r}{did}; installed: {', '.join(sorted(targets))}")
        target = targets[name]
        try:
            adapter = target.load()
        except Exception as e:  # a broken third-party package: one line naming it
            raise ConfigError(f"{key}: the {self.kind} adapter {name!r} ({target.value}, entry point {self.group}) "
                              f"does not load: {e}") from None
        expected = EnvAdapter if self.kind == "env" else PolicyAdapter
        if not isinstance(adapter, expected) or adapter.name != name:
            raise ConfigError(f"{key}: {name!r} is registered but is not an {expected.__name__} named {name!r}")
        self.loaded[name] = adapter
        return adapter

    def all(self) -> list[Any]:
        """Every adapter that loads (for presets and fetch aliases); broken ones are skipped."""
        found = []
        for name in self.names():
            try:
                found.append(self.get(name, self.group))
            except ConfigError:
                continue
        return found


ENVS = _Registry(ENV_GROUP, "env")
POLICIES = _Registry(POLICY_GROUP, "policy")


def env_adapter(name: str, key: str = "env.type") -> EnvAdapter:
    return ENVS.get(name, key)


def policy_adapter(name: str, key: str = "actor.model.model_type") -> PolicyAdapter:
    return POLICIES.get(name, key)


def fetch_aliases() -> dict[str, Alias]:
    """Every adapter's `dagger fetch` aliases by name."""
    return {a.name: a for adapter in [*ENVS.all(), *POLICIES.all()] for a in adapter.fetch_aliases}


def download_kinds() -> list[DownloadKind]:
    """Every adapter's kinds of download, in the adapters' order."""
    return [kind for adapter in [*ENVS.all(), *POLICIES.all()] for kind in adapter.download_kinds]


def preset_folders() -> list[Path]:
    """Folders of preset YAMLs that adapters ship (the bundled presets come first, from `config.presets_dir`)."""
    return [adapter.presets() for adapter in [*ENVS.all(), *POLICIES.all()] if adapter.presets is not None]
