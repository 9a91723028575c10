"""What the stage-1 and stage-2 training specs share: loading, data, on-the-fly encoding, validation, saving.

A spec owns everything model-specific; `loop.run_training` owns the loop. The pipeline parts that are not trained
(VAE, text encoder, tokenizer, scheduler) are loaded once, lazily, from `--pretrained-model`, and serve three uses:
encoding videos and captions on the fly (`--manifest`), validation videos, and completing the final pipeline folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging
from diffusers.utils.torch_utils import unwrap_module
from torch import nn
from torch.utils.data import Dataset

from .config import TrainConfig


logger = logging.get_logger(__name__)

TRAINING_INFO_NAME = "training_info.json"


def concat_caches(datasets: list[Any]) -> Any:
    """One cached dataset as it is, several as one `ConcatCachedDataset` (which checks that they match)."""
    if len(datasets) == 1:
        return datasets[0]
    from .latent_cache import ConcatCachedDataset

    return ConcatCachedDataset(datasets)


@dataclass
class ClipBatch:
    """A micro-batch of short clips: clean latents (from a latent cache) or pixels (encoded on the fly).

    Args:
        captions (`list[str]`): One caption per example.
        num_frames (`int`): Pixel frames per clip.
        latents (`torch.Tensor`, *optional*): `(B, 16, L, h, w)` normalised clean latents.
        prompt_embeds (`torch.Tensor`, *optional*): `(B, S, D)` zero-padded caption embeddings.
        pixel_values (`torch.Tensor`, *optional*): `(B, 3, F, H, W)` in `[-1, 1]`, when no latents are given.
        num_skipped (`int`, *optional*, defaults to 0): Unreadable items replaced in this batch.
    """

    captions: list[str]
    num_frames: int
    latents: torch.Tensor | None = None
    prompt_embeds: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None
    num_skipped: int = 0


def _first(item: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in item and item[key] is not None:
            return item[key]
    raise KeyError(f"Dataset item has none of the keys {keys}; it has {sorted(item)}.")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP / DataParallel (`.module`) and torch.compile wrappers, in any nesting: diffusers'
    `unwrap_module` (compile) applied through the `.module` chain, so there is one compile-unwrapping rule."""
    model = unwrap_module(model)
    while isinstance(getattr(model, "module", None), nn.Module):
        model = unwrap_module(model.module)
    return model


class WanTrainingSpecBase:
    """Common behaviour of the Wan training specs. Subclasses implement `build_model`, `compute_loss`, `save_final`
    and `pipeline_kwargs` (the pipeline configuration their validation videos and saved folders use)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        if config.pretrained_model is None and config.transformer is None:
            raise ValueError("Pass `--pretrained-model` (a pipeline folder or Hub id) or `--transformer`.")
        if (config.latent_cache is None) == (config.manifest is None):
            raise ValueError("Pass exactly one of `--latent-cache` (from `longvid cache-latents`) and `--manifest`.")
        if config.extra_latent_caches and config.latent_cache is None:
            raise ValueError("`--extra-latent-caches` needs `--latent-cache` (the first cache).")
        if config.pretrained_model is None:
            needs = [
                reason
                for reason, needed in (
                    ("`--manifest` (videos are encoded on the fly)", config.manifest is not None),
                    ("`--validation-steps`", config.validation_steps > 0 and bool(config.validation_prompts)),
                )
                if needed
            ]
            if needs:
                raise ValueError(f"{', '.join(needs)} need(s) `--pretrained-model` for the VAE and text encoder.")
        self.dataset: Dataset | None = None
        self._components: dict[str, Any] | None = None
        self._empty_prompt_embeds: torch.Tensor | None = None
        # sizes of the data; replaced by the latent cache's metadata in `build_dataset`
        self.height, self.width = config.height, config.width
        self.num_frames, self.fps = config.num_frames, config.fps

    # ------------------------------------------------------------------ devices
    @property
    def device(self) -> torch.device:
        from accelerate import PartialState

        return PartialState().device

    @staticmethod
    def weight_dtype(model: nn.Module) -> torch.dtype:
        return next(model.parameters()).dtype

    # ------------------------------------------------------------------ loading
    def load_transformer(self) -> nn.Module:
        """The transformer to train: `--transformer` (a model folder, or a pipeline folder) or the base pipeline's."""
        from diffusers import WanTransformer3DModel

        if self.config.transformer is not None:
            path = Path(self.config.transformer)
            subfolder = "transformer" if (path / "transformer" / "config.json").is_file() else None
            return WanTransformer3DModel.from_pretrained(self.config.transformer, subfolder=subfolder)
        return WanTransformer3DModel.from_pretrained(self.config.pretrained_model, subfolder="transformer")

    def components(self) -> dict[str, Any]:
        """The frozen pipeline parts (`vae`, `text_encoder`, `tokenizer`, `scheduler`) of `--pretrained-model`, loaded
        once. The scheduler becomes a `TRFlowScheduler` with the checkpoint's shift (a Wan `UniPCMultistepScheduler`
        config is mapped by `TRFlowScheduler.from_config`)."""
        if self._components is None:
            from ..schedulers.scheduling_trflow import TRFlowScheduler
            from .latent_cache import load_encoders

            base = self.config.pretrained_model
            if base is None:
                raise ValueError("This needs `--pretrained-model` for the VAE, text encoder, tokenizer and scheduler.")
            vae, text_encoder, tokenizer = load_encoders(base)
            scheduler = TRFlowScheduler.from_pretrained(base, subfolder="scheduler")
            self._components = {
                "vae": vae.requires_grad_(False).eval(),
                "text_encoder": text_encoder.requires_grad_(False).eval(),
                "tokenizer": tokenizer,
                "scheduler": scheduler,
            }
        return self._components

    # ------------------------------------------------------------------ data
    def build_dataset(self) -> Dataset:
        """The stage-1 dataset: `CachedShortClipDataset` or, for a `--kind long` cache, `CachedLongVideoClipDataset`
        (with `--latent-cache`), else `ShortClipDataset`."""
        cfg = self.config
        if cfg.latent_cache is not None:
            from .latent_cache import CachedLongVideoClipDataset, CachedShortClipDataset, load_cache_index

            def read(cache: str) -> Dataset:
                if load_cache_index(cache)["metadata"].get("kind") == "long":
                    return CachedLongVideoClipDataset(cache)  # every clip of the long videos is an item
                return CachedShortClipDataset(cache)

            dataset = concat_caches([read(cache) for cache in [cfg.latent_cache, *cfg.extra_latent_caches]])
            self._use_cache_sizes(dataset.metadata)
            if dataset.metadata.get("num_frames") is None and cfg.train_batch_size > 1:
                raise ValueError(
                    f"The latent cache {cfg.latent_cache} holds clips of varying length (cached without "
                    "`--num-frames`), which do not batch: use `--train-batch-size 1` with "
                    "`--gradient-accumulation-steps`."
                )
        else:
            from .datasets import ShortClipDataset

            dataset = ShortClipDataset(
                cfg.manifest, height=cfg.height, width=cfg.width, fps=cfg.fps, num_frames=cfg.num_frames
            )
        self.dataset = dataset
        return dataset

    def _use_cache_sizes(self, metadata: dict[str, Any]) -> None:
        self.height, self.width, self.fps = metadata["height"], metadata["width"], metadata["fps"]
        if metadata.get("num_frames") is not None:
            self.num_frames = metadata["num_frames"]
        logger.info(
            f"Latent cache: {self.height}x{self.width} at {self.fps} fps, {metadata.get('num_frames')} frames per "
            "clip (these override --height/--width/--fps/--num-frames)."
        )

    @staticmethod
    def collate(items: list[Any]) -> ClipBatch:
        """Batch dataset items (runs in DataLoader workers; a static method, so workers need no copy of the spec)."""
        items = [item for item in items if item is not None]
        if not items:
            raise RuntimeError("Every example of a batch failed to load; see the warnings above.")
        captions = [str(_first(item, "caption", "prompt")) for item in items]
        skipped = sum(int(item.get("num_skipped", 0)) for item in items)
        if "latents" in items[0]:
            return ClipBatch(
                captions=captions,
                num_frames=int(_first(items[0], "num_frames")),
                latents=torch.stack([torch.as_tensor(item["latents"]) for item in items]).float(),
                prompt_embeds=torch.stack([torch.as_tensor(item["prompt_embeds"]) for item in items]).float(),
                num_skipped=skipped,
            )
        pixels = torch.stack([torch.as_tensor(_first(item, "pixel_values")) for item in items])
        return ClipBatch(captions=captions, num_frames=pixels.shape[2], pixel_values=pixels, num_skipped=skipped)

    # ------------------------------------------------------------------ encoding on the fly
    @torch.no_grad()
    def encode_pixels(self, videos: torch.Tensor) -> torch.Tensor:
        """`(B, 3, F, H, W)` pixels in `[-1, 1]` -> normalised latents, as `longvid cache-latents` stores them."""
        from .latent_cache import encode_video_latents

        vae = self.components()["vae"].to(self.device)
        return encode_video_latents(vae, videos).float()

    @torch.no_grad()
    def encode_captions(self, captions: list[str]) -> torch.Tensor:
        """Caption embeddings `(B, max_sequence_length, D)`, as `WanPipeline.encode_prompt` computes them."""
        from .latent_cache import encode_prompts

        parts = self.components()
        text_encoder = parts["text_encoder"].to(self.device)
        # one caption at a time, so the embedding equals the pipeline's bit for bit (as the latent cache does)
        embeds = [
            encode_prompts(parts["tokenizer"], text_encoder, [caption], self.config.max_sequence_length)[0]
            for caption in captions
        ]
        return torch.cat(embeds).float()

    def latents_and_embeds(self, batch: ClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's clean latents and caption embeddings on the training device (encoding pixels if needed)."""
        if batch.latents is not None:
            return batch.latents.to(self.device), batch.prompt_embeds.to(self.device)
        return self.encode_pixels(batch.pixel_values), self.encode_captions(batch.captions).to(self.device)

    def empty_prompt_embeds(self) -> torch.Tensor:
        """The embedding `(S, D)` of the empty caption (caption dropout), from the latent cache or the text encoder."""
        if self._empty_prompt_embeds is None:
            if self.dataset is not None and hasattr(self.dataset, "empty_prompt_embeds"):
                self._empty_prompt_embeds = self.dataset.empty_prompt_embeds.float()
            else:
                self._empty_prompt_embeds = self.encode_captions([""])[0].cpu()
        return self._empty_prompt_embeds

    def drop_captions(self, prompt_embeds: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Replace each example's caption embedding by the empty caption's with probability `caption_dropout_prob`.

        Always draws one number per example, so the other draws of a step do not depend on the probability."""
        drop = torch.rand(prompt_embeds.shape[0], generator=generator) < self.config.caption_dropout_prob
        if not drop.any():
            return prompt_embeds
        empty = self.empty_prompt_embeds().to(prompt_embeds.device, prompt_embeds.dtype)
        if empty.shape != prompt_embeds.shape[1:]:
            raise ValueError(
                f"The empty caption's embedding {tuple(empty.shape)} does not match the captions' "
                f"{tuple(prompt_embeds.shape[1:])}."
            )
        out = prompt_embeds.clone()
        out[drop.to(out.device)] = empty
        return out

    # ------------------------------------------------------------------ pipelines: validation and saving
    def pipeline_kwargs(self) -> dict[str, Any]:
        """Configuration of the `LongVideoExtensionPipeline` built for validation videos and saved folders."""
        raise NotImplementedError

    def build_pipeline(self, transformer: nn.Module) -> Any:
        """A `LongVideoExtensionPipeline` of the frozen parts of `--pretrained-model` and `transformer`.

        `condition_fill="zeros"`: models trained on clean latents must sample with the condition layout of
        `prepare_extension_condition_from_latents`."""
        from ..pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline

        return LongVideoExtensionPipeline(
            transformer=transformer, condition_fill="zeros", **self.components(), **self.pipeline_kwargs()
        )

    def validation_num_condition_frames(self) -> int:
        raise NotImplementedError

    def validate(self, model: nn.Module, step: int, output_dir: Path) -> Path | None:
        """Generate the validation script (one clip per prompt) with the current weights and write it as an mp4."""
        cfg = self.config
        if not cfg.validation_prompts:
            return None
        from ..video_io import write_video

        pipe = self.build_pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        output = pipe(
            prompt=list(cfg.validation_prompts),
            height=self.height,
            width=self.width,
            num_frames=self.num_frames,
            num_condition_frames=self.validation_num_condition_frames(),
            num_inference_steps=cfg.validation_num_inference_steps,
            guidance_scale=cfg.validation_guidance_scale,
            generator=torch.Generator("cpu").manual_seed(cfg.seed),
            max_sequence_length=self.max_sequence_length,
            output_type="np",
        )
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / f"step-{step:06d}.mp4"
        write_video(output.frames[0], path, fps=self.fps)
        logger.info(f"Wrote validation video {path}.")
        return path

    @property
    def max_sequence_length(self) -> int:
        """Text tokens per prompt: the latent cache's when training from one."""
        metadata = getattr(self.dataset, "metadata", None) or {}
        return int(metadata.get("max_sequence_length", self.config.max_sequence_length))

    def write_training_info(self, output_dir: Path, **extra: Any) -> None:
        """`training_info.json`: the base model and the data sizes the weights were trained on."""
        info = {
            "base_model": self.config.pretrained_model,
            "transformer": self.config.transformer,
            "height": self.height,
            "width": self.width,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "condition_fill": "zeros",
            **extra,
        }
        (output_dir / TRAINING_INFO_NAME).write_text(json.dumps(info, indent=2))
