from dataclasses import replace

import numpy as np
import pytest

from freeprop.cli import main
from freeprop.data.pairs import PairDataset, read_index
from freeprop.data.synthetic import (
    CAMERAS,
    HELD_OUT,
    SPLIT_SEEDS,
    WORLDS,
    make_pair,
    random_scene,
    render,
    stylize,
)
from freeprop.errors import FreePropInputError
from tests.conftest import exit_code


@pytest.mark.parametrize("task", ["swap", "removal", "modification", "stylization"])
def test_pairs_are_deterministic_and_exact(task):
    a, b = make_pair(3, "train", task, frames=9, height=32, width=32), make_pair(3, "train", task, 9, 32, 32)
    np.testing.assert_array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.target, b.target)
    assert a.sample_id == b.sample_id and a.source.shape == (9, 32, 32, 3)
    if task == "stylization":
        assert a.mask is None and a.track == "global"
        np.testing.assert_array_equal(a.target, stylize(a.source, a.meta["style"]))  # exact ground truth
    else:
        assert a.track == "local" and a.mask.shape == (9, 32, 32)
        changed = np.abs(a.target.astype(int) - a.source).max(-1) > 0
        np.testing.assert_array_equal(changed, a.mask > 0)  # the mask is exactly what the edit changes
        assert changed.any() and not changed.all()


def test_removal_reveals_the_background():
    pair = make_pair(11, "train", "removal", frames=5, height=48, width=48)
    scene = random_scene(11, "train")
    k = pair.meta["object"]
    without = replace(scene, objects=tuple(o for i, o in enumerate(scene.objects) if i != k))
    np.testing.assert_array_equal(pair.target, render(without, 5, 48, 48))


def test_resolution_free_scenes():
    scene = random_scene(5, "train")
    small, large = render(scene, 3, 32, 32), render(scene, 3, 128, 128)
    down = large.reshape(3, 32, 4, 32, 4, 3).mean(axis=(2, 4))
    assert np.abs(down - small).mean() < 12  # same content at both sizes


def test_splits_hold_out_combinations():
    seen = {"shape": set(), "texture": set()}
    for i in range(60):
        scene = random_scene(SPLIT_SEEDS["train"] + i, "train")
        for obj in scene.objects:
            seen["shape"].add(obj.shape)
            seen["texture"].add(obj.texture)
    assert HELD_OUT["shape"] not in seen["shape"] and HELD_OUT["texture"] not in seen["texture"]
    styles = {
        make_pair(SPLIT_SEEDS["train"] + i, "train", "stylization", 2, 16, 16).meta["style"]
        for i in range(40)
    }
    assert HELD_OUT["style"] not in styles
    test_shapes = {o.shape for i in range(80) for o in random_scene(SPLIT_SEEDS["test"] + i, "test").objects}
    assert HELD_OUT["shape"] in test_shapes


def test_scenes_vary_in_world_palette_and_camera():
    scenes = [random_scene(SPLIT_SEEDS["train"] + i, "train") for i in range(60)]
    assert {s.world for s in scenes} == set(WORLDS)  # generator 2: one world kind per scene
    assert {s.camera for s in scenes} == set(CAMERAS)
    assert len({s.palette for s in scenes}) == len(scenes)
    firsts = np.stack([render(s, 1, 16, 16)[0].reshape(-1, 3).mean(0) for s in scenes[:12]])
    assert firsts.std(axis=0).min() > 10  # mean colours differ between scenes (generator 1: one palette)


def test_motion_zero_gives_still_pairs_with_their_own_ids():
    still = make_pair(9, "train", "swap", frames=5, height=32, width=32, motion=0)
    moving = make_pair(9, "train", "swap", frames=5, height=32, width=32)
    for video in (still.source, still.target):
        assert (video == video[:1]).all()  # nothing moves: the edit stays where frame 0 has it
    np.testing.assert_array_equal(still.source[0], moving.source[0])  # the same scene at t = 0
    assert still.sample_id != moving.sample_id and still.meta["motion"] == 0


def _strong_edges(image: np.ndarray) -> float:
    """Share of neighbouring pixel pairs that differ by more than 40 grey levels (a sharp edge)."""
    grey = image.astype(np.float32).mean(-1)
    return float(np.concatenate([np.abs(np.diff(grey, axis=0)).ravel(), np.abs(np.diff(grey, axis=1)).ravel()])
                 .__gt__(40).mean())


def test_dead_leaves_have_the_sharp_edges_procedural_textures_lack():
    from freeprop.data.synthetic import _texture

    leaves = [_texture("leaves", 128, 128, (120, 100, 80), seed, scale=64) for seed in range(4)]
    np.testing.assert_array_equal(leaves[0], _texture("leaves", 128, 128, (120, 100, 80), 0, scale=64))
    assert all(t.min() >= 0 and t.max() <= 255 and t.shape == (128, 128, 3) for t in leaves)
    for kind in ("fractal", "cells", "marble", "noise"):  # every world kind a scene could draw before
        others = [_texture(kind, 128, 128, (120, 100, 80), seed, scale=64) for seed in range(4)]
        assert np.mean([_strong_edges(t) for t in leaves]) > 2 * np.mean([_strong_edges(t) for t in others]), kind
    # many scales at once: the same share of strong edges at full and at half resolution (a flat or a
    # single-scale texture would lose or gain edges when halved)
    small = [_texture("leaves", 64, 64, (120, 100, 80), seed, scale=32) for seed in range(4)]
    ratio = np.mean([_strong_edges(t) for t in small]) / np.mean([_strong_edges(t) for t in leaves])
    assert 0.6 < ratio < 2.5, ratio


def test_leaves_share_changes_appearance_not_scene_or_other_splits():
    plain = make_pair(11, "train", "swap", frames=5, height=32, width=32)
    again = make_pair(11, "train", "swap", frames=5, height=32, width=32, leaves=0.0)
    np.testing.assert_array_equal(plain.source, again.source)  # share 0: the pair as before, same id
    assert plain.sample_id == again.sample_id
    full = make_pair(11, "train", "swap", frames=5, height=32, width=32, leaves=1.0)
    assert full.meta["world"] == "leaves" and full.meta["leaves"] == 1.0 and full.sample_id != plain.sample_id
    assert full.meta["camera"] == plain.meta["camera"] and full.instruction.split()[-1] == plain.instruction.split()[-1]
    assert not np.array_equal(full.source, plain.source)
    np.testing.assert_array_equal(full.mask > 0, np.abs(full.target.astype(int) - full.source).max(-1) > 0)
    # about half of the worlds at share 0.5
    worlds = [make_pair(s, "train", "stylization", frames=1, height=16, width=16, leaves=0.5).meta["world"]
              for s in range(40)]
    assert 10 <= worlds.count("leaves") <= 30
    real = make_pair(SPLIT_SEEDS["real"], "real", "swap", frames=3, height=16, width=16, leaves=1.0)
    assert real.meta["world"].startswith("photo:")  # photographs are never replaced


def test_real_split_renders_photographs_with_exact_ground_truth():
    from freeprop.data.photos import PHOTOS, load_photo

    pair = make_pair(SPLIT_SEEDS["real"] + 2, "real", "swap", frames=5, height=32, width=32)
    scene = random_scene(SPLIT_SEEDS["real"] + 2, "real")
    assert scene.world.startswith("photo:") and scene.world[6:] in PHOTOS
    assert all(o.texture.startswith("photo:") for o in scene.objects)
    np.testing.assert_array_equal(pair.source, render(scene, 5, 32, 32))
    np.testing.assert_array_equal(pair.mask > 0, np.abs(pair.target.astype(int) - pair.source).max(-1) > 0)
    assert "photo" not in pair.instruction or "photographic" in pair.instruction
    assert load_photo("china").shape == (427, 640, 3) and not load_photo("china").flags.writeable
    # the photo is what the camera sees: frame 0 of a still camera correlates with a crop of it
    assert pair.meta["world"] == scene.world


def test_synth_cli_writes_pair_format_and_resumes(tmp_path, capsys):
    out = tmp_path / "synth"
    args = [
        "data",
        "synth",
        str(out),
        "--train",
        "5",
        "--val",
        "2",
        "--test",
        "2",
        "--frames",
        "5",
        "--size",
        "32x32",
    ]
    assert main(args) == 0
    index = read_index(out).to_pylist()
    assert len(index) == 9 and {r["split"] for r in index} == {"train", "val", "test"}
    assert {r["task"] for r in index} == {"swap", "removal", "modification", "stylization"}
    first = PairDataset(out, split="train")[0]
    assert first.source.shape == (5, 32, 32, 3) and first.task == "swap" and first.mask is not None
    before = sorted(p.name for p in out.iterdir())
    assert main(args) == 0  # a re-run skips what is done
    assert sorted(p.name for p in out.iterdir()) == before and len(read_index(out)) == 9


@pytest.mark.parametrize(
    "option, value", [("--motion", "-1"), ("--leaves", "1.5"), ("--leaves", "-0.1"), ("--camouflage", "2"), ("--photos", "1.5")]
)
def test_synth_cli_rejects_out_of_range_options(tmp_path, capsys, option, value):
    args = ["data", "synth", str(tmp_path / "s"), "--train", "1", "--val", "0", "--test", "0", option, value]
    assert exit_code(args) == 2
    assert option in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_synth_cli_writes_leaves_pairs(tmp_path):
    out = tmp_path / "s"
    assert main(["data", "synth", str(out), "--train", "2", "--val", "0", "--test", "0", "--frames", "3",
                 "--size", "16x16", "--leaves", "1"]) == 0
    assert {PairDataset(out, split="train")[i].meta["world"] for i in range(2)} == {"leaves"}


def test_camouflage_draws_objects_like_their_world_and_keeps_the_scene():
    from freeprop.data.synthetic import with_camouflage

    scene = random_scene(7, "train")
    assert with_camouflage(scene, 0.0, np.random.default_rng(0)) == scene
    blended = with_camouflage(scene, 1.0, np.random.default_rng(0))
    kind = scene.world if scene.world != "legacy" else "fractal"
    for old, new in zip(scene.objects, blended.objects):
        assert new.texture == kind and np.abs(np.subtract(new.color, scene.palette[0])).max() < 75
        assert replace(new, texture=old.texture, color=old.color) == old  # shape, motion, size unchanged
    assert with_camouflage(replace(scene, world="legacy"), 1.0, np.random.default_rng(0)).objects[0].texture == "fractal"


def test_camouflage_lowers_the_contrast_between_object_and_world():
    """In a removal pair the target shows the world where the source shows the object: their mean colours
    inside the mask (frame 0) differ much less when the object is drawn like its world."""

    def contrast(camouflage):
        gaps = []
        for seed in range(12):
            pair = make_pair(seed, "train", "removal", frames=1, height=48, width=48, camouflage=camouflage)
            inside = pair.mask[0] > 0
            if inside.sum() > 20:
                gaps.append(np.abs(pair.source[0][inside].mean(0) - pair.target[0][inside].mean(0).astype(float)).mean())
        return np.mean(gaps)

    assert contrast(1.0) < 0.6 * contrast(0.0)


def test_camouflage_share_changes_ids_not_the_plain_pairs_or_the_real_split():
    plain = make_pair(11, "train", "swap", frames=3, height=16, width=16)
    again = make_pair(11, "train", "swap", frames=3, height=16, width=16, camouflage=0.0)
    np.testing.assert_array_equal(plain.source, again.source)
    assert plain.sample_id == again.sample_id and again.meta["camouflage"] == 0.0
    full = make_pair(11, "train", "swap", frames=3, height=16, width=16, camouflage=1.0)
    assert full.sample_id != plain.sample_id and full.meta["camouflage"] == 1.0
    assert full.meta["world"] == plain.meta["world"] and full.instruction.split()[-1] == plain.instruction.split()[-1]
    real = make_pair(SPLIT_SEEDS["real"], "real", "swap", frames=3, height=16, width=16, camouflage=1.0)
    plain_real = make_pair(SPLIT_SEEDS["real"], "real", "swap", frames=3, height=16, width=16)
    assert real.sample_id == plain_real.sample_id and real.meta["camouflage"] == 0.0
    np.testing.assert_array_equal(real.source, plain_real.source)


def test_synth_cli_writes_camouflaged_pairs_and_resumes_the_real_split(tmp_path):
    out = tmp_path / "s"
    args = ["data", "synth", str(out), "--train", "2", "--val", "0", "--test", "0", "--real", "1", "--frames", "3",
            "--size", "16x16", "--camouflage", "1", "--leaves", "1"]
    assert main(args) == 0
    assert {PairDataset(out, split="train")[i].meta["camouflage"] for i in range(2)} == {1.0}
    assert main(args) == 0  # a re-run writes nothing again, the real pair included
    assert len(read_index(out)) == 3


def test_training_photos_are_disjoint_from_the_real_splits_and_load():
    from freeprop.data.photos import PHOTOS, TRAIN_PHOTOS, is_grey, load_photo

    assert not set(PHOTOS) & set(TRAIN_PHOTOS)
    assert not {file for _, file in PHOTOS.values()} & {file for _, file in TRAIN_PHOTOS.values()}
    validation = {load_photo(n).shape for n in PHOTOS}
    for name in TRAIN_PHOTOS:
        photo = load_photo(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and photo.shape not in validation and photo.std() > 20
        assert is_grey(name) == bool(np.all(photo[..., 0] == photo[..., 2]))


def test_grey_training_photos_keep_their_structure_in_colour():
    from freeprop.data.synthetic import _texture

    crop = _texture("photo:ascent", 48, 48, (200, 60, 30), seed=3, scale=48)
    assert crop.shape == (48, 48, 3) and np.abs(crop[..., 0] - crop[..., 2]).mean() > 5  # coloured
    # every channel is one ramp of the photo's grey level: the channels correlate perfectly
    assert np.corrcoef(crop[..., 0].ravel(), crop[..., 1].ravel())[0, 1] > 0.999


def test_photos_share_cuts_training_scenes_from_training_photos_only():
    from freeprop.data.photos import TRAIN_PHOTOS
    from freeprop.data.synthetic import with_photos

    scene = random_scene(11, "train")
    assert with_photos(scene, 0.0, np.random.default_rng(0)) == scene
    photo = with_photos(scene, 1.0, np.random.default_rng(0))
    assert photo.world[6:] in TRAIN_PHOTOS and all(o.texture[6:] in TRAIN_PHOTOS for o in photo.objects)
    assert [replace(o, texture="x") for o in photo.objects] == [replace(o, texture="x") for o in scene.objects]
    # only training pairs take the share: val/test/real pairs (and their ids) are as without it
    for split in ("val", "test", "real"):
        plain, asked = (make_pair(SPLIT_SEEDS[split] + 1, split, "swap", 3, 16, 16, photos=p) for p in (0.0, 1.0))
        assert plain.sample_id == asked.sample_id and asked.meta["photos"] == 0.0
        np.testing.assert_array_equal(plain.target, asked.target)
    train = make_pair(5, "train", "removal", 3, 16, 16, photos=1.0)
    assert train.meta["world"][6:] in TRAIN_PHOTOS and train.sample_id != make_pair(5, "train", "removal", 3, 16, 16).sample_id


def test_photo_pools_wide_adds_gradios_photos_and_base_keeps_the_old_pairs():
    from freeprop.data.photos import TRAIN_PHOTOS, TRAIN_POOLS, load_photo
    from freeprop.defaults import PHOTO_POOLS
    from freeprop.training.config import DataConfig

    assert tuple(TRAIN_POOLS) == PHOTO_POOLS and set(TRAIN_POOLS["wide"]) == set(TRAIN_PHOTOS)
    # "base" is the pool of the stage-10 to stage-13 recipes: their pairs must not change
    assert set(TRAIN_POOLS["base"]) == {"luispedro", "department_store", "aero", "ascent"}
    added = set(TRAIN_POOLS["wide"]) - set(TRAIN_POOLS["base"])
    assert len(added) == 4 and all((load_photo(n)[..., 0] - load_photo(n)[..., 2]).std() > 10 for n in added)  # colour
    base = make_pair(5, "train", "swap", 3, 16, 16, photos=1.0)
    assert base.sample_id == make_pair(5, "train", "swap", 3, 16, 16, photos=1.0, photo_pool="base").sample_id
    assert "photo_pool" not in make_pair(5, "train", "swap", 3, 16, 16).meta
    wide = [make_pair(s, "train", "swap", 3, 16, 16, photos=1.0, photo_pool="wide") for s in range(12)]
    assert wide[5].sample_id != base.sample_id and wide[5].meta["photo_pool"] == "wide"
    drawn = {p.meta["world"][6:] for p in wide}
    assert drawn <= set(TRAIN_POOLS["wide"]) and drawn & added  # the new photos are drawn
    with pytest.raises(FreePropInputError, match="data.photo_pool"):
        DataConfig(photo_pool="skimage")


def test_photo_edits_draw_a_new_training_photo_and_say_so():
    swaps = [make_pair(s, "train", "swap", 3, 16, 16, photos=1.0) for s in range(0, 40, 4)]
    for pair in swaps:
        new = pair.instruction.split(" with a ")[1]
        assert new.startswith("photographic "), pair.instruction
    # a resize keeps the object's texture (and its words); a recolour names the photo it draws
    mods = [make_pair(s, "train", "modification", 3, 16, 16, photos=1.0) for s in range(2, 80, 4)]
    assert {m.instruction.split()[-1] for m in mods if "in another colour" not in m.instruction} <= {"bigger", "smaller"}
    assert all("photographic in another colour" in m.instruction for m in mods if "in another colour" in m.instruction)
    assert any("in another colour" in m.instruction for m in mods)


def test_photo_copies_stand_in_for_a_missing_package(tmp_path, monkeypatch):
    """On a machine without gradio or mahotas (the lent GPU's image), $FREEPROP_PHOTO_DIR's copies
    are what a training scene reads: the same pixels, so the same pairs."""
    import importlib.util

    from freeprop.data import photos

    copies = photos.copy_train_photos(tmp_path, "wide")
    assert len(copies) == len(photos.TRAIN_POOLS["wide"]) and all(c.is_relative_to(tmp_path) for c in copies)
    before = make_pair(7, "train", "swap", 3, 16, 16, photos=1.0, photo_pool="wide")
    originals = {name: photos.load_photo(name).copy() for name in photos.TRAIN_POOLS["wide"]}
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gradio", "mahotas", "pywt") else real_find_spec(name, *a))
    photos.load_photo.cache_clear()
    try:
        with pytest.raises(FreePropInputError, match="pip install 'gradio>=6'"):
            photos.load_photo("lion")  # no package and no copies: one clear line
        photos.load_photo.cache_clear()
        monkeypatch.setenv(photos.PHOTO_DIR_ENV, str(tmp_path))
        for name, pixels in originals.items():
            np.testing.assert_array_equal(photos.load_photo(name), pixels)
        after = make_pair(7, "train", "swap", 3, 16, 16, photos=1.0, photo_pool="wide")
        np.testing.assert_array_equal(after.target, before.target)
    finally:
        photos.load_photo.cache_clear()
