"""The evaluation report: per-case CSV, summary JSON, a Markdown table in the paper's Table 1 layout,
and an HTML page with a bar plot per metric (matplotlib) and side-by-side thumbnails of every method.

All files are written atomically into the report folder:
`per_case.csv`, `summary.json`, `table.md`, `report.html` (+ `plots/*.png`, `thumbs/*.jpg`).
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

import numpy as np

from freeprop.video import atomic_path

# (key, header, digits): the paper's Table 1 columns first (§5.1), then our extras.
COLUMNS = (
    ("clip", "CLIP ↑", 3),
    ("dino", "DINO ↑", 3),
    ("frame", "Frame ↑", 3),
    ("video", "Video ↑", 3),
    ("pick", "Pick ↑", 3),
    ("vlm", "VLM ↑", 3),
    ("vlm_failures", "VLM failed frames/case", 2),  # frames the judge gave no usable score (left out of VLM)
    ("motion", "Motion EPE ↓", 3),
    ("warp", "Warp err ↓", 3),
    ("psnr", "PSNR ↑", 2),
    ("ssim", "SSIM ↑", 3),
    ("masked_psnr", "Masked PSNR ↑", 2),
    ("first_frame_psnr", "Frame-0 PSNR ↑", 2),
    ("flicker_ratio", "Flicker ×", 3),
)


def _present(summary: dict) -> list[tuple[str, str, int]]:
    keys = {k for s in summary.values() for k in s["mean"]}
    return [c for c in COLUMNS if c[0] in keys]


def markdown_table(summary: dict, bench: str) -> str:
    columns = _present(summary)
    lines = [
        "| Benchmark | Method | Resolution | Frames | " + " | ".join(h for _, h, _ in columns) + " | cases |",
        "|---|---|---|---|" + "---|" * len(columns) + "---|",
    ]
    for method, s in summary.items():
        cells = [f"{s['mean'][k]:.{d}f}" if k in s["mean"] else "–" for k, _, d in columns]
        size = s.get("resolution") or "–"
        lines.append(f"| {bench} | {method} | {size} | {s.get('frames') or '–'} | " + " | ".join(cells)
                     + f" | {s['cases']} |")
    return "\n".join(lines) + "\n"


# EditVerse's metric names (its automatic_evaluation modules), for CSVs in its shape
EDITVERSE_NAMES = {
    "clip": "clip_temporal_consistency", "dino": "dino_temporal_consistency", "frame": "frame_text_alignment",
    "video": "video_text_alignment", "pick": "pick_score_video_quality", "vlm": "editing_vlm_evaluation",
}


def _mean_of_numbers(values) -> float:
    """Mean of the values that are numbers and not NaN (NaN when there are none: a column every case failed)."""
    numbers = [v for v in values if isinstance(v, int | float) and v == v]
    return float(np.mean(numbers)) if numbers else float("nan")


def write_editverse_csvs(rows: list[dict], folder: Path) -> None:
    """One CSV per method in EditVerse's shape: `id`, its metric columns, `type`, and a final `Average` row."""
    folder.mkdir(parents=True, exist_ok=True)
    for method in dict.fromkeys(r["method"] for r in rows):
        ok = [r for r in rows if r["method"] == method and "error" not in r]
        keys = [k for k in EDITVERSE_NAMES if any(k in r for r in ok)]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["id", *(EDITVERSE_NAMES[k] for k in keys), "type"])
        for r in ok:
            writer.writerow([r["case_id"], *(r.get(k, "") for k in keys), r.get("task", "")])
        averages = [_mean_of_numbers(r.get(k) for r in ok) for k in keys]
        writer.writerow(["Average", *averages, ""])
        with atomic_path(folder / f"{method}.csv") as tmp:
            tmp.write_text(buffer.getvalue())


def write_csv(rows: list[dict], path: Path) -> None:
    keys = ["method", "case_id", "task"] + sorted(
        {k for r in rows for k in r} - {"method", "case_id", "task"}
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in keys})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _bar_plot(summary: dict, key: str, header: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in summary if key in summary[m]["mean"]]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(methods), 2.6), dpi=100)
    values = [summary[m]["mean"][key] for m in methods]
    ax.bar(range(len(methods)), values, color=[f"C{i}" for i in range(len(methods))])
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right", fontsize=8)
    ax.set_title(header, fontsize=9)
    for i, v in enumerate(values):
        ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def thumbnail_strip(frames: np.ndarray, height: int = 72, count: int = 3) -> np.ndarray:
    """First / middle / last frames side by side at `height` pixels."""
    import cv2

    picks = sorted({0, len(frames) // 2, len(frames) - 1})[:count]
    h, w = frames.shape[1:3]
    width = max(1, round(w * height / h))
    return np.concatenate(
        [cv2.resize(frames[i], (width, height), interpolation=cv2.INTER_AREA) for i in picks], axis=1
    )


def write_report(
    out_dir: Path,
    rows: list[dict],
    summary: dict,
    bench: str,
    thumbnails: dict[str, dict[str, np.ndarray]] | None = None,
    notes: list[str] = (),
    title: str | None = None,
    provenance: dict | None = None,
) -> None:
    """Write every report file; `thumbnails[case_id][label]` = an RGB strip (source and each method)."""
    from freeprop.video import write_image, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "per_case.csv")
    write_editverse_csvs(rows, out_dir / "per_case_editverse")
    write_json(out_dir / "summary.json", {"bench": title or bench, "methods": summary, "provenance": provenance})
    table = markdown_table(summary, bench)
    with atomic_path(out_dir / "table.md") as tmp:
        tmp.write_text(table)

    (out_dir / "plots").mkdir(exist_ok=True)
    plots = []
    for key, header, _ in _present(summary):
        _bar_plot(summary, key, header, out_dir / "plots" / f"{key}.png")
        plots.append(f'<img src="plots/{key}.png" alt="{html.escape(header)}">')

    thumbs = []
    if thumbnails:
        (out_dir / "thumbs").mkdir(exist_ok=True)
        for case_id, strips in thumbnails.items():
            cells = []
            for label, strip in strips.items():
                name = f"thumbs/{case_id}-{label}.jpg".replace(" ", "_")
                write_image(out_dir / name, strip)
                cells.append(
                    f'<figure><img src="{html.escape(name)}"><figcaption>{html.escape(label)}</figcaption></figure>'
                )
            thumbs.append(f"<h3>{html.escape(case_id)}</h3><div class=row>{''.join(cells)}</div>")

    header = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in _present(summary))
    body = "".join(
        f"<tr><td>{html.escape(m)}</td>"
        + "".join(
            f"<td>{s['mean'][k]:.{d}f}</td>" if k in s["mean"] else "<td>–</td>"
            for k, _, d in _present(summary)
        )
        + f"<td>{s['cases']}</td><td>{s['errors']}</td></tr>"
        for m, s in summary.items()
    )
    page = f"""<!doctype html><meta charset="utf-8"><title>FreeProp evaluation — {html.escape(title or bench)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}}
.row{{display:flex;gap:8px;flex-wrap:wrap}} figure{{margin:0}} figcaption{{font-size:12px}}</style>
<h1>FreeProp evaluation — {html.escape(title or bench)}</h1>
<table><tr><th>method</th>{header}<th>cases</th><th>errors</th></tr>{body}</table>
{"".join(f"<p>{html.escape(n)}</p>" for n in notes)}
<p>Per-case values: <a href="per_case.csv">per_case.csv</a>; means: <a href="summary.json">summary.json</a>;
Markdown: <a href="table.md">table.md</a>.</p>
<h2>Metrics</h2><div class=row>{"".join(plots)}</div>
<h2>Cases (first / middle / last frame)</h2>{"".join(thumbs)}
"""
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(page)
