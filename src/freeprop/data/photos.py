"""Photographs that ship with Python packages: the `real` validation split's, and a disjoint training pool.

- `PHOTOS` (validation only, never trained on): scikit-learn's two sample photos
  (`sklearn.datasets.load_sample_image`) and matplotlib's portrait — the `real` split (issue 11).
- `TRAIN_PHOTOS` (training only, never in an evaluation): the photos that ship with mahotas and
  PyWavelets, and the colour photos of Gradio's media registry (`gradio.media`), drawn into training
  scenes by `data.photos` (freeprop.data.synthetic.with_photos) so the model sees photographic content
  without seeing a validation photo. `TRAIN_POOLS` names the sets a recipe draws from (`data.photo_pool`):
  "base", mahotas' and PyWavelets' (stages 10–13), and "wide", with Gradio's four beside them.

A machine without these packages (the lent GPU's image) reads copies instead: `copy_train_photos(DIR)`
writes a pool's files as DIR/<package>/<file>, and `FREEPROP_PHOTO_DIR=DIR` makes them the ones read.

scikit-image's bundled photos are deliberately absent from both: they are reserved for an independent
held-out evaluation, so nothing here may train or tune on them (nor on copies of them elsewhere:
PyWavelets' `camera` is scikit-image's cameraman, hence left out).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from functools import cache
from pathlib import Path

import numpy as np

from freeprop.errors import FreePropInputError

# name → (package, file inside it): photographs of natural scenes (not logos, plots or medical scans)
PHOTOS = {
    "china": ("sklearn", "china.jpg"),  # a temple among trees
    "flower": ("sklearn", "flower.jpg"),  # a flower close-up
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),  # a portrait
}
TRAIN_PHOTOS = {
    "luispedro": ("mahotas", "demos/data/luispedro.jpg"),  # a portrait before glass and steel, colour
    "department_store": ("mahotas", "demos/data/DepartmentStore.jpg"),  # a crowded drawn scene, colour
    "aero": ("pywt", "data/aero.npz"),  # fields and hedges from the air, grey
    "ascent": ("pywt", "data/ascent.npz"),  # people on an outdoor staircase, grey
    "cheetah": ("gradio", "media_assets/images/cheetah1.jpg"),  # a cheetah's head, colour
    "cheetah_running": ("gradio", "media_assets/images/cheetah.jpg"),  # a cheetah over blurred ground, colour
    "lion": ("gradio", "media_assets/images/lion.jpg"),  # lions on a rock, colour
    "tower": ("gradio", "media_assets/images/tower.jpg"),  # a lit tower against the sky, colour
}
TRAIN_POOLS = {  # data.photo_pool: the names are freeprop.defaults.PHOTO_POOLS
    "base": ("luispedro", "department_store", "aero", "ascent"),  # stages 10–13
    "wide": tuple(TRAIN_PHOTOS),  # three times the colour photos of "base"
}
INSTALL = {
    "sklearn": "scikit-learn", "matplotlib": "matplotlib", "mahotas": "mahotas", "pywt": "PyWavelets",
    "gradio": "'gradio>=6'",
}


def _source(name: str) -> tuple[str, str]:
    """(package, file) of photo `name`, of PHOTOS or TRAIN_PHOTOS."""
    source = PHOTOS.get(name) or TRAIN_PHOTOS.get(name)
    if source is None:
        raise FreePropInputError(f"unknown photo {name!r}; choose one of {', '.join([*PHOTOS, *TRAIN_PHOTOS])}")
    return source


PHOTO_DIR_ENV = "FREEPROP_PHOTO_DIR"  # a folder of copies, DIR/<package>/<file>, read before the packages


def _package_file(package: str, filename: str) -> Path:
    """`filename` inside installed `package` (found without importing it), or its copy under $FREEPROP_PHOTO_DIR."""
    copies = os.environ.get(PHOTO_DIR_ENV)
    if copies and (copy := Path(copies) / package / filename).is_file():
        return copy
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FreePropInputError(f"the training photos need {package}: pip install {INSTALL[package]}")
    return Path(next(iter(spec.submodule_search_locations))) / filename


def _read(package: str, filename: str) -> np.ndarray:
    """The photo as uint8 RGB [H, W, 3] (grey photos are repeated over the three channels)."""
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)
    if package == "matplotlib":
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data(filename) as f:
            return np.asarray(Image.open(f).convert("RGB"))
    path = _package_file(package, filename)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return np.repeat(archive["data"][..., None], 3, axis=-1)
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def copy_train_photos(folder: str | Path, pool: str = "wide") -> list[Path]:
    """Copy the files of training pool `pool` from their packages to `folder`/<package>/<file> (for
    $FREEPROP_PHOTO_DIR on a machine without the packages); returns the copies' paths."""
    copies = []
    for name in TRAIN_POOLS[pool]:
        package, filename = TRAIN_PHOTOS[name]
        copy = Path(folder) / package / filename
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_package_file(package, filename), copy)
        copies.append(copy)
    return copies


@cache
def load_photo(name: str) -> np.ndarray:
    """Photo `name` (of PHOTOS or TRAIN_PHOTOS) as float32 RGB [H, W, 3] in [0, 255] (cached; read-only)."""
    source = _source(name)
    try:
        image = _read(*source)
    except ImportError as e:
        raise FreePropInputError(f"the photo {name!r} needs {source[0]}: pip install {INSTALL[source[0]]}") from e
    photo = np.ascontiguousarray(image[..., :3], dtype=np.float32)
    photo.setflags(write=False)
    return photo


def is_grey(name: str) -> bool:
    """Whether photo `name` has no colour of its own (`_photo_texture` then maps it onto a colour ramp)."""
    return _source(name)[1].endswith(".npz")
