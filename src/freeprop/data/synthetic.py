"""Procedural FFP pairs with exact ground truth, mirroring the paper's two tracks (§3).

A scene is a textured world seen through a moving camera (pan, zoom, or still) with a few textured
objects that translate, rotate and scale, occlude each other in depth order, and may enter or leave
the frame. Everything is defined in resolution-free units (fractions of the frame), so the same
scene renders at 64×64 or 256×256 with identical content. The target video re-renders the *edited*
scene, so it is exact:

- local track: `swap` (the object becomes another shape/texture/colour on the same trajectory),
  `removal` (the object is gone; the background it covered is revealed), `modification` (same
  shape, new colour and texture, or a different size); the mask marks every pixel the edit changes;
- global track: `stylization` (a frame-wise style transform of the whole scene: colour grading,
  posterise, palette mapping, edge/cartoon, hue rotation).

Splits never share seeds (train / val / test draw from disjoint seed ranges), and the test split
holds out combinations never seen in training: the `star` shape, the `dots` texture and the
`hue_rotate` style appear only in test.

Generator 2 (`freeprop.synthetic/2`) made the scenes less uniform: every scene draws its own world
(multi-octave colour noise, colour cells or marble, in a random palette; generator 1 had one fixed
green-blue world), cameras pan in any direction or pan while zooming, and objects may wear the same
natural-looking textures. The `real` split is the same renderer with **photographs** in place of
procedural textures — the world is a crop of a photo and the objects are shaped cut-outs of photos —
so it has the same exact ground truth; it uses scikit-learn's and matplotlib's sample photos
(`freeprop.data.photos`) and is never trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import cv2
import numpy as np

from freeprop.data.pairs import Pair, PairWriter
from freeprop.defaults import SYNTH, TASKS
from freeprop.errors import FreePropInputError

SHAPES = ("circle", "square", "triangle", "hexagon", "star")
TEXTURES = ("stripes", "checker", "noise", "gradient", "dots", "fractal", "cells", "marble")
WORLDS = ("fractal", "cells", "marble", "legacy")  # background kinds ("legacy": generator 1's world)
STYLES = ("grade_warm", "grade_cool", "posterize", "palette", "edges", "hue_rotate")
HELD_OUT = {"shape": "star", "texture": "dots", "style": "hue_rotate"}  # test split only
CAMERAS = ("pan", "zoom", "still", "pan_zoom")
# disjoint seed ranges; `real` renders photographs (validation only, never trained on)
SPLIT_SEEDS = {"train": 0, "val": 1_000_000, "test": 2_000_000, "real": 3_000_000}
GENERATOR = "freeprop.synthetic/2"


@dataclass(frozen=True)
class SceneObject:
    shape: str
    texture: str
    color: tuple[float, float, float]  # base RGB in [0, 255]
    size: float  # radius, fraction of the frame height
    start: tuple[float, float]  # centre at t=0 (x, y), fractions of the frame
    velocity: tuple[float, float]  # per frame
    angle: float  # degrees at t=0
    spin: float  # degrees per frame
    growth: float  # scale factor per frame


@dataclass(frozen=True)
class Scene:
    seed: int
    camera: str
    camera_speed: float  # pan: fraction of the frame per frame; zoom: relative zoom per frame
    objects: tuple[SceneObject, ...]
    world: str = "legacy"  # a WORLDS kind, or "photo:NAME" (freeprop.data.photos)
    palette: tuple[tuple[float, float, float], ...] = ((110, 140, 120), (90, 120, 160))
    pan_angle: float = 0.0  # pan direction, radians (0 = the camera moves right)
    zoom_speed: float = 0.0  # pan_zoom: relative zoom per frame while panning


# ----------------------------------------------------------------------------------------------
# Textures and rendering
# ----------------------------------------------------------------------------------------------


def _texture(kind: str, height: int, width: int, color, seed: int, scale: float) -> np.ndarray:
    """A float RGB texture [H, W, 3] of `kind` around `color`; `scale` = pixels per unit length."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32) / scale
    rng = np.random.default_rng(seed)
    base = np.asarray(color, np.float32)
    if kind == "stripes":
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * 0.8 + yy * 0.5) / 0.12)
    elif kind == "checker":
        pattern = ((np.floor(xx / 0.1) + np.floor(yy / 0.1)) % 2).astype(np.float32)
    elif kind == "noise":
        small = rng.random((max(2, int(height / scale * 12)), max(2, int(width / scale * 12)))).astype(
            np.float32
        )
        pattern = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    elif kind == "gradient":
        pattern = (xx + yy) / max(1e-6, (xx + yy).max())
    elif kind == "dots":
        pattern = ((np.sin(2 * np.pi * xx / 0.1) * np.sin(2 * np.pi * yy / 0.1)) > 0.4).astype(np.float32)
    elif kind in ("fractal", "cells", "marble"):
        return _natural_texture(kind, height, width, color, rng, scale)
    elif kind == "leaves":
        return _dead_leaves(height, width, color, rng, scale)
    elif kind.startswith("photo:"):
        return _photo_texture(kind[6:], height, width, color, rng)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    contrast = np.array([0.55, 0.45, 0.5], np.float32)
    return np.clip(
        base * (1 - contrast) + 255 * contrast * pattern[..., None] * (base / 255 * 0.5 + 0.5), 0, 255
    )


def _fractal_noise(
    height: int, width: int, rng: np.random.Generator, scale: float, octaves: int = 5
) -> np.ndarray:
    """1/f-like value noise in [0, 1]: octaves of bicubically upsampled random grids, halving amplitude."""
    out = np.zeros((height, width), np.float32)
    for octave in range(octaves):
        cells = 3 * 2**octave  # grid cells per unit length
        grid = rng.random((max(2, int(height / scale * cells)), max(2, int(width / scale * cells))))
        out += 0.5**octave * cv2.resize(
            grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
        )
    out -= out.min()
    return out / max(1e-6, out.max())


def _natural_texture(kind: str, height: int, width: int, color, rng: np.random.Generator, scale: float):
    """Colour textures that look less like test patterns: fractal colour noise, colour cells, marble."""
    base = np.asarray(color, np.float32)
    other = rng.uniform(20, 235, 3).astype(np.float32)  # a second colour, drawn per texture
    if kind == "fractal":
        mix = _fractal_noise(height, width, rng, scale)[..., None]
        detail = _fractal_noise(height, width, rng, scale / 2, octaves=3)[..., None] - 0.5
        return np.clip(base * (1 - mix) + other * mix + 60 * detail, 0, 255)
    if kind == "cells":  # Voronoi cells around jittered seeds, each a colour between the two
        n = int(rng.integers(6, 24))
        points = rng.random((n, 2)) * (width, height)
        yy, xx = np.mgrid[:height, :width].astype(np.float32)
        owner = np.argmin((xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2, axis=-1)
        shade = rng.random(n).astype(np.float32)[owner][..., None]
        texture = base * (1 - shade) + other * shade
        return np.clip(texture + 30 * (_fractal_noise(height, width, rng, scale, 3)[..., None] - 0.5), 0, 255)
    # marble: sine bands bent by fractal noise
    yy, xx = np.mgrid[:height, :width].astype(np.float32) / scale
    bands = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * 3 + yy + 2.5 * _fractal_noise(height, width, rng, scale)))
    return np.clip(base * (1 - bands[..., None]) + other * bands[..., None], 0, 255)


def _dead_leaves(height: int, width: int, color, rng: np.random.Generator, scale: float) -> np.ndarray:
    """The dead-leaves model (Lee, Mumford & Huang 2001): occluding ellipses and rectangles whose radii
    have density ∝ r⁻³ — scale-invariant, sharp-edged images with the edge and spectrum statistics of photographs
    (Baradad et al. 2021 pre-train on it), without using a photograph. Leaves draw their colours from a
    small palette around `color`, under a smooth fractal shading like uneven light."""
    k = int(rng.integers(3, 8))  # palette: `color` and colours between it and random ones, muted like photos
    palette = np.asarray(color, np.float32) + rng.uniform(0, 1, (k, 1)) * (rng.uniform(15, 240, (k, 3)) - color)
    ss = 2  # drawn at twice the size and averaged down: anti-aliased edges, round small leaves
    r_min, r_max = 0.02 * scale * ss, 0.5 * scale * ss  # pixels of the supersampled canvas
    mean_area = 2 * np.pi * r_min**2 * np.log(r_max / r_min)  # E[π r²] for the r⁻³ density (r_max ≫ r_min)
    count = int(min(6000, 4 * height * width * ss * ss / mean_area))  # about four leaves over every pixel
    u = rng.random(count)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5  # inverse CDF of the r⁻³ density
    canvas = np.empty((height * ss, width * ss, 3), np.float32)
    canvas[:] = palette[int(rng.integers(k))]
    centres = rng.random((count, 2)) * (width * ss, height * ss)
    for r, (x, y) in zip(radii, centres):
        leaf = tuple(float(c) for c in palette[int(rng.integers(k))] + rng.normal(0, 10, 3))
        aspect, angle = rng.uniform(0.4, 1.0), float(rng.uniform(0, 180))
        if rng.random() < 0.5:  # an ellipse, or a rectangle: man-made scenes have straight edges
            axes = (max(1, int(round(r))), max(1, int(round(r * aspect))))
            cv2.ellipse(canvas, (int(x), int(y)), axes, angle, 0, 360, leaf, -1)
        else:
            corners = cv2.boxPoints(((float(x), float(y)), (2 * r, 2 * r * aspect), angle))
            cv2.fillPoly(canvas, [np.round(corners).astype(np.int32)], leaf)
    canvas = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    light = 0.7 + 0.6 * _fractal_noise(height, width, rng, scale, octaves=3)[..., None]
    return np.clip(canvas * light, 0, 255)


def _photo_texture(name: str, height: int, width: int, color, rng: np.random.Generator) -> np.ndarray:
    """A random crop of photograph `name`, resized to [H, W], tinted slightly towards `color`."""
    from freeprop.data.photos import is_grey, load_photo

    photo = load_photo(name)
    ph, pw = photo.shape[:2]
    zoom = rng.uniform(0.35, 1.0)  # the crop's share of the photo's shorter side
    ch = cw = int(min(ph, pw) * zoom)
    if width != height:  # keep the aspect ratio of the requested texture
        ch, cw = (ch, int(ch * width / height)) if width < height else (int(cw * height / width), cw)
        ch, cw = min(ch, ph), min(cw, pw)
    y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = cv2.resize(photo[y : y + ch, x : x + cw], (width, height), interpolation=cv2.INTER_AREA)
    if is_grey(name):  # a grey photo's light/dark structure on a ramp from dark `color` to a random light one
        dark, light = 0.3 * np.asarray(color, np.float32), rng.uniform(140, 255, 3).astype(np.float32)
        return dark + crop[..., :1] / 255 * (light - dark)
    return np.clip(0.85 * crop + 0.15 * np.asarray(color, np.float32), 0, 255)


def _world(scene: Scene, height: int, width: int) -> np.ndarray:
    """The scene's background, 2H × 2W float RGB (the camera sees a window of it)."""
    h2, w2 = 2 * height, 2 * width
    if scene.world == "legacy":  # generator 1's world: one fixed green-blue noise + stripes mix
        world = _texture("noise", h2, w2, scene.palette[0], scene.seed, scale=height)
        return 0.6 * world + 0.4 * _texture("stripes", h2, w2, scene.palette[1], scene.seed, height)
    return _texture(scene.world, h2, w2, scene.palette[0], scene.seed, scale=height)


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """A float alpha mask [2s, 2s] of `shape` with radius s (anti-aliased by supersampling)."""
    ss = 4
    n = 2 * size * ss
    canvas = np.zeros((n, n), np.uint8)
    c, r = n / 2, size * ss * 0.95
    if shape == "circle":
        cv2.circle(canvas, (int(c), int(c)), int(r), 255, -1)
    else:
        k = {"square": 4, "triangle": 3, "hexagon": 6, "star": 10}[shape]
        angles = np.arange(k) * 2 * np.pi / k - np.pi / 2
        radii = np.where(np.arange(k) % 2, r * 0.45, r) if shape == "star" else np.full(k, r)
        points = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(canvas, [points], 255)
    return cv2.resize(canvas, (2 * size, 2 * size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _camera(scene: Scene, t: int, height: int, width: int) -> np.ndarray:
    """2×3 affine from world pixels (world = 2× the frame, centred) to screen pixels at frame t."""
    pan, zoom = 0.0, 1.0
    if scene.camera in ("pan", "pan_zoom"):
        pan = scene.camera_speed * t * width
        zoom = (1 + scene.zoom_speed) ** t if scene.camera == "pan_zoom" else 1.0
    elif scene.camera == "zoom":
        zoom = (1 + scene.camera_speed) ** t
    # world centre (w, h) (of a 2h × 2w world) maps to the screen centre, shifted by the pan
    cx, cy = width + pan * np.cos(scene.pan_angle), height + pan * np.sin(scene.pan_angle)
    return np.array([[zoom, 0, width / 2 - zoom * cx], [0, zoom, height / 2 - zoom * cy]], np.float32)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    a = np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]])
    return a[:2].astype(np.float32)


def render(scene: Scene, frames: int, height: int, width: int) -> np.ndarray:
    """Render `scene` as uint8 [F, H, W, 3] (objects in list order: later ones occlude earlier ones)."""
    world = _world(scene, height, width)
    sprites = []
    for i, obj in enumerate(scene.objects):
        radius = max(2, int(round(obj.size * height)))
        alpha = _shape_mask(obj.shape, radius)
        tex = _texture(obj.texture, 2 * radius, 2 * radius, obj.color, scene.seed + 17 * i, scale=height)
        sprites.append((obj, radius, alpha, tex))
    video = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        cam = _camera(scene, t, height, width)
        frame = cv2.warpAffine(
            world, cam, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        for obj, radius, alpha, tex in sprites:
            cx = width / 2 + (obj.start[0] - 0.5 + obj.velocity[0] * t) * width + width / 2  # world x
            cy = height / 2 + (obj.start[1] - 0.5 + obj.velocity[1] * t) * height + height / 2
            pose = cv2.getRotationMatrix2D((radius, radius), obj.angle + obj.spin * t, obj.growth**t)
            pose[:, 2] += (cx - radius, cy - radius)  # sprite pixel → world pixel
            m = _compose(cam, pose)
            a = cv2.warpAffine(alpha, m, (width, height), flags=cv2.INTER_LINEAR)[..., None]
            rgb = cv2.warpAffine(tex, m, (width, height), flags=cv2.INTER_LINEAR)
            frame = frame * (1 - a) + rgb * a
        video[t] = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    return video


# ----------------------------------------------------------------------------------------------
# Styles (global track)
# ----------------------------------------------------------------------------------------------


def stylize(video: np.ndarray, style: str) -> np.ndarray:
    """A deterministic frame-wise style transform of uint8 [F, H, W, 3]."""
    x = video.astype(np.float32)
    if style == "grade_warm":
        out = x @ np.array([[1.1, 0.05, 0], [0.05, 0.95, 0], [0, 0.05, 0.7]], np.float32).T + [12, 4, -8]
    elif style == "grade_cool":
        out = x @ np.array([[0.75, 0, 0.05], [0, 0.95, 0.05], [0.05, 0.1, 1.15]], np.float32).T + [-6, 2, 14]
    elif style == "posterize":
        out = np.floor(x / 64) * 64 + 32
    elif style == "palette":
        palette = np.array(
            [[38, 70, 83], [42, 157, 143], [233, 196, 106], [244, 162, 97], [231, 111, 81]], np.float32
        )
        gray = x.mean(-1)
        out = palette[np.clip((gray / 256 * len(palette)).astype(int), 0, len(palette) - 1)]
    elif style == "edges":  # cartoon: flattened colours with dark edges
        out = np.empty_like(x)
        for i, frame in enumerate(video):
            flat = cv2.bilateralFilter(frame, 5, 60, 5).astype(np.float32)
            edges = cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 60, 140)
            out[i] = np.round(flat / 48) * 48 * (1 - edges[..., None] / 255 * 0.8)
    elif style == "hue_rotate":
        out = np.empty_like(x)
        for i, frame in enumerate(video):
            hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = (hsv[..., 0].astype(int) + 60) % 180
            out[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    else:
        raise ValueError(f"unknown style {style!r}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Scenes, edits, pairs
# ----------------------------------------------------------------------------------------------


def _allowed(names: tuple[str, ...], kind: str, split: str) -> list[str]:
    return [n for n in names if split == "test" or n != HELD_OUT.get(kind)]


def _random_texture(rng: np.random.Generator, split: str) -> str:
    if split == "real":
        from freeprop.data.photos import PHOTOS

        return f"photo:{rng.choice(sorted(PHOTOS))}"
    return str(rng.choice(_allowed(TEXTURES, "texture", split)))


def random_object(rng: np.random.Generator, split: str) -> SceneObject:
    enter = rng.random() < 0.25  # some objects enter or leave the frame
    speed = rng.uniform(0.02, 0.05) if enter else rng.uniform(0.0, 0.02)
    direction = rng.uniform(0, 2 * np.pi)
    start = (rng.uniform(0.05, 0.3), rng.uniform(0.2, 0.8)) if enter else tuple(rng.uniform(0.25, 0.75, 2))
    if enter:
        direction = rng.uniform(-0.4, 0.4)  # heading right, across the frame
    return SceneObject(
        shape=str(rng.choice(_allowed(SHAPES, "shape", split))),
        texture=_random_texture(rng, split),
        color=tuple(float(c) for c in rng.uniform(30, 230, 3)),
        size=float(rng.uniform(0.1, 0.2)),
        start=(float(start[0]), float(start[1])),
        velocity=(float(speed * np.cos(direction)), float(speed * np.sin(direction))),
        angle=float(rng.uniform(0, 360)),
        spin=float(rng.choice([0.0, rng.uniform(-8, 8)])),
        growth=float(rng.choice([1.0, rng.uniform(0.98, 1.02)])),
    )


def random_scene(seed: int, split: str) -> Scene:
    rng = np.random.default_rng(seed)
    camera = str(rng.choice(CAMERAS))
    speed = {"pan": rng.uniform(0.005, 0.02), "zoom": rng.uniform(-0.015, 0.015), "still": 0.0}
    speed["pan_zoom"] = speed["pan"]
    objects = tuple(random_object(rng, split) for _ in range(int(rng.integers(1, 4))))
    if split == "real":
        from freeprop.data.photos import PHOTOS

        world = f"photo:{rng.choice(sorted(PHOTOS))}"
    else:
        world = str(rng.choice(WORLDS, p=(0.3, 0.25, 0.25, 0.2)))
    return Scene(
        seed,
        camera,
        float(speed[camera]),
        objects,
        world=world,
        palette=tuple(tuple(float(c) for c in rng.uniform(30, 220, 3)) for _ in range(2)),
        pan_angle=float(rng.uniform(0, 2 * np.pi)),
        zoom_speed=float(rng.uniform(-0.012, 0.012)),
    )


def _words(texture: str) -> str:
    return "photographic" if texture.startswith("photo:") else texture


def _other_texture(rng: np.random.Generator, split: str, current: str) -> str:
    """A texture other than `current` (a photo edit recolours the cut-out with another photo or a procedural texture)."""
    choices = [t for t in _allowed(TEXTURES, "texture", split) if t != current]
    if split == "real":
        from freeprop.data.photos import PHOTOS

        choices = [f"photo:{p}" for p in sorted(PHOTOS) if f"photo:{p}" != current] or choices
    return str(rng.choice(choices))


def edit_scene(scene: Scene, task: str, rng: np.random.Generator, split: str) -> tuple[Scene, str, int]:
    """The edited scene, an instruction, and the edited object's index (−1 for stylization)."""
    k = int(rng.integers(len(scene.objects)))
    obj = scene.objects[k]
    objects = list(scene.objects)
    if task == "swap":
        shapes = [s for s in _allowed(SHAPES, "shape", split) if s != obj.shape]
        new = replace(
            obj,
            shape=str(rng.choice(shapes)),
            texture=_random_texture(rng, split),
            color=tuple(float(c) for c in rng.uniform(30, 230, 3)),
        )
        objects[k] = new
        instruction = (
            f"replace the {_words(obj.texture)} {obj.shape} with a {_words(new.texture)} {new.shape}"
        )
    elif task == "removal":
        objects.pop(k)
        instruction = f"remove the {_words(obj.texture)} {obj.shape}"
    elif task == "modification":
        if rng.random() < 0.5:
            new = replace(
                obj,
                color=tuple(float(255 - c) for c in obj.color),
                texture=_other_texture(rng, split, obj.texture),
            )
            instruction = f"make the {obj.shape} {_words(new.texture)} in another colour"
        else:
            new = replace(obj, size=obj.size * float(rng.choice([0.7, 1.4])))
            instruction = f"make the {obj.shape} {'bigger' if new.size > obj.size else 'smaller'}"
        objects[k] = new
    else:
        raise ValueError(f"unknown local task {task!r}")
    return replace(scene, objects=tuple(objects)), instruction, k


def with_motion(scene: Scene, scale: float) -> Scene:
    """`scene` with every motion (camera pan/zoom, object velocity, spin, growth) scaled by `scale`
    (0 = a still scene): the curriculum's first stage, where the edit stays where frame 0 has it."""
    objects = tuple(
        replace(
            o,
            velocity=(o.velocity[0] * scale, o.velocity[1] * scale),
            spin=o.spin * scale,
            growth=o.growth**scale,
        )
        for o in scene.objects
    )
    return replace(
        scene, camera_speed=scene.camera_speed * scale, zoom_speed=scene.zoom_speed * scale, objects=objects
    )


def with_leaves(scene: Scene, share: float, rng: np.random.Generator) -> Scene:
    """`scene` with its world and each object's texture turned into dead leaves (`_dead_leaves`), each
    with probability `share`: sharp-edged, photograph-like content for training, from its own random
    stream so that share 0 leaves every other draw (and the val/test/real splits) unchanged."""
    objects = tuple(replace(o, texture="leaves") if rng.random() < share else o for o in scene.objects)
    return replace(scene, world="leaves" if rng.random() < share else scene.world, objects=objects)


def with_camouflage(scene: Scene, share: float, rng: np.random.Generator) -> Scene:
    """`scene` with each object, with probability `share`, cut from the same kind of texture as its world
    in nearly the world's colour — as a photographed cut-out over a photograph is: only its outline and
    its motion tell it apart. From its own random stream, like `with_leaves`."""
    photo_world = scene.world.startswith("photo:")  # a cut-out of the world's own photo, another crop
    kind = scene.world if scene.world in (*TEXTURES, "leaves") or photo_world else "fractal"  # not "legacy"
    base = np.asarray(scene.palette[0])

    def blend(obj: SceneObject) -> SceneObject:
        color = tuple(float(c) for c in np.clip(base + rng.normal(0, 15, 3), 0, 255))
        return replace(obj, texture=kind, color=color)

    return replace(scene, objects=tuple(blend(o) if rng.random() < share else o for o in scene.objects))


def _train_photo(rng: np.random.Generator, pool: str, current: str = "") -> str:
    from freeprop.data.photos import TRAIN_POOLS

    return f"photo:{rng.choice([p for p in sorted(TRAIN_POOLS[pool]) if f'photo:{p}' != current])}"


def with_photos(scene: Scene, share: float, rng: np.random.Generator, pool: str = SYNTH.photo_pool) -> Scene:
    """`scene` with its world and each object's texture turned into a crop of a training photograph
    (`freeprop.data.photos.TRAIN_POOLS[pool]`, never the `real` split's), each with probability `share`:
    training scenes built like the real split's, from other photos. Own random stream, like `with_leaves`."""
    objects = tuple(replace(o, texture=_train_photo(rng, pool)) if rng.random() < share else o for o in scene.objects)
    return replace(scene, world=_train_photo(rng, pool) if rng.random() < share else scene.world, objects=objects)


def with_photo_edit(
    scene: Scene, edited: Scene, instruction: str, k: int, share: float, rng: np.random.Generator,
    pool: str = SYNTH.photo_pool,
) -> tuple[Scene, str]:
    """`edited` (and its instruction) with the new texture an edit gave object `k` (a swap, a recolour)
    made a training photo with probability `share` — as the real split's edits draw photos; other edits
    are left as they are."""
    if k < 0 or len(edited.objects) != len(scene.objects) or rng.random() >= share:
        return edited, instruction
    old, new = scene.objects[k], edited.objects[k]
    if new.texture == old.texture:  # a resize: the object keeps its own texture
        return edited, instruction
    objects = list(edited.objects)
    objects[k] = replace(new, texture=_train_photo(rng, pool, old.texture))
    before, _, after = instruction.rpartition(_words(new.texture))  # the new texture is named last
    return replace(edited, objects=tuple(objects)), before + "photographic" + after


def split_looks(split: str, leaves: float, camouflage: float, photos: float = 0.0) -> tuple[float, float, float]:
    """The (leaves, camouflage, photos) shares a pair of `split` is drawn with: only training pairs take
    them — the real split stays the validation photographs, and val/test stay procedural (and all keep
    their ids), whatever was asked."""
    if split == "real":
        return 0.0, 0.0, 0.0
    return leaves, camouflage, photos if split == "train" else 0.0


def sample_id(
    seed: int, split: str, task: str, frames: int, height: int, width: int, motion: float = 1.0,
    leaves: float = 0.0, camouflage: float = 0.0, photos: float = 0.0, photo_pool: str = SYNTH.photo_pool,
) -> str:
    """Deterministic id from everything that determines the pair (re-runs give the same id)."""
    key = f"{split}/{seed}/{task}/{frames}/{height}x{width}" + (f"/motion{motion:g}" if motion != 1 else "")
    key += f"/leaves{leaves:g}" if leaves else ""
    key += f"/camouflage{camouflage:g}" if camouflage else ""
    key += f"/photos{photos:g}" if photos else ""
    key += f"/{photo_pool}" if photos and photo_pool != SYNTH.photo_pool else ""  # the default keeps stage 10–13 ids
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{split}-{seed:07d}-{task}-{digest}"


def make_pair(
    seed: int,
    split: str,
    task: str,
    frames: int = 17,
    height: int = 64,
    width: int = 64,
    fps: float = 16.0,
    motion: float = 1.0,
    leaves: float = 0.0,
    camouflage: float = 0.0,
    photos: float = 0.0,
    photo_pool: str = SYNTH.photo_pool,
) -> Pair:
    """One deterministic (source, target) pair for `task`; `motion` scales every motion (see `with_motion`),
    `leaves` is the share of worlds and objects drawn as dead leaves (see `with_leaves`), `camouflage` the
    share of objects drawn like their world (see `with_camouflage`), `photos` the share of worlds,
    objects and new textures cut from the training photographs of `photo_pool` (see `with_photos`;
    train split only)."""
    leaves, camouflage, photos = split_looks(split, leaves, camouflage, photos)
    scene = random_scene(seed, split)
    if motion != 1:
        scene = with_motion(scene, motion)
    if leaves:
        scene = with_leaves(scene, leaves, np.random.default_rng([seed, 2]))
    if photos:
        scene = with_photos(scene, photos, np.random.default_rng([seed, 5]), photo_pool)
    if camouflage:
        scene = with_camouflage(scene, camouflage, np.random.default_rng([seed, 4]))
    rng = np.random.default_rng([seed, 1])
    source = render(scene, frames, height, width)
    if task == "stylization":
        style = str(rng.choice(_allowed(STYLES, "style", split)))
        target, mask, instruction = (
            stylize(source, style),
            None,
            f"restyle the video: {style.replace('_', ' ')}",
        )
        meta = {"style": style}
    else:
        edited, instruction, k = edit_scene(scene, task, rng, split)
        if photos:
            edited, instruction = with_photo_edit(
                scene, edited, instruction, k, photos, np.random.default_rng([seed, 6]), photo_pool
            )
        target = render(edited, frames, height, width)
        mask = (np.abs(target.astype(int) - source).max(axis=-1) > 0).astype(np.uint8) * 255
        meta = {"object": k}
    meta |= {
        "seed": seed,
        "camera": scene.camera,
        "objects": len(scene.objects),
        "world": scene.world,
        "motion": motion,
        "leaves": leaves,
        "camouflage": camouflage,
        "photos": photos,
        **({"photo_pool": photo_pool} if photos else {}),
        "generator": GENERATOR,
    }
    return Pair(
        sample_id=sample_id(seed, split, task, frames, height, width, motion, leaves, camouflage, photos, photo_pool),
        source=source,
        target=target,
        task=task,
        track="global" if task == "stylization" else "local",
        fps=fps,
        mask=mask,
        instruction=instruction,
        split=split,
        meta=meta,
    )


def write_synthetic(
    root,
    counts: dict[str, int],
    frames: int = SYNTH.frames,
    height: int = SYNTH.height,
    width: int = SYNTH.width,
    shard_size: int = SYNTH.shard_size,
    progress: bool = True,
    motion: float = SYNTH.motion,
    leaves: float = SYNTH.leaves,
    camouflage: float = SYNTH.camouflage,
    photos: float = SYNTH.photos,
    photo_pool: str = SYNTH.photo_pool,
) -> dict[str, int]:
    """Write `counts[split]` pairs per split (tasks in turn) in the pair format; resumable (skips done ids)."""
    from tqdm.auto import tqdm

    from freeprop.data.pairs import has_index, read_index

    if has_index(root):  # resuming is fine; mixing clip sizes in one dataset is not
        sizes = {(r["num_frames"], r["height"], r["width"]) for r in read_index(root).to_pylist() if r["status"] == "ok"}
        if sizes - {(frames, height, width)}:
            have = ", ".join(f"{f} frames at {h}x{w}" for f, h, w in sorted(sizes))
            raise FreePropInputError(
                f"{root} holds clips of {have}; write {frames} frames at {height}x{width} into another folder"
            )
    written = {}
    with PairWriter(root, shard_size=shard_size) as writer:
        for split, count in counts.items():
            bar = tqdm(range(count), desc=f"synth {split}", disable=not progress)
            looks = split_looks(split, leaves, camouflage, photos)  # the shares make_pair's ids are made with
            for i in bar:
                seed, task = SPLIT_SEEDS[split] + i, TASKS[i % len(TASKS)]
                if sample_id(seed, split, task, frames, height, width, motion, *looks, photo_pool) not in writer.done:
                    writer.add(make_pair(seed, split, task, frames, height, width, motion=motion, leaves=leaves,
                                         camouflage=camouflage, photos=photos, photo_pool=photo_pool))
            written[split] = count
    return written
