"""Loading a run's config: a bundled preset (or a saved run's YAML), an overlay file and `--set` overrides, built key
by key into the schema's dataclasses (`dagger_cli.core.config`) with one-line errors naming the key ("did you
mean"), then validated."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from dagger_cli.core.config import Config, EnvConfig, ModelConfig, validate
from dagger_cli.core.errors import ConfigError, UsageError

# LOADING
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Checks `value` against the annotation `tp` and returns it in canonical form."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}{did}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, key_tp, key): _coerce(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")  # a bug in this module, not user input


def _build(cls: type, data: Any, prefix: str) -> Any:
    """`cls` (or, for a section an adapter owns, the adapter's subclass) from plain data, key by key."""
    where = prefix or "the config root"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    if hasattr(cls, "adapter_config"):
        cls = cls.adapter_config(data, prefix)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown key {dotted!r}{_did_you_mean(dotted, _class_keys(cls, prefix))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, dotted)
        else:
            kwargs[key] = _coerce(value, tp, dotted)
    for key in names:  # sections left out still get their adapter's class
        tp = hints[key]
        if key not in kwargs and dataclasses.is_dataclass(tp) and hasattr(tp, "adapter_config"):
            kwargs[key] = _build(tp, _default_data(cls, key), f"{prefix}.{key}" if prefix else key)
    return cls(**kwargs)


def _default_data(cls: type, name: str) -> dict[str, Any]:
    """The plain data of field `name`'s default (e.g. rollout.expert_model's `model_type: scripted`)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return {"model_type": default.model_type} if hasattr(default, "model_type") else {}


def _class_keys(cls: type, prefix: str) -> list[str]:
    """Dotted leaf keys a section class declares (adapter sections below it at their default adapter)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        keys += _class_keys(hints[f.name], dotted) if dataclasses.is_dataclass(hints[f.name]) else [dotted]
    return keys


def _did_you_mean(dotted: str, candidates: list[str]) -> str:
    leaf = dotted.rsplit(".", 1)[-1]
    match = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6)
    if not match:
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in candidates}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.7)
        match = [by_leaf[leaf_match[0]]] if leaf_match else []
    return f" (did you mean {match[0]!r}?)" if match else ""


ADAPTER_SECTIONS = {("env",): "type", ("actor", "model"): "model_type", ("rollout", "expert_model"): "model_type"}
"""the sections an adapter owns, and the key that picks it"""


def _prune_section(data: dict[str, Any], path: tuple[str, ...]) -> None:
    """Drops, in place, the keys of section `path` that only *other* adapters of that section declare."""
    from dagger_cli.core.registry import ENVS, POLICIES

    parent = data
    for part in path[:-1]:
        parent = parent.get(part)
        if not isinstance(parent, dict):
            return
    section = parent.get(path[-1])
    if not isinstance(section, dict):
        return
    key = ".".join(path)
    if path == ("env",):
        chosen, others = EnvConfig.adapter_config(section, key), [a.config for a in ENVS.all()]
    else:
        chosen, others = ModelConfig.adapter_config(section, key), [a.config for a in POLICIES.all()]
    own = {f.name for f in dataclasses.fields(chosen)}
    foreign = {f.name for cls in others for f in dataclasses.fields(cls)} - own
    parent[path[-1]] = {k: v for k, v in section.items() if k not in foreign}


def drop_other_adapters_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Plain config data without the keys that only *other* adapters of a section declare. Configs saved before
    adapters owned their keys carried every adapter's defaults (env.image_size in a ManiSkill run, actor.model.pi0
    beside an MLP); this keeps such run directories readable. Only for saved runs and for a section whose adapter
    a `--set` changes: a key a user writes for the wrong adapter stays an error."""
    data = merge(data, {})
    for path in ADAPTER_SECTIONS:
        _prune_section(data, path)
    return data


def config_from_dict(data: Any) -> Config:
    """Builds and validates a Config from plain data (a parsed YAML mapping)."""
    return validate(_build(Config, data, ""))


# FILES AND OVERRIDES
def read_yaml(path: Path) -> dict[str, Any]:
    """Reads a YAML mapping; a missing file or a syntax error is a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlays `overlay` on `base` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parses `a.b.c=VALUE` into (["a", "b", "c"], yaml-parsed VALUE)."""
    if "=" not in text:
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, e.g. --set runner.max_epochs=20")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise UsageError(f"--set {key}: cannot parse value {raw!r}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies `--set` overrides to plain config data; unknown keys are reported by `config_from_dict`, which
    knows the keys of the adapters the data selects."""
    data = merge(data, {})
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
        if (tuple(parts[:-1]), parts[-1]) in ADAPTER_SECTIONS.items():  # another adapter: the preset's keys for
            _prune_section(data, tuple(parts[:-1]))  # the one it replaces go
    return data


# PRESETS
def presets_dir() -> Path:
    """The bundled presets folder (shipped inside the package as `dagger_cli/presets`)."""
    from importlib.resources import files

    return Path(str(files("dagger_cli.presets")))


def _preset_files() -> dict[str, Path]:
    """Preset name -> YAML: the bundled ones, then those adapters ship (a bundled name wins)."""
    from dagger_cli.core.registry import preset_folders

    found: dict[str, Path] = {}
    for folder in [presets_dir(), *preset_folders()]:
        for path in sorted(Path(folder).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def preset_names() -> list[str]:
    return sorted(_preset_files())


def preset_path(name: str) -> Path:
    bundled = presets_dir() / f"{name}.yaml"
    if bundled.is_file():  # without loading any adapter
        return bundled
    files = _preset_files()
    if name not in files:
        hint = difflib.get_close_matches(name, list(files), n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UsageError(f"unknown preset {name!r}{did}; available: {', '.join(sorted(files))}")
    return files[name]


def preset_description(name: str) -> str:
    data = read_yaml(preset_path(name))
    return str(data.get("description", ""))


def load_config(
    preset: str | None = None,
    config_file: Path | None = None,
    overrides: list[str] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Resolves a run's config: `base` data or a bundled preset, then an overlay file, then `--set` overrides."""
    data = dict(base) if base is not None else {}
    if preset is not None:
        data = merge(data, read_yaml(preset_path(preset)))
        data.setdefault("name", preset)
    if config_file is not None:
        data = merge(data, read_yaml(Path(config_file)))
    data = apply_overrides(data, list(overrides))
    return config_from_dict(data)
