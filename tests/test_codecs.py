import pytest
import torch
from diffusers import AutoencoderKLWan

from freeprop.codecs import PixelCodec, WanVAECodec, latent_num_frames
from freeprop.errors import FreePropInputError


def tiny_wan_vae() -> AutoencoderKLWan:
    # diffusers' own tiny test config: still 4x temporal and 8x spatial compression.
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()


def test_pixel_codec_is_exact_and_space_to_depth():
    codec = PixelCodec(2)
    video = torch.rand(2, 3, 5, 8, 12) * 2 - 1
    latents = codec.encode(video)
    assert latents.shape == (2, 12, 5, 4, 6)
    assert codec.latent_channels == 12 and codec.temporal_factor == 1
    torch.testing.assert_close(codec.decode(latents), video, rtol=0, atol=0)
    # pixel_unshuffle is colour-major: channel c·s² + i·s + j holds pixel (s·y + i, s·x + j) of colour c.
    assert latents[0, 1 * 4 + 1 * 2 + 0, 2, 1, 3] == video[0, 1, 2, 2 * 1 + 1, 2 * 3 + 0]


def test_pixel_codec_rejects_bad_size():
    with pytest.raises(FreePropInputError, match="multiples of 2"):
        PixelCodec(2).encode(torch.zeros(1, 3, 1, 7, 8))


def test_wan_codec_shapes_and_normalisation():
    vae = tiny_wan_vae()
    codec = WanVAECodec(vae)
    assert (codec.latent_channels, codec.temporal_factor, codec.spatial_factor) == (16, 4, 8)
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    latents = codec.encode(video)
    assert latents.shape == (1, 16, latent_num_frames(codec, 9), 4, 4) == (1, 16, 3, 4, 4)

    # Normalisation arithmetic: (mode − mean) / std per channel, with Wan's published statistics.
    with torch.no_grad():
        raw = vae.encode(video).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(latents, (raw - mean) / std)
    torch.testing.assert_close(codec.denormalize(latents), raw)

    # decode undoes the normalisation before the VAE decoder.
    with torch.no_grad():
        expected = vae.decode(raw).sample.clamp(-1, 1)
    decoded = codec.decode(latents)
    assert decoded.shape == video.shape
    torch.testing.assert_close(decoded, expected, atol=1e-5, rtol=1e-5)


def test_wan_codec_rejects_bad_frame_count():
    with pytest.raises(FreePropInputError, match="k·4\\+1"):
        WanVAECodec(tiny_wan_vae()).encode(torch.zeros(1, 3, 8, 32, 32))


def test_wan_codec_from_pretrained_folder(tmp_path):
    vae = tiny_wan_vae()
    vae.save_pretrained(tmp_path / "model" / "vae")
    codec = WanVAECodec.from_pretrained(tmp_path / "model", sample=True)
    assert codec.sample and codec.latent_channels == 16
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(codec.encode(video, g1), codec.encode(video, g2))
    with pytest.raises(FreePropInputError, match="not found"):
        WanVAECodec.from_pretrained(tmp_path / "missing")


def test_vae_paths_that_are_not_diffusers_folders_say_where_one_comes_from(tmp_path):
    (tmp_path / "Wan2.1_VAE.pth").write_bytes(b"\x80\x02pickle")
    (tmp_path / "empty").mkdir()
    for path, what in ((tmp_path / "Wan2.1_VAE.pth", "a single file"), (tmp_path / "nope", "not found"),
                       (tmp_path / "empty", "no config.json")):
        with pytest.raises(FreePropInputError, match=f"{what}.*Wan-AI/Wan2.1-T2V-1.3B-Diffusers"):
            WanVAECodec.from_pretrained(path)


def test_a_pickled_vae_is_refused_never_unpickled(tmp_path):
    """A diffusers folder with only `diffusion_pytorch_model.bin` is refused in one line; the pickle never
    runs (diffusers would otherwise 'default to unsafe serialization' and torch.load it)."""
    import pickle

    folder = tmp_path / "vae"
    tiny_wan_vae().save_pretrained(folder)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(FreePropInputError, match="cannot load AutoencoderKLWan"):
        WanVAECodec.from_pretrained(folder)
    assert not marker.exists()


def test_custom_code_configs_are_refused(tmp_path):
    import json

    folder = tmp_path / "vae"
    tiny_wan_vae().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "evil.Model"}}))
    with pytest.raises(FreePropInputError, match="custom code"):
        WanVAECodec.from_pretrained(folder)
