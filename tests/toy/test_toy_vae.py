"""The toy VAE: initialisation, unclamped decoding, and training with checkpoints and exact resume."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusers_longvid.toy.vae import (
    TOY_VAE_CONFIG,
    ToyVAETrainingConfig,
    decode_unclamped,
    make_toy_vae,
    toy_video_batch,
    train_toy_vae,
)


TINY_MODEL = {"base_dim": 4, "dim_mult": [1, 1, 1, 1]}


def _tiny_config(**kwargs):
    settings = dict(
        steps=4,
        image_steps=2,
        image_batch_size=2,
        batch_size=1,
        num_frames=5,
        size=16,
        max_objects=1,
        eval_clips=2,
        eval_frames=5,
        eval_every=2,
        log_every=1,
        checkpoint_every=2,
        checkpoint_minutes=0,
        warmup_steps=2,
        model=TINY_MODEL,
    )
    settings.update(kwargs)
    return ToyVAETrainingConfig(**settings)


def test_toy_vae_keeps_wan_scale_factors():
    vae = make_toy_vae(**TINY_MODEL)
    assert vae.config.z_dim == 16 and vae.config.scale_factor_spatial == 8 and vae.config.scale_factor_temporal == 4
    assert TOY_VAE_CONFIG["temperal_downsample"] == [False, True, True] and len(TOY_VAE_CONFIG["dim_mult"]) == 4
    video = toy_video_batch(1, 9, seed=0, size=16)
    assert video.shape == (1, 3, 9, 16, 16) and video.min() >= -1 and video.max() <= 1
    assert torch.equal(video, toy_video_batch(1, 9, seed=0, size=16))
    with torch.no_grad():
        z = vae.encode(video).latent_dist.mode()
    assert z.shape == (1, 16, 3, 2, 2)


def test_decode_unclamped_is_decode_without_the_clamp():
    vae = make_toy_vae(**TINY_MODEL).eval()
    z = 3.0 * torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = decode_unclamped(vae, z)
        stock = vae.decode(z).sample
    assert raw.abs().max() > 1  # the test exercises the clamp
    assert torch.equal(raw.clamp(-1, 1), stock)


def test_inflated_init_encodes_a_static_video_like_its_frame():
    frame = toy_video_batch(1, 1, seed=1, size=16)
    static = frame.repeat(1, 1, 5, 1, 1)
    with torch.no_grad():
        inflated = make_toy_vae(**TINY_MODEL).eval()
        z = inflated.encode(static).latent_dist.mode()
        z1 = inflated.encode(frame).latent_dist.mode()
        torch.testing.assert_close(z, z1.expand_as(z), rtol=1e-5, atol=1e-5)
        default = make_toy_vae(init="default", **TINY_MODEL).eval()
        zd = default.encode(static).latent_dist.mode()
    assert (zd[:, :, 1] - zd[:, :, 0]).abs().max() > 1e-3  # PyTorch's init mixes time: the property is the init's


def test_train_checkpoint_and_exact_resume(tmp_path):
    straight = train_toy_vae(tmp_path / "straight", config=_tiny_config())
    assert straight["step"] == 4
    train_toy_vae(tmp_path / "resumed", config=_tiny_config(steps=2))
    resumed = train_toy_vae(tmp_path / "resumed", config=_tiny_config())  # continues from checkpoint-0000002
    assert resumed["step"] == 4
    kept = sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint-*"))
    assert kept == ["checkpoint-0000002", "checkpoint-0000004"]
    a = load_file(tmp_path / "straight" / "vae" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "resumed" / "vae" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    records = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and all(r["psnr"] > 0 for r in evals)
    assert [r["phase"] for r in records if r["event"] == "train"] == ["image", "image", "video", "video"]

    # The saved config carries latent statistics measured on toy data, not Wan2.1's.
    config = json.loads((tmp_path / "resumed" / "vae" / "config.json").read_text())
    assert len(config["latents_mean"]) == len(config["latents_std"]) == 16
    assert config["latents_mean"] != [-0.7571, -0.7089] + config["latents_mean"][2:]
    assert all(s > 0 for s in config["latents_std"])

    # A finished run is not trained further; another model in the same folder is refused.
    assert train_toy_vae(tmp_path / "resumed", config=_tiny_config())["step"] == 4
    with pytest.raises(ValueError, match="`model` settings"):
        train_toy_vae(tmp_path / "resumed", config=_tiny_config(steps=6, model={"base_dim": 8}))


def test_warm_start_from_a_saved_vae(tmp_path):
    first = train_toy_vae(tmp_path / "first", config=_tiny_config(steps=2))
    # one step at a vanishing learning rate (a very long warm-up): the weights stay those of the warm-start folder,
    # while a cold start (same seed) is far from them
    config = _tiny_config(steps=1, warmup_steps=10**9)
    warm = train_toy_vae(tmp_path / "warm", config=config, init_from=first["vae"])
    cold = train_toy_vae(tmp_path / "cold", config=config)
    a = load_file(Path(first["vae"]) / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "warm" / "vae" / "diffusion_pytorch_model.safetensors")
    c = load_file(Path(cold["vae"]) / "diffusion_pytorch_model.safetensors")
    assert warm["step"] == 1 and all(torch.allclose(a[k], b[k], atol=1e-8) for k in a)
    assert any(not torch.allclose(a[k], c[k], atol=1e-4) for k in a)
    with pytest.raises(ValueError, match="`init_from`"):
        train_toy_vae(tmp_path / "other", config=_tiny_config(steps=1, model={"base_dim": 8}), init_from=first["vae"])


def test_training_config_errors():
    with pytest.raises(ValueError, match="`num_frames` must be 1 \\+ 4n"):
        ToyVAETrainingConfig(num_frames=6)
    with pytest.raises(ValueError, match="`lr_schedule`"):
        ToyVAETrainingConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="`model` has unknown keys"):
        ToyVAETrainingConfig(model={"width": 3})
    with pytest.raises(ValueError, match="`init`"):
        make_toy_vae(init="xavier")
    cosine = ToyVAETrainingConfig(
        steps=100, warmup_steps=10, lr_schedule="cosine", learning_rate=1.0, min_lr_ratio=0.1
    )
    assert cosine.lr_at(0) == pytest.approx(0.1) and cosine.lr_at(9) == pytest.approx(1.0)
    assert cosine.lr_at(99) == pytest.approx(0.1, abs=1e-3)


def test_train_toy_vae_cli(tmp_path):
    from diffusers_longvid.cli import main

    out = tmp_path / "vae"
    argv = [
        "train-toy-vae",
        "--out",
        str(out),
        "--steps",
        "1",
        "--image-steps",
        "1",
        "--image-batch-size",
        "1",
        "--base-dim",
        "4",
        "--size",
        "16",
        "--eval-clips",
        "1",
        "--eval-frames",
        "1",
        "--checkpoint-every",
        "1",
    ]
    assert main(argv) == 0
    assert (out / "checkpoint-0000001" / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / "vae" / "config.json").read_text())["base_dim"] == 4


def test_checkpoints_are_safetensors_and_json_and_old_pt_checkpoints_still_resume(tmp_path):
    from diffusers_longvid.toy.vae import _load_training_state

    straight = tmp_path / "straight"
    train_toy_vae(straight, config=_tiny_config())
    checkpoint = straight / "checkpoint-0000002"
    assert sorted(p.name for p in checkpoint.iterdir()) == ["optimizer.safetensors", "trainer_state.json", "vae"]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == 2

    # a checkpoint in the layout of earlier versions (one torch pickle) resumes to the same weights
    legacy = tmp_path / "legacy"
    train_toy_vae(legacy, config=_tiny_config(steps=2))
    old = legacy / "checkpoint-0000002"
    torch.save(_load_training_state(old), old / "training_state.pt")
    (old / "trainer_state.json").unlink()
    (old / "optimizer.safetensors").unlink()
    assert train_toy_vae(legacy, config=_tiny_config())["step"] == 4
    a = load_file(straight / "vae" / "diffusion_pytorch_model.safetensors")
    b = load_file(legacy / "vae" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
