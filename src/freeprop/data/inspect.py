"""`freeprop data inspect`: statistics of a pair-format dataset and a contact sheet of sample pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from freeprop.data.pairs import PairDataset, read_index
from freeprop.video import write_image


def statistics(root: str | Path) -> dict:
    """Counts per status / track / task, frame and size distributions, caption lengths, failure reasons."""
    rows = read_index(root).to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    words = [len((r["target_caption"] or "").split()) for r in ok]
    return {
        "samples": len(rows),
        "status": dict(Counter(r["status"] for r in rows)),
        "track/task": dict(Counter(f"{r['track']}/{r['task']}" for r in ok)),
        "split": dict(Counter(r["split"] for r in ok)),
        "frames": dict(Counter(r["num_frames"] for r in ok)),
        "size": dict(Counter(f"{r['height']}x{r['width']}" for r in ok)),
        "with_mask": sum(bool(r["has_mask"]) for r in ok),
        "target_caption_words": {
            "mean": float(np.mean(words)) if words else 0.0,
            "max": max(words, default=0),
        },
        "failures": dict(Counter((r["error"] or "").split(":", 1)[0] for r in rows if r["status"] != "ok")),
    }


def contact_sheet(root: str | Path, count: int = 12, height: int = 96, seed: int = 0) -> np.ndarray:
    """One row per sampled pair: source frame 0 | edited frame 0 | edited middle frame | edit mask."""
    import cv2

    dataset = PairDataset(root)
    picks = np.random.default_rng(seed).permutation(len(dataset))[:count]
    rows = []
    for i in sorted(picks):
        pair = dataset[int(i)]
        mid = len(pair.target) // 2
        mask = (
            np.repeat(pair.mask[0][..., None], 3, -1)
            if pair.mask is not None
            else np.zeros_like(pair.source[0])
        )
        tiles = [pair.source[0], pair.target[0], pair.target[mid], mask]
        width = max(1, round(pair.source.shape[2] * height / pair.source.shape[1]))
        row = np.concatenate(
            [cv2.resize(t, (width, height), interpolation=cv2.INTER_AREA) for t in tiles], axis=1
        )
        cv2.putText(
            row, f"{pair.task}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
        )
        rows.append(row)
    widest = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, widest - r.shape[1]), (0, 0))) for r in rows], axis=0)


def inspect(root: str | Path, output: str | Path | None = None, count: int = 12) -> dict:
    stats = statistics(root)
    if output is not None and stats["status"].get("ok"):
        write_image(output, contact_sheet(root, count))
    return stats
