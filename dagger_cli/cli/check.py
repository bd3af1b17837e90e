"""`dagger check PRESET`: is everything this preset needs installed and working? One line per check.

The lines: the config; torch; the env adapter's own probes (simulator, renderer, assets, ...); one env made, reset
and stepped; the student and the expert built (their checkpoints loaded) with what their adapters add; with
runner.logger's wandb backend, its package. A check passes
(✓), passes with a warning (!: it works but is not usable as configured, e.g. a full-size π₀ on a CPU) or fails (✗).

What the libraries print while a check runs (robosuite's macro warnings, LIBERO's "[info] Applying task order" lines,
the simulator workers' output, Python warnings and log records) is captured at the file-descriptor level and dropped,
so that it does not land between check's lines; `--debug` lets it through.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import typer

from dagger_cli.cli._common import ConfigOpt, JsonOpt, PresetArg, SetOpt, examples
from dagger_cli.cli._output import EXIT_CHECK_FAILED, Output, debug_enabled, handle_errors

EXAMPLES = examples("dagger check pick-cube", "dagger check pick-cube --set runner.expert_ckpt_path=expert.pt --json")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False
    """passed, but with a warning (printed with ! instead of ✓; the exit code stays 0)"""


def check(preset: PresetArg = None, config: ConfigOpt = None, set_: SetOpt = None, json_mode: JsonOpt = False) -> None:
    """Check that the simulator imports and steps one env, the models build and checkpoints load."""
    out = Output(json_mode)
    with handle_errors():
        from dagger_cli.core.config_loader import load_config
        from dagger_cli.core.errors import UsageError

        if preset is None:
            raise UsageError("missing PRESET (see `dagger presets`)")
        cfg = load_config(preset, config, list(set_ or []))
        checks = run_checks(cfg, on_result=None if json_mode else lambda c: _print(out, c))
    ok = all(c.ok for c in checks)
    if json_mode:
        out.result({"ok": ok, "preset": cfg.name, "checks": [c.__dict__ for c in checks]})
    if not ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print(out: Output, c: Check) -> None:
    mark = "[red]✗[/]" if not c.ok else "[yellow]![/]" if c.warning else "[green]✓[/]"
    out.out.print(f"{mark} {c.name}: {c.detail}", highlight=False)


def run_checks(cfg, on_result: Callable[[Check], None] | None = None) -> list[Check]:
    """Runs every check in order; a check whose prerequisite failed reports that instead of running. A check's `fn`
    returns its detail, a `CheckWarning` for a line that passes with a warning, or raises."""
    from dagger_cli.core.registry import CheckWarning, env_adapter

    results: list[Check] = []
    state: dict = {}

    def record(name: str, fn: Callable[[], str], needs: tuple[str, ...] = ()) -> None:
        missing = [n for n in needs if not any(c.name == n and c.ok for c in results)]
        if missing:
            c = Check(name, False, f"skipped: {missing[0]} failed")
        else:
            with library_output_captured() as captured:
                try:
                    detail = fn()
                    c = Check(name, True, str(detail), warning=isinstance(detail, CheckWarning))
                except Exception as e:  # every failure becomes a line, never a traceback
                    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    c = Check(name, False, text)
            if not c.ok and captured():
                c.detail += " (--debug shows what the libraries printed)"
        results.append(c)
        if on_result is not None:
            on_result(c)

    record("config", lambda: f"{cfg.name}: valid ({cfg.env.type} {cfg.env.task}, {cfg.actor.model.model_type} student)")
    record("torch", lambda: _torch(cfg, state))
    adapter = env_adapter(cfg.env.type)
    probes = adapter.probes(cfg) if adapter.probes is not None else []
    for probe in probes:
        record(probe.name, probe.run, probe.needs)
    record("env", lambda: _env(cfg, state), needs=tuple(p.name for p in probes))
    record("student", lambda: _model(cfg, state, student=True), needs=("torch",))
    record("expert", lambda: _model(cfg, state, student=False), needs=("torch",))
    if "wandb" in cfg.runner.logger.logger_backends:
        record("logger", lambda: _wandb(cfg))
    return results


@contextlib.contextmanager
def library_output_captured() -> Iterator[Callable[[], str]]:
    """While the block runs, file descriptors 1 and 2 point at a temp file (so do those of processes started
    meanwhile: the simulator's forkserver and workers) and Python warnings are recorded instead of shown; yields a
    function returning what was captured. Under --debug (or DAGGER_DEBUG=1) everything passes through."""
    if debug_enabled():
        yield lambda: ""
        return
    text = ""
    with tempfile.TemporaryFile() as sink:
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with warnings.catch_warnings(record=True) as caught:
                try:
                    yield lambda: text
                finally:
                    for stream in (sys.stdout, sys.stderr):
                        _flush(stream)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            printed = sink.read().decode(errors="replace")
            shown = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
            text = printed + shown


def _flush(stream) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


def _torch(cfg, state) -> str:
    import torch

    from dagger_cli import assembly

    device = assembly.device(cfg)
    state["device"] = device
    cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no CUDA"
    return f"torch {torch.__version__} ({cuda}); student on {device}"


def _wandb(cfg) -> str:
    """runner.logger's wandb backend: the package imports (whether its account is logged in shows when a run starts)."""
    from dagger_cli.core.io.metrics import require_backends

    require_backends(cfg.runner.logger.logger_backends)
    import wandb

    mode = os.environ.get("WANDB_MODE", "online")
    return f"wandb {wandb.__version__}, project {cfg.runner.logger.project_name!r}, WANDB_MODE={mode}"


def _env(cfg, state) -> str:
    import numpy as np

    from dagger_cli import assembly

    start = time.perf_counter()
    with contextlib.closing(assembly.env(cfg, num_envs=1)) as env:
        obs = env.reset([cfg.env.eval.reset_seed_base])
        env.step(np.zeros((1, cfg.actor.model.num_action_chunks, env.action_dim), np.float32))
        state["obs"] = obs
    seconds = time.perf_counter() - start
    shape = {k: v.shape[1:] for k, v in obs.items()} if isinstance(obs, dict) else obs.shape[1:]
    backend = getattr(env, "backend", None)
    return f"{cfg.env.task}{f' ({backend})' if backend else ''}: reset + step ok, obs {shape}, started in {seconds:.1f} s"


def _model(cfg, state, student: bool) -> str:
    """The student or the expert built as a run builds it, with what its adapter adds; the expert labels the env
    check's observation."""
    import numpy as np

    from dagger_cli import assembly
    from dagger_cli.core.registry import SCRIPTED, CheckWarning, policy_adapter

    device = state.get("device", "cpu")
    model, key = (cfg.actor.model, "actor.model") if student else (cfg.rollout.expert_model, "rollout.expert_model")
    build = (lambda: assembly.student(cfg, device)) if student else (lambda: assembly.expert(cfg, device))
    policy = _with_fetch_hint(build, model.model_path, f"{key}.model_path")
    warn = False
    if model.model_type == SCRIPTED:
        detail = f"scripted ({cfg.env.task})"
    else:
        weights = (cfg.runner.ckpt_path if student else cfg.runner.expert_ckpt_path) or model.model_path
        module = getattr(policy, "module", None)
        params = f", {sum(p.numel() for p in module.parameters()):,} parameters" if module is not None else ""
        detail = f"{model.model_type}{params}, {f'loaded {weights}' if weights else 'random init'}"
        describe = policy_adapter(model.model_type, f"{key}.model_type").describe
        if describe is not None:
            described = describe(model, policy, device, student)
            warn = isinstance(described, CheckWarning)
            detail += f"; {described}"
    if not student and "obs" in state:
        action = np.asarray(policy.act(state["obs"]))
        if action.shape[1:] != tuple(policy.action_shape) or not np.isfinite(action).all():
            raise RuntimeError(f"expert returned {action.shape} for one observation, expected (1, {policy.action_shape})")
        detail += f"; labels an observation with a {action.shape[1:]} action"
    return CheckWarning(detail) if warn else detail


def _with_fetch_hint(build: Callable, model_path: str | None, key: str):
    """A missing checkpoint directory: says which `dagger fetch` brings it (or which key to set)."""
    from dagger_cli.core.errors import CheckpointError
    from dagger_cli.core.registry import fetch_aliases

    try:
        return build()
    except CheckpointError as e:
        if "no such" not in str(e) or "checkpoint directory" not in str(e):
            raise
        from dagger_cli.fetching import default_local_dir

        alias = next((a.name for a in fetch_aliases().values()
                      if a.config_key == key and a.repo_id in str(model_path)), None)
        if alias is None:
            raise CheckpointError(f"{e}; set {key} to a checkpoint (see `dagger fetch --list`)") from None
        local = Path(str(model_path)).expanduser()
        where = "" if local == default_local_dir(alias) else f" --local-dir {local}"
        raise CheckpointError(f"{e}; fetch it with `dagger fetch {alias}{where}`") from None
