"""Load a `FreePropTransformer` from a preset name, a diffusers-format folder, or safetensors weights.

Three sources, one strict rule — a state dict must match the model exactly, and every missing key,
unexpected key and shape mismatch is reported in one error. Weights are read with safetensors only.

- **Preset + weights** in diffusers key layout (what `save_pretrained` / our trainer write).
- **Diffusers folder** (`config.json` + `diffusion_pytorch_model*.safetensors`, or a pipeline folder
  with `transformer/`).
- **Original Wan2.1 Fun-Control checkpoint** (VideoX-Fun / Wan key layout: `blocks.0.self_attn.q`,
  `head.modulation`, norm2/norm3 in Wan's order, ...). Keys are renamed with diffusers' own
  `convert_wan_transformer_to_diffusers` (the `convert_wan_to_diffusers` map, including the
  norm2 ↔ norm3 swap and the `img_emb.proj.{0,1,3,4}` → image-embedder names), loaded strictly into
  a `WanTransformer3DModel` whose config is read off the tensor shapes, and then widened by
  `expand_input_channels` with zero-initialised channels for the first-frame mask M.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from freeprop.errors import FreePropInputError
from freeprop.models.ast_rope import AlphaPredictor
from freeprop.models.presets import PRESETS, get_preset
from freeprop.models.transformer import FreePropTransformer, widen_patch_embedding
from freeprop.video import read_json_object


def check_state_dict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], allow_missing: tuple[str, ...] = ()
) -> None:
    """Raise one `FreePropInputError` listing missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            shown = ", ".join(items[:5]) + (f", … ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise FreePropInputError("weights do not fit the model — " + "; ".join(problems))


def load_weights(
    model: torch.nn.Module, path: str | os.PathLike, allow_missing: tuple[str, ...] = ()
) -> None:
    """Load a `.safetensors` state dict into `model` strictly (see `check_state_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise FreePropInputError(f"{path}: weights file not found; pass a .safetensors file")
    if path.suffix != ".safetensors":
        raise FreePropInputError(
            f"{path}: only .safetensors weights are loaded (no pickle); convert the file"
        )
    state = _load_safetensors(path)
    check_state_dict(model, state, allow_missing)
    model.load_state_dict(state, strict=False)


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from one `.safetensors` file or every `*.safetensors` shard in a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FreePropInputError(f"{path}: no .safetensors files in this folder")
    elif path.is_file():
        if path.suffix != ".safetensors":
            raise FreePropInputError(
                f"{path}: only .safetensors weights are loaded (no pickle); convert the file"
            )
        files = [path]
    else:
        raise FreePropInputError(f"{path}: weights file not found; pass a .safetensors file or folder")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(_load_safetensors(file))
    return state


def write_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """`save_file`, with a failed write (a full disk) raised as the OSError it is, not a SafetensorError,
    so the command line reports it in one line."""
    import re

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(state, str(path))
    except SafetensorError as err:
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None


def _load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """One file's tensors; an empty, truncated or foreign file is one line naming it."""
    from safetensors import SafetensorError

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise FreePropInputError(
            f"{file}: not a readable .safetensors file ({str(err).splitlines()[0][:100]}); truncated or not safetensors?"
        ) from None


def peek_checkpoint(path: str | os.PathLike) -> tuple[list[str], tuple[int, ...] | None]:
    """Key names and the `patch_embedding` weight shape of a safetensors file/folder, without loading tensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    keys, patch_shape = [], None
    for file in files:
        if not file.is_file() or file.suffix != ".safetensors":
            raise FreePropInputError(
                f"{file}: weights must be an existing .safetensors file or folder of them"
            )
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    keys.append(key)
                    if key.endswith("patch_embedding.weight"):
                        patch_shape = tuple(handle.get_slice(key).get_shape())
        except (SafetensorError, OSError, ValueError) as err:
            raise FreePropInputError(
                f"{file}: not a readable .safetensors file ({str(err).splitlines()[0][:100]})"
            ) from None
    return keys, patch_shape


def is_original_wan_layout(state: dict[str, torch.Tensor]) -> bool:
    """True for Wan / VideoX-Fun key names (`blocks.N.self_attn.q.weight`, `head.head.weight`)."""
    # (only under blocks.: the AlphaPredictor's nn.TransformerEncoderLayer has its own `self_attn`)
    return any((k.startswith("blocks.") and ".self_attn." in k) or k.startswith("head.head") for k in state)


def wan_config_from_state(state: dict[str, torch.Tensor], head_dim: int = 128) -> dict:
    """`WanTransformer3DModel` kwargs read off a diffusers-layout Wan state dict (head dim 128 as all Wan2.1)."""
    patch = state["patch_embedding.weight"]  # (D, in, p_t, p_h, p_w)
    dim = patch.shape[0]
    out_channels = state["proj_out.weight"].shape[0] // (patch.shape[2] * patch.shape[3] * patch.shape[4])
    image = state.get("condition_embedder.image_embedder.norm1.weight")
    return dict(
        patch_size=tuple(patch.shape[2:]),
        num_attention_heads=dim // head_dim,
        attention_head_dim=head_dim,
        in_channels=patch.shape[1],
        out_channels=out_channels,
        text_dim=state["condition_embedder.text_embedder.linear_1.weight"].shape[1],
        freq_dim=state["condition_embedder.time_embedder.linear_1.weight"].shape[1],
        ffn_dim=state["blocks.0.ffn.net.0.proj.weight"].shape[0],
        num_layers=1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        cross_attn_norm="blocks.0.norm2.weight" in state,
        image_dim=None if image is None else image.shape[0],
        added_kv_proj_dim=None if image is None else dim,
    )


def load_fun_control(
    weights: str | os.PathLike, mask_channels: int = 4, head_dim: int = 128, **freeprop_kwargs
) -> FreePropTransformer:
    """A FreeProp model from a Wan2.1 Fun-Control checkpoint (original or diffusers key layout).

    The model is built on the `meta` device and takes the checkpoint's tensors as they are (no
    random init of billions of weights, and a bf16 checkpoint stays bf16); only the AlphaPredictor
    is freshly initialised (α_S = 0, α_T = 1) and M's `patch_embedding` channels start at zero.

    Args:
        weights: a `.safetensors` file or a folder of shards (`diffusion_pytorch_model*.safetensors`).
        mask_channels: channels added for the first-frame mask M (4 for the Wan VAE).
        freeprop_kwargs: `FreePropTransformer` options (head_map, use_ast_rope, predictor sizes, ...).
    """
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    # 1. Read and rename to diffusers' keys.
    state = read_safetensors(weights)
    if is_original_wan_layout(state):
        state = convert_wan_transformer_to_diffusers(state)
    if "patch_embedding.weight" not in state:
        raise FreePropInputError(f"{weights}: not a Wan transformer checkpoint (no patch_embedding.weight)")
    if any(k.startswith(("ref_conv.", "control_adapter.")) for k in state):
        raise FreePropInputError(
            f"{weights}: a Wan2.1-Fun V1.1 checkpoint (ref_conv / control_adapter: its reference-image and "
            "camera branches), which FreeProp does not support; use a Wan2.1-Fun-*-Control V1.0 checkpoint"
        )
    config = wan_config_from_state(state, head_dim)
    if config["in_channels"] != 3 * config["out_channels"]:
        raise FreePropInputError(
            f"{weights}: {config['in_channels']} input channels; a Fun-Control checkpoint has 3x{config['out_channels']}"
        )

    # 2. Strict check against the Wan architecture the shapes describe.
    with torch.device("meta"):
        check_state_dict(WanTransformer3DModel(**config), state)

    # 3. FreeProp on meta: widen the patch embedding, add a fresh predictor, take the tensors.
    kwargs = {**config, **freeprop_kwargs, "in_channels": config["in_channels"] + mask_channels}
    with torch.device("meta"):
        model = FreePropTransformer(**kwargs)
    cfg = model.config
    predictor = AlphaPredictor(
        cfg.out_channels,
        cfg.predictor_dim,
        cfg.predictor_layers,
        cfg.predictor_heads,
        cfg.predictor_pool,
        cfg.alpha_t_max,
        cfg.alpha_s_range,
    )
    state["patch_embedding.weight"] = widen_patch_embedding(state["patch_embedding.weight"], mask_channels)
    state.update({f"alpha_predictor.{k}": v for k, v in predictor.state_dict().items()})
    model.load_state_dict(state, strict=True, assign=True)
    model.init_buffers()
    return model


def model_folder(path: Path) -> Path:
    """The folder holding the transformer's config.json: `path/transformer/` or `path` itself."""
    sub = path / "transformer"
    folder = sub if (sub / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise FreePropInputError(
            f"{path}: no config.json here or in transformer/; pass a diffusers-format folder"
        )
    return folder


def _cast(
    state: dict[str, torch.Tensor], dtype: torch.dtype | None, keep_fp32: list[str]
) -> dict[str, torch.Tensor]:
    """Cast floating tensors to `dtype`, except those of modules diffusers keeps in float32."""
    if dtype is None:
        return state
    keep = set(keep_fp32)
    return {
        k: v if not v.is_floating_point() or keep & set(k.split(".")) else v.to(dtype)
        for k, v in state.items()
    }


# Sizes a config may ask for before anything is built (the 14B preset is well inside every bound): a
# config.json is input like any other, and `num_layers: 100000` or `rope_max_seq_len: 1e9` must not
# be able to exhaust memory or CPU before a check.
CONFIG_BOUNDS = {
    "num_layers": 512, "num_attention_heads": 512, "attention_head_dim": 1024, "in_channels": 4096,
    "out_channels": 4096, "text_dim": 65536, "freq_dim": 65536, "ffn_dim": 262144, "rope_max_seq_len": 1 << 16,
    "image_dim": 65536, "added_kv_proj_dim": 65536, "predictor_dim": 65536, "predictor_layers": 64,
    "predictor_heads": 512, "predictor_pool": 256, "pos_embed_seq_len": 1 << 20,
}


def check_transformer_config(config: dict, where: str) -> None:
    """Refuse a config with unknown keys, or sizes that are not positive whole numbers within bounds."""
    import inspect

    if not isinstance(config, dict):
        raise FreePropInputError(f"{where}: not a config (a JSON object)")
    known = set(inspect.signature(FreePropTransformer.__init__).parameters) - {"self"}
    unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
    if unknown:
        raise FreePropInputError(f"{where}: unknown config key(s) {unknown}; not a FreeProp transformer config")
    for key, bound in CONFIG_BOUNDS.items():
        value = config.get(key)
        if value is None and key in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
            continue
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= bound):
            raise FreePropInputError(f"{where}: {key} = {value!r} is not a whole number in 1..{bound}")
    patch = config.get("patch_size", (1, 2, 2))
    if not (isinstance(patch, list | tuple) and len(patch) == 3 and all(isinstance(p, int) and 1 <= p <= 16 for p in patch)):
        raise FreePropInputError(f"{where}: patch_size = {patch!r} is not three whole numbers in 1..16")


def load_transformer_folder(
    folder: str | os.PathLike, torch_dtype: torch.dtype | None = None
) -> FreePropTransformer:
    """Strictly load a folder written by `FreePropTransformer.save_pretrained` (sharded or not).

    Built on `meta` and filled with the checkpoint's tensors (no random init); every missing,
    unexpected or mis-shaped tensor is reported. (diffusers' own `from_pretrained` lets a missing
    tensor through silently.)
    """
    folder = Path(folder)
    try:
        config = FreePropTransformer.load_config(folder)
    except (OSError, ValueError, AttributeError, TypeError) as err:  # AttributeError: a JSON list
        raise FreePropInputError(f"{folder}: unreadable config.json ({err.__class__.__name__})") from None
    check_transformer_config(config, str(folder / "config.json"))
    with torch.device("meta"):
        model = FreePropTransformer.from_config(config)
    state = read_safetensors(folder)
    check_state_dict(model, state)
    model.load_state_dict(_cast(state, torch_dtype, model._keep_in_fp32_modules), strict=True, assign=True)
    model.init_buffers()
    return model.eval()


def model_config(name_or_path: str | os.PathLike) -> dict:
    """The transformer config (as `FreePropTransformer` kwargs) of a preset or model folder, without loading weights."""
    spec = os.fspath(name_or_path)
    if spec in PRESETS:
        return get_preset(spec).transformer_kwargs()
    path = Path(spec)
    if not path.is_dir():
        raise FreePropInputError(
            f"{spec}: neither a preset ({', '.join(PRESETS)}) nor a model folder; check the --model value"
        )
    file = model_folder(path) / "config.json"
    config = read_json_object(file, "a config")
    check_transformer_config(config, str(file))
    return config


def load_transformer(
    name_or_path: str | os.PathLike, weights: str | os.PathLike | None = None, torch_dtype=torch.float32
) -> FreePropTransformer:
    """A preset name (random weights, or `weights`), or a diffusers folder written by `save_pretrained`.

    With weights, a preset is built on `meta` and takes the checkpoint's tensors (nothing random is
    allocated first: the 1.3B/14B presets would cost seconds and gigabytes for nothing).
    """
    spec = os.fspath(name_or_path)
    if spec in PRESETS:
        from freeprop.models import build_transformer

        if weights is None:
            model = build_transformer(get_preset(spec))
            return model if torch_dtype == torch.float32 else model.to(torch_dtype)
        with torch.device("meta"):
            model = build_transformer(get_preset(spec))
        state = read_safetensors(weights)
        check_state_dict(model, state)
        model.load_state_dict(_cast(state, torch_dtype, model._keep_in_fp32_modules), strict=True, assign=True)
        model.init_buffers()
        return model
    model_config(spec)  # validates the path with a clear message
    model = load_transformer_folder(model_folder(Path(spec)), torch_dtype)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_model(
    name_or_path: str | os.PathLike, weights: str | os.PathLike | None = None, torch_dtype=torch.float32
) -> FreePropTransformer:
    """Whatever a user names with --model/--weights: a folder, a preset with FreeProp weights, or a
    preset with a Wan2.1 Fun-Control checkpoint (original or diffusers key layout, 3·C input
    channels), converted and widened for the mask M. Every path builds on `meta` first."""
    preset = PRESETS.get(os.fspath(name_or_path)) if weights is not None else None
    if preset is not None:
        keys, patch_shape = peek_checkpoint(weights)
        if is_original_wan_layout(keys) or (patch_shape is not None and patch_shape[1] == 3 * preset.latent_channels):
            model = load_fun_control(
                weights, mask_channels=preset.mask_channels, head_dim=preset.attention_head_dim, head_map=preset.head_map
            )
            return model if torch_dtype == model.dtype else model.to(torch_dtype)
    return load_transformer(name_or_path, weights, torch_dtype)
