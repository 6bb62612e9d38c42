"""Training objectives: flow matching (paper §4.1) and identity-propagation self-distillation (§4.3).

Flow matching (rectified flow, as Wan / VideoX-Fun / DiffSynth train it):
    x_t = (1 − σ)·x₀ + σ·ε,   target v = ε − x₀,   timestep = 1000·σ,   L_FM = ‖v̂ − v‖².
σ is drawn either uniformly from the 1000 *shifted* training sigmas of
`FlowMatchEulerDiscreteScheduler(shift)` (VideoX-Fun's `--uniform_sampling`, DiffSynth; shift 5) or
by SD3's logit-normal density (diffusers `compute_density_for_timestep_sampling`) mapped to the
same table.

Self-distillation compares block features of the student (FFP task) with those of the teacher
(identity propagation: the same network conditioned on the target video as its source), both of
shape `(B, F', H'·W', C)`. Before either loss, features are average-pooled spatially by `K_S` and
their tokens L2-normalised over channels (our choice; the paper does not say), so Gram entries are
cosine similarities in [−1, 1] and the losses do not depend on feature scale.

- Motion loss, Eq. (1)–(3): G[i, a, j, b] = ⟨z_i,a, z_j,b⟩ over all frame pairs; the loss is the mean
  absolute difference between student and teacher Grams over the F'(F'−1) off-diagonal frame pairs
  (and, within a pair, the mean over its N×N entries, so the value does not grow with N).
- First-frame MMD loss, Eq. (4): S_i = z_1·z_iᵀ (N×N); its N rows are samples of P_i; d_i = MMD²(P_1, P_i)
  with an RBF kernel (biased V-statistic, ≥ 0); the loss is Σ_{i≥2} |d_i − d̂_i| (mean over the batch).
  Bandwidth: the median heuristic on the teacher's pairwise distances (detached), shared by student
  and teacher so that d_i and d̂_i are measured on one scale; a fixed bandwidth may be set instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling

# ----------------------------------------------------------------------------------------------
# Flow matching
# ----------------------------------------------------------------------------------------------


def training_sigmas(shift: float = 5.0, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The scheduler's shifted sigmas σ' = shift·σ / (1 + (shift − 1)·σ), descending from 1 (length 1000)."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=num_train_timesteps, shift=shift
    ).sigmas.clone()


def sample_sigmas(
    batch: int,
    sigmas: torch.Tensor,
    scheme: str = "uniform",
    generator: torch.Generator | None = None,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
) -> torch.Tensor:
    """Draw `(batch,)` σ from the shifted table: uniform index, or SD3 logit-normal density over indices."""
    if scheme == "uniform":
        index = torch.randint(0, len(sigmas), (batch,), generator=generator)
    elif scheme == "logit_normal":
        u = torch.sigmoid(logit_mean + logit_std * torch.randn(batch, generator=generator))
        index = (u * len(sigmas)).long().clamp(max=len(sigmas) - 1)
    elif scheme == "logit_normal_diffusers":  # diffusers' helper (global RNG; not resumable bit-exactly)
        u = compute_density_for_timestep_sampling("logit_normal", batch, logit_mean, logit_std)
        index = (u * len(sigmas)).long().clamp(max=len(sigmas) - 1)
    else:
        raise ValueError(f"unknown timestep sampling {scheme!r}; use 'uniform' or 'logit_normal'")
    return sigmas[index]


def add_noise(
    x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = (1 − σ)·x₀ + σ·ε and the velocity target ε − x₀ (σ broadcast per sample)."""
    s = sigma.view(-1, *([1] * (x0.ndim - 1))).to(x0)
    return (1 - s) * x0 + s * noise, noise - x0


def edit_weights(target: torch.Tensor, source: torch.Tensor, edit_weight: float, tol: float = 1e-3):
    """Per-position loss weights `(B, 1, F', h, w)`: 1 + edit_weight where any channel of the target
    latent differs from the source's by more than `tol`, else 1; None when `edit_weight` is 0."""
    if not edit_weight:
        return None
    edited = ((target - source).abs().amax(dim=1, keepdim=True) > tol).to(target.dtype)
    return 1 + edit_weight * edited


def fm_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None):
    """L_FM = mean ‖v̂ − v‖², optionally weighted per position (weights broadcast over channels)."""
    err = (prediction.float() - target.float()) ** 2
    if weights is None:
        return err.mean()
    weights = weights.float().expand_as(err)
    return (err * weights).sum() / weights.sum()


# ----------------------------------------------------------------------------------------------
# Self-distillation
# ----------------------------------------------------------------------------------------------


def prepare_features(features: torch.Tensor, frames: int, height: int, width: int, k_s: int) -> torch.Tensor:
    """Block hidden states `(B, S, C)` → pooled, normalised tokens `(B, F', N, C)`, N = (H'/K_S)·(W'/K_S)."""
    b, _, c = features.shape
    x = (
        features.float().view(b, frames, height, width, c).permute(0, 1, 4, 2, 3).flatten(0, 1)
    )  # (B·F', C, H', W')
    if k_s > 1:
        x = F.avg_pool2d(x, k_s, ceil_mode=True)  # downsample by K_S to focus on motion (§4.3)
    x = x.flatten(2).transpose(1, 2).reshape(b, frames, -1, c)  # (B, F', N, C)
    return F.normalize(x, dim=-1)


def motion_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. (1)–(3): mean over i ≠ j of mean |G_{i,:,j,:} − Ĝ_{i,:,j,:}|, tokens `(B, F', N, C)`."""
    b, f, n, c = student.shape
    if f < 2:
        return student.new_zeros(())
    gram = student.reshape(b, f * n, c) @ student.reshape(b, f * n, c).transpose(1, 2)  # (B, F'N, F'N)
    with torch.no_grad():
        gram_t = teacher.reshape(b, f * n, c) @ teacher.reshape(b, f * n, c).transpose(1, 2)
    diff = (gram - gram_t).abs().view(b, f, n, f, n).mean(dim=(2, 4))  # (B, F', F') frame-pair means
    off_diagonal = ~torch.eye(f, dtype=torch.bool, device=diff.device)
    return diff[:, off_diagonal].sum(dim=1).div(f * (f - 1)).mean()


def mmd2_rbf(x: torch.Tensor, y: torch.Tensor, bandwidth: torch.Tensor) -> torch.Tensor:
    """Biased MMD² between sample sets `x (..., N, D)` and `y (..., M, D)`, k(a, b) = exp(−‖a − b‖² / (2h²))."""
    h2 = 2 * bandwidth.square()
    if h2.ndim:  # one bandwidth per set pair: broadcast over the kernel matrix
        h2 = h2[..., None, None]

    def kernel_mean(a, b):
        return torch.exp(-torch.cdist(a, b).square() / h2).mean(dim=(-2, -1))

    return kernel_mean(x, x) + kernel_mean(y, y) - 2 * kernel_mean(x, y)


def first_frame_relations(tokens: torch.Tensor) -> torch.Tensor:
    """S_i = z_1·z_iᵀ for every frame: `(B, F', N, C)` → `(B, F', N, N)` (row a: token a of frame 1 vs frame i)."""
    return tokens[:, :1] @ tokens.transpose(-1, -2)


def median_bandwidth(relations: torch.Tensor, max_rows: int = 256) -> torch.Tensor:
    """Median heuristic per sample: median pairwise distance between rows of all S_i, `(B,)`.

    Uses an evenly strided subset of at most `max_rows` rows (the median of a few tens of thousands
    of distances is as good a bandwidth as that of millions, at a fraction of the cost).
    """
    b, f, n, _ = relations.shape
    rows = relations.reshape(b, f * n, n)
    rows = rows[:, :: max(1, (f * n) // max_rows)]
    dist = torch.cdist(rows, rows)
    upper = torch.triu(
        torch.ones(rows.shape[1], rows.shape[1], dtype=torch.bool, device=rows.device), diagonal=1
    )
    return dist[:, upper].median(dim=1).values.clamp_min(1e-6)


def mmd_loss(student: torch.Tensor, teacher: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """Eq. (4): Σ_{i≥2} |d_i − d̂_i| with d_i = MMD²(P_1, P_i); tokens `(B, F', N, C)`, mean over the batch."""
    if student.shape[1] < 2:
        return student.new_zeros(())
    rel_s = first_frame_relations(student)  # (B, F', N, N)
    with torch.no_grad():
        rel_t = first_frame_relations(teacher)
        h = median_bandwidth(rel_t) if bandwidth is None else torch.tensor(bandwidth, device=student.device)
    h_frames = h[:, None].expand(-1, student.shape[1] - 1) if h.ndim else h
    d_s = mmd2_rbf(rel_s[:, :1].expand_as(rel_s[:, 1:]), rel_s[:, 1:], h_frames)  # (B, F'−1)
    with torch.no_grad():
        d_t = mmd2_rbf(rel_t[:, :1].expand_as(rel_t[:, 1:]), rel_t[:, 1:], h_frames)
    return (d_s - d_t).abs().sum(dim=1).mean()
