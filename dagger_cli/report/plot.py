"""Learning curves (matplotlib, headless): one panel per quantity, one colour per config, seeds as a band."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dagger_cli.core.errors import DaggerError
from dagger_cli.report.runs import X_AXES, Group, mean_ci

PANELS = [
    ("eval/success_once", "student success (eval, student alone)", True),
    ("env/success_once", "training success (beta-mixed policy)", True),
    ("train/dagger/beta", "beta", False),
    ("train/dagger/actor_loss", "actor loss", False),
    ("train/replay_buffer/cache_size", "replay buffer (samples)", False),
]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise DaggerError("dagger report --plot needs matplotlib: pip install 'dagger-cli[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _wilson(successes: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from dagger_cli.core.engine.stats import wilson_interval

    bounds = [wilson_interval(int(round(s)), int(k)) for s, k in zip(successes, n)]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def curve(group: Group, metric: str, x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(x, mean, low, high) at the iterations every seed has: the 95% interval over seeds, or for one run of
    the student's evaluation its Wilson interval; not below 0 where no value is, success rates not above 1."""
    per_run = []
    for run in group.runs:
        steps, values = run.series(metric, "iteration")
        xs, _ = run.series(metric, x)
        per_run.append({s: (xv, v) for s, xv, v in zip(steps, xs, values)})
    common = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    if not common:
        return None
    xs = np.array([np.mean([p[s][0] for p in per_run]) for s in common])
    stats = [mean_ci([p[s][1] for p in per_run]) for s in common]
    mean = np.array([m for m, _, _ in stats])
    low, high = np.array([lo for _, lo, _ in stats]), np.array([hi for _, _, hi in stats])
    values = [p[s][1] for p in per_run for s in common if p[s][1] is not None]
    if values and min(values) >= 0:  # a band of a loss, a count or a rate stays where its values can be
        low = np.maximum(low, 0.0)
    if "success" in metric:
        high = np.minimum(high, 1.0)
    if len(group.runs) == 1 and metric == "eval/success_once":
        run = group.runs[0]
        episodes = dict(zip(*run.series("eval/episodes", "iteration")))
        n = np.array([episodes.get(s, 0) for s in common])
        if n.all():
            low, high = _wilson(mean * n, n)
    return xs, mean, low, high


def plot_groups(groups: list[Group], path: Path, x: str = "iteration") -> Path:
    """Writes the curves of `groups` to `path` (PNG, or any format matplotlib knows by the suffix)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), layout="constrained")
    handles: list = []
    axes = axes.ravel()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, title, is_rate) in zip(axes, PANELS):
        for index, group in enumerate(groups):
            colour = colours[index % len(colours)]
            seeds = f", {len(group.runs)} seeds" if len(group.runs) > 1 else ""
            found = curve(group, metric, x)
            if found is None:
                continue
            xs, mean, low, high = found
            line = ax.plot(xs, mean, marker="o" if len(xs) < 30 else None, ms=3, color=colour)[0]
            if ax is axes[0]:
                handles.append((line, group.label + seeds))
            if is_rate:
                low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
            if (high > low).any():
                ax.fill_between(xs, low, high, color=colour, alpha=0.2, linewidth=0)
            if metric == "eval/success_once":
                for key, style in (("expert_sr", "--"), ("student_init_sr", ":")):
                    level = group.stat(key)
                    if level is not None:
                        ax.axhline(level[0], color=colour, linestyle=style, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel(X_AXES[x][1])
        if x == "iteration":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if is_rate:
            ax.set_ylim(-0.03, 1.03)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
    handles += [(Line2D([], [], color="grey", linestyle="--", linewidth=1), "expert (evaluated alone)"),
                (Line2D([], [], color="grey", linestyle=":", linewidth=1), "initial student"),
                (Patch(color="grey", alpha=0.2), "95% interval (over seeds; one run: Wilson)")]
    fig.legend([h for h, _ in handles], [label for _, label in handles], loc="outside lower center",
               ncol=min(3, len(handles)), fontsize=9, frameon=False)
    _final_bars(axes[5], groups)
    title = ", ".join(sorted({g.preset for g in groups}))
    fig.suptitle(f"dagger report: {title}", fontsize=13)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _final_bars(ax, groups: list[Group]) -> None:
    """The results table's three levels per config: initial student, expert, final student (mean and interval)."""
    from matplotlib.ticker import PercentFormatter

    keys = [("student_init_sr", "initial student"), ("expert_sr", "expert"), ("student_final_sr", "final student")]
    width = 0.8 / max(1, len(groups))
    for index, group in enumerate(groups):
        stats = [group.stat(k) for k, _ in keys]
        means = [s[0] if s else 0 for s in stats]
        errors = [[s[0] - s[1] if s else 0 for s in stats], [s[2] - s[0] if s else 0 for s in stats]]
        ax.bar(np.arange(3) + index * width, means, width, yerr=errors, capsize=3, label=group.label)
    ax.set_xticks(np.arange(3) + width * (len(groups) - 1) / 2, [label for _, label in keys])
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title("success: initial, expert, final")
    ax.grid(alpha=0.3, axis="y")
