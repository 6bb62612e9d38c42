import math

import pytest
import torch

from freeprop.training.losses import (
    add_noise,
    edit_weights,
    first_frame_relations,
    fm_loss,
    median_bandwidth,
    mmd2_rbf,
    mmd_loss,
    motion_loss,
    prepare_features,
    sample_sigmas,
    training_sigmas,
)


def test_training_sigmas_are_the_shifted_schedule():
    sigmas = training_sigmas(shift=5.0)
    assert len(sigmas) == 1000 and sigmas[0] == pytest.approx(1.0)
    base = torch.linspace(1, 1000, 1000).flip(0) / 1000  # diffusers' unshifted σ = t/1000
    torch.testing.assert_close(sigmas, 5 * base / (1 + 4 * base))  # σ' = sσ / (1 + (s − 1)σ)


def test_sigma_sampling_schemes():
    sigmas = training_sigmas(3.0)
    g = torch.Generator().manual_seed(0)
    uniform = sample_sigmas(4000, sigmas, "uniform", g)
    assert set(uniform.tolist()) <= set(sigmas.tolist()) and len(set(uniform.tolist())) > 900
    logit = sample_sigmas(4000, sigmas, "logit_normal", g)
    assert logit.min() > 0 and logit.max() <= 1
    # logit-normal(0, 1) puts u near 0.5, i.e. the middle of the table, more often than its ends
    middle = ((logit > sigmas[600]) & (logit < sigmas[400])).float().mean()
    assert middle > 0.3
    with pytest.raises(ValueError):
        sample_sigmas(2, sigmas, "cosine")


def test_add_noise_and_target():
    x0, noise = torch.full((2, 1, 1), 2.0), torch.full((2, 1, 1), -1.0)
    xt, v = add_noise(x0, noise, torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(xt.flatten(), torch.tensor([0.75 * 2 - 0.25, -1.0]))
    torch.testing.assert_close(v.flatten(), torch.tensor([-3.0, -3.0]))


def test_edit_weighted_fm_loss_by_hand():
    source = torch.zeros(1, 2, 1, 1, 3)
    target = source.clone()
    target[0, 1, 0, 0, 2] = 0.5  # one edited position (any channel differing marks it)
    weights = edit_weights(target, source, 4.0)
    torch.testing.assert_close(weights.flatten(), torch.tensor([1.0, 1.0, 5.0]))
    assert edit_weights(target, source, 0.0) is None
    pred, v = torch.zeros(1, 2, 1, 1, 3), torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0, 3.0]).view(1, 2, 1, 1, 3)
    # squared errors per position (2 channels each): 1+1, 4+4, 9+9; weights 1, 1, 5 per channel
    expected = (2 * 1 + 2 * 4 + 5 * 2 * 9) / (2 * (1 + 1 + 5))
    assert fm_loss(pred, v, weights).item() == pytest.approx(expected)
    assert fm_loss(pred, v).item() == pytest.approx((2 + 8 + 18) / 6)


def test_prepare_features_pools_and_normalises():
    feats = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).view(1, 2 * 4 * 4, 3)  # (B, F'·H'·W', C)
    tokens = prepare_features(feats, frames=2, height=4, width=4, k_s=2)
    assert tokens.shape == (1, 2, 4, 3)
    grid = feats.view(2, 4, 4, 3)
    expected = grid[0, :2, :2].reshape(-1, 3).mean(0)  # top-left 2×2 block of frame 0
    torch.testing.assert_close(tokens[0, 0, 0], expected / expected.norm())
    torch.testing.assert_close(tokens.norm(dim=-1), torch.ones(1, 2, 4))


def test_motion_loss_zero_for_identical_and_hand_case():
    z = torch.nn.functional.normalize(torch.randn(2, 3, 4, 5), dim=-1)
    assert motion_loss(z, z.clone()) == 0
    # Hand case: F'=2, N=1, C=2. Student tokens e1 (frame 1), e2 (frame 2); teacher e1, e1.
    s = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    t = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    # Off-diagonal Gram entries: student ⟨e1,e2⟩ = 0 twice, teacher ⟨e1,e1⟩ = 1 twice → (1 + 1) / (2·1) = 1.
    assert motion_loss(s, t).item() == pytest.approx(1.0)
    assert motion_loss(s[:, :1], t[:, :1]).item() == 0  # a single frame has no pairs


def test_mmd2_matches_naive_double_loop():
    x, y = torch.randn(5, 3), torch.randn(4, 3) + 0.5
    h = torch.tensor(1.3)

    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * 1.3**2))

    kxx = sum(k(a, b) for a in x for b in x) / 25
    kyy = sum(k(a, b) for a in y for b in y) / 16
    kxy = sum(k(a, b) for a in x for b in y) / 20
    assert mmd2_rbf(x, y, h).item() == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-5)
    assert mmd2_rbf(x, x, h).item() == pytest.approx(0.0, abs=1e-6)
    batched = mmd2_rbf(torch.stack([x, x]), torch.stack([y[:4], x[:4]]), torch.tensor([1.3, 1.3]))
    assert batched[0].item() == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-5)


def test_mmd_loss_by_hand():
    torch.manual_seed(0)
    student = torch.nn.functional.normalize(torch.randn(1, 3, 4, 6), dim=-1)
    teacher = torch.nn.functional.normalize(torch.randn(1, 3, 4, 6), dim=-1)
    assert mmd_loss(teacher, teacher.clone()).item() == 0
    rel_s, rel_t = first_frame_relations(student), first_frame_relations(teacher)
    assert rel_s.shape == (1, 3, 4, 4)
    torch.testing.assert_close(rel_s[0, 2], student[0, 0] @ student[0, 2].T)
    h = median_bandwidth(rel_t)[0]
    expected = sum(
        abs(mmd2_rbf(rel_s[0, 0], rel_s[0, i], h) - mmd2_rbf(rel_t[0, 0], rel_t[0, i], h)) for i in (1, 2)
    )
    assert mmd_loss(student, teacher).item() == pytest.approx(float(expected), rel=1e-5)
    fixed = mmd_loss(student, teacher, bandwidth=0.7)
    assert fixed.item() != pytest.approx(mmd_loss(student, teacher).item())


def test_distillation_gradients_reach_student_only():
    student = torch.nn.functional.normalize(torch.randn(1, 3, 4, 6), dim=-1).requires_grad_()
    teacher = torch.nn.functional.normalize(torch.randn(1, 3, 4, 6), dim=-1).requires_grad_()
    (motion_loss(student, teacher) + mmd_loss(student, teacher)).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None
