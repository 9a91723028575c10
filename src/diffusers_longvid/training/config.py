"""Training configuration: one dataclass per stage, exposed as CLI flags and/or a YAML/JSON file.

The dataclass is the single source of truth: every field becomes a `--flag` whose help text is the field's `help`
metadata, and a config file (`--config file.yaml|json`) sets values that explicit flags override
(dataclass defaults < `--config` file < flags). Values are checked in `__post_init__`, so a bad option fails with a
`ValueError` naming it before any data or model is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..validation import is_int


T = TypeVar("T")

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
MIXED_PRECISION = ("no", "fp16", "bf16")
REPORT_TO = ("tensorboard", "none")
CLIP_SELECTORS = ("prompt", "recent")


def _f(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - mirrors argparse
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


#: `CrossClipKVCacheConfig`'s bound on a pool window side (RoPE phasors of a window must span less than one turn).
_MAX_HISTORY_POOL = 6


def _check(condition: bool, name: str, requirement: str, value: Any) -> None:
    if not condition:
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"`{name}` ({flag}) must be {requirement}, got {value!r}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainConfig:
    """Options shared by both stages."""

    # ------------------------------------------------------------------ model and data
    output_dir: str = _f("runs/train", "Folder for checkpoints, logs, validation videos and the final weights.")
    pretrained_model: str | None = _f(
        None,
        "Diffusers pipeline folder or Hub id to start from: its `transformer` is trained, its `vae`, `text_encoder`, "
        "`tokenizer` and `scheduler` encode videos on the fly (--manifest), make validation videos and complete the "
        "final pipeline folder.",
    )
    transformer: str | None = _f(
        None,
        "Transformer folder (or a pipeline folder with `transformer/`) overriding `<pretrained_model>/transformer`.",
    )
    manifest: str | None = _f(
        None, "JSONL manifest of training videos (see docs/data.md); videos are decoded and VAE-encoded every step."
    )
    latent_cache: str | None = _f(
        None, "Folder written by `longvid cache-latents` (much faster than --manifest); its sizes override the flags."
    )
    extra_latent_caches: list[str] = _f(
        [],
        "More `cache-latents` folders read with --latent-cache as one dataset (e.g. a second world of videos); they "
        "must match its sizes, VAE and text encoder.",
    )
    height: int = _f(480, "Frame height in pixels, a multiple of 16 (with --manifest, and for validation videos).")
    width: int = _f(832, "Frame width in pixels, a multiple of 16 (with --manifest, and for validation videos).")
    fps: float = _f(16.0, "Frame rate the videos are resampled to (with --manifest), and of validation videos.")
    num_frames: int = _f(81, "Pixel frames per training clip, 4k+1 (with --manifest, and for validation videos).")
    max_sequence_length: int = _f(512, "Text tokens per prompt (zero-padded) when captions are encoded on the fly.")
    # ------------------------------------------------------------------ optimisation
    train_batch_size: int = _f(1, "Examples per process per micro-batch.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches accumulated into one optimiser step.")
    max_train_steps: int = _f(1000, "Total optimiser steps.")
    learning_rate: float = _f(1e-5, "Peak learning rate (AdamW).")
    lr_scheduler: str = _f(
        "constant_with_warmup", "Learning-rate schedule (diffusers.optimization).", choices=LR_SCHEDULERS
    )
    lr_warmup_steps: int = _f(0, "Warm-up optimiser steps of the learning-rate schedule.")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.999, "AdamW beta2.")
    adam_weight_decay: float = _f(0.0, "AdamW weight decay.")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables clipping).")
    mixed_precision: str | None = _f(
        None,
        "accelerate mixed precision (autocast; master weights stay float32). Unset: the `accelerate launch` config's "
        "value, else no.",
        choices=MIXED_PRECISION,
    )
    gradient_checkpointing: bool = _f(False, "Recompute transformer blocks in the backward pass to save memory.")
    use_ema: bool = _f(
        False, "Keep an exponential moving average of the trained weights; the final weights are the EMA."
    )
    ema_decay: float = _f(0.999, "EMA decay (diffusers `EMAModel`).")
    timestep_shift: float = _f(
        3.0, "Shift of the training noise levels: sigma = s*u / (1 + (s-1)*u), u uniform (Wan's flow shift)."
    )
    caption_dropout_prob: float = _f(
        0.0, "Probability of training an example on the empty caption (keeps the unconditional branch of CFG)."
    )
    novelty_loss_weight: float = _f(
        0.0,
        "Extra loss weight on latent positions that differ from the nearest known frame (a new or returning object), "
        "averaging this much over the generated frames: 0 is the plain loss; e.g. 4 puts about 5x the weight on "
        "what the condition frames do not show (`training.conditioning.novelty_weights`).",
    )
    seed: int = _f(0, "Seed of the data order, noise, noise levels and tasks (drawn per step, so a resume is exact).")
    # ------------------------------------------------------------------ checkpoints, logs, validation
    checkpointing_steps: int = _f(500, "Save a resumable checkpoint every N optimiser steps (0 disables).")
    checkpoints_total_limit: int = _f(3, "Keep at most this many checkpoints, oldest removed first (0 keeps all).")
    resume: str | None = _f(
        None, "Resume from a checkpoint folder, or `latest` (the newest in <output_dir>/checkpoints; none: start)."
    )
    save_pipeline: bool = _f(
        True,
        "Save the final weights as a complete `LongVideoExtensionPipeline` folder (needs --pretrained-model); "
        "otherwise only the trained part.",
    )
    validation_steps: int = _f(
        0, "Write a validation mp4 every N optimiser steps (0 disables; needs --pretrained-model)."
    )
    validation_prompts: list[str] = _f([], "Validation script: one prompt per clip of the validation video.")
    validation_num_inference_steps: int = _f(20, "Denoising steps per clip of validation videos.")
    validation_guidance_scale: float = _f(5.0, "Classifier-free guidance scale of validation videos.")
    logging_steps: int = _f(10, "Log loss and learning rate every N optimiser steps.")
    report_to: str = _f("tensorboard", "Tracker for the logs (written to <output_dir>/logs).", choices=REPORT_TO)
    # ------------------------------------------------------------------ runtime
    cpu: bool = _f(False, "Train on the CPU even if a GPU is present (gloo between processes started by torchrun).")
    dataloader_num_workers: int = _f(0, "DataLoader worker processes decoding videos.")
    overfit_batches: int = _f(
        0,
        "Debug: train on the first N micro-batches over and over, with the same noise, noise levels and tasks each "
        "time: the loss must fall towards 0 if model, data and loss are wired correctly (0: off).",
    )

    def __post_init__(self) -> None:
        for name in (
            "height",
            "width",
            "num_frames",
            "max_sequence_length",
            "train_batch_size",
            "gradient_accumulation_steps",
            "max_train_steps",
            "validation_num_inference_steps",
        ):
            _check(is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "an int >= 1", getattr(self, name))
        for name in (
            "lr_warmup_steps",
            "checkpointing_steps",
            "checkpoints_total_limit",
            "validation_steps",
            "logging_steps",
            "dataloader_num_workers",
            "overfit_batches",
            "seed",
        ):
            _check(is_int(getattr(self, name)) and getattr(self, name) >= 0, name, "an int >= 0", getattr(self, name))
        for name in ("learning_rate", "adam_epsilon", "fps", "timestep_shift"):
            value = getattr(self, name)
            _check(_is_number(value) and value > 0, name, "a number > 0", value)
        for name in ("adam_weight_decay", "max_grad_norm", "validation_guidance_scale", "novelty_loss_weight"):
            value = getattr(self, name)
            _check(_is_number(value) and value >= 0, name, "a number >= 0", value)
        for name in ("adam_beta1", "adam_beta2", "ema_decay", "caption_dropout_prob"):
            value = getattr(self, name)
            _check(_is_number(value) and 0 <= value < 1, name, "a number in [0, 1)", value)
        for name, accepted in (("lr_scheduler", LR_SCHEDULERS), ("report_to", REPORT_TO)):
            _check(getattr(self, name) in accepted, name, f"one of {list(accepted)}", getattr(self, name))
        _check(
            self.mixed_precision is None or self.mixed_precision in MIXED_PRECISION,
            "mixed_precision",
            f"one of {list(MIXED_PRECISION)} or unset",
            self.mixed_precision,
        )
        for name in ("height", "width"):
            _check(getattr(self, name) % 16 == 0, name, "a multiple of 16 (VAE x8, patch x2)", getattr(self, name))
        _check((self.num_frames - 1) % 4 == 0, "num_frames", "of the form 4k+1 (e.g. 49 or 81)", self.num_frames)
        _check(
            isinstance(self.validation_prompts, list)
            and all(isinstance(p, str) and p for p in self.validation_prompts),
            "validation_prompts",
            "a list of non-empty strings",
            self.validation_prompts,
        )


@dataclass
class ExtensionTrainConfig(TrainConfig):
    """Stage 1: full fine-tune of the 36-channel video extension model."""

    output_dir: str = _f("runs/extension", "Folder for checkpoints, logs, validation videos and the final weights.")
    no_condition_prob: float = _f(0.1, "Probability of the unconditional task (no known frames).")
    max_condition_frames: int = _f(
        9, "Largest number of known pixel frames per conditioned end (k = 1 + 4j up to it)."
    )
    task_weights: list[float] = _f(
        [1.0, 1.0, 1.0], "Relative weights of the first-k, last-k and first+last tasks among conditioned examples."
    )
    validation_num_condition_frames: int = _f(
        5, "Frames of each validation clip that condition the next one (1 + 4j, below --num-frames)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            _is_number(self.no_condition_prob) and 0 <= self.no_condition_prob <= 1,
            "no_condition_prob",
            "a number in [0, 1]",
            self.no_condition_prob,
        )
        _check(
            is_int(self.max_condition_frames) and self.max_condition_frames >= 1,
            "max_condition_frames",
            "an int >= 1",
            self.max_condition_frames,
        )
        _check(
            len(self.task_weights) == 3
            and all(_is_number(w) and w >= 0 for w in self.task_weights)
            and sum(self.task_weights) > 0,
            "task_weights",
            "three numbers >= 0 with a positive sum (first-k, last-k, first+last)",
            self.task_weights,
        )
        k = self.validation_num_condition_frames
        _check(
            is_int(k) and k >= 1 and (k - 1) % 4 == 0 and k < self.num_frames,
            "validation_num_condition_frames",
            f"1 + 4j and below `num_frames` ({self.num_frames})",
            k,
        )


@dataclass
class CausalLoRATrainConfig(TrainConfig):
    """Stage 2: LoRA on K/V of the cached blocks, trained with cross-clip history attention."""

    output_dir: str = _f("runs/causal_lora", "Folder for checkpoints, logs, validation videos and the LoRA weights.")
    learning_rate: float = _f(1e-4, "Peak learning rate (AdamW).")
    lora_rank: int = _f(32, "LoRA rank.")
    lora_alpha: float | None = _f(None, "LoRA alpha (default: the rank, i.e. scale 1).")
    kv_cache_clips: int = _f(5, "History clips attended by the target clip, chosen by the selector (the paper's 5).")
    cached_blocks: list[int] = _f([], "Blocks with the cross-clip cache and the LoRA (default: the latter half).")
    num_condition_frames: int = _f(
        5, "Pixel frames of the previous clip that condition each clip (1 + 4j); also the clips' overlap."
    )
    clip_selector: str = _f(
        "prompt", "History selector: `prompt` (sentence-embedding similarity) or `recent`.", choices=CLIP_SELECTORS
    )
    selector_model: str | None = _f(
        None, "Sentence-transformers model name or folder for `prompt` selection (default: offline all-MiniLM-L6-v2)."
    )
    history_grad: bool = _f(
        False, "Let gradients flow through the history K/V into the LoRA (costlier; default: history detached)."
    )
    clips_per_video: int = _f(6, "Consecutive clips per training example: the last is the target, the others history.")
    min_clips_per_video: int | None = _f(
        None,
        "Sliding examples: every clip from this many clips into a video on is a target once, with the up to "
        "`clips_per_video` - 1 clips before it as history (continuations, exits and comebacks alike). Unset: "
        "non-overlapping pieces of exactly `clips_per_video` clips, each targeting its last clip.",
    )

    history_pool: list[int] = _f(
        [1, 1, 1],
        "Compressed history: (t, h, w) window of patched tokens over which each history clip's K/V are averaged "
        "(`CrossClipKVCacheConfig.history_pool`; 1 1 1 = dense). A LoRA trained with a pool is meant for "
        "generation with the same pool.",
    )
    proportional_attention: bool = _f(
        True, "With `history_pool`: add log(tokens per window) to the logits of pooled keys (as at generation)."
    )
    history_keep_ratio: float = _f(
        1.0,
        "Compressed history by token selection: the share of each history clip's tokens kept, the most salient "
        "(`CrossClipKVCacheConfig.history_keep_ratio`; 1 = dense). Not combinable with `history_pool`.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            isinstance(self.history_pool, (list, tuple))
            and len(self.history_pool) == 3
            and all(is_int(v) and 1 <= v <= _MAX_HISTORY_POOL for v in self.history_pool),
            "history_pool",
            f"three ints in [1, {_MAX_HISTORY_POOL}] (t h w)",
            self.history_pool,
        )
        _check(
            isinstance(self.proportional_attention, bool),
            "proportional_attention",
            "a bool",
            self.proportional_attention,
        )
        _check(
            _is_number(self.history_keep_ratio) and 0 < self.history_keep_ratio <= 1,
            "history_keep_ratio",
            "a number in (0, 1]",
            self.history_keep_ratio,
        )
        _check(
            self.history_keep_ratio == 1 or list(self.history_pool) == [1, 1, 1],
            "history_keep_ratio",
            "1 when `history_pool` is set (choose one way of compressing history)",
            self.history_keep_ratio,
        )
        _check(is_int(self.lora_rank) and self.lora_rank >= 1, "lora_rank", "an int >= 1", self.lora_rank)
        _check(
            self.lora_alpha is None or (_is_number(self.lora_alpha) and self.lora_alpha > 0),
            "lora_alpha",
            "a number > 0 or unset",
            self.lora_alpha,
        )
        _check(
            is_int(self.kv_cache_clips) and self.kv_cache_clips >= 1,
            "kv_cache_clips",
            "an int >= 1",
            self.kv_cache_clips,
        )
        _check(
            all(is_int(b) for b in self.cached_blocks), "cached_blocks", "a list of block indices", self.cached_blocks
        )
        k = self.num_condition_frames
        _check(
            is_int(k) and k >= 1 and (k - 1) % 4 == 0 and k < self.num_frames,
            "num_condition_frames",
            f"1 + 4j and below `num_frames` ({self.num_frames})",
            k,
        )
        _check(
            self.clip_selector in CLIP_SELECTORS, "clip_selector", f"one of {list(CLIP_SELECTORS)}", self.clip_selector
        )
        _check(
            is_int(self.clips_per_video) and self.clips_per_video >= 2,
            "clips_per_video",
            "an int >= 2 (history + target)",
            self.clips_per_video,
        )
        _check(
            self.min_clips_per_video is None
            or (is_int(self.min_clips_per_video) and 2 <= self.min_clips_per_video <= self.clips_per_video),
            "min_clips_per_video",
            f"unset or an int in [2, `clips_per_video` = {self.clips_per_video}] (at least one history clip)",
            self.min_clips_per_video,
        )


def _base_type(tp: Any) -> Any:
    """`X` for `X | None`, else `tp`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Add `--config FILE` and one `--flag` per field of the dataclass `config_cls`, with the field's help text.

    Booleans get `--flag / --no-flag`, lists take several values (`--validation-prompts "a" "b"`). Defaults are not
    set on the namespace (`argparse.SUPPRESS`), so `config_from_args` can tell an explicit flag from a default.
    """
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML or JSON file of options (keys are the flag names, with - or _); explicit flags override it.",
    )
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f"{f.metadata.get('help', '')} (default: {default!r})",
        }
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(tp) is list:
            parser.add_argument(flag, nargs="*", type=typing.get_args(tp)[0], metavar="VALUE", **kwargs)
        else:
            parser.add_argument(flag, type=tp, metavar=f.name.upper() if "choices" not in kwargs else None, **kwargs)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (`.yaml`/`.yml`) or JSON (`.json`) mapping of option names to values (`-` and `_` both accepted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`--config` file {path} does not exist.")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        from ..utils import require

        data = require("yaml", "Reading a YAML training config").safe_load(text)
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"`--config` must be a .yaml, .yml or .json file, got {path.name}.")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"`--config` file {path} must hold a mapping of option names to values.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """A config-file value converted to the field's type (YAML reads `1e-4` as a string, `5` as an int)."""
    if value is None:
        return None
    if typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(name, typing.get_args(tp)[0], v) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` in the `--config` file must be true or false, got {value!r}.")
    if tp in (int, float) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            converted = tp(value)
        except ValueError:
            raise ValueError(f"`{name}` in the `--config` file must be a {tp.__name__}, got {value!r}.") from None
        if tp is int and isinstance(value, float) and converted != value:
            raise ValueError(f"`{name}` in the `--config` file must be an int, got {value!r}.")
        return converted
    return value


def config_from_args(config_cls: type[T], args: argparse.Namespace) -> T:
    """Build a config: dataclass defaults < `--config` file < explicit flags. Unknown file keys are an error."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    config_file = getattr(args, "config", None)
    if config_file:
        file_values = load_config_file(config_file)
        unknown = sorted(set(file_values) - names)
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} in `--config` {config_file}; accepted: {sorted(names)}.")
        hints = typing.get_type_hints(config_cls)
        values.update({k: _coerce(k, _base_type(hints[k]), v) for k, v in file_values.items()})
    values.update({k: v for k, v in vars(args).items() if k in names})
    return config_cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-serialisable dict (what `train_config.json` holds; a valid `--config` file)."""
    return dataclasses.asdict(config)
