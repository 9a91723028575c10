"""Stage 2: causal cross-clip attention fine-tuning — LoRA on K/V of the cached blocks (paper §3.3, DESIGN §4).

An example is `clips_per_video` consecutive clips of one long video, cut the way the pipeline generates them (clip
`n` starts on the last `num_condition_frames` frames of clip `n - 1`). Its last clip is the target:

1. the selector (the same `ClipSelector` the pipeline uses) picks up to `kv_cache_clips` history clips among the
   earlier clips of the example, by prompt similarity (or recency);
2. each selected clip's K/V are recorded from one forward of its clean latent at timestep 0, conditioned as the
   pipeline conditions it (text only for a video's first clip, else its first frames), at its own RoPE temporal
   offset, without attending history — exactly the pipeline's default `"clean"` recording;
3. the target clip, conditioned on its first frames (the previous clip's last frames) and attending
   `[selected history K/V..., current K/V]` in the cached blocks, gets the flow-matching loss at its RoPE offset.

RoPE offsets are those of the pipeline: clip `n` of a video starts at latent position
`n * (latent_frames - condition_latent_frames) / patch_t`.

Only the LoRA on `attn1.to_k` / `attn1.to_v` of the cached blocks is trained; every other weight stays bit-identical.
With `history_grad=False` (default) the history forwards run without gradients; with `history_grad=True` the loss
also back-propagates through the recorded history K/V into the LoRA.

Examples are processed one at a time within a micro-batch (their histories sit at different positions and lengths),
and the loss is the batch mean. The history stays in the cache until the next micro-batch, so that gradient
checkpointing can recompute the target forward in the backward pass; with gradient checkpointing the micro-batch
must therefore hold one example (use gradient accumulation for larger batches).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.utils import logging
from torch import nn

from ..extension import num_latent_frames, prepare_extension_condition_from_latents
from .conditioning import novelty_weights, shifted_sigmas
from .config import CausalLoRATrainConfig
from .specs import WanTrainingSpecBase, _first, concat_caches, unwrap


logger = logging.get_logger(__name__)


@dataclass
class LongVideoExample:
    """One stage-2 example: consecutive clips of a long video.

    Args:
        captions (`list[str]`): One caption per clip.
        num_frames (`int`): Pixel frames per clip.
        first_clip_index (`int`): Index of the example's first clip in its video (for RoPE offsets and for whether
            the first clip had condition frames).
        latents (`torch.Tensor`, *optional*): `(N, 16, L, h, w)` clean latents of the clips (latent cache).
        prompt_embeds (`torch.Tensor`, *optional*): `(N, S, D)` caption embeddings (latent cache).
        pixel_values (`torch.Tensor`, *optional*): `(N, 3, F, H, W)` pixels (encoded on the fly).
    """

    captions: list[str]
    num_frames: int
    first_clip_index: int = 0
    latents: torch.Tensor | None = None
    prompt_embeds: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None


@dataclass
class LongVideoBatch:
    """A micro-batch of stage-2 examples."""

    examples: list[LongVideoExample]
    num_skipped: int = 0


class CausalLoRATrainingSpec(WanTrainingSpecBase):
    """The stage-2 `TrainingSpec` (see `loop.run_training`).

    Args:
        config (`CausalLoRATrainConfig`): The options.
    """

    config: CausalLoRATrainConfig

    def __init__(self, config: CausalLoRATrainConfig) -> None:
        if not isinstance(config, CausalLoRATrainConfig):
            raise TypeError(f"`config` must be a `CausalLoRATrainConfig`, got {type(config).__name__}.")
        super().__init__(config)
        if config.gradient_checkpointing and config.train_batch_size != 1:
            raise ValueError(
                "Stage 2 with `gradient_checkpointing` needs `train_batch_size=1` (the history of one example stays "
                f"in the cache through the backward pass); got {config.train_batch_size}. Use "
                "`--gradient-accumulation-steps` for a larger batch."
            )
        self.selector = self._build_selector()
        self.cache_config = None

    def _build_selector(self) -> Any:
        from ..selection.selectors import PromptSimilaritySelector, RecentSelector

        if self.config.clip_selector == "recent":
            return RecentSelector()
        return PromptSimilaritySelector(self.config.selector_model)

    # ------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        from ..attention.kv_cache import CrossClipKVCacheConfig
        from ..attention.lora import add_kv_lora
        from ..attention.processor import enable_cross_clip_kv_cache
        from ..attention.rope import enable_rope_offset

        cfg = self.config
        transformer = self.load_transformer()
        if transformer.config.in_channels != 36:
            raise ValueError(
                "Stage 2 trains on the 36-channel extension model of stage 1 (`longvid train-extension`); the "
                f"transformer has `in_channels={transformer.config.in_channels}`."
            )
        transformer.requires_grad_(False)
        blocks = list(cfg.cached_blocks) or None
        self.cache_config = CrossClipKVCacheConfig(
            blocks=blocks,
            history_pool=cfg.history_pool,
            proportional_attention=cfg.proportional_attention,
            history_keep_ratio=cfg.history_keep_ratio,
        )
        add_kv_lora(transformer, rank=cfg.lora_rank, alpha=cfg.lora_alpha, blocks=blocks)
        enable_rope_offset(transformer)
        enable_cross_clip_kv_cache(transformer, self.cache_config)
        transformer.train()
        return transformer

    def _cache(self, model: nn.Module) -> Any:
        # (re)installed if a validation pipeline's memory removed it; idempotent otherwise
        from ..attention.processor import enable_cross_clip_kv_cache

        return enable_cross_clip_kv_cache(unwrap(model), self.cache_config)

    # ------------------------------------------------------------------ data
    def build_dataset(self) -> Any:
        cfg = self.config
        if cfg.latent_cache is not None:
            from .latent_cache import CachedLongVideoDataset

            dataset = concat_caches(
                [
                    CachedLongVideoDataset(cache, num_clips=cfg.clips_per_video, min_clips=cfg.min_clips_per_video)
                    for cache in [cfg.latent_cache, *cfg.extra_latent_caches]
                ]
            )
            self._use_cache_sizes(dataset.metadata)
            overlap = dataset.metadata["overlap_frames"]
            if overlap != cfg.num_condition_frames:
                raise ValueError(
                    f"`num_condition_frames` ({cfg.num_condition_frames}) must equal the latent cache's overlap "
                    f"between clips ({overlap}, `cache-latents --overlap-frames`): a clip's condition frames are the "
                    "previous clip's last frames."
                )
        else:
            from .datasets import LongVideoDataset

            dataset = LongVideoDataset(
                cfg.manifest,
                height=cfg.height,
                width=cfg.width,
                fps=cfg.fps,
                num_frames=cfg.num_frames,
                overlap_frames=cfg.num_condition_frames,
                max_clips=cfg.clips_per_video,
                min_clips=cfg.min_clips_per_video or cfg.clips_per_video,
                sliding=cfg.min_clips_per_video is not None,
            )
        self.dataset = dataset
        return dataset

    @staticmethod
    def collate(items: list[Any]) -> LongVideoBatch:
        """Batch dataset items (runs in DataLoader workers; a static method, so workers need no copy of the spec)."""
        items = [item for item in items if item is not None]
        if not items:
            raise RuntimeError("Every example of a batch failed to load; see the warnings above.")
        examples = []
        for item in items:
            example = LongVideoExample(
                captions=[str(c) for c in _first(item, "captions")],
                num_frames=int(_first(item, "num_frames")),
                first_clip_index=int(item.get("first_clip_index", 0)),
            )
            if "latents" in item:
                example.latents = torch.as_tensor(item["latents"]).float()
                example.prompt_embeds = torch.as_tensor(item["prompt_embeds"]).float()
            else:
                example.pixel_values = torch.as_tensor(_first(item, "pixel_values"))
            examples.append(example)
        return LongVideoBatch(examples, num_skipped=sum(int(item.get("num_skipped", 0)) for item in items))

    # ------------------------------------------------------------------ loss
    def select_history(self, captions: list[str]) -> list[int]:
        """History clips of the target (the last clip) chosen by the selector among the earlier ones, ascending."""
        target = len(captions) - 1
        candidates = list(range(target))
        return self.selector.select(captions[target], captions[:target], candidates, self.config.kv_cache_clips)

    def compute_loss(self, model: nn.Module, batch: LongVideoBatch, generator: torch.Generator) -> torch.Tensor:
        losses = [self._example_loss(model, example, generator) for example in batch.examples]
        return torch.stack(losses).mean()

    def _example_loss(self, model: nn.Module, example: LongVideoExample, generator: torch.Generator) -> torch.Tensor:
        from ..attention.rope import rope_frame_offset

        cfg = self.config
        base = unwrap(model)
        cache = self._cache(model)
        device, dtype = self.device, self.weight_dtype(base)
        if example.latents is not None:
            latents, embeds = example.latents.to(device), example.prompt_embeds.to(device)
        else:
            latents = self.encode_pixels(example.pixel_values)
            embeds = self.encode_captions(example.captions).to(device)
        # draws: noise, noise level, caption dropout (of the target's caption only)
        x0 = latents[-1:].float()
        noise = torch.randn(x0.shape, generator=generator).to(device)
        sigma = shifted_sigmas(torch.rand(1, generator=generator), cfg.timestep_shift).to(device)
        target_embeds = self.drop_captions(embeds[-1:], generator)

        num_frames = example.num_frames
        known = list(range(cfg.num_condition_frames))
        patch_t = base.config.patch_size[0]
        stride = latents.shape[2] - num_latent_frames(cfg.num_condition_frames)

        def rope_offset(clip: int) -> int:
            return (example.first_clip_index + clip) * stride // patch_t

        # 1-2. record the selected history clips (the previous example's history is dropped here, not earlier:
        # gradient checkpointing reads it again in the backward pass)
        cache.clear()
        history = self.select_history(example.captions)
        grad_context = contextlib.nullcontext if cfg.history_grad else torch.no_grad
        for clip in history:
            clean = latents[clip : clip + 1].float()
            # a video's first clip is generated from text alone; every later clip from the previous clip's frames
            clip_known = [] if example.first_clip_index + clip == 0 else known
            condition = prepare_extension_condition_from_latents(clean, clip_known, num_frames)
            with grad_context(), rope_frame_offset(base, rope_offset(clip)), cache.branch("cond"), cache.recording():
                base(
                    hidden_states=condition.model_input(clean).to(dtype),
                    timestep=torch.zeros(1, device=device),
                    encoder_hidden_states=embeds[clip : clip + 1].to(dtype),
                    return_dict=False,
                )
            cache.commit(clip)
        cache.select(history)

        # 3. the target clip attends the history
        target = latents.shape[0] - 1
        noisy = (1 - sigma.view(-1, 1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1, 1) * noise
        condition = prepare_extension_condition_from_latents(x0, known, num_frames)
        with rope_frame_offset(base, rope_offset(target)), cache.branch("cond"):
            pred = model(
                hidden_states=condition.model_input(noisy).to(dtype),
                timestep=sigma * 1000.0,
                encoder_hidden_states=target_embeds.to(dtype),
                return_dict=False,
            )[0].float()
        weight = torch.ones(x0.shape[2], device=device)
        weight[list(condition.known_latent_frames)] = 0.0
        weight = weight.view(1, 1, -1, 1, 1)
        if cfg.novelty_loss_weight:
            weight = weight * novelty_weights(x0, condition.known_latent_frames, cfg.novelty_loss_weight)
        weight = weight.expand_as(pred)
        squared = F.mse_loss(pred, noise - x0, reduction="none")
        return (squared * weight).sum() / weight.sum().clamp(min=1.0)

    # ------------------------------------------------------------------ validation and saving
    def pipeline_kwargs(self) -> dict[str, Any]:
        return {
            "kv_cache_clips": self.config.kv_cache_clips,
            "clip_selector": self.selector,
            "kv_cache_config": self.cache_config,
        }

    def validation_num_condition_frames(self) -> int:
        return self.config.num_condition_frames

    def validate(self, model: nn.Module, step: int, output_dir: Path) -> Path | None:
        # The pipeline's clip memory installs (and on exit removes) its own cache processors: hand them over.
        from ..attention.processor import disable_cross_clip_kv_cache

        disable_cross_clip_kv_cache(unwrap(model))
        try:
            return super().validate(model, step, output_dir)
        finally:
            self._cache(model)

    def save_final(self, model: nn.Module, output_dir: Path) -> None:
        """The LoRA in diffusers format (`pytorch_lora_weights.safetensors`, for `load_lora_weights`) and
        `training_info.json` with the KV-cache settings it was trained with."""
        from peft.utils import get_peft_model_state_dict

        from ..pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline

        output_dir.mkdir(parents=True, exist_ok=True)
        base = unwrap(model)
        LongVideoExtensionPipeline.save_lora_weights(
            str(output_dir), transformer_lora_layers=get_peft_model_state_dict(base), safe_serialization=True
        )
        self.write_training_info(
            output_dir,
            stage="causal_lora",
            lora_rank=self.config.lora_rank,
            lora_alpha=self.config.lora_alpha or self.config.lora_rank,
            kv_cache_clips=self.config.kv_cache_clips,
            kv_cache_config=self.cache_config.to_dict(),
            clip_selector=self.selector.to_config(),
            num_condition_frames=self.config.num_condition_frames,
        )


def train_causal_lora(config: CausalLoRATrainConfig) -> Any:
    """Run stage 2 (`longvid train-causal-lora`). Returns the `TrainingResult`."""
    from .loop import run_training

    return run_training(CausalLoRATrainingSpec(config), config)
