"""Runs as `dagger report` sees them, grouped: runs whose configs differ only in the seed aggregate."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagger_cli.core.errors import UsageError

T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
"""Student's t 97.5% quantiles for 1..30 degrees of freedom (the normal's 1.96 beyond)"""

X_AXES = {"iteration": ("step", "iteration"), "env_steps": ("time/env_steps", "env steps"),
          "wall": ("time/elapsed_s", "wall time (s)"),
          "expert_queries": ("train/dagger/expert_queries_total", "expert queries (cumulative)")}
"""--x choices: (metric, axis title)"""


def mean_ci(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high): the 95% t-interval of the mean over seeds (low = high = mean for one value)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = (T_975[n - 2] if n - 1 <= len(T_975) else 1.96) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _clamped(stat):
    return (stat[0], max(0.0, stat[1]), min(1.0, stat[2])) if stat else stat


def flat(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@dataclass
class Run:
    run_dir: Path
    config: dict[str, Any]
    """flattened config"""
    row: dict[str, Any]
    """the summary (summary.json) with the run dir and max_epochs"""
    metrics: list[dict[str, Any]]
    """metrics.jsonl rows, one per iteration (step 0: before training)"""

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    def series(self, metric: str, x: str) -> tuple[list[float], list[float]]:
        """(x values, metric values) over the rows that have both (x: a key of X_AXES)."""
        key = X_AXES[x][0]
        xs, ys = [], []
        for row in self.metrics:
            xv = row.get(key, 0.0 if row["step"] == 0 else None)
            if metric in row and row[metric] is not None and xv is not None:
                xs.append(float(xv))
                ys.append(float(row[metric]))
        return xs, ys

    def videos(self) -> list[Path]:
        """mp4 files of the run's latest filmed evaluation."""
        folders = [p for p in (self.run_dir / "videos").glob("*") if p.is_dir() and p.name.isdigit()]
        if not folders:
            return []
        return sorted(max(folders, key=lambda p: int(p.name)).glob("*.mp4"))


@dataclass
class Group:
    """Runs of one config that differ only in their seed."""

    runs: list[Run]
    label: str = ""
    differs: dict[str, Any] = field(default_factory=dict)
    """the config keys in which this group differs from the others, with its values"""

    @property
    def preset(self) -> str:
        return str(self.runs[0].config.get("name", "?"))

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def stat(self, key: str):
        """(mean, low, high) of a summary value over the seeds; success rates' intervals kept within [0, 1]."""
        stat = mean_ci([r.row.get(key) for r in self.runs])
        return _clamped(stat) if key.endswith("_sr") else stat

    def tasks(self) -> dict[str, tuple[float, float, float]]:
        """Final per-task success, mean and interval over the seeds."""
        names: dict[str, list[float]] = {}
        for run in self.runs:
            for task, entry in (run.row.get("student_final_tasks") or {}).items():
                names.setdefault(task, []).append(entry["success_once"])
        return {task: _clamped(mean_ci(values)) for task, values in names.items()}

    def summary(self) -> dict[str, Any]:
        out = {"config": self.label, "preset": self.preset, "seeds": self.seeds, "differs": self.differs,
               "runs": [str(r.run_dir) for r in self.runs]}
        for key in ("student_init_sr", "expert_sr", "train_time_s", "expert_queries", "student_final_sr"):
            stat = self.stat(key)
            out[key] = stat[0] if stat else None
            out[f"{key}_ci95"] = [stat[1], stat[2]] if stat and len(self.runs) > 1 else None
        tasks = self.tasks()
        if tasks:
            out["tasks"] = {t: {"success_once": s[0], "ci95": [s[1], s[2]] if len(self.runs) > 1 else None}
                            for t, s in tasks.items()}
        return out


def load_run(run_dir: Path) -> Run:
    from dagger_cli.core.io.run_dir import read_summary, run_config

    cfg = run_config(run_dir)  # a run dir, readable (one line otherwise)
    summary = read_summary(run_dir)
    if summary is None:
        row = {"preset": cfg.name, "seed": cfg.seed, "status": "not started", "iterations": 0,
               "student_init_sr": None, "expert_sr": None, "student_final_sr": None, "train_time_s": None}
    else:
        row = dict(summary)
    row.update({"run_dir": str(run_dir), "max_epochs": cfg.runner.max_epochs})
    if row["status"] == "finished" and row["iterations"] < cfg.runner.max_epochs:
        row["status"] = "stopped"  # resumed with a longer runner.max_epochs and not run on yet
    metrics = []
    path = Path(run_dir) / "metrics.jsonl"
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                metrics.append(json.loads(line))
            except json.JSONDecodeError:
                raise UsageError(f"{path}:{number}: not a JSON line") from None
    return Run(Path(run_dir), flat(cfg.to_dict()), row, metrics)


IGNORED_KEYS = ("seed",)
"""config keys that do not make runs different configs"""


def group_runs(runs: list[Run]) -> list[Group]:
    """Groups in first-seen order; each labelled by its preset and the keys in which it differs from the others."""
    groups: dict[str, Group] = {}
    for run in runs:
        key = json.dumps({k: v for k, v in run.config.items() if k not in IGNORED_KEYS}, sort_keys=True, default=str)
        groups.setdefault(key, Group([])).runs.append(run)
    found = list(groups.values())
    keys = sorted({k for g in found for k in g.runs[0].config} - set(IGNORED_KEYS))
    varying = [k for k in keys if len({json.dumps(g.runs[0].config.get(k), default=str) for g in found}) > 1]
    for g in found:
        g.differs = {k: g.runs[0].config.get(k) for k in varying}
        extra = ", ".join(f"{k}={v}" for k, v in g.differs.items() if k != "name")
        g.label = g.preset + (f" ({extra})" if extra else "")
    return found


def config_diff(groups: list[Group]) -> list[tuple[str, list[Any]]]:
    """(key, each group's value) for the keys that differ between groups."""
    if len(groups) < 2:
        return []
    return [(k, [g.differs.get(k) for g in groups]) for k in groups[0].differs]
