"""Motion fidelity to the source video, for benchmarks without a ground-truth target.

`flow_epe` is V2VBench's motion alignment with OpenCV DIS flow in place of GMFlow (no weights):
the mean end-point error ‖F_out(t→t+1) − F_src(t→t+1)‖ in pixels over all pixels and frame pairs
(V2VBench reports its negative; lower is better here). An output that moves exactly as the source
scores 0 whatever its colours, a frozen frame scores the source's mean motion. The output is resized
to the source's size first, and both are cut to the shorter length. `warping_error` (source flow,
forward–backward occlusion mask) lives with the ground-truth metrics and is re-exported here.
"""

from __future__ import annotations

import cv2
import numpy as np

from freeprop.baselines.flow_warp import FlowEstimator
from freeprop.eval.metrics.ground_truth import warping_error

__all__ = ["flow_epe", "match_source", "warping_error"]


def match_source(output: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut both videos to the shorter length and resize the output's frames to the source's size."""
    n = min(len(output), len(source))
    output, source = output[:n], source[:n]
    h, w = source.shape[1:3]
    if output.shape[1:3] != (h, w):
        output = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in output])
    return output, source


def flow_epe(output: np.ndarray, source: np.ndarray, flow: FlowEstimator | None = None) -> float:
    """Mean ‖F_out − F_src‖ (pixels) of consecutive-frame flows; 0 = the source's motion exactly."""
    flow = flow or FlowEstimator()
    output, source = match_source(output, source)
    if len(output) < 2:
        return 0.0
    errors = [
        float(np.linalg.norm(flow(output[t], output[t + 1]) - flow(source[t], source[t + 1]), axis=-1).mean())
        for t in range(len(output) - 1)
    ]
    return float(np.mean(errors))
