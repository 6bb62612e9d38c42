"""Real photographs for the `real` validation split: the sample photos that ship with packages.

Only scikit-learn's (`sklearn.datasets.load_sample_image`) and matplotlib's sample photographs are
used. scikit-image's bundled photos are deliberately absent: they are reserved for an independent
held-out evaluation, so nothing here may train or tune on them.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from freeprop.errors import FreePropInputError

# name → (package, file): photographs of natural scenes (not logos, plots or medical scans)
PHOTOS = {
    "china": ("sklearn", "china.jpg"),  # a temple among trees
    "flower": ("sklearn", "flower.jpg"),  # a flower close-up
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),  # a portrait
}


@cache
def load_photo(name: str) -> np.ndarray:
    """Photo `name` as float32 RGB [H, W, 3] in [0, 255] (cached; read-only)."""
    if name not in PHOTOS:
        raise FreePropInputError(f"unknown photo {name!r}; choose one of {', '.join(PHOTOS)}")
    package, filename = PHOTOS[name]
    try:
        if package == "sklearn":
            from sklearn.datasets import load_sample_image

            image = load_sample_image(filename)
        else:
            from matplotlib import cbook
            from PIL import Image

            with cbook.get_sample_data(filename) as f:
                image = np.asarray(Image.open(f).convert("RGB"))
    except ImportError as e:
        raise FreePropInputError(f"the photo {name!r} needs {package}: pip install {package}") from e
    photo = np.ascontiguousarray(image[..., :3], dtype=np.float32)
    photo.setflags(write=False)
    return photo
