"""Frozen dataclass configs from YAML / dicts / `key=value` overrides, with key and type checks.

Used by every YAML edge (training recipes, the data-pipeline build config): unknown keys and wrong
types are rejected with the key named (PyYAML's "3e-3"-is-a-string quirk is accepted for floats).
A recipe may start from another (`base: small-photos`) and give only what it changes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from freeprop.errors import FreePropInputError

# ----------------------------------------------------------------------------------------------
# From YAML / dicts, with key and type checks
# ----------------------------------------------------------------------------------------------


def _check_type(key: str, value, annotation):
    """Coerce `value` to `annotation` (ints to floats, lists to tuples) or raise naming `key`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(key, value, option)
            except FreePropInputError:
                continue
        raise FreePropInputError(f"config key {key}: expected {annotation}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise FreePropInputError(f"config key {key}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None and len(args) != len(value):
            raise FreePropInputError(f"config key {key}: expected {len(args)} values, got {len(value)}")
        return tuple(_check_type(key, v, item or a) for v, a in zip(value, args if item is None else value))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # PyYAML reads "3e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is str and value is False:  # YAML 1.1 reads an unquoted `no` (mixed_precision=no) as false
        return "no"
    if annotation in (int, float, str, bool) and (type(value) is not annotation):
        raise FreePropInputError(f"config key {key}: expected {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types by name."""
    if not isinstance(data, dict):
        raise FreePropInputError(f"config section {prefix or '(top)'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise FreePropInputError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; see {cls.__name__}"
        )
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _check_type(prefix + name, value, hint)
    return cls(**values)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`["optim.lr=1e-4", "loss.variant=baseline"]` → nested dict updates (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise FreePropInputError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FreePropInputError(f"override {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


PACKAGED_CONFIGS = Path(__file__).parent / "configs"  # the recipes, shipped with the package


def packaged_configs() -> list[str]:
    """Names of the shipped recipes (`tiny`, `small`, `data/ffp300k`, …), usable wherever a path is."""
    return sorted(str(p.relative_to(PACKAGED_CONFIGS).with_suffix("")) for p in PACKAGED_CONFIGS.rglob("*.yaml"))


def find_config(spec: str | Path) -> Path:
    """A config file: `spec` itself if it exists, else the shipped recipe of that name
    (`small`, `small.yaml` or `configs/small.yaml` all name `freeprop/configs/small.yaml`)."""
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removeprefix("configs/").removesuffix(".yaml")
    shipped = PACKAGED_CONFIGS / f"{name}.yaml"
    if ".." not in Path(name).parts and shipped.is_file():
        return shipped
    raise FreePropInputError(
        f"{spec}: no such config file, and no shipped recipe of that name ({', '.join(packaged_configs())})"
    )


BASE_KEY = "base"  # a recipe's `base: NAME` reads NAME first and overrides it (a path, or a shipped recipe's name)


def _merge(base: dict, child: dict) -> dict:
    """`child` over `base`, section by section (a mapping in both is merged; anything else is replaced)."""
    merged = dict(base)
    for key, value in child.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if both else value
    return merged


def read_recipe(spec: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A YAML recipe as a dict, its `base` chain resolved: a base named by path is relative to the recipe's
    folder first, then to the working directory, then a shipped recipe of that name."""
    path = find_config(spec).resolve()
    if path in _chain:
        raise FreePropInputError(f"{path}: its base chain comes back to itself ({' → '.join(p.name for p in _chain)})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise FreePropInputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FreePropInputError(f"{path}: a config is a YAML mapping of keys, not a {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise FreePropInputError(f"{path}: {BASE_KEY} must name one recipe, got {base!r}")
    beside = path.parent / base
    return _merge(read_recipe(beside if beside.is_file() else base, (*_chain, path)), data)


def load_dataclass(cls, path: str | Path | None, overrides: list[str] = ()):
    """Read a YAML recipe and its bases (or start from defaults with `path=None`), apply `key=value`
    overrides, build `cls`."""
    data = read_recipe(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides)))


def to_dict(config) -> dict:
    return dataclasses.asdict(config)
