"""The FFP-300K pipeline end to end on CPU: tiny real VACE / Wan I2V pipelines, scripted VLM / detector."""

import json
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from freeprop.data.build import (
    BuildConfig,
    Execution,
    GlobalTrack,
    LocalTrack,
    Models,
    Quality,
    Synthesis,
    run_build,
)
from freeprop.data.masks import scaled_px, with_bbox
from freeprop.data.pairs import PairDataset, read_index
from freeprop.errors import FreePropInputError
from freeprop.video import write_image, write_video
from tests.conftest import moving_pattern
from tests.data.conftest import ConstantDepth, DiscDetector, DiscTracker, ScriptedVLM


@pytest.fixture
def inputs(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        write_video(
            videos / f"clip{i}.mp4", moving_pattern(frames=24, height=40, width=48, speed=i + 1), fps=24
        )
    (videos / "broken.mp4").write_bytes(b"not a video")
    write_video(videos / "short.mp4", moving_pattern(frames=3, height=40, width=48), fps=24)
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "content.png", moving_pattern(1, 40, 40)[0])
    write_image(images / "style.png", 255 - moving_pattern(1, 40, 40, speed=5)[0])
    (tmp_path / "style_pairs.csv").write_text(
        "content_image,style_image\nimages/content.png,images/style.png\n"
    )
    return tmp_path


def config(root, **changes) -> BuildConfig:
    cfg = BuildConfig(
        output=str(root / "out"),
        local=LocalTrack(sources=str(root / "videos"), frames=9, fps=16, height=32, width=32),
        stylization=GlobalTrack(pairs=str(root / "style_pairs.csv"), frames=9, max_area=32 * 32, min_side=16),
        models=Models(device="cpu", dtype="float32"),
        synthesis=Synthesis(steps=2, erode_px=40, dilate_px=40),  # ≈ 2 px at 32 px frames
        execution=Execution(shard_size=2),
    )
    return replace(cfg, **changes)


def injected(tiny_vace, tiny_i2v, vlm=None):
    return {"vlm": vlm or ScriptedVLM(), "detector": DiscDetector(), "tracker": DiscTracker(), "vace": tiny_vace,
            "i2v": tiny_i2v, "depth": ConstantDepth()}  # fmt: skip


def test_both_tracks_end_to_end(inputs, tiny_vace, tiny_i2v):
    summary = run_build(config(inputs), injected=injected(tiny_vace, tiny_i2v), progress=False)
    # 2 good clips × (swap → discriminated as modification, removal) + 1 stylization pair
    assert summary.ok == {("local", "modification"): 2, ("local", "removal"): 2, ("global", "stylization"): 1}
    # the broken and the too-short clip fail at standardisation, for both tasks, with the reason
    assert sum(summary.failed.values()) == 4 and {k[0] for k in summary.failed} == {"standardize"}
    rows = read_index(inputs / "out").to_pylist()
    reasons = {r["error"].split(":")[1].strip() for r in rows if r["status"] == "failed"}
    assert reasons == {"FreePropInputError"}

    dataset = PairDataset(inputs / "out")
    pairs = {p.task: p for p in dataset}
    removal, style, swap = pairs["removal"], pairs["stylization"], pairs["modification"]
    assert removal.source.shape == removal.target.shape == (9, 32, 32, 3) and removal.fps == 16
    assert (
        removal.target_caption == "The video shows grass under the sky."
        and removal.instruction == "Remove the ball."
    )
    # the stored edit mask is VACE's region: the tracked disc ∪ bbox, dilated (removal) / eroded (swap)
    disc = DiscTracker().track(np.zeros((9, 32, 32, 3)), None)
    np.testing.assert_array_equal(removal.mask > 127, with_bbox(disc, scaled_px(40, 32, 32)))
    assert (swap.mask > 127).sum() < disc.sum() and not ((swap.mask > 127) & ~disc).any()
    assert style.track == "global" and style.mask is None and style.target_caption.startswith("A painting")
    assert json.loads((inputs / "out" / "build_summary.json").read_text())["ok"]["global / stylization"] == 1
    assert len(dataset) == 5 and removal.meta["frame_indices"] == [0, 1, 3, 4, 6, 7, 9, 10, 12]  # 24 → 16 fps


def test_vlm_failures_and_quality_rules_are_recorded_not_fatal(inputs, tiny_vace, tiny_i2v):
    vlm = ScriptedVLM(
        {
            "Identify the main editable object": "I see a ball",
            "Judge the edited video strictly": '{"Pass": "no"}',
        }
    )
    cfg = config(inputs, stylization=GlobalTrack())
    summary = run_build(cfg, injected=injected(tiny_vace, tiny_i2v, vlm), progress=False)
    assert not summary.ok
    assert summary.failed[("identify_object", "VLMReplyError")] == 4  # 2 clips × 2 tasks, after 3 tries each
    with pytest.raises(FreePropInputError, match="pass --resume"):
        run_build(cfg, injected=injected(tiny_vace, tiny_i2v), progress=False)


def test_resume_skips_committed_samples_and_a_kill_loses_only_the_open_shard(inputs, tiny_vace, tiny_i2v):
    cfg = config(inputs, stylization=GlobalTrack(), quality=Quality(verify=False))
    first = run_build(cfg, limit=3, injected=injected(tiny_vace, tiny_i2v), progress=False)
    assert sum(first.ok.values()) + sum(first.failed.values()) == 3

    class Killer(ScriptedVLM):  # dies on the second sample's first VLM call (a kill mid-run)
        def chat(self, images, prompt):
            if len(self.calls) >= 6:
                raise KeyboardInterrupt
            return super().chat(images, prompt)

    with pytest.raises(KeyboardInterrupt):
        run_build(cfg, resume=True, injected=injected(tiny_vace, tiny_i2v, Killer()), progress=False)
    out = inputs / "out"
    committed = {r["sample_id"] for r in read_index(out).to_pylist()}
    vlm = ScriptedVLM()
    rest = run_build(cfg, resume=True, injected=injected(tiny_vace, tiny_i2v, vlm), progress=False)
    assert rest.skipped == len(committed) >= 3
    assert len(read_index(out)) == 8 and not list(out.glob("*.partial"))  # every sample exactly once
    assert len({r["sample_id"] for r in read_index(out).to_pylist()}) == 8


def test_dedup_drops_a_second_identical_source(inputs, tiny_vace, tiny_i2v):
    import shutil

    shutil.copy(inputs / "videos" / "clip0.mp4", inputs / "videos" / "clip0_copy.mp4")
    cfg = config(inputs, stylization=GlobalTrack(), local=replace(config(inputs).local, tasks=("removal",)))
    summary = run_build(cfg, injected=injected(tiny_vace, tiny_i2v), progress=False)
    assert summary.ok[("local", "removal")] == 2 and summary.filtered[("dedup", "duplicate")] == 1


def test_nothing_to_build_is_a_clear_error(tmp_path):
    with pytest.raises(FreePropInputError, match="nothing to build"):
        run_build(BuildConfig(output=str(tmp_path / "o")), progress=False)


def test_small_style_images_and_unknown_stage_names_are_reported(inputs, tiny_vace, tiny_i2v):
    cfg = config(inputs, local=LocalTrack(), stylization=replace(config(inputs).stylization, min_side=64))
    summary = run_build(cfg, injected=injected(tiny_vace, tiny_i2v), progress=False)
    assert summary.failed == {("cinematic_caption", "StageError"): 1}
    assert "content image 40x40 (HEIGHTxWIDTH) is smaller than 64 px" in read_index(inputs / "out").to_pylist()[0]["error"]
    bad = config(inputs, output=str(inputs / "o2"), execution=Execution(stage_workers={"vace_typo": 2}))
    with pytest.raises(FreePropInputError, match="unknown stage"):
        run_build(bad, injected=injected(tiny_vace, tiny_i2v), progress=False)


def test_dedup_is_within_a_task_and_removes_near_duplicate_source_clips(tmp_path):
    """A clip's removal is not a copy of its swap (issue 15: 38/40 dropped); a near-identical source clip
    in the same local task is; one content image with two styles is two pairs. The log resumes all that."""
    from freeprop.data.build import DedupIndex
    from freeprop.data.stages.pack import pair_hashes

    source = moving_pattern(frames=9, height=64, width=64)
    swapped, removed, other_swap = source.copy(), source.copy(), 255 - source
    swapped[:, 30:34, 30:34] = 255  # a small object changed
    removed[:, 30:34, 30:34] = 0
    near_source = np.clip(source.astype(int) + 1, 0, 255).astype(np.uint8)  # re-encoded copy of the clip
    styled_a, styled_b = source // 2, 255 - source // 3

    index = DedupIndex(tmp_path / "dedup.jsonl", bits=6)
    index.add("swap", pair_hashes(source, swapped), "swap", "local")
    assert not index.is_duplicate("removal", pair_hashes(source, removed), "removal", "local")
    assert index.is_duplicate("swap-2", pair_hashes(near_source, other_swap), "swap", "local")
    index.add("style-a", pair_hashes(source, styled_a), "stylization", "global")
    assert not index.is_duplicate("style-b", pair_hashes(source, styled_b), "stylization", "global")
    assert index.is_duplicate("style-a-again", pair_hashes(near_source, styled_a), "stylization", "global")
    index.close()
    resumed = DedupIndex(tmp_path / "dedup.jsonl", bits=6)
    assert resumed.is_duplicate("swap-2", pair_hashes(near_source, other_swap), "swap", "local")
    assert not resumed.is_duplicate("removal", pair_hashes(source, removed), "removal", "local")


def test_style_captions_are_cached_per_style_not_per_content_image(tmp_path):
    """Two styles of one content image share a work folder; each gets its own style caption (before,
    the second reused the first's, and its pair was then dropped as a duplicate)."""
    from freeprop.data.stages.vlm_stages import StyleCaption
    from freeprop.video import write_image, write_video
    from freeprop.vlm import StubVLM

    write_video(tmp_path / "source.mp4", moving_pattern(frames=9, height=64, width=64))
    for name, value in (("warm", 40), ("cool", 200)):
        write_image(tmp_path / f"{name}.png", np.full((64, 64, 3), value, np.uint8))
    judge = StubVLM(['{"Style_Caption": "warm oil paint"}', '{"Style_Caption": "cool ink wash"}'])
    stage = StyleCaption(vlm=judge)
    captions = []
    for name in ("warm", "cool", "warm"):  # the third is a resume: answered from the cache
        sample = {"style_image": str(tmp_path / f"{name}.png"), "source_video": str(tmp_path / "source.mp4"),
                  "work": str(tmp_path / "work")}
        captions.append(stage.process(sample)["style_caption"])
    assert captions == ["warm oil paint", "cool ink wash", "warm oil paint"] and len(judge.calls) == 2


def test_vace_edits_are_keyed_by_model_and_lora_so_regeneration_makes_new_ones(tmp_path):
    """Rebuilding the removals with the fine-tuned VACE (models.vace_lora) must not return the cached
    edits of the base model (issue 15: bit-identical before); the same settings again are a cache hit."""
    from types import SimpleNamespace

    from freeprop.data.stages.media import save_masks
    from freeprop.data.stages.synthesis import VACESynthesis
    from freeprop.video import write_video

    calls = []

    def fake_vace(**kwargs):  # stands in for WanVACEPipeline.__call__: records, returns grey frames
        calls.append(kwargs["prompt"])
        return SimpleNamespace(frames=[np.full((kwargs["num_frames"], kwargs["height"], kwargs["width"], 3), 0.5)])

    fake_vace.set_progress_bar_config = lambda **k: None
    write_video(tmp_path / "source.mp4", moving_pattern(frames=9, height=32, width=32))
    masks = np.zeros((9, 32, 32), np.uint8)
    masks[:, 8:16, 8:16] = 255
    sample = {"task": "removal", "source_video": str(tmp_path / "source.mp4"), "removal_caption": "grass",
              "masks": save_masks(tmp_path / "masks.npz", masks), "fps": "16", "work": str(tmp_path / "work")}
    outputs = []
    for lora in (None, "runs/vace-removal", "runs/vace-removal"):
        stage = VACESynthesis(pipe=fake_vace, lora=lora, steps=2)
        outputs.append(stage.process(dict(sample))["edited_video"])
    assert outputs[0] != outputs[1] == outputs[2] and len(calls) == 2


@pytest.mark.parametrize("task", ["swap", "removal"])
def test_vace_never_sees_source_pixels_inside_the_mask(tmp_path, task):
    from types import SimpleNamespace

    from freeprop.data.stages.media import save_masks
    from freeprop.data.stages.synthesis import VACESynthesis
    from freeprop.video import write_video

    seen = {}

    def fake_vace(**kwargs):
        seen.update(kwargs)
        return SimpleNamespace(frames=[np.full((kwargs["num_frames"], kwargs["height"], kwargs["width"], 3), 0.5)])

    source = moving_pattern(frames=9, height=32, width=32)
    source[:, 8:16, 8:16] = (250, 10, 10)  # the object: bright red
    write_video(tmp_path / "source.mp4", source)
    masks = np.zeros((9, 32, 32), bool)
    masks[:, 8:16, 8:16] = True
    sample = {"task": task, "source_video": str(tmp_path / "source.mp4"), "caption": "a blue ball",
              "removal_caption": "grass", "masks": save_masks(tmp_path / "m.npz", masks), "fps": "16",
              "work": str(tmp_path / "work")}
    VACESynthesis(pipe=fake_vace, steps=1).process(sample)
    video = np.stack([np.asarray(f) for f in seen["video"]])
    regenerate = np.stack([np.asarray(m) for m in seen["mask"]])[..., 0] > 127
    assert regenerate.any() and (video[regenerate] == 128).all()  # grey where VACE regenerates
    assert (video[~regenerate] != 128).any()  # and the source elsewhere


@pytest.mark.parametrize(
    "override,message",
    [
        ("local.frames=80", "4k+1 frames"),
        ("local.height=700", "multiples of 16"),
        ("stylization.frames=10", "4k+1 frames"),
        ("local.fps=0", "local.fps must be > 0"),
        ("execution.chunk_size=-1", "execution.chunk_size must be ≥ 0"),
        ("execution.workers=0", "execution.workers must be ≥ 1"),
    ],
)
def test_build_config_clip_shapes_are_checked_before_any_model(override, message, tmp_path, capsys):
    from freeprop.cli import main

    assert main(["data", "build", "configs/data/ffp300k.yaml", override, f"output={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "out").exists()


def test_transient_failures_are_retried_in_the_run_and_on_resume_permanent_ones_are_not(inputs, tiny_vace, tiny_i2v):
    """A VLM server that blips is retried within the run; one that is down for the whole run leaves
    transient failures that --resume runs again; a bad video's failure is for good (--retry-failed
    revisits it)."""
    cfg = config(inputs, stylization=GlobalTrack(), quality=Quality(verify=False, transient_backoff=0))

    class Blip(ScriptedVLM):  # the server refuses the first two connections, then answers
        def chat(self, images, prompt):
            if len(self.calls) < 2:
                self.calls.append(prompt)
                raise ConnectionRefusedError("connection refused")
            return super().chat(images, prompt)

    summary = run_build(cfg, injected=injected(tiny_vace, tiny_i2v, Blip()), progress=False)
    assert sum(summary.ok.values()) == 4 and set(summary.failed) == {("standardize", "FreePropInputError")}

    out = inputs / "out2"
    cfg = replace(cfg, output=str(out))

    class Down(ScriptedVLM):
        def chat(self, images, prompt):
            self.calls.append(prompt)
            raise urllib.error.URLError("server down")

    down = Down()
    summary = run_build(cfg, injected=injected(tiny_vace, tiny_i2v, down), progress=False)
    assert len(down.calls) == 4 * 3  # four good samples, three passes (transient_retries = 2)
    assert summary.failed[("identify_object", "transient")] == 4 and not summary.ok
    rows = {r["sample_id"]: r for r in read_index(out).to_pylist()}
    assert sum("identify_object: transient: URLError" in r["error"] for r in rows.values()) == 4

    again = run_build(cfg, resume=True, injected=injected(tiny_vace, tiny_i2v), progress=False)
    assert sum(again.ok.values()) == 4 and again.skipped == 4 and not again.failed  # bad videos: not revisited
    assert len(read_index(out)) == 8
    revisit = run_build(cfg, resume=True, retry_failed=True, injected=injected(tiny_vace, tiny_i2v), progress=False)
    assert revisit.skipped == 4 and sum(revisit.failed.values()) == 4 and len(read_index(out)) == 8


def test_pairs_are_encoded_by_the_pack_stage_and_written_as_they_are(inputs, tiny_vace, tiny_i2v, monkeypatch):
    """The shards hold the bytes `pack` made in the worker unchanged — their checksum in the index —
    and no packed folder is left behind."""
    import tarfile

    import freeprop.data.pairs as pairs
    from freeprop.data.pairs import PairDataset, checksum

    packed = {}

    def recording(path, items):
        for folder, row in items:
            packed[row["sample_id"]] = {p.name: p.read_bytes() for p in Path(folder).iterdir()}
        return real(path, items)

    real = pairs.write_packed_shard
    monkeypatch.setattr(pairs, "write_packed_shard", recording)
    cfg = config(inputs, stylization=GlobalTrack(), quality=Quality(verify=False, filter=False))
    run_build(cfg, injected=injected(tiny_vace, tiny_i2v), progress=False)
    out = inputs / "out"
    assert not list((inputs / "out-work").rglob("packed-*")) and len(packed) == len(PairDataset(out)) == 4
    for row in PairDataset(out).rows:
        with tarfile.open(out / row["shard"]) as tar:
            stored = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()
                      if m.name.startswith(row["sample_id"] + ".")}  # fmt: skip
        videos = {k: v for k, v in stored.items() if k.endswith(".mp4")}
        assert videos == {k: v for k, v in packed[row["sample_id"]].items() if k.endswith(".mp4")}
        assert set(videos) == {"source.mp4", "target.mp4", "mask.mp4"} and checksum(videos) == row["checksum"]
        assert json.loads(stored["meta.json"])["index"] == row  # the row travels in the shard too


def test_an_unusable_stage_dir_is_one_error_before_any_sample(inputs, tiny_vace, tiny_i2v):
    (inputs / "a-file").write_text("")
    models = Models(device="cpu", dtype="float32", stage_dir=str(inputs / "a-file" / "models"))
    with pytest.raises(FreePropInputError, match="models.stage_dir: cannot create"):
        run_build(config(inputs, models=models), injected=injected(tiny_vace, tiny_i2v), progress=False)
    assert not (inputs / "out-work").exists()  # nothing ran
