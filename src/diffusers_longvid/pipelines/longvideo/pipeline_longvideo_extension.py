# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`LongVideoExtensionPipeline`: clip-by-clip long video generation with Wan2.1 (paper §3.3, DESIGN §2-3)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.loaders import WanLoraLoaderMixin
from diffusers.models import AutoencoderKLWan, WanTransformer3DModel

# diffusers' loader looks for the base classes as attributes of the module named in `model_index.json`:
# `DiffusionPipeline` must be importable from this module by name.
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.wan.pipeline_wan import WanPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import is_torch_xla_available, logging, replace_example_docstring
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor
from diffusers.video_processor import VideoProcessor
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel

from ...attention.rope import disable_rope_offset, rope_frame_offset
from ...extension import denormalize_latents, num_latent_frames, prepare_extension_condition

# diffusers only loads a saved component whose module is already imported: a pipeline folder saved with our
# scheduler names `diffusers_longvid.schedulers.scheduling_trflow`, so importing the pipeline imports it.
from ...schedulers import scheduling_trflow as _scheduling_trflow  # noqa: F401
from ...selection.planner import ClipPlan
from ...validation import is_int, validate_image, validate_video
from .call import LongVideoCall
from .pipeline_output import LongVideoClip, LongVideoPipelineOutput
from .state import GenerationState, ResumableRun


if is_torch_xla_available():
    import torch_xla.core.xla_model as xm

    XLA_AVAILABLE = True
else:
    XLA_AVAILABLE = False

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = ["LongVideoExtensionPipeline"]

EXAMPLE_DOC_STRING = """
    Examples:
        ```python
        >>> import torch
        >>> from diffusers import AutoencoderKLWan
        >>> from diffusers_longvid import LongVideoExtensionPipeline, TRFlowScheduler
        >>> from diffusers_longvid.video_io import StreamingVideoWriter

        >>> # A stock Wan2.1 T2V checkpoint runs in the training-free "replacement" mode (16 input channels);
        >>> # an extension checkpoint (36 input channels) runs in the concatenation mode.
        >>> model_id = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
        >>> vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", dtype=torch.float32)
        >>> pipe = LongVideoExtensionPipeline.from_pretrained(
        ...     model_id, vae=vae, dtype=torch.bfloat16, kv_cache_clips=0
        ... )
        >>> pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
        >>> pipe.to("cuda")

        >>> # a list of prompts is a *script*: one prompt per clip (not a batch)
        >>> prompts = [
        ...     "A red fox trots through fresh snow in a birch forest, morning light.",
        ...     "The fox stops, lifts its head and listens, snow falling softly.",
        ...     "The fox pounces into the snow and comes up with snow on its nose.",
        ... ]
        >>> with StreamingVideoWriter("fox.mp4", fps=16) as writer:
        ...     for clip in pipe.generate_clips(prompts, height=480, width=832, num_frames=81, num_condition_frames=5):
        ...         writer.append(clip.frames[0])  # each clip is on disk as soon as it is done
        ```
"""


class LongVideoExtensionPipeline(DiffusionPipeline, WanLoraLoaderMixin):
    r"""
    Pipeline for long (minute-to-unbounded length) single-shot video generation with Wan2.1, clip by clip.

    Each clip is conditioned on its own prompt, on the last `num_condition_frames` frames of the previous clip and,
    when the cross-clip KV cache is on, on the keys/values of selected history clips. The RoPE temporal positions of
    clip `n` start at its global latent index, so positions keep growing along the video (no limit at
    `rope_max_seq_len`). The conditioning mode follows `transformer.config.in_channels`:

    - **36** (an extension model, see [`~diffusers_longvid.convert_t2v_to_extension`]): the transformer input is
      `[noisy latent | mask | condition latent]`, the Wan2.1-I2V layout.
    - **16** (a stock T2V model, training-free): replacement conditioning — before each step the known latent frames of
      `x_sigma` are set to `(1 - sigma) c + sigma eps` (`eps` fixed per clip) and `c` is written into the result.

    This model inherits from [`DiffusionPipeline`]. Check the superclass documentation for the generic methods
    implemented for all pipelines (downloading, saving, running on a particular device, etc.).

    Args:
        tokenizer ([`T5Tokenizer`]):
            Tokenizer of the text encoder, [google/umt5-xxl](https://huggingface.co/google/umt5-xxl) for Wan2.1.
        text_encoder ([`UMT5EncoderModel`]):
            Text encoder; its `last_hidden_state` (zero-padded to `max_sequence_length`) conditions the transformer.
        vae ([`AutoencoderKLWan`]):
            Variational Auto-Encoder (VAE) Model to encode and decode videos to and from latent representations.
        scheduler ([`SchedulerMixin`]):
            A flow-matching scheduler. The default (and what `save_pretrained` writes for pipelines built by this
            package) is [`~diffusers_longvid.TRFlowScheduler`]; any scheduler with `timesteps` and `sigmas` such as
            `FlowMatchEulerDiscreteScheduler` or Wan's `UniPCMultistepScheduler` works.
        transformer ([`WanTransformer3DModel`]):
            The denoiser: 36 input channels (extension model) or 16 (stock T2V, replacement conditioning).
        kv_cache_clips (`int`, *optional*, defaults to 5):
            History clips each clip attends through the cross-clip KV cache (the paper's 5). `0` turns the cache off.
        max_cached_clips (`int`, *optional*):
            Most history clips whose K/V are held at once (constant memory in video length). Defaults to
            `kv_cache_clips`.
        clip_selector (`ClipSelector` or `dict`, *optional*):
            How history clips are selected: a selector from `diffusers_longvid.selection` (e.g.
            `PromptSimilaritySelector()`, `RecentSelector()`) or its `to_config()` dict. Its config is saved with the
            pipeline. `None` uses the memory's default, prompt similarity with the offline all-MiniLM-L6-v2.
        kv_cache_config (`CrossClipKVCacheConfig` or `dict`, *optional*):
            Options of the KV cache (cached blocks, `record_mode`, frame subsampling, CPU offload), saved with the
            pipeline. `None` uses `CrossClipKVCacheConfig()` (latter half of the blocks, clean recording).
        condition_fill (`str`, *optional*, defaults to `"vae"`):
            How the unknown frames of the condition latent are filled: `"vae"` (VAE encoding of the zero-padded video,
            Wan2.1-I2V) or `"zeros"` (for models trained on cached latents, see
            [`~diffusers_longvid.extension.prepare_extension_condition_from_latents`]).
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    _optional_components = []

    def __init__(
        self,
        tokenizer: AutoTokenizer,
        text_encoder: PreTrainedModel,
        vae: AutoencoderKLWan,
        scheduler: SchedulerMixin,
        transformer: WanTransformer3DModel,
        kv_cache_clips: int = 5,
        max_cached_clips: int | None = None,
        clip_selector: Any = None,
        kv_cache_config: Any = None,
        condition_fill: str = "vae",
    ):
        super().__init__()
        if condition_fill not in ("vae", "zeros"):
            raise ValueError(f"`condition_fill` must be one of ['vae', 'zeros'], got {condition_fill!r}.")
        # selector objects are kept as given (a loaded sentence model is not rebuilt); the config holds their settings
        self._clip_selector = None if clip_selector is None or isinstance(clip_selector, dict) else clip_selector
        if self._clip_selector is not None:
            if not hasattr(clip_selector, "to_config"):
                raise TypeError(
                    "`clip_selector` must be a selector from `diffusers_longvid.selection` or its `to_config()` "
                    f"dict, got {type(clip_selector).__name__}."
                )
            clip_selector = clip_selector.to_config()
        if kv_cache_config is not None and not isinstance(kv_cache_config, dict):
            if not hasattr(kv_cache_config, "to_dict"):
                raise TypeError(
                    "`kv_cache_config` must be a `CrossClipKVCacheConfig` or its `to_dict()`, got "
                    f"{type(kv_cache_config).__name__}."
                )
            kv_cache_config = kv_cache_config.to_dict()

        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            scheduler=scheduler,
        )
        self.register_to_config(
            kv_cache_clips=kv_cache_clips,
            max_cached_clips=max_cached_clips,
            clip_selector=clip_selector,
            kv_cache_config=kv_cache_config,
            condition_fill=condition_fill,
        )
        self.vae_scale_factor_temporal = self.vae.config.scale_factor_temporal if getattr(self, "vae", None) else 4
        self.vae_scale_factor_spatial = self.vae.config.scale_factor_spatial if getattr(self, "vae", None) else 8
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)
        # Builds the cross-clip memory; `None` -> `diffusers_longvid.attention.memory.ClipMemory`. Tests inject fakes.
        self._clip_memory_factory: Callable[..., Any] | None = None
        self._current_clip_index: int | None = None

    # diffusers' own text encoding and initial noise, shared with `WanPipeline` rather than copied: a one-clip video
    # equals `WanPipeline`'s (tests/pipelines/test_pipeline_longvideo.py); `encode_prompt` is called once per clip
    _get_t5_prompt_embeds = WanPipeline._get_t5_prompt_embeds
    encode_prompt = WanPipeline.encode_prompt
    prepare_latents = WanPipeline.prepare_latents

    def check_inputs(self, call: LongVideoCall, allow_prompt_iterator: bool = False) -> LongVideoCall:
        r"""
        Validate every argument of a call before any model work (types and ranges, and what the models impose:
        frame counts, resolution, the first clip's `latents`, the transformer's input channels), once.

        Args:
            call (`LongVideoCall`): The call's arguments, as given.
            allow_prompt_iterator (`bool`, *optional*, defaults to `False`):
                Accept any iterable of str as `prompt` (`generate_clips`).

        Returns:
            `LongVideoCall`: the normalised call (see [`~pipelines.longvideo.call.LongVideoCall`]).
        """
        if isinstance(call.callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            call = replace(call, callback_on_step_end_tensor_inputs=call.callback_on_step_end.tensor_inputs)
        config = self.config
        call = replace(
            call,
            kv_cache_clips=config.kv_cache_clips if call.kv_cache_clips is None else call.kv_cache_clips,
            max_cached_clips=config.max_cached_clips if call.max_cached_clips is None else call.max_cached_clips,
            max_sequence_length=(
                self.default_max_sequence_length if call.max_sequence_length is None else call.max_sequence_length
            ),
        )
        return call.checked(self, allow_prompt_iterator=allow_prompt_iterator)

    def prepare_first_condition(
        self,
        image,
        video,
        height: int,
        width: int,
        num_condition_frames: int,
        batch_size: int,
    ) -> torch.Tensor | None:
        r"""
        Pixel frames (in `[-1, 1]`, shape `(batch, 3, k0, height, width)`) that condition the first clip, or `None`.

        `image` gives one frame. `video` gives its last `k0` frames, `k0` = `num_condition_frames` or, for a shorter
        video, the largest `1 + 4j` frames it has. They become the first `k0` frames of clip 0.
        """
        if image is None and video is None:
            return None
        # canonical media (RGB PIL, or float32 in [0, 1] with a batch axis): uint8 / 0-255 / [-1, 1] are never
        # passed on to the VideoProcessor, which would read every array as [0, 1]
        if image is not None:
            image = validate_image(image, "image")
            pixels = self.video_processor.preprocess(image, height=height, width=width).unsqueeze(2)
        else:
            video = validate_video(video, "video", num_last_frames=num_condition_frames)
            pixels = self.video_processor.preprocess_video(video, height=height, width=width)
            available = min(pixels.shape[2], num_condition_frames)
            count = 1 + self.vae_scale_factor_temporal * ((available - 1) // self.vae_scale_factor_temporal)
            if count < num_condition_frames:
                logger.warning(
                    f"`video` has {pixels.shape[2]} frames: the first clip is conditioned on its last {count} frames "
                    f"instead of `num_condition_frames={num_condition_frames}`."
                )
            pixels = pixels[:, :, -count:]
        if pixels.shape[0] not in (1, batch_size):
            name = "image" if image is not None else "video"
            raise ValueError(
                f"`{name}` holds {pixels.shape[0]} items but the batch size is {batch_size}; pass 1 or {batch_size}."
            )
        if pixels.shape[0] != batch_size:
            pixels = pixels.expand(batch_size, -1, -1, -1, -1)
        return pixels.to(torch.float32)

    @property
    def max_sequence_length_limit(self) -> int:
        """The largest `max_sequence_length` a call accepts: the tokenizer's `model_max_length` when it reports a
        real limit, else 512 (Wan2.1's length); longer prompts only pad, and cost memory quadratically."""
        limit = getattr(getattr(self, "tokenizer", None), "model_max_length", None)
        return int(limit) if is_int(limit) and 0 < limit <= 100_000 else 512

    @property
    def default_max_sequence_length(self) -> int:
        """Tokens per prompt when a call does not say: the tokenizer's `model_max_length`, capped at 512 (Wan2.1's
        length; tokenizers without a limit report a huge number). A model must be sampled with the length it was
        trained with, since the zero-padded positions take part in cross-attention."""
        limit = getattr(getattr(self, "tokenizer", None), "model_max_length", None)
        return int(limit) if is_int(limit) and 0 < limit < 512 else 512

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self):
        return self._num_timesteps

    @property
    def current_timestep(self):
        return self._current_timestep

    @property
    def current_clip_index(self) -> int | None:
        """Index of the clip being generated (`None` outside a call); handy in `callback_on_step_end`."""
        return self._current_clip_index

    @property
    def interrupt(self):
        return self._interrupt

    @property
    def attention_kwargs(self):
        return self._attention_kwargs

    @property
    def conditioning_mode(self) -> str:
        """`"concat"` for a 36-channel extension transformer, `"replacement"` for a 16-channel T2V transformer."""
        return "concat" if self.transformer.config.in_channels != self.vae.config.z_dim else "replacement"

    def _resolve_memory_options(self, clip_selector, kv_cache_config, default_config: bool = False):
        """The selector and KV-cache config of a call: the given ones, else the pipeline's (`None` = the memory's
        default; with `default_config`, `CrossClipKVCacheConfig()` instead of `None`)."""
        if clip_selector is None:
            clip_selector = self._clip_selector
        if clip_selector is None and self.config.clip_selector is not None:
            from ...selection.selectors import selector_from_config

            clip_selector = self._clip_selector = selector_from_config(dict(self.config.clip_selector))
        if kv_cache_config is None and self.config.kv_cache_config is not None:
            from ...attention.kv_cache import CrossClipKVCacheConfig

            kv_cache_config = CrossClipKVCacheConfig.from_dict(dict(self.config.kv_cache_config))
        if kv_cache_config is None and default_config:
            from ...attention.kv_cache import CrossClipKVCacheConfig

            kv_cache_config = CrossClipKVCacheConfig()
        return clip_selector, kv_cache_config

    def _create_clip_memory(self, call: LongVideoCall):
        """The cross-clip memory of a call (`None` without KV cache)."""
        if call.kv_cache_clips == 0:
            return None
        factory = self._clip_memory_factory
        if factory is None:
            try:
                from ...attention.memory import ClipMemory
            except ImportError as error:
                raise ImportError(
                    "The cross-clip KV cache (`diffusers_longvid.attention.memory`) could not be imported; run with "
                    "`kv_cache_clips=0` to generate without it."
                ) from error
            factory = ClipMemory
        clip_selector, kv_cache_config = self._resolve_memory_options(call.clip_selector, call.kv_cache_config)
        memory = factory(
            self.transformer,
            kv_cache_clips=call.kv_cache_clips,
            max_cached_clips=call.max_cached_clips,
            clip_selector=clip_selector,
            config=kv_cache_config,
        )
        if not memory.active:
            memory.close()
            return None
        return memory

    def generate_clips(
        self,
        prompt: str | list[str] | Iterable[str] = None,
        negative_prompt: str | list[str] | None = None,
        num_clips: int | None = None,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | None = None,
        video: list[PIL.Image.Image] | np.ndarray | torch.Tensor | None = None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_condition_frames: int = 5,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[int, int, dict], None]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature; never mutated)
        callback_on_clip_end: Callable[[Any, int, Any, dict], None] | None = None,
        max_sequence_length: int | None = None,
        kv_cache_clips: int | None = None,
        max_cached_clips: int | None = None,
        clip_selector: Any = None,
        kv_cache_config: Any = None,
        state_dir: str | os.PathLike | None = None,
        resume: bool = False,
        batch_cfg_branches: bool = True,
    ) -> Iterator[LongVideoClip]:
        r"""
        Streaming form of [`~LongVideoExtensionPipeline.__call__`]: an iterator that generates the video clip by clip
        and yields each finished [`LongVideoClip`] (its new frames, already decoded, and its info). Inputs are checked
        when this is called, before anything is generated. Nothing is kept between clips but the condition frames and
        the KV cache, so memory does not grow with the video's length; write each clip out as it comes (see
        [`~diffusers_longvid.video_io.StreamingVideoWriter`]) and a stopped job keeps what it finished.

        Takes the arguments of `__call__` (except `return_dict`), and `prompt` may also be any iterable of str that
        produces one prompt per clip as the video goes (e.g. an interactive or endless script); the KV storage plan
        then runs in streaming mode.

        With `state_dir`, the [`~diffusers_longvid.pipelines.longvideo.state.GenerationState`] is saved there after
        every finished clip (after `callback_on_clip_end`, before the clip is yielded). `resume=True` continues from
        it: pass the same arguments as the interrupted run (a `ValueError` names any that differ); only the clips
        not yet finished are generated and yielded, exactly as an uninterrupted run would generate them.
        """
        return self._start(LongVideoCall.from_arguments(locals()), include_finished=False)[1]

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] = None,
        negative_prompt: str | list[str] | None = None,
        num_clips: int | None = None,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | None = None,
        video: list[PIL.Image.Image] | np.ndarray | torch.Tensor | None = None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_condition_frames: int = 5,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[int, int, dict], None]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature; never mutated)
        callback_on_clip_end: Callable[[Any, int, Any, dict], None] | None = None,
        max_sequence_length: int | None = None,
        kv_cache_clips: int | None = None,
        max_cached_clips: int | None = None,
        clip_selector: Any = None,
        kv_cache_config: Any = None,
        state_dir: str | os.PathLike | None = None,
        resume: bool = False,
        batch_cfg_branches: bool = True,
    ) -> LongVideoPipelineOutput | tuple:
        r"""
        The call function to the pipeline for generation: a long video, clip by clip.

        Args:
            prompt (`str` or `list[str]`):
                **A list is a script, not a batch: one prompt per clip, in order.** A `str` is used for every clip
                (`num_clips` of them). To generate several videos of the same script, use `num_videos_per_prompt`.
            negative_prompt (`str` or `list[str]`, *optional*):
                The prompt to avoid, for all clips (`str`) or one per clip (`list`). Ignored without guidance
                (`guidance_scale <= 1`).
            num_clips (`int`, *optional*):
                Number of clips when `prompt` is a `str` (defaults to 1). Must be `None` or `len(prompt)` for a list.
            image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`, *optional*):
                Image-to-long-video: the image conditions the first clip and is (reconstructed as) its first frame.
                PIL images of any 8-bit mode are converted to RGB; arrays are `(H, W, 3)` (channels last) and tensors
                `(3, H, W)` (channels first), integer dtypes holding 0-255 and float dtypes 0-1 (see
                `diffusers_longvid.validation`).
            video (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`, *optional*):
                Video continuation: the video's last `num_condition_frames` frames condition the first clip and are
                reproduced as its first frames (drop `clip_frame_ranges[0][0] + num_condition_frames` frames to append
                the output to the input without repeats). Not together with `image`. Arrays are `(F, H, W, 3)`,
                tensors `(F, 3, H, W)`, with the value rules of `image` (a uint8 array from
                `diffusers_longvid.video_io.read_video` works as is).
            height (`int`, defaults to `480`):
                Height in pixels; a multiple of `vae_scale_factor_spatial * patch_size` (16 for Wan2.1).
            width (`int`, defaults to `832`):
                Width in pixels; same constraint.
            num_frames (`int`, defaults to `81`):
                Frames per clip, `4k + 1`.
            num_condition_frames (`int`, defaults to `5`):
                Frames of the previous clip that condition the next one (`1 + 4j`, fewer than `num_frames`). They are
                not repeated in the output: `N` clips give `num_frames + (N - 1) * (num_frames - num_condition_frames)`
                frames.
            num_inference_steps (`int`, defaults to `50`):
                Steps of the full schedule per clip. With a T-RFlow window, fewer are evaluated
                (`len(scheduler.timesteps)`).
            guidance_scale (`float`, defaults to `5.0`):
                Classifier-free guidance scale; guidance is on when `guidance_scale > 1`.
            num_videos_per_prompt (`int`, *optional*, defaults to 1):
                The batch size: videos generated for the same script.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                A [`torch.Generator`](https://pytorch.org/docs/stable/generated/torch.Generator.html) (or one per
                video) to make generation deterministic. Every clip draws its noise from it in order.
            latents (`torch.Tensor`, *optional*):
                Initial noise of the **first clip**, `(batch, 16, latent_frames, height / 8, width / 8)`; later clips
                draw theirs from `generator`.
            output_type (`str`, *optional*, defaults to `"np"`):
                `"np"` (float in [0, 1], `(batch, frames, H, W, 3)`), `"pt"` (`(batch, frames, 3, H, W)`), `"pil"` (a
                list per video of PIL images) or `"latent"` (the list of per-clip latents; see
                [`LongVideoPipelineOutput`]). Decoded frames are kept on the CPU, clip by clip.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`LongVideoPipelineOutput`] instead of the tuple
                `(frames, clip_frame_ranges, kv_plan)`.
            attention_kwargs (`dict`, *optional*):
                Passed to the transformer's attention processors.
            callback_on_step_end (`Callable`, `PipelineCallback`, `MultiPipelineCallbacks`, *optional*):
                Called at the end of each denoising step of every clip, as
                `callback_on_step_end(pipe, step, timestep, callback_kwargs)`; `pipe.current_clip_index` tells the
                clip. It returns a dict of the tensors it changes, or `None` to change nothing.
            callback_on_step_end_tensor_inputs (`list`, *optional*):
                Tensors passed in `callback_kwargs`, among `pipe._callback_tensor_inputs`.
            callback_on_clip_end (`Callable`, *optional*):
                Called when a clip is finished and decoded, as `callback_on_clip_end(pipe, clip_index,
                clip_frames_kept, info)`: `clip_frames_kept` are the frames the clip adds (in `output_type`), `info` a
                dict with its `prompt`, `frame_range`, `latent_offset`, `attends` and `seconds`.
            max_sequence_length (`int`, *optional*):
                Tokens per prompt for the text encoder (embeddings are zero-padded to it). Defaults to
                `default_max_sequence_length`: the tokenizer's `model_max_length`, at most 512 (Wan's 512).
            kv_cache_clips (`int`, *optional*):
                Overrides the pipeline's `kv_cache_clips` config for this call (`0` = no KV cache).
            max_cached_clips (`int`, *optional*):
                Overrides the pipeline's `max_cached_clips` config for this call.
            clip_selector (`ClipSelector`, *optional*):
                A selector from `diffusers_longvid.selection` for this call; defaults to the pipeline's.
            kv_cache_config (`CrossClipKVCacheConfig`, *optional*):
                Options of the cross-clip KV cache for this call (cached blocks, `record_mode`, offload, ...); defaults
                to the pipeline's.
            state_dir (`str` or `os.PathLike`, *optional*):
                Makes the run resumable: after every finished clip, the state needed to continue it (the next clip
                index, the condition frames, the generators' RNG states, the KV storage plan and the stored K/V, every
                clip's latents) is written atomically to this folder (see
                [`~diffusers_longvid.pipelines.longvideo.state.GenerationState`]). Without `generator`, the run makes
                its own CPU generator (seeded from torch's global RNG) so that its noise can be restored.
            resume (`bool`, *optional*, defaults to `False`):
                Continue the interrupted run saved in `state_dir` instead of starting a new one. Pass the same
                arguments as that run (a `ValueError` names any that differ); `generator` gets the saved RNG state.
                The remaining clips are generated exactly as in an uninterrupted run, and the returned video holds all
                clips: the finished ones are decoded from their saved latents.
            batch_cfg_branches (`bool`, *optional*, defaults to `True`):
                Run the cond and uncond branches of classifier-free guidance as one transformer forward of twice the
                batch (each half attends and records its own branch's history) instead of two forwards. The result
                equals the unbatched one to float rounding; it saves the fixed cost of a forward per step and holds
                both branches' activations at once. Applies when guidance is on and the prompt and negative prompt
                embeddings have the same shape; pass `False` to run the branches one after the other (less memory).

        Examples:

        Returns:
            [`LongVideoPipelineOutput`] or `tuple`:
                If `return_dict` is `True`, a [`LongVideoPipelineOutput`], otherwise the tuple
                `(frames, clip_frame_ranges, kv_plan)`.
        """
        call = LongVideoCall.from_arguments(locals())
        if prompt is not None and not isinstance(prompt, (str, list, tuple)):
            # (`generate_clips` also takes an iterator of prompts; a call returns one stitched video of known length)
            raise TypeError(
                f"`prompt` must be a str or a list of str (one per clip), got {type(prompt).__name__}; use "
                "`generate_clips` for prompts that arrive one at a time."
            )
        call, clips = self._start(call, include_finished=True)
        output = LongVideoPipelineOutput.from_clips(clips, call.output_type, call.batch_size, call.total_frames)
        if not return_dict:
            return (output.frames, output.clip_frame_ranges, output.kv_plan)
        return output

    def _model_input(self, latents: torch.Tensor, condition) -> torch.Tensor:
        # 36 channels: [latents | mask | condition latent]; 16 channels: the (replaced) latents themselves
        model_input = latents if self.conditioning_mode == "replacement" else condition.model_input(latents)
        return model_input.to(self.transformer.dtype)

    def _forward(
        self,
        memory,
        branches: tuple[str, ...],
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        embeds: list[torch.Tensor],
        attention_kwargs: dict[str, Any] | None,
        cache_name: str,
        **cache_kwargs,
    ) -> torch.Tensor:
        """One transformer forward of one CFG branch, or of `("cond", "uncond")` as one batch of `2B` (rows
        `[0, B)` cond). The branch is told both to diffusers' cache hooks and to the cross-clip memory; in a batched
        forward each half attends (and records) its own branch's history (`CrossClipKVCache.batched_branches`), so
        the result equals two forwards to float rounding."""
        with ExitStack() as stack:
            stack.enter_context(self.transformer.cache_context(cache_name, **cache_kwargs))
            if len(branches) > 1:
                cache = getattr(memory, "cache", None)
                if cache is not None:
                    stack.enter_context(cache.batched_branches(branches))
                hidden_states, timestep = torch.cat([hidden_states, hidden_states]), torch.cat([timestep, timestep])
            elif memory is not None:
                stack.enter_context(memory.branch(branches[0]))
            return self.transformer(
                hidden_states=hidden_states,
                timestep=timestep,
                encoder_hidden_states=torch.cat(embeds) if len(embeds) > 1 else embeds[0],
                attention_kwargs=attention_kwargs,
                return_dict=False,
            )[0]

    def _can_batch_cfg_branches(
        self, memory, prompt_embeds: torch.Tensor, negative_prompt_embeds: torch.Tensor | None
    ) -> bool:
        """Whether the CFG branches can run as one forward: guidance on, both embeddings of the same shape, and no
        memory or one whose cache serves both branches in one forward (`CrossClipKVCache.batched_branches`); a
        memory that only knows `branch(...)` gets one forward per branch."""
        if memory is not None and not hasattr(getattr(memory, "cache", None), "batched_branches"):
            return False
        same_shape = negative_prompt_embeds is not None and negative_prompt_embeds.shape == prompt_embeds.shape
        return self.do_classifier_free_guidance and same_shape

    def _cfg_forwards(
        self,
        memory,
        batched: bool,
        model_input: torch.Tensor,
        timestep: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        attention_kwargs: dict[str, Any] | None,
        suffix: str = "",
        **cache_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The cond and (with guidance) uncond predictions: one forward of batch `2B` when `batched`, else one
        forward per branch. `suffix` ends the names of diffusers' cache contexts (`"_record"` for recording)."""
        if batched:
            embeds = [prompt_embeds, negative_prompt_embeds]
            output = self._forward(
                memory, ("cond", "uncond"), model_input, timestep, embeds, attention_kwargs, "cond_uncond" + suffix,
                **cache_kwargs,
            )  # fmt: skip
            noise_cond, noise_uncond = output.chunk(2)
            return noise_cond, noise_uncond
        noise_cond = self._forward(
            memory, ("cond",), model_input, timestep, [prompt_embeds], attention_kwargs, "cond" + suffix,
            **cache_kwargs,
        )  # fmt: skip
        noise_uncond = None
        if self.do_classifier_free_guidance:
            noise_uncond = self._forward(
                memory, ("uncond",), model_input, timestep, [negative_prompt_embeds], attention_kwargs,
                "uncond" + suffix, **cache_kwargs,
            )  # fmt: skip
        return noise_cond, noise_uncond

    def _denoise_clip(
        self,
        call: LongVideoCall,
        latents: torch.Tensor,
        condition,
        replacement_noise: torch.Tensor | None,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        memory,
        rope_offset: int,
    ) -> torch.Tensor:
        """The denoising loop of one clip, then (clean mode) the forward that records its K/V. Returns its latents."""
        device = latents.device
        record_from_last_step = memory is not None and memory.record_from_last_step
        batched = call.batch_cfg_branches and self._can_batch_cfg_branches(
            memory, prompt_embeds, negative_prompt_embeds
        )

        # Prepare timesteps (T-RFlow's may stop before `num_inference_steps`)
        num_inference_steps = call.num_inference_steps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        self._num_timesteps = len(timesteps)
        # We set the index here to remove DtoH sync, helpful especially during compilation.
        self.scheduler.set_begin_index(0)
        sigmas = getattr(self.scheduler, "sigmas", None)

        with rope_frame_offset(self.transformer, rope_offset):
            with self.progress_bar(total=len(timesteps)) as progress_bar:
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue

                    self._current_timestep = t
                    sigma = (
                        float(sigmas[i])
                        if sigmas is not None
                        else float(t) / self.scheduler.config.num_train_timesteps
                    )
                    if replacement_noise is not None:
                        # replacement conditioning: known frames of x_sigma = (1 - sigma) c + sigma eps
                        latents = condition.replace_known(latents, sigma, replacement_noise)

                    latent_model_input = self._model_input(latents, condition)
                    timestep = t.expand(latents.shape[0])
                    cache_kwargs = {"step_index": i, "sigma": sigma, "num_inference_steps": self._num_timesteps}
                    last_step = i == len(timesteps) - 1
                    with memory.recording() if record_from_last_step and last_step else nullcontext():
                        noise_pred, noise_uncond = self._cfg_forwards(
                            memory, batched, latent_model_input, timestep, prompt_embeds, negative_prompt_embeds,
                            call.attention_kwargs, **cache_kwargs,
                        )  # fmt: skip
                        if noise_uncond is not None:
                            noise_pred = noise_uncond + call.guidance_scale * (noise_pred - noise_uncond)

                    # compute the previous noisy sample x_t -> x_t-1
                    latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

                    if call.callback_on_step_end is not None:
                        tensors = dict(
                            latents=latents, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds
                        )
                        callback_kwargs = {k: tensors[k] for k in call.callback_on_step_end_tensor_inputs}
                        callback_outputs = call.callback_on_step_end(self, i, t, callback_kwargs)
                        if callback_outputs is None:  # a callback that only observes changes nothing
                            callback_outputs = {}
                        elif not isinstance(callback_outputs, dict):
                            raise TypeError(
                                "`callback_on_step_end` must return a dict of the tensors it changes (or None), got "
                                f"{type(callback_outputs).__name__}."
                            )

                        latents = callback_outputs.pop("latents", latents)
                        prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                    if last_step or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                        progress_bar.update()

                    if XLA_AVAILABLE:
                        xm.mark_step()

            self._current_timestep = None
            # The fully known latent frames are exactly the condition's, in both modes: an extension model is not
            # trained to reproduce them (stage 1 excludes them from the loss), and they are what the clip's K/V
            # record and what clip 0 shows of a continued `video` / `image`.
            latents = condition.replace_known(latents, 0.0)

            # Record the finished clip's K/V: one forward of the clean clip at timestep 0 per CFG branch, skipped when
            # the storage plan will not keep this clip. Its own cache context keeps diffusers' cache hooks apart.
            stores = getattr(memory, "stores_current_clip", True)
            if memory is not None and not record_from_last_step and stores and not self.interrupt:
                clean_input = self._model_input(latents, condition)
                zero_timestep = torch.zeros(latents.shape[0], device=device, dtype=timesteps.dtype)
                with memory.recording():
                    self._cfg_forwards(
                        memory, batched, clean_input, zero_timestep, prompt_embeds, negative_prompt_embeds,
                        call.attention_kwargs, suffix="_record",
                    )  # fmt: skip
        return latents

    def _start(self, call: LongVideoCall, include_finished: bool) -> tuple[LongVideoCall, Iterator[LongVideoClip]]:
        """Run `_generate` to its first yield, the checked call, so that bad inputs (and a bad saved state) raise on
        the call itself, before the first clip is asked for; returns the checked call and the clip iterator."""
        clips = self._generate(call, include_finished)
        return next(clips), clips

    @torch.no_grad()
    def _generate(self, call: LongVideoCall, include_finished: bool) -> Iterator[LongVideoCall | LongVideoClip]:
        """The whole generation: yields the checked call (see `_start`), then the clips, the finished clips of a
        resumed run first when `include_finished`."""
        # 1. Check inputs. Raise error if not correct
        call = self.check_inputs(call, allow_prompt_iterator=True)

        # 2. Define call parameters: the frames conditioning the first clip, the resumable run and its generators
        first_condition = self.prepare_first_condition(
            call.image, call.video, call.height, call.width, call.num_condition_frames, call.batch_size
        )
        call, run = self._open_resumable_run(call, first_condition)
        yield call
        if include_finished and run is not None:  # the returned video holds the clips finished before an interruption
            yield from run.finished_clips(partial(self._clip_frames, output_type=call.output_type))

        self._guidance_scale = call.guidance_scale
        self._attention_kwargs = call.attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device
        vae_device = get_module_execution_device(self.vae)
        patch_t = self.transformer.config.patch_size[0]
        generators = call.generator if isinstance(call.generator, list) else [call.generator]
        prompt_source = iter(call.prompts if call.prompts is not None else call.prompt)

        # 3. The cross-clip memory and the start: clip 0 (KV storage planned for all prompts, or streaming), or the
        # clip where an interrupted run stopped (its memory, condition frames, RNG states and progress restored)
        memory = self._create_clip_memory(call)
        try:
            if run is not None:
                run.check_memory(memory)
            if run is not None and run.resumed is not None:
                position = run.restore(memory, generators, device, vae_device)
                prompt_source = run.remaining_prompts(call.prompts, prompt_source)
            else:
                if memory is not None:
                    memory.plan(list(call.prompts) if call.prompts is not None else None)
                position = GenerationState.initial(first_condition, run and run.settings, str(device))

            negative_cache: dict[str, torch.Tensor] = {}
            with self._clip_progress_bar(call.num_clips_known) as clip_bar:
                if position.num_clips_done:
                    clip_bar.update(position.num_clips_done)
                for clip_index, clip_prompt in enumerate(prompt_source, start=position.num_clips_done):
                    if not isinstance(clip_prompt, str):
                        raise TypeError(
                            f"`prompt` must yield str, got {type(clip_prompt).__name__} for clip {clip_index}."
                        )
                    start_time = time.perf_counter()
                    self._current_clip_index = clip_index

                    # 4. Encode this clip's prompt (the negative prompt only when it changes)
                    prompt_embeds, negative_prompt_embeds = self._encode_clip_prompt(
                        call, clip_index, clip_prompt, negative_cache, device
                    )

                    # 5. Condition: the last frames of the previous clip (or the given frames, for clip 0); initial
                    # noise (`latents` is the first clip's) and the fixed eps of replacement conditioning
                    condition, latents, replacement_noise = self._prepare_clip(
                        call, clip_index, position.condition_pixels, device, vae_device
                    )

                    # 6. Select and gather the history K/V for this clip
                    attends = list(memory.begin_clip(clip_index, clip_prompt)) if memory is not None else []

                    # 7. Denoise with this clip's RoPE temporal offset, then record its K/V
                    latents = self._denoise_clip(
                        call,
                        latents,
                        condition,
                        replacement_noise,
                        prompt_embeds,
                        negative_prompt_embeds,
                        memory=memory,
                        rope_offset=position.latent_offset // patch_t,
                    )

                    # 8. Store and evict K/V as planned
                    if memory is not None and not self.interrupt:
                        position.clip_plans.append(memory.end_clip(clip_index))
                    else:  # no KV cache, or an interrupted clip (not stored)
                        entry = ClipPlan(clip_index, clip_prompt, tuple(attends), tuple(attends), False, ())
                        position.clip_plans.append(entry)

                    # 9. Decode this clip (never the whole video), keep its last frames as the next condition
                    clip = self._finish_clip(call, clip_index, clip_prompt, latents, attends, position, start_time)
                    clip_bar.update()

                    # 10. The clip's callback, then its state (what the callback writes out is part of the clip)
                    if call.callback_on_clip_end is not None:
                        call.callback_on_clip_end(self, clip_index, clip.frames, clip.info)
                    if run is not None and not self.interrupt:
                        memory_state = memory.export_state() if memory is not None else None
                        run.save(position, clip, memory_state, generators)
                    yield clip
                    if self.interrupt:
                        break
        finally:
            if memory is not None:
                memory.close()
            disable_rope_offset(self.transformer)  # the stock rotary embedding is back, with or without a memory
            self._current_clip_index = None
            self._current_timestep = None
            # Offload all models
            self.maybe_free_model_hooks()

    def _open_resumable_run(
        self, call: LongVideoCall, first_condition: torch.Tensor | None
    ) -> tuple[LongVideoCall, ResumableRun | None]:
        """With `state_dir`: the run's saved state (checked against this call's settings), its generators and state
        writer. Returns the call with the run's generators."""
        if call.state_dir is None:
            return call, None
        run = ResumableRun(call.state_dir, call.resume)
        if getattr(self.scheduler.config, "stochastic_sampling", False):
            logger.warning(
                "The scheduler samples stochastically from torch's global RNG, which the generation state does "
                "not save: a resumed run will not reproduce the uninterrupted one."
            )
        call = replace(call, generator=run.generators(call.generator))
        selector = cache_config = None
        if call.kv_cache_clips > 0:
            selector, cache_config = self._resolve_memory_options(call.clip_selector, call.kv_cache_config, True)
        settings = ResumableRun.settings_of(call, self, first_condition, selector, cache_config)
        run.open(settings, str(self._execution_device))
        return call, run

    def _encode_clip_prompt(
        self,
        call: LongVideoCall,
        clip_index: int,
        prompt: str,
        negative_cache: dict[str, torch.Tensor],
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prompt embeddings of clip `clip_index` in the transformer's dtype; `negative_cache` holds the last
        negative prompt's embeddings, encoded again only when the negative prompt changes."""
        negative_prompt = call.negative_prompt_of(clip_index)
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            num_videos_per_prompt=call.batch_size,
            negative_prompt_embeds=negative_cache.get(negative_prompt),
            max_sequence_length=call.max_sequence_length,
            device=device,
        )
        transformer_dtype = self.transformer.dtype
        if negative_prompt_embeds is not None:
            negative_cache.clear()
            negative_cache[negative_prompt] = negative_prompt_embeds
            negative_prompt_embeds = negative_prompt_embeds.to(transformer_dtype)
        return prompt_embeds.to(transformer_dtype), negative_prompt_embeds

    def _prepare_clip(
        self,
        call: LongVideoCall,
        clip_index: int,
        condition_pixels: torch.Tensor | None,
        device: torch.device,
        vae_device: torch.device,
    ) -> tuple[Any, torch.Tensor, torch.Tensor | None]:
        """The condition of a clip (from `condition_pixels`, its known first frames), its initial noise and, in
        replacement mode, the fixed noise of its known latent frames."""
        replacement = self.conditioning_mode == "replacement"
        batch_size, z_dim = call.batch_size, self.vae.config.z_dim
        if condition_pixels is None:
            condition_pixels = torch.zeros(batch_size, 3, 0, call.height, call.width, device=vae_device)
        known, fill = list(range(condition_pixels.shape[2])), "zeros" if replacement else self.config.condition_fill
        condition = prepare_extension_condition(
            self.vae, condition_pixels, known, call.num_frames, fill=fill, device=device
        )
        first_latents = call.latents if clip_index == 0 else None
        latents = self.prepare_latents(
            batch_size, z_dim, call.height, call.width, call.num_frames, torch.float32, device, call.generator,
            first_latents,
        )  # fmt: skip
        replacement_noise = None
        if replacement and condition.known_latent_frames:
            shape = (batch_size, z_dim, len(condition.known_latent_frames), *latents.shape[3:])
            replacement_noise = randn_tensor(shape, generator=call.generator, device=device, dtype=torch.float32)
        return condition, latents, replacement_noise

    def _finish_clip(
        self,
        call: LongVideoCall,
        clip_index: int,
        prompt: str,
        latents: torch.Tensor,
        attends: list[int],
        position: GenerationState,
        start_time: float,
    ) -> LongVideoClip:
        """Decode a denoised clip into the frames it adds, keep its last frames as the next clip's condition and
        advance `position` past it."""
        num_known = 0 if position.condition_pixels is None else position.condition_pixels.shape[2]
        dropped = 0 if clip_index == 0 else num_known
        is_last = (call.num_clips_known is not None and clip_index == call.num_clips_known - 1) or self.interrupt
        if call.output_type == "latent" and is_last:
            frames = latents.cpu()
        else:
            decoded = self._decode_clip(latents)
            position.condition_pixels = decoded[:, :, -call.num_condition_frames :].to(torch.float32).clone()
            frames = self._clip_frames(latents, dropped, call.output_type, decoded=decoded)
            del decoded
        kept = call.num_frames - dropped
        clip = LongVideoClip(
            clip_index=clip_index,
            prompt=prompt,
            frames=frames,
            frame_range=(position.next_frame, position.next_frame + kept),
            latents=latents.cpu(),
            latent_offset=position.latent_offset,
            num_condition_frames=num_known,
            attends=attends,
            seconds=time.perf_counter() - start_time,
            kv_plan=[entry.to_dict() for entry in position.clip_plans],
        )
        scale_t = self.vae_scale_factor_temporal
        position.num_clips_done, position.next_frame = clip_index + 1, position.next_frame + kept
        position.latent_offset += num_latent_frames(call.num_frames, scale_t)
        position.latent_offset -= num_latent_frames(call.num_condition_frames, scale_t)
        return clip

    def _decode_clip(self, latents: torch.Tensor) -> torch.Tensor:
        """One clip's (normalised) latents -> its pixel video in `[-1, 1]`, `(batch, 3, frames, height, width)`."""
        latents = latents.to(get_module_execution_device(self.vae), dtype=self.vae.dtype)
        return self.vae.decode(denormalize_latents(self.vae, latents), return_dict=False)[0]

    def _clip_frames(
        self, latents: torch.Tensor, dropped: int, output_type: str, decoded: torch.Tensor | None = None
    ) -> Any:
        """The frames a clip adds to the video (its first `dropped` condition frames left out), in `output_type`;
        `decoded` are its decoded pixels when already at hand."""
        if output_type == "latent":
            return latents.cpu()
        if decoded is None:
            decoded = self._decode_clip(latents)
        frames = self.video_processor.postprocess_video(decoded[:, :, dropped:], output_type=output_type)
        return frames.cpu() if output_type == "pt" else frames

    def _clip_progress_bar(self, total: int | None):
        if total is not None:
            return self.progress_bar(total=total)
        config = dict(getattr(self, "_progress_bar_config", {}))
        return tqdm(total=None, **config)
