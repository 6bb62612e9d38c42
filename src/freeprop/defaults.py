"""One source of truth for the user-facing defaults of editing and sampling.

Light on purpose (no torch, no diffusers): the command line, the web app and the pipeline all read
their defaults from here, so `freeprop --help` can show them without importing a model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# What `freeprop edit` does when neither --method nor a model option is given: the method measured best
# on the real-footage validation split (README "How well it works", docs/model.md: mean PSNR over the four tasks).
DEFAULT_EDIT_METHOD = "flow-warp"
EDIT_METHODS = ("freeprop", "flow-warp")
BASELINES = ("flow-warp", "copy-source", "frozen-first-frame")  # weight-free references (eval --baseline)
BUNDLED_MODEL = "bundled"  # the explicit name of the model shipped in freeprop/assets/freeprop-small


def bundled_model_path() -> Path:
    """The folder of the trained model shipped with the package."""
    return Path(str(resources.files("freeprop") / "assets" / "freeprop-small"))


@dataclass(frozen=True)
class SamplingDefaults:
    """Sampler settings used when the caller names none (pipeline, CLI and app alike).

    `steps` 30 is the fall-back for a model folder that stores no `num_inference_steps` of its own
    (the bundled model stores 1, chosen on the validation and real splits). Unless the caller fixes a shift, it
    follows the resolution the model runs at, as Wan2.1 does: `shift` 3.0 at 480p, `shift_720p` 5.0 at
    720p (from halfway between the two areas up).
    """

    steps: int = 30
    guidance_scale: float = 5.0
    scheduler: str = "unipc"
    shift: float = 3.0
    shift_720p: float = 5.0
    overlap: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.overlap < 0 or self.shift <= 0:
            raise ValueError(f"invalid sampling defaults: {self}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose from {SCHEDULERS}")


SCHEDULERS = ("unipc", "euler")
# the edit types of a pair: local swap and removal (paper §3.1) and modification (EditVerseBench's
# "change"), global stylization (§3.2)
TASKS = ("swap", "removal", "modification", "stylization")
LOCAL_TASKS = TASKS[:3]  # the edits with a mask (stylization is global)
# the sets of training photographs `data.photos` draws from (freeprop.data.photos.TRAIN_POOLS)
PHOTO_POOLS = ("base", "wide")
SAMPLING = SamplingDefaults()


@dataclass(frozen=True)
class SynthDefaults:
    """`freeprop data synth`'s dataset: the one the bundled model's recipe trains and validates on."""

    train: int = 3200
    val: int = 80
    test: int = 80
    real: int = 0  # photograph-based validation split (the README's figures use --real 48)
    frames: int = 17
    height: int = 64
    width: int = 64
    shard_size: int = 64
    motion: float = 1.0
    leaves: float = 0.0  # share of worlds and objects drawn as dead leaves (photograph-like; stage 6)
    camouflage: float = 0.0  # share of objects drawn like their world, as photo cut-outs are (stage 8)
    photos: float = 0.0  # train split: share of worlds/objects/edits cut from training photos (stage 10)
    photo_pool: str = "base"  # which training photos (a PHOTO_POOLS name)


SYNTH = SynthDefaults()
