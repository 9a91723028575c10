# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The toy VAE: a tiny `diffusers.AutoencoderKLWan` fitted to the toy world, and its resumable training routine.

The model is a stock `AutoencoderKLWan` (16 latent channels, 8x spatial and 4x temporal compression, causal in time
like Wan2.1's), only narrower, so every pipeline's latent arithmetic is unchanged. The training routine draws fresh
toy clips at every step (a pure function of the seed and the step, so a resumed run sees the same data as a straight
one), pre-trains on single frames (the causal VAE's first-frame path), measures PSNR on a fixed held-out set of toy
clips as it goes, and writes `latents_mean` / `latents_std` measured on toy data into the saved model's config, which
is what `WanPipeline`-style pipelines use to normalise latents.

Layout of `out_dir`:

    checkpoint-0001000/vae/        the weights at that step (safetensors + config.json)
    checkpoint-0001000/optimizer.safetensors   the optimizer's tensors (as the trainers: safetensors or JSON)
    checkpoint-0001000/trainer_state.json      step, training config, the optimizer's other state
    vae/                           the latest weights, with latent statistics in the config: load this one
    metrics.jsonl                  one JSON object per log / eval event

Checkpoints written before this layout (`training_state.pt`, a torch pickle) are still resumed from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from diffusers.utils import logging
from tqdm.auto import tqdm

from .scripts import random_script
from .world import _render, validate_script


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "TOY_VAE_CONFIG",
    "ToyVAETrainingConfig",
    "compute_latent_stats",
    "decode_unclamped",
    "evaluate_toy_vae",
    "inflate_init_",
    "make_toy_vae",
    "toy_video_batch",
    "train_toy_vae",
]

# The toy VAE: Wan2.1's architecture (4 stages -> 8x spatial, temporal downsampling in the last two -> 4x temporal,
# 16 latent channels), with a narrow base width and one residual block per stage so it trains on a CPU.
TOY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
}
EVAL_SEED = 1_000_003  # seed stream of the held-out clips; training steps use the streams (seed, step)
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_WEIGHTS_NAME = "optimizer.safetensors"
_LEGACY_STATE_NAME = "training_state.pt"  # checkpoints of earlier versions: read, never written


@torch.no_grad()
def inflate_init_(vae: AutoencoderKLWan, seed: int | None = None) -> AutoencoderKLWan:
    """Re-initialise `vae` in place as an "inflated" image autoencoder: every causal 3D kernel starts as a 2D kernel
    on its last (current-frame) tap, the temporal resamplers start as frame copy / frame pick, biases at zero.

    With PyTorch's default initialisation a causal `3x3x3` convolution applied to a single frame sees two zero-padded
    taps, so each layer shrinks the signal; through Wan's ~30 convolutions almost nothing of the input reaches the
    latent and the decoder sits for hundreds of steps at the mean colour. Inflated, the first-frame path is a
    well-scaled 2D network (He-normal kernels) and a static video is encoded like a single image, which is the
    usual way causal video VAEs are started.

    Args:
        vae (`AutoencoderKLWan`): The model to re-initialise.
        seed (`int`, *optional*): Seed of the kernels; the global RNG when omitted.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample

    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    time_convs = {id(m.time_conv) for m in vae.modules() if isinstance(m, WanResample) and hasattr(m, "time_conv")}
    for module in vae.modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            continue
        weight = module.weight
        if module.bias is not None:
            module.bias.zero_()
        if id(module) in time_convs:
            # (3, 1, 1) temporal kernels: identity on the current frame (the upsampler's two output frames both copy).
            weight.zero_()
            out_ch, in_ch = weight.shape[:2]
            eye = torch.eye(in_ch, dtype=weight.dtype)
            for k in range(out_ch // in_ch):
                weight[k * in_ch : (k + 1) * in_ch, :, -1, 0, 0] = eye
            continue
        spatial = weight[:, :, -1] if isinstance(module, WanCausalConv3d) else weight
        fan_in = spatial[0].numel()
        kernel = torch.randn(spatial.shape, generator=generator, dtype=weight.dtype) * math.sqrt(2.0 / fan_in)
        if isinstance(module, WanCausalConv3d):
            weight.zero_()
            weight[:, :, -1] = kernel
        else:
            weight.copy_(kernel)
    return vae


def make_toy_vae(seed: int = 0, init: str = "inflated", **overrides: Any) -> AutoencoderKLWan:
    """A freshly initialised toy `AutoencoderKLWan`.

    Args:
        seed (`int`, *optional*, defaults to 0): Seeds the initialisation.
        init (`str`, *optional*, defaults to `"inflated"`): `"inflated"` (see `inflate_init_`, trains far faster) or
            `"default"` (PyTorch's initialisation, as `AutoencoderKLWan(...)` gives).
        overrides: Replace entries of `TOY_VAE_CONFIG` (e.g. `base_dim=8`). `z_dim`, `dim_mult` and
            `temperal_downsample` set the scale factors; change them only if you mean to leave Wan's 8x / 4x.
    """
    unknown = set(overrides) - set(TOY_VAE_CONFIG)
    if unknown:
        raise ValueError(f"Unknown toy VAE settings {sorted(unknown)}; accepted: {sorted(TOY_VAE_CONFIG)}.")
    if init not in ("inflated", "default"):
        raise ValueError(f"`init` must be 'inflated' or 'default', got {init!r}.")
    config = {**TOY_VAE_CONFIG, **overrides}
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**config)
    return inflate_init_(vae, seed=seed) if init == "inflated" else vae


def decode_unclamped(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """Decode latents exactly as `AutoencoderKLWan.decode` does, but without its final clamp to `[-1, 1]`.

    The clamp has no gradient outside the range, so a decoder output that overshoots a bright or dark target is never
    pulled back; training through this function avoids that. `decode_unclamped(vae, z).clamp(-1, 1)` equals
    `vae.decode(z).sample` (no tiling, no slicing).

    Args:
        vae (`AutoencoderKLWan`): The model.
        z (`torch.Tensor` of shape `(B, z_dim, T, H, W)`): Latents (not normalised).
    """
    # Mirrors `AutoencoderKLWan._decode` of diffusers 0.35-0.42: one latent frame at a time through the causal cache.
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    chunks = []
    for i in range(z.shape[2]):
        vae._conv_idx = [0]
        chunks.append(
            vae.decoder(x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0)
        )
    out = torch.cat(chunks, 2)
    if vae.config.patch_size is not None:
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        out = unpatchify(out, patch_size=vae.config.patch_size)
    vae.clear_cache()
    return out


def toy_video_batch(
    batch_size: int,
    num_frames: int,
    seed: int | list[int],
    size: int = 64,
    max_objects: int = 3,
) -> torch.Tensor:
    """Random toy clips, a pure function of `seed`: what the VAE trains and is evaluated on.

    Each clip is a window of `num_frames` frames around the boundary of a random two-clip script (so it may hold an
    exit, an entry or a background cross-fade), with 1 to `max_objects` objects and clip lengths of 0.5x-2x
    `num_frames`, which spreads the motion speeds.

    Args:
        batch_size (`int`): Number of clips.
        num_frames (`int`): Frames per clip (1 for single images).
        seed (`int` or `list[int]`): Seed (or seed sequence) of `numpy.random.default_rng`.
        size (`int`, *optional*, defaults to 64): Frame side in pixels.
        max_objects (`int`, *optional*, defaults to 3): At most this many objects per clip.

    Returns:
        `torch.Tensor` of shape `(batch_size, 3, num_frames, size, size)`, float32 in `[-1, 1]`.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((batch_size, num_frames, size, size, 3), dtype=np.uint8)
    for b in range(batch_size):
        script = random_script(
            2,
            seed=int(rng.integers(2**31)),
            num_objects=int(rng.integers(1, max_objects + 1)),
            exit_probability=0.3,
            background_change_probability=0.25,
            ensure_reentry=False,
        )
        # Motions are clip-relative, so short clips are fast ones; the first clip is lengthened if the two are too
        # short to hold the window.
        lengths = [int(rng.integers(max(1, num_frames // 2), 2 * num_frames + 1)) for _ in range(2)]
        lengths[0] = max(lengths[0], num_frames - lengths[1])
        rendered = _render(validate_script(script), lengths, size, seed=int(rng.integers(2**31)), return_masks=False)
        start = int(rng.integers(0, sum(lengths) - num_frames + 1))
        out[b] = rendered["frames"][start : start + num_frames]
    video = torch.from_numpy(out).permute(0, 4, 1, 2, 3).float()
    return video / 127.5 - 1.0


def _psnr(mse: float) -> float:
    # Pixels in [-1, 1]: the peak-to-peak range is 2, so PSNR = 10 log10(4 / MSE).
    return 10.0 * math.log10(4.0 / max(mse, 1e-12))


@torch.no_grad()
def evaluate_toy_vae(
    vae: AutoencoderKLWan, clips: torch.Tensor, batch_size: int = 4
) -> tuple[dict[str, float], torch.Tensor]:
    """PSNR of `vae`'s reconstruction (posterior mode, stock clamped decode) of the clips.

    Args:
        vae (`AutoencoderKLWan`): The model (put in eval mode for the call).
        clips (`torch.Tensor` of shape `(N, 3, T, H, W)`): Videos in `[-1, 1]`.
        batch_size (`int`, *optional*, defaults to 4): Clips per forward.

    Returns:
        `(metrics, latents)`: `metrics` holds `psnr` (all frames, from the pooled MSE), `psnr_first_frame` (the
        causal first-frame path) and `psnr_later_frames`; `latents` are the posterior modes `(N, z_dim, T', h, w)`.
    """
    was_training = vae.training
    vae.eval()
    errors, latents = [], []
    for chunk in clips.split(batch_size):
        z = vae.encode(chunk).latent_dist.mode()
        errors.append((vae.decode(z).sample - chunk).pow(2))
        latents.append(z)
    vae.train(was_training)
    err = torch.cat(errors)
    metrics = {"psnr": _psnr(err.mean().item()), "psnr_first_frame": _psnr(err[:, :, :1].mean().item())}
    if err.shape[2] > 1:
        metrics["psnr_later_frames"] = _psnr(err[:, :, 1:].mean().item())
    return metrics, torch.cat(latents)


def compute_latent_stats(latents: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of latents `(N, C, T, H, W)`, as `latents_mean` / `latents_std`."""
    flat = latents.transpose(0, 1).reshape(latents.shape[1], -1).double()
    mean = flat.mean(dim=1)
    std = flat.std(dim=1).clamp(min=1e-6)
    return [round(v, 6) for v in mean.tolist()], [round(v, 6) for v in std.tolist()]


@dataclass
class ToyVAETrainingConfig:
    """Settings of `train_toy_vae`. The defaults are the recipe of the shipped toy VAE (see `docs/toy.md`).

    Args:
        steps (`int`): Total optimisation steps (image steps included).
        image_steps (`int`): The first `image_steps` steps train on single frames (the causal first-frame path).
        image_batch_size (`int`): Frames per image step.
        batch_size (`int`): Clips per video step.
        num_frames (`int`): Frames per training clip (`1 + 4n`).
        learning_rate (`float`): Peak AdamW learning rate.
        warmup_steps (`int`): Linear warm-up from 0.
        lr_schedule (`str`): `"constant"` after warm-up, or `"cosine"` decay to `min_lr_ratio * learning_rate` at
            `steps`.
        min_lr_ratio (`float`): Floor of the cosine schedule.
        l1_weight, mse_weight, kl_weight (`float`): Loss weights (pixels in `[-1, 1]`; KL averaged per latent element).
        sample_posterior (`bool`): Decode a posterior sample (`True`) or its mode.
        grad_clip (`float`): Gradient-norm clip (0 disables).
        size (`int`): Frame side in pixels.
        max_objects (`int`): Objects per training clip, at most.
        seed (`int`): Seeds the model initialisation and every step's data.
        eval_clips, eval_frames (`int`): The held-out set (drawn from a fixed seed, independent of `seed`).
        eval_every (`int`): Evaluate PSNR every this many steps (and at the end).
        log_every (`int`): Log the training loss every this many steps.
        checkpoint_every (`int`): Save a checkpoint every this many steps (and at the end).
        checkpoint_minutes (`float`): Also save when this many minutes passed since the last save (0 disables).
        keep_checkpoints (`int`): Older `checkpoint-*` folders beyond this many are deleted.
        model (`dict`): Overrides of `TOY_VAE_CONFIG`.
        decoder_only (`bool`): Train only the decoder (`decoder` and `post_quant_conv`); the encoder is frozen, so
            the latents — and every latent cache or transformer trained on them — stay valid while the decoder keeps
            improving (the way Stable Diffusion's ft-MSE VAE was fine-tuned).
        stop_at (`int`, *optional*): Stop (with a checkpoint) once this step is reached, keeping the schedule of
            `steps`: how the shipped toy VAE was made (the 5000-step recipe stopped at step 3250).
    """

    steps: int = 5000
    image_steps: int = 2000
    image_batch_size: int = 8
    batch_size: int = 4
    num_frames: int = 5
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    kl_weight: float = 1e-6
    sample_posterior: bool = False
    grad_clip: float = 1.0
    size: int = 64
    max_objects: int = 3
    seed: int = 0
    eval_clips: int = 8
    eval_frames: int = 9
    eval_every: int = 250
    log_every: int = 25
    checkpoint_every: int = 250
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 2
    model: dict[str, Any] = field(default_factory=dict)
    decoder_only: bool = False
    stop_at: int | None = None

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "image_batch_size",
            "batch_size",
            "num_frames",
            "size",
            "max_objects",
            "eval_clips",
            "eval_frames",
            "eval_every",
            "log_every",
            "checkpoint_every",
            "keep_checkpoints",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("num_frames", "eval_frames"):
            if (getattr(self, name) - 1) % 4:
                value = getattr(self, name)
                raise ValueError(f"`{name}` must be 1 + 4n (the causal VAE's frame counts), got {value}.")
        if self.stop_at is not None and (not isinstance(self.stop_at, int) or self.stop_at < 1):
            raise ValueError(f"`stop_at` must be a positive integer or None, got {self.stop_at!r}.")
        if self.image_steps < 0 or self.warmup_steps < 0:
            raise ValueError("`image_steps` and `warmup_steps` must be >= 0.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"`lr_schedule` must be 'constant' or 'cosine', got {self.lr_schedule!r}.")
        if self.learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be positive, got {self.learning_rate!r}.")
        if self.size % 8:
            raise ValueError(f"`size` must be a multiple of 8 (the VAE's spatial factor), got {self.size}.")
        unknown = set(self.model) - set(TOY_VAE_CONFIG)
        if unknown:
            raise ValueError(f"`model` has unknown keys {sorted(unknown)}; accepted: {sorted(TOY_VAE_CONFIG)}.")

    def lr_at(self, step: int) -> float:
        """Learning rate of the optimisation step `step` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.learning_rate
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.min_lr_ratio * self.learning_rate
        return floor + 0.5 * (self.learning_rate - floor) * (1.0 + math.cos(math.pi * progress))


def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = []
    if out_dir.is_dir():
        for child in out_dir.iterdir():
            match = _CHECKPOINT_RE.match(child.name)
            if match and any((child / name).is_file() for name in (TRAINER_STATE_NAME, _LEGACY_STATE_NAME)):
                found.append((int(match.group(1)), child))
    return sorted(found)


def _append_metrics(out_dir: Path, record: dict[str, Any]) -> None:
    with open(out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _save_training_state(folder: Path, step: int, optimizer_state: dict[str, Any], config: dict[str, Any]) -> None:
    """The optimizer's tensors to `optimizer.safetensors` (`state.<param>.<key>`), everything else to JSON."""
    from safetensors.torch import save_file

    tensors, other = {}, {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                other[f"{index}.{key}"] = value
    save_file(tensors, str(folder / OPTIMIZER_WEIGHTS_NAME))
    trainer_state = {
        "step": step,
        "config": config,
        "optimizer": {"param_groups": optimizer_state["param_groups"], "state_values": other},
    }
    (folder / TRAINER_STATE_NAME).write_text(json.dumps(trainer_state, indent=1) + "\n", encoding="utf-8")


def _load_training_state(folder: Path) -> dict[str, Any]:
    """`{"step", "config", "optimizer"}` (an optimizer `state_dict`) of a checkpoint folder, either layout."""
    if not (folder / TRAINER_STATE_NAME).is_file():
        return torch.load(folder / _LEGACY_STATE_NAME, map_location="cpu", weights_only=True)
    from safetensors.torch import load_file

    trainer_state = json.loads((folder / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    saved = trainer_state["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in load_file(str(folder / OPTIMIZER_WEIGHTS_NAME)).items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for name, value in saved["state_values"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer = {"state": state, "param_groups": saved["param_groups"]}
    return {"step": trainer_state["step"], "config": trainer_state["config"], "optimizer": optimizer}


def _save(
    out_dir: Path,
    vae: AutoencoderKLWan,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: ToyVAETrainingConfig,
    stats: tuple[list[float], list[float]] | None,
) -> Path:
    if stats is not None:
        vae.register_to_config(latents_mean=stats[0], latents_std=stats[1])
    ckpt = out_dir / f"checkpoint-{step:07d}"
    tmp = out_dir / f".tmp-checkpoint-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp / "vae", safe_serialization=True)
    _save_training_state(tmp, step, optimizer.state_dict(), dataclasses.asdict(config))
    shutil.rmtree(ckpt, ignore_errors=True)
    os.replace(tmp, ckpt)  # a checkpoint folder either exists complete or not at all
    latest_tmp = out_dir / ".tmp-vae"
    shutil.rmtree(latest_tmp, ignore_errors=True)
    shutil.copytree(ckpt / "vae", latest_tmp)
    shutil.rmtree(out_dir / "vae", ignore_errors=True)
    os.replace(latest_tmp, out_dir / "vae")
    for _, old in _checkpoints(out_dir)[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return ckpt


def train_toy_vae(
    out_dir: str | os.PathLike,
    steps: int | None = None,
    config: ToyVAETrainingConfig | None = None,
    resume: bool = True,
    init_from: str | os.PathLike | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train (or keep training) the toy VAE, with checkpoints, resume and a held-out PSNR curve.

    Args:
        out_dir (`str` or `os.PathLike`): Output folder (see the module docstring for its layout).
        steps (`int`, *optional*): Total steps; overrides `config.steps`.
        config (`ToyVAETrainingConfig`, *optional*): The recipe; defaults to `ToyVAETrainingConfig()`.
        resume (`bool`, *optional*, defaults to `True`): Continue from the latest `checkpoint-*` in `out_dir` when
            there is one. The model settings must match; a resumed run continues the step count and, since each step's
            data is a function of `(seed, step)`, gives the same weights as a straight run.
        init_from (`str` or `os.PathLike`, *optional*):
            A saved toy VAE folder (`AutoencoderKLWan.save_pretrained`) to start from when `out_dir` has no checkpoint
            yet — a warm start (fresh optimiser and schedule from step 0), e.g. from the VAE shipped in the preset.
        overrides: Fields of `ToyVAETrainingConfig` to replace.

    Returns:
        `dict`: `step`, the last `eval` metrics and the path of the final `vae` folder.
    """
    config = config or ToyVAETrainingConfig()
    if steps is not None:
        overrides["steps"] = steps
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(ToyVAETrainingConfig)}
        if unknown:
            raise TypeError(f"Unknown training settings {sorted(unknown)}.")
        config = dataclasses.replace(config, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    start_step = 0
    state = None
    existing = _checkpoints(out) if resume else []
    if existing:
        start_step, path = existing[-1]
        state = _load_training_state(path)
        saved_model = state["config"].get("model", {})
        if {**TOY_VAE_CONFIG, **saved_model} != {**TOY_VAE_CONFIG, **config.model}:
            raise ValueError(
                f"`model` settings {config.model} differ from those of the checkpoint in {path} ({saved_model}); "
                "use another `out_dir` or `resume=False`."
            )
        changed = {k: v for k, v in dataclasses.asdict(config).items() if state["config"].get(k) != v}
        if changed:
            logger.warning(f"Resuming {path} with changed settings {changed}.")
        vae = AutoencoderKLWan.from_pretrained(path / "vae")
        logger.info(f"Resuming the toy VAE from {path} (step {start_step}).")
    elif init_from is not None:
        vae = AutoencoderKLWan.from_pretrained(init_from)
        expected = make_toy_vae(seed=config.seed, **config.model).config
        mismatched = {k: (vae.config[k], expected[k]) for k in TOY_VAE_CONFIG if vae.config.get(k) != expected.get(k)}
        if mismatched:
            raise ValueError(f"`init_from` {init_from} is not a toy VAE of these `model` settings: {mismatched}.")
        logger.info(f"Warm start of the toy VAE from {init_from}.")
    else:
        vae = make_toy_vae(seed=config.seed, **config.model)
    vae.train()
    if config.decoder_only:
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, betas=(0.9, 0.99), weight_decay=0.0)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    eval_clips = toy_video_batch(config.eval_clips, config.eval_frames, EVAL_SEED, config.size, config.max_objects)
    num_params = sum(p.numel() for p in vae.parameters())
    logger.info(
        f"Toy VAE: {num_params / 1e6:.2f} M parameters, steps {start_step} -> {config.steps} "
        f"({config.image_steps} single-frame), held-out set {tuple(eval_clips.shape)}."
    )
    last: dict[str, Any] = {}
    stats: tuple[list[float], list[float]] | None = None

    def run_eval(step: int) -> None:
        nonlocal last, stats
        metrics, latents = evaluate_toy_vae(vae, eval_clips)
        stats = compute_latent_stats(latents)
        last = {"step": step, **{k: round(v, 3) for k, v in metrics.items()}}
        _append_metrics(out, {"event": "eval", "time": time.time(), **last})
        logger.info(f"step {step}: held-out PSNR {metrics['psnr']:.2f} dB ({metrics})")

    if start_step >= config.steps:
        logger.info(f"Nothing to do: the checkpoint is at step {start_step} >= `steps` {config.steps}.")
        run_eval(start_step)
        return {"step": start_step, "eval": last, "vae": str(out / "vae")}

    end_step = config.steps if config.stop_at is None else min(config.steps, config.stop_at)
    if start_step >= end_step:
        logger.info(f"Nothing to do: the checkpoint is at step {start_step} >= `stop_at` {end_step}.")
        run_eval(start_step)
        return {"step": start_step, "eval": last, "vae": str(out / "vae")}
    last_save = time.time()
    window: list[float] = []
    tick = time.time()
    progress = tqdm(
        range(start_step, end_step), initial=start_step, total=config.steps, desc="toy VAE", mininterval=30.0
    )
    for step in progress:
        image_phase = step < config.image_steps
        batch = toy_video_batch(
            config.image_batch_size if image_phase else config.batch_size,
            1 if image_phase else config.num_frames,
            [config.seed, step],
            config.size,
            config.max_objects,
        )
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        with torch.set_grad_enabled(not config.decoder_only):
            posterior = vae.encode(batch).latent_dist
        if config.sample_posterior:
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            z = posterior.sample(generator=generator)
        else:
            z = posterior.mode()
        recon = decode_unclamped(vae, z)
        l1 = (recon - batch).abs().mean()
        mse = (recon - batch).pow(2).mean()
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        loss = config.l1_weight * l1 + config.mse_weight * mse + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        window.append(loss.item())

        done = step + 1
        if done % config.log_every == 0:
            elapsed = time.time() - tick
            record = {
                "event": "train",
                "time": time.time(),
                "step": done,
                "loss": round(float(np.mean(window)), 5),
                "l1": round(l1.item(), 5),
                "train_psnr": round(_psnr(mse.item()), 3),
                "kl": round(kl.item(), 3),
                "lr": config.lr_at(step),
                "sec_per_step": round(elapsed / len(window), 3),
                "phase": "image" if image_phase else "video",
            }
            _append_metrics(out, record)
            progress.set_postfix(loss=record["loss"], psnr=record["train_psnr"])
            window, tick = [], time.time()
        if done % config.eval_every == 0 or done == end_step:
            run_eval(done)
        save_due = done % config.checkpoint_every == 0 or done == end_step
        if config.checkpoint_minutes > 0 and time.time() - last_save > 60 * config.checkpoint_minutes:
            save_due = True
        if save_due:
            if stats is None or last.get("step") != done:
                run_eval(done)
            ckpt = _save(out, vae, optimizer, done, config, stats)
            last_save = time.time()
            logger.info(f"Saved {ckpt}.")
    return {"step": end_step, "eval": last, "vae": str(out / "vae")}
