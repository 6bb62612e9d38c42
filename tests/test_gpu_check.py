"""benchmarks/gpu_check.py, run at toy sizes on the CPU so the script the GPU session runs is known to work."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_section_at_toy_size(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--small", "--out", str(out)],
                   check=True, capture_output=True, env=env, timeout=300)
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert set(sections) == {"ast_rope_overhead", "denoise_step", "train_step", "end_to_end_edit"}
    assert not any("error" in s for s in sections.values()), sections
    for shape in ("480p", "720p"):
        assert math.isfinite(sections["ast_rope_overhead"][shape]["overhead_pct"])
    assert sections["denoise_step"]["native"]["seconds"] > 0
    assert sections["train_step"]["full"]["seconds"] > 0 and sections["train_step"]["full_over_baseline"] > 0
    assert sections["end_to_end_edit"]["frames"] == 5
