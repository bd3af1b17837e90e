"""One self-contained HTML file: tables, the curves inline, the per-task table, the config diff and the videos."""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path
from typing import Any

from dagger_cli.report.runs import Group, config_diff

EMBED_VIDEO_BYTES = 8 * 2**20
"""videos up to this size go inline; larger ones are linked (relative to the HTML file)"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.curves { max-width: 100%; border: 1px solid #ddd; }
video { width: 320px; margin: 0.3em; }
figure { display: inline-block; margin: 0.3em; }
figcaption { font-size: 0.8em; color: #555; }
"""

READY = """
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.ready = "yes";
});
"""


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _pct_ci(summary: dict[str, Any], key: str) -> str:
    text = _pct(summary.get(key))
    ci = summary.get(f"{key}_ci95")
    return text + (f" ({_pct(ci[0])}–{_pct(ci[1])})" if ci else "")


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def _table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = [f"<td{' class=num' if i >= numeric_from else ''}>{html.escape(str(c))}</td>"
                 for i, c in enumerate(row)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def write_html(groups: list[Group], path: Path, x: str = "iteration") -> Path:
    from dagger_cli.report.plot import plot_groups

    path = Path(path)
    summaries = [g.summary() for g in groups]
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>dagger report</title><style>{STYLE}</style>"
             f"<script>{READY}</script></head><body>", "<h1>dagger report</h1>"]
    # RESULTS: the seed's columns, one row per config (mean and 95% interval over its seeds)
    parts.append("<h2>Results</h2>")
    parts.append(_table(
        ["Config", "Seeds", "Student init SR", "Expert SR", "Training time", "Expert queries", "Student final SR"],
        [[s["config"], ", ".join(map(str, s["seeds"])), _pct_ci(s, "student_init_sr"), _pct_ci(s, "expert_sr"),
          _duration(s["train_time_s"]), _count(s.get("expert_queries")), _pct_ci(s, "student_final_sr")]
         for s in summaries],
    ))
    parts.append("<h3>Runs</h3>")
    parts.append(_table(
        ["Run", "Config", "Seed", "Status", "Student init SR", "Expert SR", "Training time", "Expert queries",
         "Student final SR"],
        [[r.row["run_dir"], g.label, r.seed, f"{r.row['status']} ({r.row['iterations']}/{r.row['max_epochs']})",
          _pct(r.row.get("student_init_sr")), _pct(r.row.get("expert_sr")), _duration(r.row.get("train_time_s")),
          _count(r.row.get("expert_queries")), _pct(r.row.get("student_final_sr"))] for g in groups for r in g.runs],
        numeric_from=4,
    ))
    # CURVES
    with tempfile.TemporaryDirectory() as tmp:
        png = plot_groups(groups, Path(tmp) / "curves.png", x)
        data = base64.b64encode(png.read_bytes()).decode()
    parts.append("<h2>Learning curves</h2>")
    parts.append(f'<img class=curves alt="learning curves" src="data:image/png;base64,{data}">')
    # PER TASK
    tasks = sorted({t for s in summaries for t in s.get("tasks", {})})
    if tasks:
        parts.append("<h2>Per-task success (student, final evaluation)</h2>")
        parts.append(_table(["Task", *[s["config"] for s in summaries]],
                            [[t, *[_pct(s.get("tasks", {}).get(t, {}).get("success_once")) for s in summaries]]
                             for t in tasks]))
    # CONFIG DIFF
    diff = config_diff(groups)
    if diff:
        parts.append("<h2>Config differences</h2>")
        parts.append(_table(["Key", *[g.label for g in groups]], [[k, *map(str, v)] for k, v in diff]))
    # VIDEOS
    videos = [(r, v) for g in groups for r in g.runs for v in r.videos()]
    if videos:
        parts.append("<h2>Evaluation videos (latest filmed evaluation of each run)</h2>")
        for run, video in videos:
            caption = html.escape(f"{run.run_dir.name} · iteration {video.parent.name} · {video.stem}")
            if video.stat().st_size <= EMBED_VIDEO_BYTES:
                src = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
            else:
                src = html.escape(_relative(video, path.parent))
            parts.append(f"<figure><video controls muted src=\"{src}\"></video><figcaption>{caption}</figcaption>"
                         "</figure>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def _relative(target: Path, base: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), base.resolve())
