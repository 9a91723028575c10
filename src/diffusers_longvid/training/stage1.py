"""Stage 1: fine-tune a Wan2.1-T2V transformer into the 36-channel video extension model (full parameters).

Per example a conditioning task is drawn (DESIGN §2): no condition with probability `no_condition_prob`, else
first-k, last-k or first+last known pixel frames with `k = 1 + 4j <= max_condition_frames`. The transformer sees
`[x_sigma | mask | condition latent]` (the condition latent built from the clean latents with
`prepare_extension_condition_from_latents`, i.e. `condition_fill="zeros"`), and the loss is the flow-matching MSE
`|v_pred - (eps - x0)|^2` on the latent frames that are not fully known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.utils import logging
from torch import nn

from ..extension import prepare_extension_condition_from_latents
from .conditioning import novelty_weights, sample_task, shifted_sigmas
from .config import ExtensionTrainConfig
from .specs import ClipBatch, WanTrainingSpecBase


logger = logging.get_logger(__name__)


class ExtensionTrainingSpec(WanTrainingSpecBase):
    """The stage-1 `TrainingSpec` (see `loop.run_training`).

    Args:
        config (`ExtensionTrainConfig`): The options.
    """

    config: ExtensionTrainConfig

    def __init__(self, config: ExtensionTrainConfig) -> None:
        if not isinstance(config, ExtensionTrainConfig):
            raise TypeError(f"`config` must be an `ExtensionTrainConfig`, got {type(config).__name__}.")
        super().__init__(config)

    def build_dataset(self) -> Any:
        dataset = super().build_dataset()
        k = self.config.validation_num_condition_frames
        if self.config.validation_steps and self.config.validation_prompts and k >= self.num_frames:
            raise ValueError(
                f"`validation_num_condition_frames` ({k}) must be below the clips' {self.num_frames} frames (the "
                "latent cache's)."
            )
        return dataset

    def build_model(self) -> nn.Module:
        from ..extension import convert_t2v_to_extension

        transformer = self.load_transformer()
        channels = transformer.config.in_channels
        if channels == 16:
            logger.info("Converting the 16-channel T2V transformer into a 36-channel extension model.")
            transformer = convert_t2v_to_extension(transformer)
        elif channels != 36:
            raise ValueError(
                f"Stage 1 needs a 16-channel T2V or a 36-channel extension transformer, got `in_channels={channels}`."
            )
        transformer.requires_grad_(True)
        transformer.train()
        return transformer

    def compute_loss(self, model: nn.Module, batch: ClipBatch, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        x0, prompt_embeds = self.latents_and_embeds(batch)
        x0 = x0.float()
        bsz, _, latent_frames = x0.shape[:3]
        # every draw from `generator`, in a fixed order: noise, noise levels, caption dropout, tasks
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        sigmas = shifted_sigmas(torch.rand(bsz, generator=generator), cfg.timestep_shift).to(x0.device)
        prompt_embeds = self.drop_captions(prompt_embeds, generator)
        s = sigmas.view(-1, 1, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise

        inputs, generated = [], torch.ones(bsz, latent_frames, device=x0.device)
        novelty = torch.ones(bsz, 1, *x0.shape[2:], device=x0.device)
        for i in range(bsz):
            task = sample_task(
                generator, batch.num_frames, cfg.no_condition_prob, cfg.max_condition_frames, tuple(cfg.task_weights)
            )
            condition = prepare_extension_condition_from_latents(
                x0[i : i + 1], task.known_pixel_frames(batch.num_frames), batch.num_frames
            )
            inputs.append(condition.model_input(noisy[i : i + 1]))
            generated[i, list(condition.known_latent_frames)] = 0.0
            if cfg.novelty_loss_weight:
                novelty[i : i + 1] = novelty_weights(
                    x0[i : i + 1], condition.known_latent_frames, cfg.novelty_loss_weight
                )
        dtype = self.weight_dtype(model)
        pred = model(
            hidden_states=torch.cat(inputs).to(dtype),
            timestep=sigmas * 1000.0,
            encoder_hidden_states=prompt_embeds.to(dtype),
            return_dict=False,
        )[0].float()
        # loss on the latent frames to generate (fully known frames are given to the model), optionally weighted
        # towards what the known frames do not show
        weight = (generated.view(bsz, 1, latent_frames, 1, 1) * novelty).expand_as(pred)
        squared = F.mse_loss(pred, noise - x0, reduction="none")
        return (squared * weight).sum() / weight.sum().clamp(min=1.0)

    def pipeline_kwargs(self) -> dict[str, Any]:
        # the stage-1 model has not learnt to attend history: its pipeline runs without the KV cache
        return {"kv_cache_clips": 0}

    def validation_num_condition_frames(self) -> int:
        return self.config.validation_num_condition_frames

    def save_final(self, model: nn.Module, output_dir: Path) -> None:
        """A complete `LongVideoExtensionPipeline` folder (with `save_pipeline` and `--pretrained-model`), else the
        transformer alone in `output_dir/transformer`; safetensors either way."""
        output_dir.mkdir(parents=True, exist_ok=True)
        if self.config.save_pipeline and self.config.pretrained_model is not None:
            self.build_pipeline(model).save_pretrained(str(output_dir), safe_serialization=True)
        else:
            model.save_pretrained(str(output_dir / "transformer"), safe_serialization=True)
        self.write_training_info(output_dir, stage="extension")


def train_extension(config: ExtensionTrainConfig) -> Any:
    """Run stage 1 (`longvid train-extension`). Returns the `TrainingResult`."""
    from .loop import run_training

    return run_training(ExtensionTrainingSpec(config), config)
