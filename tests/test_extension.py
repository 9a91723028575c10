"""The extension model: Wan2.1-I2V conditioning layout, T2V -> 36-channel conversion, replacement conditioning."""

import pytest
import torch
from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

from diffusers_longvid import ExtensionCondition, convert_t2v_to_extension, prepare_extension_condition
from diffusers_longvid.extension import (
    extension_mask,
    known_latent_frames,
    normalize_latents,
    prepare_extension_condition_from_latents,
)
from diffusers_longvid.testing import get_tiny_transformer, get_tiny_vae


NUM_FRAMES = 9  # 3 latent frames


@pytest.fixture(scope="module")
def vae():
    return get_tiny_vae()


def _video(batch=1, frames=NUM_FRAMES, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, 16, 16, generator=generator) * 2 - 1


@pytest.mark.parametrize("with_last_image", [False, True])
def test_layout_matches_wan_i2v_prepare_latents(vae, with_last_image):
    # diffusers' own I2V construction is the reference for both the mask and the condition latent
    i2v = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=None, transformer=None)
    video = _video(batch=1)
    first, last = video[:, :, 0], video[:, :, -1]
    _, reference = i2v.prepare_latents(
        first, 1, 16, 16, 16, NUM_FRAMES, torch.float32, "cpu", None, None, last if with_last_image else None
    )
    known = [0, NUM_FRAMES - 1] if with_last_image else [0]
    ours = prepare_extension_condition(vae, video, known, NUM_FRAMES)
    torch.testing.assert_close(ours.mask, reference[:, :4], rtol=0, atol=0)
    torch.testing.assert_close(ours.condition_latent, reference[:, 4:], rtol=1e-5, atol=1e-6)
    assert ours.mask.shape == (1, 4, 3, 2, 2)


def test_mask_folding_and_known_latent_frames():
    # latent 0 <- pixel 0 (4x), latent l >= 1 <- pixels 4(l-1)+1 .. 4l, one per channel
    mask = extension_mask([0, 1, 2, 3, 4, 8], NUM_FRAMES, 1, 1)[0, :, :, 0, 0]
    expected = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.float32)
    torch.testing.assert_close(mask, expected)
    assert known_latent_frames(range(5), NUM_FRAMES) == (0, 1)  # first k = 1 + 4j -> latent frames 0..j
    assert known_latent_frames([0], NUM_FRAMES) == (0,)
    assert known_latent_frames(range(4, 9), NUM_FRAMES) == (2,)  # last 5: latent 1 only partly known
    assert known_latent_frames([], NUM_FRAMES) == ()
    assert extension_mask([], NUM_FRAMES, 2, 2).sum() == 0


def test_known_frames_alone_or_in_whole_clip_give_the_same_condition(vae):
    video = _video()
    whole = prepare_extension_condition(vae, video, [0, 8], NUM_FRAMES)
    alone = prepare_extension_condition(vae, video[:, :, [0, 8]], [0, 8], NUM_FRAMES)
    torch.testing.assert_close(whole.condition_latent, alone.condition_latent)
    # frames outside the known set are ignored
    other = video.clone()
    other[:, :, 1:8] = 0.5
    torch.testing.assert_close(
        prepare_extension_condition(vae, other, [0, 8], NUM_FRAMES).condition_latent, whole.condition_latent
    )
    none = prepare_extension_condition(vae, video[:, :, :0], [], NUM_FRAMES)
    assert none.mask.sum() == 0 and none.known_latent_frames == ()


def test_latent_variant_matches_pixel_variant_for_first_k(vae):
    video = _video(batch=2)
    clean = normalize_latents(vae, vae.encode(video).latent_dist.mode())
    from_latents = prepare_extension_condition_from_latents(clean, range(5))
    zeros = prepare_extension_condition(vae, video[:, :, :5], list(range(5)), NUM_FRAMES, fill="zeros")
    full = prepare_extension_condition(vae, video, list(range(5)), NUM_FRAMES)
    torch.testing.assert_close(from_latents.mask, full.mask, rtol=0, atol=0)
    # causal VAE: the known latent frames agree; the unknown ones are 0 in the latent variant
    torch.testing.assert_close(from_latents.condition_latent, zeros.condition_latent, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.condition_latent[:, :, :2], zeros.condition_latent[:, :, :2], rtol=1e-5, atol=1e-6)
    assert from_latents.condition_latent[:, :, 2].abs().max() == 0
    assert full.condition_latent[:, :, 2].abs().max() > 0  # "vae" fill: encoded zero padding


def test_condition_errors_name_the_argument(vae):
    video = _video()
    with pytest.raises(ValueError, match="`num_frames`"):
        prepare_extension_condition(vae, video, [0], 8)
    with pytest.raises(ValueError, match="`known_frame_indices`"):
        prepare_extension_condition(vae, video, [9], NUM_FRAMES)
    with pytest.raises(ValueError, match="`known_frame_indices`"):
        prepare_extension_condition(vae, video, [1, 1], NUM_FRAMES)
    with pytest.raises(ValueError, match="`video` has 3 frames"):
        prepare_extension_condition(vae, video[:, :, :3], [0], NUM_FRAMES)
    with pytest.raises(ValueError, match="`fill`"):
        prepare_extension_condition(vae, video, [0], NUM_FRAMES, fill="mean")
    with pytest.raises(TypeError, match="`video`"):
        prepare_extension_condition(vae, video.numpy(), [0], NUM_FRAMES)


def test_zero_initialised_conversion_equals_t2v_model():
    t2v = get_tiny_transformer(in_channels=16)
    extension = convert_t2v_to_extension(get_tiny_transformer(in_channels=16))
    assert extension.config.in_channels == 36 and extension.config.out_channels == 16
    assert extension.patch_embedding.in_channels == 36
    torch.testing.assert_close(extension.patch_embedding.weight[:, :16], t2v.patch_embedding.weight, rtol=0, atol=0)
    assert extension.patch_embedding.weight[:, 16:].abs().max() == 0
    torch.testing.assert_close(extension.patch_embedding.bias, t2v.patch_embedding.bias, rtol=0, atol=0)

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 16, 3, 4, 4, generator=generator)
    text = torch.randn(2, 6, 32, generator=generator)
    timestep = torch.tensor([700.0, 20.0])
    with torch.no_grad():
        reference = t2v(latents, timestep, text, return_dict=False)[0]
        for _ in range(3):  # any mask and condition
            mask = (torch.rand(2, 4, 3, 4, 4, generator=generator) > 0.5).float()
            condition = torch.randn(2, 16, 3, 4, 4, generator=generator) * 3
            out = extension(torch.cat([latents, mask, condition], 1), timestep, text, return_dict=False)[0]
            torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    assert convert_t2v_to_extension(extension) is extension  # already converted: unchanged


def test_converted_transformer_round_trips(tmp_path):
    extension = convert_t2v_to_extension(get_tiny_transformer(in_channels=16))
    with torch.no_grad():
        extension.patch_embedding.weight[:, 16:].normal_()  # as after training
    extension.save_pretrained(tmp_path)
    loaded = WanTransformer3DModel.from_pretrained(tmp_path)
    assert loaded.config.in_channels == 36 and loaded.config.out_channels == 16
    torch.testing.assert_close(loaded.patch_embedding.weight, extension.patch_embedding.weight, rtol=0, atol=0)


def test_replacement_conditioning(vae):
    video = _video()
    condition = prepare_extension_condition(vae, video[:, :, :5], list(range(5)), NUM_FRAMES)
    assert isinstance(condition, ExtensionCondition) and condition.known_latent_frames == (0, 1)
    latents = torch.randn(1, 16, 3, 2, 2)
    noise = torch.randn(1, 16, 2, 2, 2)
    out = condition.replace_known(latents, 0.25, noise)
    expected = 0.75 * condition.condition_latent[:, :, :2] + 0.25 * noise
    torch.testing.assert_close(out[:, :, :2], expected)
    torch.testing.assert_close(out[:, :, 2:], latents[:, :, 2:], rtol=0, atol=0)
    final = condition.replace_known(latents, 0.0)
    torch.testing.assert_close(final[:, :, :2], condition.condition_latent[:, :, :2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="`noise`"):
        condition.replace_known(latents, 0.5)
    # the 36-channel input is [latents | mask | condition] in this order
    model_input = condition.model_input(latents)
    torch.testing.assert_close(model_input[:, 16:20], condition.mask)
    torch.testing.assert_close(model_input[:, 20:], condition.condition_latent)


def test_latent_normalisation_is_diffusers_wan_formula_bit_for_bit():
    """One `normalize_latents` / `denormalize_latents` (in `extension`, re-exported by `training.latent_cache`), with
    diffusers' own arithmetic: `(x - mean) * (1 / std)` on encode (`WanImageToVideoPipeline.prepare_latents`) and
    `x / (1 / std) + mean` before decode (`WanPipeline.__call__`), read from the installed diffusers source."""
    import inspect
    import re
    from types import SimpleNamespace

    from diffusers import WanPipeline

    from diffusers_longvid.extension import denormalize_latents
    from diffusers_longvid.training import latent_cache

    wan_call = inspect.getsource(WanPipeline.__call__)
    i2v_prepare = inspect.getsource(WanImageToVideoPipeline.prepare_latents)
    assert re.search(r"latents_std = 1\.0 / torch\.tensor\(self\.vae\.config\.latents_std\)", wan_call)
    assert "latents = latents / latents_std + latents_mean" in wan_call
    assert re.search(r"latents_std = 1\.0 / torch\.tensor\(self\.vae\.config\.latents_std\)", i2v_prepare)
    assert "(latent_condition - latents_mean) * latents_std" in i2v_prepare

    generator = torch.Generator().manual_seed(0)
    z_dim = 16
    std = (torch.rand(z_dim, generator=generator) * 3 + 0.3).tolist()  # Wan2.1's are 1.4 .. 3.2: not all 1
    mean = torch.randn(z_dim, generator=generator).tolist()
    vae = SimpleNamespace(config=SimpleNamespace(z_dim=z_dim, latents_mean=mean, latents_std=std))
    latents = torch.randn(2, z_dim, 3, 4, 4, generator=generator)
    mean_t = torch.tensor(mean).view(1, z_dim, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(std).view(1, z_dim, 1, 1, 1)
    assert torch.equal(normalize_latents(vae, latents), (latents - mean_t) * inv_std)
    assert torch.equal(denormalize_latents(vae, latents), latents / inv_std + mean_t)
    # the test can tell the formulas apart: dividing by std is not the same to the bit
    std_t = torch.tensor(std).view(1, z_dim, 1, 1, 1)
    assert not torch.equal((latents - mean_t) / std_t, (latents - mean_t) * inv_std)
    assert latent_cache.normalize_latents is normalize_latents
    assert latent_cache.denormalize_latents is denormalize_latents
