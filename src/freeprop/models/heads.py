"""Spatial / temporal attention-head classification (paper §8.1).

For one video and one self-attention head, the N×N attention map (N = F'·H'·W' tokens, frame-major)
is cut into an F'×F' grid of blocks A_ij (queries of latent frame i, keys of latent frame j). The
density of a block is the fraction of its scores above ε (Eq. 6, ε = 1e-6). A head is **temporal**
iff its densest off-diagonal block is denser than its sparsest diagonal block (Eq. 7); otherwise it is
spatial. The final label is a majority vote over several videos (10 in the paper; ties → spatial).

At real sizes N is tens of thousands, so N×N maps are out of the question. Densities are then
estimated from r = `rows_per_frame` query rows sampled uniformly without replacement in every latent
frame (default 64): each sampled row's softmax is exact over all N keys, so ρ_ij is unbiased, and memory
stays at `F'·r × N` floats per head (176 MB at 480p×81 frames). The rows are a *cluster* sample (the
scores of one row are correlated), so the standard error is that of a mean of r per-row densities,
sd_ij/√r·√(1 − r/H'W') ≤ 0.5/√r — not 0.5/√(r·H'W') (tests/models/test_heads.py measures it).
Eq. 7 takes a max and a min over noisy blocks, so noise leans it towards "temporal"; against that,
`aggregate="mean"` averages the densities over the videos before Eq. 7 (√V less noise) instead of
the paper's per-video majority vote (the default). `rows_per_frame=None` (or ≥ H'W') is exact.

The probe runs the model as identity propagation (source = the video, first frame = its frame 0,
z_t = (1−σ)·z_src + σ·ε at `timestep` = 1000σ) with empty text and plain RoPE (α_S = 0, α_T = 1), so
it measures the backbone's own head behaviour, not a partly trained AST-RoPE.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from freeprop.errors import FreePropInputError
from freeprop.models.ast_rope import HEAD_TYPE_NAMES, ASTRoPEAttnProcessor
from freeprop.models.transformer import FreePropTransformer, build_ffp_input


@dataclass(frozen=True)
class HeadClassifierConfig:
    epsilon: float = 1e-6  # ε of Eq. 6: scores above it count as "active"
    rows_per_frame: int | None = 64  # sampled query rows per latent frame; None = every row (exact)
    timestep: float = 500.0  # noise level of the probe, in [0, 1000]
    text_tokens: int = 512  # empty prompt length (Wan pads umT5 output to 512 tokens)
    seed: int = 0
    aggregate: str = "vote"  # "vote": Eq. 7 per video, then majority (§8.1); "mean": Eq. 7 on mean densities

    def __post_init__(self):
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon}")
        if self.rows_per_frame is not None and self.rows_per_frame < 1:
            raise ValueError(f"rows_per_frame must be ≥ 1 or None, got {self.rows_per_frame}")
        if not 0 <= self.timestep <= 1000:
            raise ValueError(f"timestep must be in [0, 1000], got {self.timestep}")
        if self.aggregate not in ("vote", "mean"):
            raise ValueError(f"aggregate must be 'vote' or 'mean', got {self.aggregate!r}")


def attention_density(
    query: torch.Tensor,
    key: torch.Tensor,
    num_frames: int,
    epsilon: float = 1e-6,
    rows_per_frame: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Block densities ρ_ij (Eq. 6) of each head's softmax attention.

    Args:
        query, key: `(S, H, Dh)` post-RoPE projections of one sample, S = F'·H'W' frame-major.
        num_frames: F'.
        rows_per_frame: query rows sampled per frame; None or ≥ H'W' → all rows (exact).

    Returns:
        `(H, F', F')` float densities, row i = query frame, column j = key frame.
    """
    seq, heads, head_dim = query.shape
    per_frame = seq // num_frames
    if rows_per_frame is None or rows_per_frame >= per_frame:
        rows = torch.arange(seq, device=query.device).view(num_frames, per_frame)  # (F', HW)
    else:
        picks = [torch.randperm(per_frame, generator=generator)[:rows_per_frame] for _ in range(num_frames)]
        offsets = torch.arange(num_frames)[:, None] * per_frame
        rows = (torch.stack(picks) + offsets).to(query.device)  # (F', r)
    r = rows.shape[1]
    densities = []
    for h in range(heads):  # one head at a time bounds memory to (F'·r) × S scores
        q = query[rows.flatten(), h].float()  # (F'·r, Dh)
        k = key[:, h].float()  # (S, Dh)
        scores = torch.softmax(q @ k.T / math.sqrt(head_dim), dim=-1)  # (F'·r, S)
        active = (scores > epsilon).float().view(num_frames, r, num_frames, per_frame)
        densities.append(active.mean(dim=(1, 3)))  # (F', F')
    return torch.stack(densities)


def classify_from_density(density: torch.Tensor) -> torch.Tensor:
    """Eq. 7: temporal iff max off-diagonal density > min diagonal density. `(H, F', F')` → bool `(H,)`.

    With a single latent frame there is no off-diagonal block: every head is spatial.
    """
    frames = density.shape[-1]
    diagonal = torch.eye(frames, dtype=torch.bool, device=density.device)
    if frames == 1:
        return torch.zeros(density.shape[0], dtype=torch.bool)
    max_off = density.masked_fill(diagonal, -1.0).amax(dim=(-2, -1))
    min_diag = density.diagonal(dim1=-2, dim2=-1).amin(dim=-1)
    return max_off > min_diag


def majority_vote(votes: torch.Tensor) -> torch.Tensor:
    """`(V, L, H)` bool (True = temporal) → `(L, H)`: temporal iff more than half the videos say so."""
    return votes.sum(dim=0) * 2 > votes.shape[0]


def to_head_map(temporal: torch.Tensor) -> dict[str, list[str]]:
    """`(L, H)` bool → `{"0": ["spatial", "temporal", ...], ...}` (the JSON that the model loads)."""
    return {str(layer): [HEAD_TYPE_NAMES[int(t)] for t in row] for layer, row in enumerate(temporal)}


class _DensityProbe:
    """Installs a capture callback on every AST-RoPE processor; computes densities per layer."""

    def __init__(self, model: FreePropTransformer, num_frames: int, cfg: HeadClassifierConfig, generator):
        self.model, self.num_frames, self.cfg, self.generator = model, num_frames, cfg, generator
        self.densities: dict[int, torch.Tensor] = {}

    def __call__(self, layer: int, query: torch.Tensor, key: torch.Tensor) -> None:
        self.densities[layer] = attention_density(
            query[0], key[0], self.num_frames, self.cfg.epsilon, self.cfg.rows_per_frame, self.generator
        ).cpu()

    def __enter__(self):
        for block in self.model.blocks:
            if isinstance(block.attn1.processor, ASTRoPEAttnProcessor):
                block.attn1.processor.capture = self
        return self

    def __exit__(self, *exc):
        for block in self.model.blocks:
            if isinstance(block.attn1.processor, ASTRoPEAttnProcessor):
                block.attn1.processor.capture = None


@torch.no_grad()
def head_densities(
    model: FreePropTransformer,
    source_latents: torch.Tensor,
    cfg: HeadClassifierConfig = HeadClassifierConfig(),
) -> torch.Tensor:
    """Run one identity-propagation probe on a `(1, C, F', h, w)` latent video; `(L, H, F', F')` densities."""
    generator = torch.Generator().manual_seed(cfg.seed)
    device, dtype = model.device, model.dtype
    z_src = source_latents.to(device=device, dtype=dtype)
    sigma = cfg.timestep / 1000.0
    noise = torch.randn(z_src.shape, generator=generator).to(device=device, dtype=dtype)
    noisy = (1 - sigma) * z_src + sigma * noise
    x = build_ffp_input(noisy, z_src, z_src[:, :, :1], model.mask_channels)
    text = torch.zeros(1, cfg.text_tokens, model.config.text_dim, device=device, dtype=dtype)
    image = None
    if model.config.image_dim:
        image = torch.zeros(1, 257, model.config.image_dim, device=device, dtype=dtype)
    timestep = torch.tensor([cfg.timestep], device=device)
    plain = (torch.zeros(1, device=device), torch.ones(1, device=device))
    num_frames = z_src.shape[2] // model.config.patch_size[0]
    with _DensityProbe(model, num_frames, cfg, generator) as probe:
        model(x, timestep, text, image, alphas=plain)
    return torch.stack([probe.densities[i] for i in range(len(model.blocks))])


def classify_heads(
    model: FreePropTransformer,
    latent_videos: Iterable[torch.Tensor],
    cfg: HeadClassifierConfig = HeadClassifierConfig(),
    progress: bool = True,
) -> tuple[dict[str, list[str]], torch.Tensor]:
    """Classify every self-attention head over videos (paper §8.1; `cfg.aggregate`, module docstring).

    Args:
        latent_videos: `(1, C, F', h, w)` source latents, one per video (10 in the paper).

    Returns:
        `(head_map, votes)`: the JSON-ready map and the `(V, L, H)` per-video temporal votes.
    """
    densities = [
        head_densities(model, latents, cfg)  # (L, H, F', F')
        for latents in tqdm(list(latent_videos), desc="classifying heads", disable=not progress)
    ]
    if not densities:
        raise ValueError("classify_heads needs at least one video")
    votes = torch.stack([torch.stack([classify_from_density(d) for d in video]) for video in densities])
    if cfg.aggregate == "mean":
        mean = torch.stack(densities).mean(dim=0)  # (L, H, F', F'); needs one F' for every video
        return to_head_map(torch.stack([classify_from_density(d) for d in mean])), votes
    return to_head_map(majority_vote(votes)), votes  # votes: (V, L, H)


def read_head_map(path: str | Path) -> dict:
    """A head map from JSON: either the map itself or a `freeprop heads classify` report."""
    path = Path(path)
    if not path.is_file():
        raise FreePropInputError(f"{path}: no such head-map file; run `freeprop heads classify` first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FreePropInputError(f"{path}: not a JSON head map ({err})") from None
    head_map = data.get("head_map", data) if isinstance(data, dict) else data
    kinds = ("spatial", "temporal")
    well_formed = isinstance(head_map, dict) and head_map and all(
        str(layer).isdigit() and isinstance(row, list) and row and all(k in kinds for k in row)
        for layer, row in head_map.items()
    )
    if not well_formed:
        raise FreePropInputError(
            f"{path}: not a head map; expected {{\"0\": [\"spatial\", \"temporal\", …], …}} "
            "as written by `freeprop heads classify`"
        )
    return head_map
