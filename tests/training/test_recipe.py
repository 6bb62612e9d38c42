import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from freeprop.cli import main
from freeprop.data.pairs import Pair, PairWriter
from freeprop.errors import FreePropInputError
from freeprop.training.config import load_config
from freeprop.training.recipe import Trainer, TrainingError, distill_ramp, train
from tests.conftest import moving_pattern


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    with PairWriter(root, shard_size=3) as writer:
        for i in range(4):
            source = moving_pattern(frames=5, height=16, width=16, speed=i + 1)
            writer.add(Pair(f"p{i}", source, 255 - source, "stylization", "global"))
    return root


def tiny_args(pairs, out, *overrides) -> list[str]:
    base = [
        f"data.path={pairs}",
        "data.num_frames=5",
        "data.height=16",
        "data.width=16",
        f"output_dir={out}",
        "max_steps=2",
        "log_every=1",
        "save_every=100",
        "lora.rank=4",
        "lora.alpha=4",
        "optim.warmup_steps=0",
    ]
    return [*base, *overrides]


def tiny_config(pairs, out, *overrides):
    return load_config("configs/tiny.yaml", tiny_args(pairs, out, *overrides))


@pytest.mark.parametrize("variant", ["baseline", "ast_rope", "full"])
def test_two_step_smoke_through_cli(variant, pairs, tmp_path, capsys):
    out = tmp_path / variant
    args = tiny_args(pairs, out, f"loss.variant={variant}")
    assert main(["train", "configs/tiny.yaml", *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert ("motion" in records[0]) == (variant == "full")
    if variant == "baseline":
        assert records[-1]["alpha_s"] == 0.0 and records[-1]["alpha_t"] == 1.0  # plain RoPE throughout
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-0000002"]
    assert (out / "adapter" / "pytorch_lora_weights.safetensors").is_file()


def test_trainable_parameters_and_gradients(pairs, tmp_path):
    trainer = Trainer(tiny_config(pairs, tmp_path))
    names = trainer.trainable_names
    assert any("lora_A" in n for n in names) and any(n.startswith("alpha_predictor.") for n in names)
    assert "patch_embedding.weight" in names
    assert not any(n.startswith("blocks.0.attn1.to_q.base_layer") or n == "proj_out.weight" for n in names)
    torch.nn.init.normal_(
        trainer.model.alpha_predictor.head_s.weight, std=0.1
    )  # let grads pass the zero init
    for module in trainer.model.modules():  # LoRA B starts at zero: perturb so A gets gradient too
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
    trainer.compute_loss(trainer._next_batch()).loss.backward()
    params = dict(trainer.model.named_parameters())
    for name in (
        "patch_embedding.weight",
        "alpha_predictor.proj_in.weight",
        "blocks.0.attn1.to_q.lora_A.default.weight",
    ):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    frozen = [n for n, p in params.items() if not p.requires_grad]
    assert "proj_out.weight" in frozen and all(params[n].grad is None for n in frozen)


def test_loss_decreases_on_a_fixed_batch(pairs, tmp_path):
    cfg = tiny_config(
        pairs,
        tmp_path,
        "max_steps=80",
        "batch_size=1",
        "data.split=null",
        "optim.lr=1e-2",
        "lora.rank=8",
        "lora.alpha=8",
        "loss.variant=full",
    )
    trainer = Trainer(cfg)
    batch = trainer._next_batch()
    trainer._next_batch = lambda: batch  # overfit one sample
    state = trainer.generator.get_state()

    def evaluate():
        trainer.generator.set_state(state)
        with torch.no_grad():
            return sum(trainer.compute_loss(batch).terms["fm"] for _ in range(8)) / 8

    before = evaluate()
    trainer.generator.set_state(state)
    trainer.train()
    after = evaluate()
    assert after < 0.85 * before, (before, after)  # deterministic: 1.73 → ~1.3 here


@pytest.mark.parametrize("teacher", ["self", "snapshot"])
def test_resume_is_exact(pairs, tmp_path, teacher):
    extra = ("max_steps=4", f"loss.teacher={teacher}", "loss.distill_start_step=1")
    straight = train(tiny_config(pairs, tmp_path / "a", *extra))
    assert straight["steps"] == 4
    killed = train(
        tiny_config(pairs, tmp_path / "b", *extra),  # SIGTERM after step 2
        on_step=lambda t: t.step == 2 and os.kill(os.getpid(), signal.SIGTERM),
    )
    assert killed["status"] == "interrupted" and killed["steps"] == 2
    assert (tmp_path / "b" / "checkpoints" / "step-0000002" / "teacher.safetensors").is_file() == (
        teacher == "snapshot"
    )
    resumed = train(tiny_config(pairs, tmp_path / "b", *extra), resume=True)
    assert resumed["steps"] == 4
    a = load_file(tmp_path / "a" / "checkpoints" / "step-0000004" / "trainable.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "step-0000004" / "trainable.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert train(tiny_config(pairs, tmp_path / "b", *extra), resume=True)["status"] == "already finished"


def test_snapshot_teacher_is_frozen_at_the_first_distillation_step(pairs, tmp_path):
    trainer = Trainer(
        tiny_config(pairs, tmp_path, "loss.teacher=snapshot", "loss.distill_start_step=1", "max_steps=3")
    )
    trainer.train()
    teacher, student = trainer.teacher_model, trainer.accelerator.unwrap_model(trainer.model)
    assert teacher is not None and not any(p.requires_grad for p in teacher.parameters())
    changed = [
        n
        for n, p in student.named_parameters()
        if p.requires_grad and not torch.equal(p, dict(teacher.named_parameters())[n])
    ]
    assert changed  # the student moved on after the snapshot (steps 2 and 3); the teacher did not


def test_sigterm_saves_and_stops(pairs, tmp_path):
    summary = train(
        tiny_config(pairs, tmp_path, "max_steps=50"),
        on_step=lambda t: t.step == 1 and os.kill(os.getpid(), signal.SIGTERM),
    )
    assert summary["status"] == "interrupted" and summary["steps"] == 1
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-0000001"


def test_nonfinite_losses_are_skipped_then_stop(pairs, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(pairs, tmp_path, "max_steps=10", "max_nonfinite=3"))
    real = trainer.compute_loss
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        result = real(batch)
        if calls["n"] == 2 or calls["n"] >= 4:
            result.loss = result.loss * float("nan")
        return result

    monkeypatch.setattr(trainer, "compute_loss", flaky)
    with pytest.raises(TrainingError, match="non-finite 3 steps in a row"):
        trainer.train()
    assert trainer.skipped == 4 and trainer.step == 2


def test_saved_adapter_changes_the_pipeline(pairs, tmp_path):
    from freeprop.pipeline import load_pipeline

    train(tiny_config(pairs, tmp_path, "max_steps=3", "optim.lr=1e-2"))
    torch.manual_seed(0)  # the trainer built its base model right after seeding with cfg.seed = 0
    pipe = load_pipeline("tiny")
    clip = moving_pattern(frames=5, height=16, width=16)
    g = torch.Generator()
    before = pipe(clip, clip[0], num_inference_steps=2, generator=g.manual_seed(0)).frames
    pipe.load_adapter(tmp_path / "adapter")
    after = pipe(clip, clip[0], num_inference_steps=2, generator=g.manual_seed(0)).frames
    assert abs(after.astype(int) - before).max() > 0


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(FreePropInputError, match="unknown config key.*optim.learning_rate"):
        load_config("configs/tiny.yaml", ["optim.learning_rate=1"])
    with pytest.raises(FreePropInputError, match="config key optim.lr: expected"):
        load_config("configs/tiny.yaml", ["optim.lr=fast"])
    with pytest.raises(FreePropInputError, match="loss.variant"):
        load_config("configs/tiny.yaml", ["loss.variant=huge"])
    with pytest.raises(FreePropInputError, match="no such config file"):
        load_config(tmp_path / "none.yaml")
    cfg = load_config("configs/tiny.yaml", ["optim.lr=1", "loss.distill_blocks=[0, 1]"])
    assert cfg.optim.lr == 1.0 and cfg.loss.distill_blocks == (0, 1)
    for name in ("wan2.1-fun-1.3b", "wan2.1-fun-14b"):
        big = load_config(f"configs/{name}.yaml")
        assert big.lora.rank == 128 and big.optim.lr == 2e-4 and big.loss.lambda_motion == 5.0
        assert big.data.num_frames == 81 and big.epochs == 2


@pytest.mark.parametrize("recipe", sorted(p.name for p in Path("configs").glob("*.yaml")))
def test_every_shipped_recipe_is_a_valid_config(recipe):
    cfg = load_config(f"configs/{recipe}")
    assert cfg.output_dir.startswith("runs/") and (cfg.max_steps or cfg.epochs)


def test_unquoted_no_is_the_string_no():  # YAML 1.1 reads `no` as false; mixed_precision=no must work
    assert load_config("configs/tiny.yaml", ["mixed_precision=no"]).mixed_precision == "no"


def test_train_cli_user_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert main(["train", "configs/tiny.yaml", "optim.nope=1"]) == 2
    assert main(["train", "configs/tiny.yaml", f"data.path={tmp_path}"]) == 2  # no index.parquet
    errors = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("freeprop: error:") for line in errors) and len(errors) == 3


def test_distillation_warmup_ramps_the_lambdas(pairs, tmp_path):
    trainer = Trainer(tiny_config(pairs, tmp_path, "loss.distill_warmup_steps=10"))
    batch = trainer._next_batch()
    state = trainer.generator.get_state()
    first = trainer.compute_loss(batch)  # step 0: distillation weight 0
    assert first.loss.item() == pytest.approx(first.terms["fm"]) and "mmd" not in first.terms  # no teacher
    trainer.step = 5
    trainer.generator.set_state(state)
    half = trainer.compute_loss(batch)
    expected = half.terms["fm"] + 0.5 * (5.0 * half.terms["motion"] + 1.0 * half.terms["mmd"])
    assert half.loss.item() == pytest.approx(expected, rel=1e-5)


def test_distill_ramp_starts_late_then_rises_linearly():
    assert [distill_ramp(s, 4, 2) for s in (0, 3, 4, 5, 6, 9)] == [0, 0, 0, 0.5, 1, 1]
    assert distill_ramp(0, 0, 0) == 1.0


@pytest.mark.parametrize("edit_weight, prediction", [(0.0, "velocity"), (3.0, "velocity"), (3.0, "sample")])
def test_residual_model_learns_the_edit_residual(pairs, tmp_path, edit_weight, prediction):
    """For a residual model, L_FM's x₀ is z_tgt − z_src (recomputed here from the same σ and noise),
    weighted 1 + edit_weight where the target differs from the source; a sample predictor regresses x₀."""
    from freeprop.models.transformer import build_ffp_input
    from freeprop.training.losses import add_noise, edit_weights, fm_loss, sample_sigmas

    cfg = tiny_config(pairs, tmp_path / "run", f"loss.edit_weight={edit_weight}", "loss.variant=ast_rope")
    trainer = Trainer(cfg, model_overrides={"predicts_residual": True, "prediction": prediction})
    batch = trainer._next_batch()
    state = trainer.generator.get_state()
    terms = trainer.compute_loss(batch).terms

    g = torch.Generator()
    g.set_state(state)
    b = batch["target"].shape[0]
    sigma = sample_sigmas(b, trainer.sigmas, cfg.loss.timestep_sampling, g)
    noise = torch.randn(batch["target"].shape, generator=g)
    x0 = batch["target"] - batch["source"]
    x_t, v = add_noise(x0, noise, sigma)
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        x = build_ffp_input(x_t, batch["source"], batch["first_frame"], model.mask_channels)
        pred = model(x, sigma * 1000, batch["text"]).sample
    goal = x0 if prediction == "sample" else v
    expected = fm_loss(pred, goal, edit_weights(batch["target"], batch["source"], edit_weight))
    assert terms["fm"] == pytest.approx(expected.item(), rel=1e-5)


def test_two_processes_one_schedule_and_own_noise_per_rank(pairs, tmp_path):
    """A real 2-process run (torchrun, world size 2): the logged LR follows one warm-up and one
    monotone cosine over max_steps, and the two ranks draw different σ."""
    import subprocess
    import sys

    from diffusers.optimization import get_scheduler

    out = tmp_path / "ddp"
    args = tiny_args(pairs, out, "max_steps=6", "optim.warmup_steps=2", "batch_size=1")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "freeprop.cli"]
    subprocess.run([*command, "train", "configs/tiny.yaml", *args], env=env, check=True, capture_output=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    optimizer = torch.optim.SGD(
        [torch.nn.Parameter(torch.zeros(1))], lr=load_config("configs/tiny.yaml").optim.lr
    )
    reference = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=6)
    expected = []
    for _ in range(6):
        optimizer.step()
        reference.step()
        expected.append(reference.get_last_lr()[0])
    assert [r["lr"] for r in records] == pytest.approx(expected)
    lrs = [r["lr"] for r in records][1:]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # one monotone decay after the warm-up
    assert all(len(r["sigma_per_rank"]) == 2 for r in records)
    assert any(r["sigma_per_rank"][0] != r["sigma_per_rank"][1] for r in records)


def test_interrupted_cli_run_exits_130_and_its_hint_resumes_with_the_overrides(pairs, tmp_path, monkeypatch, capsys):
    import shlex

    import freeprop.training.recipe as recipe

    real_train = recipe.train

    def sigterm_after_step_1(cfg, resume=False, overwrite=False):
        return real_train(cfg, resume=resume, overwrite=overwrite, on_step=lambda t: t.step == 1 and os.kill(os.getpid(), signal.SIGTERM))

    monkeypatch.setattr(recipe, "train", sigterm_after_step_1)
    out = tmp_path / "run with space"
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out, "max_steps=3")]) == 130
    hint = capsys.readouterr().err.split("continue with: ")[1].strip()
    argv = shlex.split(hint)
    assert argv[:3] == ["freeprop", "train", "configs/tiny.yaml"] and argv[-1] == "--resume"
    assert f"output_dir={out}" in argv and "max_steps=3" in argv  # the user's overrides survive
    monkeypatch.setattr(recipe, "train", real_train)
    assert main(argv[1:]) == 0  # run as printed, it finishes the same run
    assert json.loads((out / "summary.json").read_text())["steps"] == 3


def test_weight_decay_spares_loaded_weights_norms_and_biases(pairs, tmp_path):
    """From a checkpoint, AdamW decays only the matrices the recipe adds (LoRA, α predictor); a step
    with zero gradients leaves patch_embedding (trained fully) exactly as loaded."""
    from safetensors.torch import save_file

    from freeprop.models import build_transformer
    from freeprop.training.recipe import param_groups

    save_file(build_transformer("tiny").state_dict(), tmp_path / "w.safetensors")
    trainer = Trainer(tiny_config(pairs, tmp_path / "run", f"model.weights={tmp_path / 'w.safetensors'}"))
    model = trainer.accelerator.unwrap_model(trainer.model)
    decay, no_decay = trainer.optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == trainer.cfg.optim.weight_decay > 0 and no_decay["weight_decay"] == 0
    assert decayed and all("lora_" in n or n.startswith("alpha_predictor.") for n in decayed)
    assert "patch_embedding.weight" in {names[id(p)] for p in no_decay["params"]}
    before = model.patch_embedding.weight.detach().clone()
    lora = next(p for n, p in model.named_parameters() if "lora_A" in n)
    lora_before = lora.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    trainer.optimizer.step()
    assert torch.equal(model.patch_embedding.weight, before)
    assert torch.allclose(lora, lora_before * (1 - trainer.cfg.optim.lr * trainer.cfg.optim.weight_decay))
    # From scratch, every trained matrix decays (there is no checkpoint to spare), vectors never do.
    fresh = build_transformer("tiny")
    scratch = param_groups(fresh, 0.1, spare_loaded=False)
    spared = {n for n, p in fresh.named_parameters() if any(p is q for q in scratch[1]["params"])}
    assert all(p.ndim >= 2 for p in scratch[0]["params"])
    assert spared == {n for n, p in fresh.named_parameters() if p.ndim < 2} | {"alpha_predictor.cell_embedding"}


def test_alpha_lr_scale_gives_the_predictor_its_own_rate(pairs, tmp_path):
    """optim.alpha_lr_scale = 10: the α predictor's parameters (and only they) step at 10 × lr, through
    warm-up and decay; with a frozen predictor (baseline) no extra group appears."""
    trainer = Trainer(tiny_config(pairs, tmp_path / "a", "loss.variant=ast_rope", "optim.alpha_lr_scale=10", "max_steps=20"))
    model = trainer.accelerator.unwrap_model(trainer.model)
    names = {id(p): n for n, p in model.named_parameters()}
    lr = trainer.cfg.optim.lr
    for _ in range(2):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        rates = trainer.lr_scheduler.get_last_lr()
        assert rates[0] > 0
        for group, rate in zip(trainer.optimizer.param_groups, rates, strict=True):
            predictor = {names[id(p)].startswith("alpha_predictor.") for p in group["params"]}
            assert len(predictor) <= 1
            expected = rates[0] * (10 if predictor == {True} else 1)
            assert rate == pytest.approx(expected) and group["lr"] == pytest.approx(expected)
    grouped = [names[id(p)] for g in trainer.optimizer.param_groups[2:] for p in g["params"]]
    assert sorted(grouped) == sorted(n for n in trainer.trainable_names if n.startswith("alpha_predictor."))
    assert trainer.optimizer.param_groups[2]["initial_lr"] == pytest.approx(10 * lr)
    frozen = Trainer(tiny_config(pairs, tmp_path / "b", "loss.variant=baseline", "optim.alpha_lr_scale=10"))
    assert len(frozen.optimizer.param_groups) == 2


def test_clip_tokens_of_the_edit_train_as_they_infer(pairs, tmp_path):
    """With an image encoder in the pipeline, training feeds CLIP of the edited first frame (what the
    pipeline feeds at inference), with dropout; without one, zeros on both sides."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from freeprop.models import build_transformer
    from freeprop.pipeline import FreePropPipeline, make_scheduler
    from freeprop.training.data import video_of
    from freeprop.video import standardize

    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=16)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe = FreePropPipeline(build_transformer("tiny", image_dim=16), make_scheduler(),
                            image_encoder=CLIPVisionModelWithProjection(vision).eval(), image_processor=processor)
    pipe.save_pretrained(tmp_path / "pipe")
    trainer = Trainer(tiny_config(pairs, tmp_path / "run", f"model.pipeline={tmp_path / 'pipe'}",
                                  "loss.dropout_image=0.5", "batch_size=4"))
    item = trainer.dataset[0]
    frame = standardize(video_of(trainer.dataset.pairs[0], "target"), 16, 16, num_frames=5).frames[0]
    with torch.no_grad():
        assert torch.allclose(item["image"], trainer.pipe.encode_image(frame, "cpu")[0])
    batch = {k: torch.stack([trainer.dataset[i][k] for i in range(4)]) for k in item}
    seen = []
    model = trainer.accelerator.unwrap_model(trainer.model)
    real_forward = model.forward
    model.forward = lambda *a, **k: seen.append(a[3]) or real_forward(*a, **k)
    torch.manual_seed(0)
    for _ in range(4):
        trainer.compute_loss(batch)
    kept = [bool((s[i] != 0).any()) for s in seen for i in range(4)]
    assert any(kept) and not all(kept)  # dropout 0.5: some samples see the edit's tokens, some zeros
    for s in seen:
        for i in range(4):
            assert torch.equal(s[i], batch["image"][i]) or not s[i].any()


# --- bad input to `freeprop train`: one line, exit 2, nothing written (issue 16) -----------------


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optim.lr=-1"], "optim.lr must be > 0"),
        (["optim.eps=0"], "optim.eps must be > 0"),
        (["optim.schedule=wobbly"], "optim.schedule must be one of"),
        (["optim.warmup_steps=-3"], "optim.warmup_steps must be ≥ 0"),
        (["data.num_frames=0"], "data.num_frames must be ≥ 1"),
        (["data.height=0"], "data.height must be ≥ 2"),
        (["data.fps=0"], "data.fps must be > 0"),
        (["lora.rank=0"], "lora.rank must be ≥ 1"),
        (["loss.k_s=0"], "loss.k_s must be ≥ 1"),
        (["loss.dropout_text=1.5"], "loss.dropout_text must be in [0.0, 1.0]"),
        (["max_steps=-1"], "max_steps must be ≥ 1"),
        (["mixed_precision=fp16"], "needs a CUDA GPU"),
    ],
)
def test_nonsense_settings_are_refused_in_one_line(pairs, tmp_path, overrides, message, capsys):
    out = tmp_path / "run"
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("content", [b"- a list\n- of things\n", b"\x00\xff\xfe binary", b"lr: [unclosed"])
def test_config_files_that_are_not_mappings_are_one_line(tmp_path, content, capsys):
    (tmp_path / "c.yaml").write_bytes(content)
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


def test_an_old_run_is_not_mixed_with_a_new_one(pairs, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out)]) == 0
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out, "max_steps=3")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out, "max_steps=3"), "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    (tmp_path / "file").write_text("x")
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated-weights", "missing-state", "corrupt-state", "latest-nowhere"])
def test_resume_falls_back_past_a_half_written_checkpoint(pairs, tmp_path, damage, capsys):
    out = tmp_path / "run"
    args = tiny_args(pairs, out, "max_steps=3", "save_every=1")
    straight = tmp_path / "straight"
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, straight, "max_steps=3", "save_every=1")]) == 0
    sigterm_after_2 = lambda t: t.step == 2 and os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    assert train(load_config("configs/tiny.yaml", args), on_step=sigterm_after_2)["steps"] == 2  # saved 1, 2
    last = out / "checkpoints" / "step-0000002"
    if damage == "truncated-weights":
        weights = last / "trainable.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "missing-state":
        (last / "state.json").unlink()
    elif damage == "corrupt-state":
        (last / "state.json").write_text("{not json")
    else:
        shutil.rmtree(last)
    assert main(["train", "configs/tiny.yaml", *args, "--resume"]) == 0
    if damage != "latest-nowhere":
        assert "step-0000002 is incomplete" in capsys.readouterr().err
    a = load_file(straight / "checkpoints" / "step-0000003" / "trainable.safetensors")
    b = load_file(out / "checkpoints" / "step-0000003" / "trainable.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed from step 1: still the same run
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # step 2 re-run and logged once


def test_resume_with_another_lora_rank_says_what_differs(pairs, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out, "save_every=1")]) == 0
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out, "max_steps=3", "lora.rank=8"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "lora.rank or the model changed" in err and "(4, " in err and "(8, " in err


@pytest.mark.parametrize("damage", ["half-written-lora", "missing-trained-modules"])
def test_a_kill_during_the_final_adapter_save_is_repaired_by_resume(pairs, tmp_path, damage):
    from freeprop.models import build_transformer
    from freeprop.pipeline import FreePropPipeline, make_scheduler

    out = tmp_path / "run"
    assert main(["train", "configs/tiny.yaml", *tiny_args(pairs, out)]) == 0
    adapter = out / "adapter"

    def tensors():  # copied out of the memory-mapped file, which the damage below truncates
        return {p.name: {k: v.clone() for k, v in load_file(p).items()} for p in adapter.glob("*.safetensors")}

    good = tensors()
    if damage == "half-written-lora":  # what the old in-place save left: a cut LoRA file, no modules
        lora = adapter / "pytorch_lora_weights.safetensors"
        lora.write_bytes(lora.read_bytes()[:200])
        (adapter / "trained_modules.safetensors").unlink()
    else:
        (adapter / "trained_modules.safetensors").unlink()
    summary = train(tiny_config(pairs, out), resume=True)
    assert summary["status"].startswith("already finished; adapter repaired")
    again = tensors()
    assert again.keys() == good.keys()
    assert all(torch.equal(again[f][k], good[f][k]) for f in good for k in good[f])  # the same adapter, rebuilt
    pipe = FreePropPipeline(build_transformer("tiny"), make_scheduler())
    pipe.load_adapter(adapter)  # and it loads


def test_adapter_folders_are_swapped_in_whole(tmp_path, monkeypatch):
    import freeprop.pipeline as pipeline
    from freeprop.models import build_transformer

    model = build_transformer("tiny")
    pipeline.save_adapter(tmp_path / "adapter", model)
    before = {p.name: p.read_bytes() for p in (tmp_path / "adapter").iterdir()}

    def killed(folder, transformer):
        (folder / "adapter_config.partial").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_write_adapter", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.save_adapter(tmp_path / "adapter", model)
    assert {p.name: p.read_bytes() for p in (tmp_path / "adapter").iterdir()} == before


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one(pairs, tmp_path):
    import resource
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [sys.executable, "-m", "freeprop.cli", "train", "configs/tiny.yaml", *tiny_args(pairs, out, "save_every=1")]
    subprocess.run(args, check=True, capture_output=True)  # checkpoints at steps 1 and 2
    latest = (out / "checkpoints" / "latest").read_text()

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # a checkpoint's weights do not fit

    full = subprocess.run([*args, "max_steps=4", "--resume"], preexec_fn=small_disk, capture_output=True, text=True)
    assert full.returncode == 1 and full.stderr.strip().splitlines()[-1].startswith("freeprop: error: the disk is full")
    assert (out / "checkpoints" / "latest").read_text() == latest
    load_file(out / "checkpoints" / latest / "trainable.safetensors")  # still whole
    subprocess.run([*args, "max_steps=4", "--resume"], check=True, capture_output=True)
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


def test_data_tasks_names_are_checked_up_front():
    """A typo in data.tasks is one clear line when the recipe loads, not a traceback mid-training."""
    from freeprop.training.config import DataConfig

    assert DataConfig(tasks=("swap", "modification")).tasks == ("swap", "modification")
    with pytest.raises(FreePropInputError, match="data.tasks: unknown task 'swapp'; choose from swap, removal"):
        DataConfig(tasks=("swap", "swapp"))
