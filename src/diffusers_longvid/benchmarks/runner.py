# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid bench`: per-clip cost of the long-video pipeline against its alternatives, measured in one run.

Every configuration ("run") generates the same long video clip by clip with `LongVideoExtensionPipeline`:

- `ours`: the cross-clip KV cache with `kv_cache_clips` selected history clips (paper: 5);
- `no_cache`: plain clip chaining (`kv_cache_clips=0`);
- `full_history`: every earlier clip attended (`kv_cache_clips = max_cached_clips = 10_000`), the naive alternative;
- `ours_sparse`: ours with every `history_frame_stride`-th latent frame of a history clip kept;
- `ours_trflow`: ours with the T-RFlow window instead of the Euler schedule, same `num_inference_steps`;
- `ours_compressed`: ours with compressed history (`CrossClipKVCacheConfig(history_pool=...)`, or
  `history_keep_ratio=...` with `--history-keep-ratio`);
- `ours_batched`: ours with the CFG branches as one forward of batch 2 (`batch_cfg_branches=True`, the pipeline's
  default); the other runs pass `batch_cfg_branches=False` (two forwards per step, as the results before it did);

plus diffusers' `SkyReelsV2DiffusionForcingPipeline` in long mode (`overlap_history`, `base_num_frames`, `ar_step`)
on a `SkyReelsV2Transformer3DModel` of the same size, for the same number of generated frames.

The machine this runs on may be shared and noisy, so the long-video runs advance **in lockstep**: each run lives in its
own worker process (so its memory is its own), and the parent lets one worker generate one clip at a time, rotating
through the runs clip by clip. A burst of load from elsewhere then hits every run at about the same clip index, and
ratios between runs at the same clip stay meaningful. `schedule="inline"` runs everything in the calling process
instead (for tests; RSS then is that process's).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from diffusers.utils import logging

from ..validation import is_int


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "BENCH_ATTENTION_TRANSFORMER",
    "BENCH_TINY_TRANSFORMER",
    "DEFAULT_PROMPTS",
    "BenchSettings",
    "LongVideoRun",
    "ModelCallMeter",
    "RunSpec",
    "SkyReelsRun",
    "build_pipeline",
    "current_rss_bytes",
    "default_runs",
    "peak_rss_bytes",
    "run_benchmark",
]

# The `--model tiny` transformer: bigger than the 2-layer test model so that attention is a visible part of a
# forward, small enough for 30 clips of several runs on 2 CPU cores. Same classes and layout as Wan2.1.
BENCH_TINY_TRANSFORMER: dict[str, Any] = {
    "num_layers": 4,
    "num_attention_heads": 4,
    "attention_head_dim": 32,
    "ffn_dim": 256,
}

# The `--model attention` transformer (issue 14): wider than `tiny` (4 heads x 64) with patch 1x1x1, so that at
# 128x128 and 33 frames a clip is 9 x 16 x 16 = 2,304 tokens. Self-attention is then ~70 % of a plain forward's
# FLOPs and the history attention of k = 5 about twice a plain forward, while the fixed cost of a forward on the CPU
# (~9 ms, fitted in docs/performance.md) is ~2 % of it: measured time ratios can be compared with the cost model's
# FLOP ratios. Same classes and layout as Wan2.1. Use with `BenchSettings(model="attention", height=128,
# width=128)`.
BENCH_ATTENTION_TRANSFORMER: dict[str, Any] = {
    "num_layers": 2,
    "num_attention_heads": 4,
    "attention_head_dim": 64,
    "ffn_dim": 512,
    "patch_size": (1, 1, 1),
}

# A script that returns to earlier scenes, so prompt-similarity selection has something to find.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "A red fox trots through fresh snow in a birch forest, morning light.",
    "The fox stops and listens, snow falling softly around it.",
    "A frozen river winds between the birches under a pale sky.",
    "The fox pounces into a snowdrift and comes up with snow on its nose.",
    "Wind blows powder snow off the branches of the birches.",
    "The fox curls up at the foot of a birch tree and closes its eyes.",
)

SCHEDULES = ("interleaved", "sequential", "inline")
SELECTORS = ("recent", "prompt")
RUN_KINDS = ("longvideo", "skyreels")
SCHEDULER_KINDS = ("euler", "trflow")


def _check_keep_ratio(ratio: Any, pool: Sequence[int] = (1, 1, 1)) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"`history_keep_ratio` must be a number in (0, 1], got {ratio!r}.")
    if ratio != 1 and tuple(pool) != (1, 1, 1):
        raise ValueError("`history_keep_ratio` cannot be combined with `history_pool`: choose one compression.")


@dataclass
class RunSpec:
    r"""
    One configuration of the benchmark.

    Args:
        name (`str`): Unique name (a table row, a plot line, a JSON key).
        kind (`str`, *optional*, defaults to `"longvideo"`):
            `"longvideo"` (our pipeline, clip by clip) or `"skyreels"` (diffusers' diffusion-forcing pipeline).
        kv_cache_clips (`int`, *optional*, defaults to 0): History clips attended (0 = plain chaining).
        max_cached_clips (`int`, *optional*): Clips held at most; defaults to `kv_cache_clips`.
        history_frame_stride (`int`, *optional*, defaults to 1): Keep every n-th latent frame of a history clip.
        scheduler (`str`, *optional*, defaults to `"euler"`):
            `"euler"` (T-RFlow with the window `[0, 1]`, i.e. Euler) or `"trflow"` (`tau_low`/`tau_high` of the
            settings).
        ar_step (`int`, *optional*, defaults to 0): SkyReels only: 0 = synchronous, > 0 = asynchronous lag.
        causal_block_size (`int`, *optional*, defaults to 1): SkyReels only: latent frames per causal block.
        label (`str`, *optional*): Human-readable description for the report.
        history_pool (`Sequence[int]`, *optional*, defaults to `(1, 1, 1)`):
            Compressed history: `CrossClipKVCacheConfig(history_pool=...)` (`(1, 1, 1)` = dense).
        batch_cfg (`bool`, *optional*, defaults to `False`): The pipeline's `batch_cfg_branches` (cond and uncond in
            one forward). `False` keeps the runs comparable with results written before the option existed.
        history_keep_ratio (`float`, *optional*, defaults to `1.0`):
            Compressed history by token selection: `CrossClipKVCacheConfig(history_keep_ratio=...)` (`1.0` = dense).
    """

    name: str
    kind: str = "longvideo"
    kv_cache_clips: int = 0
    max_cached_clips: int | None = None
    history_frame_stride: int = 1
    scheduler: str = "euler"
    ar_step: int = 0
    causal_block_size: int = 1
    label: str = ""
    history_pool: Sequence[int] = (1, 1, 1)
    batch_cfg: bool = False
    history_keep_ratio: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty str, got {self.name!r}.")
        if self.kind not in RUN_KINDS:
            raise ValueError(f"`kind` must be one of {list(RUN_KINDS)}, got {self.kind!r}.")
        if self.scheduler not in SCHEDULER_KINDS:
            raise ValueError(f"`scheduler` must be one of {list(SCHEDULER_KINDS)}, got {self.scheduler!r}.")
        for name in ("kv_cache_clips", "ar_step"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ValueError(f"`{name}` must be an int >= 0, got {value!r}.")
        for name in ("history_frame_stride", "causal_block_size"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
        if self.max_cached_clips is not None and (not is_int(self.max_cached_clips) or self.max_cached_clips < 1):
            raise ValueError(f"`max_cached_clips` must be None or an int >= 1, got {self.max_cached_clips!r}.")
        pool = tuple(self.history_pool)
        if len(pool) != 3 or not all(is_int(p) and p >= 1 for p in pool):
            raise ValueError(f"`history_pool` must be three ints >= 1, got {self.history_pool!r}.")
        self.history_pool = pool
        if not isinstance(self.batch_cfg, bool):
            raise ValueError(f"`batch_cfg` must be a bool, got {self.batch_cfg!r}.")
        _check_keep_ratio(self.history_keep_ratio, pool)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["history_pool"] = list(self.history_pool)
        return data


@dataclass
class BenchSettings:
    r"""
    Settings shared by every run of one benchmark.

    Args:
        model (`str`, *optional*, defaults to `"tiny"`):
            `"tiny"` (random components of `diffusers_longvid.testing`, transformer `BENCH_TINY_TRANSFORMER`, 36 input
            channels), `"attention"` (the same with `BENCH_ATTENTION_TRANSFORMER`, where attention FLOPs dominate),
            `"toy"` (the built-in toy preset) or a local pipeline folder.
        num_clips (`int`, *optional*, defaults to 30): Clips per long-video run.
        height (`int`, *optional*, defaults to 64), width (`int`, *optional*, defaults to 64): Frame size in pixels.
        num_frames (`int`, *optional*, defaults to 33): Frames per clip (`4k + 1`).
        num_condition_frames (`int`, *optional*, defaults to 5): Frames of the previous clip conditioning the next.
        num_inference_steps (`int`, *optional*, defaults to 8): Steps of the schedule (the same for every run).
        guidance_scale (`float`, *optional*, defaults to 5.0): CFG scale (two forwards per step when > 1).
        kv_cache_clips (`int`, *optional*, defaults to 5): History clips of `ours` (the paper's 5).
        full_history_clips (`int`, *optional*, defaults to 10000): `kv_cache_clips` of `full_history`.
        history_frame_stride (`int`, *optional*, defaults to 2): Frame stride of `ours_sparse`.
        selector (`str`, *optional*, defaults to `"recent"`):
            `"recent"` (`RecentSelector`) or `"prompt"` (`PromptSimilaritySelector`, offline all-MiniLM-L6-v2).
        tau_low (`float`, *optional*, defaults to 0.3), tau_high (`float`, *optional*, defaults to 0.7):
            The T-RFlow window of `ours_trflow`.
        skyreels_ar_steps (`Sequence[int]`, *optional*, defaults to `(0, 2)`):
            One SkyReels-V2 run per value (0 = synchronous diffusion forcing). Empty: no SkyReels run.
        skyreels_addnoise_condition (`float`, *optional*, defaults to 20.0): SkyReels' recommended long-video value.
        max_sequence_length (`int`, *optional*, defaults to 16): Text tokens per prompt.
        prompts (`Sequence[str]`, *optional*): One prompt per clip; defaults to `DEFAULT_PROMPTS` cycled.
        runs (`Sequence[str]`, *optional*): Names of the runs to do (from `default_runs`); defaults to all.
        schedule (`str`, *optional*, defaults to `"interleaved"`):
            `"interleaved"` (worker per run, clips in lockstep), `"sequential"` (worker per run, one run after the
            other; for models too big to hold several copies) or `"inline"` (no worker processes).
        warmup_clips (`int`, *optional*): Clips excluded from steady-state figures; defaults to `kv_cache_clips`
            (the clips while the cache fills).
        window (`int`, *optional*, defaults to 5): Clips averaged at the start and the end for the constancy check.
        seed (`int`, *optional*, defaults to 0): Seed of every run's generator.
        device (`str`, *optional*, defaults to `"cpu"`): Torch device of the pipelines.
        dtype (`str`, *optional*, defaults to `"float32"`): `"float32"`, `"bfloat16"` or `"float16"` (transformer).
        num_threads (`int`, *optional*, defaults to 1): `torch.set_num_threads` in every worker (CPU).
        history_pool (`Sequence[int]`, *optional*, defaults to `(2, 2, 2)`): `history_pool` of `ours_compressed`.
        history_keep_ratio (`float`, *optional*, defaults to `1.0`): Below 1, `ours_compressed` compresses by token
            selection (`CrossClipKVCacheConfig(history_keep_ratio=...)`) instead of `history_pool`.
        constant_cost_tolerance (`float`, *optional*, defaults to 1.15):
            Target of the constant-cost checks (last / first window per clip time); issue 14 asks 1.05 at 100 clips.
        prediction_tolerance (`float`, *optional*, defaults to 0.15):
            Relative gap allowed between a measured transformer-time ratio over plain chaining and the cost model's
            FLOP ratio (the agreement check).
    """

    model: str = "tiny"
    num_clips: int = 30
    height: int = 64
    width: int = 64
    num_frames: int = 33
    num_condition_frames: int = 5
    num_inference_steps: int = 8
    guidance_scale: float = 5.0
    kv_cache_clips: int = 5
    full_history_clips: int = 10_000
    history_frame_stride: int = 2
    selector: str = "recent"
    tau_low: float = 0.3
    tau_high: float = 0.7
    skyreels_ar_steps: Sequence[int] = (0, 2)
    skyreels_addnoise_condition: float = 20.0
    max_sequence_length: int = 16
    prompts: Sequence[str] | None = None
    runs: Sequence[str] | None = None
    schedule: str = "interleaved"
    warmup_clips: int | None = None
    window: int = 5
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    num_threads: int = 1
    history_pool: Sequence[int] = (2, 2, 2)
    history_keep_ratio: float = 1.0
    constant_cost_tolerance: float = 1.15
    prediction_tolerance: float = 0.15

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"`model` must be 'tiny', 'toy' or a pipeline folder, got {self.model!r}.")
        for name in (
            "num_clips",
            "height",
            "width",
            "num_frames",
            "num_condition_frames",
            "num_inference_steps",
            "max_sequence_length",
            "window",
            "num_threads",
            "full_history_clips",
            "history_frame_stride",
        ):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        if not is_int(self.kv_cache_clips) or self.kv_cache_clips < 1:
            raise ValueError(f"`kv_cache_clips` must be an int >= 1 (the `ours` run), got {self.kv_cache_clips!r}.")
        if self.selector not in SELECTORS:
            raise ValueError(f"`selector` must be one of {list(SELECTORS)}, got {self.selector!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {list(SCHEDULES)}, got {self.schedule!r}.")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"`dtype` must be one of ['float32', 'bfloat16', 'float16'], got {self.dtype!r}.")
        if not 0.0 <= self.tau_low < self.tau_high <= 1.0:
            raise ValueError(f"Need 0 <= `tau_low` < `tau_high` <= 1, got {self.tau_low} and {self.tau_high}.")
        self.history_pool = tuple(self.history_pool)
        if len(self.history_pool) != 3 or not all(is_int(p) and p >= 1 for p in self.history_pool):
            raise ValueError(f"`history_pool` must be three ints >= 1, got {list(self.history_pool)!r}.")
        _check_keep_ratio(self.history_keep_ratio)
        for name in ("constant_cost_tolerance", "prediction_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` must be a positive number, got {value!r}.")
        self.skyreels_ar_steps = tuple(self.skyreels_ar_steps)
        if not all(is_int(a) and a >= 0 for a in self.skyreels_ar_steps):
            raise ValueError(f"`skyreels_ar_steps` must be ints >= 0, got {list(self.skyreels_ar_steps)!r}.")
        if self.prompts is not None:
            self.prompts = tuple(self.prompts)
            if not self.prompts or not all(isinstance(p, str) and p for p in self.prompts):
                raise ValueError("`prompts` must be a non-empty sequence of non-empty str.")
        if self.warmup_clips is not None and (not is_int(self.warmup_clips) or self.warmup_clips < 0):
            raise ValueError(f"`warmup_clips` must be None or an int >= 0, got {self.warmup_clips!r}.")
        if self.num_clips < 2:
            raise ValueError(f"`num_clips` must be >= 2 (history needs an earlier clip), got {self.num_clips}.")
        if self.runs is not None:
            self.runs = tuple(self.runs)
            known = [spec.name for spec in _all_runs(self)]
            unknown = [r for r in self.runs if r not in known]
            if unknown or not self.runs:
                raise ValueError(f"`runs` must name runs among {known}, got {list(self.runs)!r}.")

    @property
    def resolved_warmup_clips(self) -> int:
        return self.kv_cache_clips if self.warmup_clips is None else self.warmup_clips

    @property
    def clip_prompts(self) -> list[str]:
        prompts = self.prompts or DEFAULT_PROMPTS
        return [prompts[i % len(prompts)] for i in range(self.num_clips)]

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("skyreels_ar_steps", "prompts", "runs", "history_pool"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchSettings:
        return cls(**data)


# Runs done only when `settings.runs` names them (issue 14's studies; the default set stays that of issue 7).
OPT_IN_RUNS: tuple[str, ...] = ("ours_compressed", "ours_batched")


def default_runs(settings: BenchSettings) -> list[RunSpec]:
    """The runs of a benchmark, in report order: those named in `settings.runs`, or all but `OPT_IN_RUNS`."""
    runs = _all_runs(settings)
    if settings.runs is None:
        return [r for r in runs if r.name not in OPT_IN_RUNS]
    return [r for r in runs if r.name in settings.runs]


def _all_runs(settings: BenchSettings) -> list[RunSpec]:
    k = settings.kv_cache_clips
    runs = [
        RunSpec("ours", kv_cache_clips=k, label=f"ours, k = {k} ({settings.selector} selector), Euler"),
        RunSpec("no_cache", kv_cache_clips=0, label="no cache: plain clip chaining"),
        RunSpec(
            "full_history",
            kv_cache_clips=settings.full_history_clips,
            max_cached_clips=settings.full_history_clips,
            label="full history: every earlier clip attended",
        ),
        RunSpec(
            "ours_sparse",
            kv_cache_clips=k,
            history_frame_stride=settings.history_frame_stride,
            label=f"ours, k = {k}, history_frame_stride = {settings.history_frame_stride}",
        ),
        RunSpec(
            "ours_trflow",
            kv_cache_clips=k,
            scheduler="trflow",
            label=f"ours, k = {k}, T-RFlow [{settings.tau_low}, {settings.tau_high}]",
        ),
        RunSpec(
            "ours_compressed",
            kv_cache_clips=k,
            history_pool=settings.history_pool,
            label=f"ours, k = {k}, compressed history_pool = {tuple(settings.history_pool)}",
        )
        if settings.history_keep_ratio == 1
        else RunSpec(
            "ours_compressed",
            kv_cache_clips=k,
            history_keep_ratio=settings.history_keep_ratio,
            label=f"ours, k = {k}, compressed history_keep_ratio = {settings.history_keep_ratio:g}",
        ),
        RunSpec(
            "ours_batched",
            kv_cache_clips=k,
            batch_cfg=True,
            label=f"ours, k = {k}, CFG branches batched (one forward of batch 2)",
        ),
    ]
    for ar_step in settings.skyreels_ar_steps:
        mode = "synchronous" if ar_step == 0 else f"asynchronous, ar_step = {ar_step}"
        runs.append(
            RunSpec(f"skyreels_ar{ar_step}", kind="skyreels", ar_step=ar_step, label=f"SkyReels-V2 DF, {mode}")
        )
    return runs


# ---------------------------------------------------------------------------------------------------- measurement
def current_rss_bytes() -> int | None:
    """Resident set size of this process now (psutil, else `/proc/self/statm`), or `None` where unavailable."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (`getrusage` max RSS; monotone)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


class ModelCallMeter:
    r"""
    Counts and times the forwards of a module with a forward pre-hook and a forward hook.

    `calls`, `seconds` (wall clock) and `cpu_seconds` (this process's CPU time, `time.process_time`) accumulate until
    `reset()`. On a shared CPU the CPU time hardly depends on what else runs, unlike the wall clock.
    `on_forward_end`, if given, runs after every forward (for example to sample the KV cache's working bytes while
    they exist).

    Args:
        module (`torch.nn.Module`): The transformer.
        synchronize (`Callable[[], None]`, *optional*): Called before reading the clock (e.g.
            `torch.cuda.synchronize`), so device time is not hidden by asynchronous launches.
    """

    def __init__(self, module: Any, synchronize: Callable[[], None] | None = None) -> None:
        self.calls = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.on_forward_end: Callable[[Any], None] | None = None
        self._synchronize = synchronize
        self._start: tuple[float, float] | None = None
        self._handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post, always_call=True),
        ]

    def _clock(self) -> float:
        if self._synchronize is not None:
            self._synchronize()
        return time.perf_counter()

    def _pre(self, module: Any, args: Any) -> None:
        self._start = (self._clock(), time.process_time())

    def _post(self, module: Any, args: Any, output: Any) -> None:
        if self._start is not None:
            wall, cpu = self._clock(), time.process_time()
            self.seconds += wall - self._start[0]
            self.cpu_seconds += cpu - self._start[1]
            self._start = None
        self.calls += 1
        if self.on_forward_end is not None:
            self.on_forward_end(module)

    def reset(self) -> None:
        self.calls, self.seconds, self.cpu_seconds = 0, 0.0, 0.0

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _synchronizer(device: str) -> Callable[[], None] | None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.synchronize
    return None


def build_pipeline(settings: BenchSettings):
    """The `LongVideoExtensionPipeline` of `settings.model` (weights as loaded, transformer in `settings.dtype`)."""
    import torch

    from ..pipelines import LongVideoExtensionPipeline

    if settings.model in ("tiny", "attention"):
        from ..testing import get_dummy_components

        transformer = BENCH_TINY_TRANSFORMER if settings.model == "tiny" else BENCH_ATTENTION_TRANSFORMER
        pipe = LongVideoExtensionPipeline(**get_dummy_components(in_channels=36, **transformer), kv_cache_clips=0)
    else:
        path = settings.model
        if path == "toy":
            from ..presets import get_preset_path

            path = get_preset_path("toy")
        pipe = LongVideoExtensionPipeline.from_pretrained(path, kv_cache_clips=0)
    pipe.transformer.to(dtype=_torch_dtype(settings.dtype))
    pipe.to(settings.device)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(settings.seed)
    return pipe


def _make_scheduler(pipe, settings: BenchSettings, kind: str):
    from ..schedulers import TRFlowScheduler

    tau = (0.0, 1.0) if kind == "euler" else (settings.tau_low, settings.tau_high)
    return TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=tau[0], tau_high=tau[1])


def _make_selector(settings: BenchSettings):
    from ..selection import PromptSimilaritySelector, RecentSelector

    return RecentSelector() if settings.selector == "recent" else PromptSimilaritySelector()


def _model_info(pipe) -> dict[str, Any]:
    transformer = pipe.transformer
    return {
        "transformer_class": type(transformer).__name__,
        "transformer_config": {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")},
        "transformer_parameters": int(sum(p.numel() for p in transformer.parameters())),
        "vae_scale_factor_spatial": int(pipe.vae_scale_factor_spatial),
        "vae_scale_factor_temporal": int(pipe.vae_scale_factor_temporal),
        "transformer_dtype": str(transformer.dtype).replace("torch.", ""),
    }


class LongVideoRun:
    r"""
    One long-video configuration: builds its pipeline, then generates one clip per `next_clip()` call and returns
    what was measured for it.

    Args:
        settings (`BenchSettings`): Shared settings.
        spec (`RunSpec`): A `"longvideo"` run.
        pipe (`LongVideoExtensionPipeline`, *optional*): A pipeline of `settings.model` to use instead of building
            one (runs one after the other can share it: each run's KV memory is closed when the run closes).
    """

    def __init__(self, settings: BenchSettings, spec: RunSpec, pipe: Any = None) -> None:
        import torch

        from ..attention import CrossClipKVCacheConfig, get_cross_clip_kv_cache

        if spec.kind != "longvideo":
            raise ValueError(f"`spec.kind` must be 'longvideo', got {spec.kind!r}.")
        self.settings, self.spec = settings, spec
        self.pipe = build_pipeline(settings) if pipe is None else pipe
        self.pipe.scheduler = _make_scheduler(self.pipe, settings, spec.scheduler)
        self.meter = ModelCallMeter(self.pipe.transformer, _synchronizer(settings.device))
        self._get_cache = get_cross_clip_kv_cache
        self._working_peak = 0
        self.meter.on_forward_end = self._sample_working_bytes
        kwargs: dict[str, Any] = {"kv_cache_clips": spec.kv_cache_clips}
        if spec.kv_cache_clips > 0:
            kwargs.update(
                max_cached_clips=spec.max_cached_clips,
                clip_selector=_make_selector(settings),
                kv_cache_config=CrossClipKVCacheConfig(
                    history_frame_stride=spec.history_frame_stride,
                    history_pool=spec.history_pool,
                    history_keep_ratio=spec.history_keep_ratio,
                ),
            )
        self._clips: Iterator[Any] = self.pipe.generate_clips(
            settings.clip_prompts,
            height=settings.height,
            width=settings.width,
            num_frames=settings.num_frames,
            num_condition_frames=settings.num_condition_frames,
            num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale,
            max_sequence_length=settings.max_sequence_length,
            generator=torch.Generator(device="cpu").manual_seed(settings.seed),
            output_type="np",  # every clip decoded, as a user who wants frames runs it
            batch_cfg_branches=spec.batch_cfg,
            **kwargs,
        )
        self.pipe.scheduler.set_timesteps(settings.num_inference_steps)
        self.info = {
            **_model_info(self.pipe),
            "evaluated_steps": len(self.pipe.scheduler.timesteps),
            "scheduler": type(self.pipe.scheduler).__name__,
            "scheduler_window": [self.pipe.scheduler.config.tau_low, self.pipe.scheduler.config.tau_high],
            "batch_cfg": spec.batch_cfg,
        }

    def _sample_working_bytes(self, module: Any) -> None:
        cache = self._get_cache(module)
        if cache is not None:
            self._working_peak = max(self._working_peak, cache.working_nbytes())

    def next_clip(self) -> dict[str, Any]:
        """Generate the next clip; returns its measurements (JSON-ready)."""
        self.meter.reset()
        self._working_peak = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        clip = next(self._clips)
        synchronize = _synchronizer(self.settings.device)
        if synchronize is not None:
            synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        cache = self._get_cache(self.pipe.transformer)
        plan_entry = clip.kv_plan[-1] if clip.kv_plan else {}
        return {
            "clip": clip.clip_index,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "transformer_seconds": self.meter.seconds,
            "transformer_cpu_seconds": self.meter.cpu_seconds,
            "model_calls": self.meter.calls,
            "attends": list(clip.attends),
            "num_attended": len(clip.attends),
            "stored": bool(plan_entry.get("stored", False)),
            "new_frames": clip.frame_range[1] - clip.frame_range[0],
            "kv_bytes": 0 if cache is None else cache.nbytes(),
            "kv_stored_clips": 0 if cache is None else len(cache.stored_clips()),
            "kv_working_bytes_peak": self._working_peak,
            "rss_bytes": current_rss_bytes(),
            "peak_rss_bytes": max(peak_rss_bytes(), current_rss_bytes() or 0),
        }

    def close(self) -> None:
        close = getattr(self._clips, "close", None)
        if close is not None:
            close()  # runs the pipeline's `finally`: closes the KV memory
        self.meter.remove()


def _skyreels_transformer(config: dict[str, Any], window_latent_frames: int, dtype):
    """A random `SkyReelsV2Transformer3DModel` with the sizes of a Wan transformer config (16 input channels)."""
    import torch
    from diffusers import SkyReelsV2Transformer3DModel

    torch.manual_seed(0)
    model = SkyReelsV2Transformer3DModel(
        patch_size=tuple(config["patch_size"]),
        num_attention_heads=config["num_attention_heads"],
        attention_head_dim=config["attention_head_dim"],
        in_channels=config.get("out_channels") or 16,
        out_channels=config.get("out_channels") or 16,
        text_dim=config["text_dim"],
        freq_dim=config["freq_dim"],
        ffn_dim=config["ffn_dim"],
        num_layers=config["num_layers"],
        cross_attn_norm=config["cross_attn_norm"],
        qk_norm=config["qk_norm"],
        eps=config.get("eps", 1e-6),
        rope_max_seq_len=max(int(config.get("rope_max_seq_len", 1024)), window_latent_frames),
        inject_sample_info=False,
        num_frame_per_block=1,
    )
    return model.to(dtype=dtype).eval()


class SkyReelsRun:
    r"""
    diffusers' `SkyReelsV2DiffusionForcingPipeline` in long mode on a random `SkyReelsV2Transformer3DModel` of the
    size of our transformer, with our pipeline's VAE, text encoder and tokenizer: `base_num_frames = num_frames`,
    `overlap_history = num_condition_frames`, so every window adds as many frames as one of our clips.

    Its scheduler is `UniPCMultistepScheduler` with flow sigmas and our schedule's shift (SkyReels' own default;
    diffusers' flow-match Euler scheduler refuses the integer timesteps of its step matrix). One model call per CFG
    branch per row of its step matrix, as ours has per step.
    """

    def __init__(self, settings: BenchSettings, spec: RunSpec, ours: Any = None) -> None:
        from diffusers import SkyReelsV2DiffusionForcingPipeline, UniPCMultistepScheduler

        if spec.kind != "skyreels":
            raise ValueError(f"`spec.kind` must be 'skyreels', got {spec.kind!r}.")
        self.settings, self.spec = settings, spec
        ours = build_pipeline(settings) if ours is None else ours
        config = dict(ours.transformer.config)
        window = (settings.num_frames - 1) // ours.vae_scale_factor_temporal + 1
        transformer = _skyreels_transformer(config, window, ours.transformer.dtype).to(settings.device)
        shift = float(ours.scheduler.config.get("shift", 5.0))
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)
        self.pipe = SkyReelsV2DiffusionForcingPipeline(
            tokenizer=ours.tokenizer,
            text_encoder=ours.text_encoder,
            transformer=transformer,
            vae=ours.vae,
            scheduler=scheduler,
        )
        self.pipe.set_progress_bar_config(disable=True)
        del ours
        self.meter = ModelCallMeter(transformer, _synchronizer(settings.device))
        advance = settings.num_frames - settings.num_condition_frames
        self.total_frames = settings.num_frames + (settings.num_clips - 1) * advance
        self.info = {
            "transformer_class": type(transformer).__name__,
            "transformer_parameters": int(sum(p.numel() for p in transformer.parameters())),
            "scheduler": type(scheduler).__name__,
            "num_frames": self.total_frames,
            "base_num_frames": settings.num_frames,
            "overlap_history": settings.num_condition_frames,
            "ar_step": spec.ar_step,
            "causal_block_size": spec.causal_block_size,
            "addnoise_condition": settings.skyreels_addnoise_condition,
        }

    def run(self) -> dict[str, Any]:
        """Generate the whole video (one call); returns its measurements."""
        import torch

        settings = self.settings
        start, cpu_start = time.perf_counter(), time.process_time()
        output = self.pipe(
            prompt=settings.clip_prompts[0],  # SkyReels' long mode takes one prompt for the whole video
            num_frames=self.total_frames,
            base_num_frames=settings.num_frames,
            overlap_history=settings.num_condition_frames,
            ar_step=self.spec.ar_step,
            causal_block_size=self.spec.causal_block_size,
            addnoise_condition=settings.skyreels_addnoise_condition,
            height=settings.height,
            width=settings.width,
            num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale,
            max_sequence_length=settings.max_sequence_length,
            generator=torch.Generator(device="cpu").manual_seed(settings.seed),
            output_type="np",
        )
        synchronize = _synchronizer(settings.device)
        if synchronize is not None:
            synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        frames = int(output.frames.shape[1])
        return {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "transformer_seconds": self.meter.seconds,
            "transformer_cpu_seconds": self.meter.cpu_seconds,
            "model_calls": self.meter.calls,
            "frames": frames,
            "seconds_per_frame": seconds / frames,
            "cpu_seconds_per_frame": cpu_seconds / frames,
            "rss_bytes": current_rss_bytes(),
            "peak_rss_bytes": max(peak_rss_bytes(), current_rss_bytes() or 0),
        }

    def close(self) -> None:
        self.meter.remove()


# ---------------------------------------------------------------------------------------------------- workers
def _prepare_process(settings: BenchSettings) -> None:
    import torch

    torch.set_num_threads(settings.num_threads)
    logging.set_verbosity_error()  # the per-clip T-RFlow few-steps warnings would flood the parent's terminal


def _worker_main(conn: Any, settings_dict: dict[str, Any], spec_dict: dict[str, Any]) -> None:
    """Entry point of a worker process: builds one run, then answers `"clip"`, `"run"` and `"close"` requests."""
    try:
        settings = BenchSettings.from_dict(settings_dict)
        spec = RunSpec(**spec_dict)
        _prepare_process(settings)
        run = LongVideoRun(settings, spec) if spec.kind == "longvideo" else SkyReelsRun(settings, spec)
        conn.send(("ready", run.info))
        while True:
            request = conn.recv()
            if request == "clip":
                conn.send(("ok", run.next_clip()))
            elif request == "run":
                conn.send(("ok", run.run()))
            elif request == "close":
                run.close()
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"Unknown request {request!r}.")
    except BaseException:  # report anything (also KeyboardInterrupt) to the parent, which raises it
        try:
            conn.send(("error", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
    finally:
        conn.close()


class _ProcessRun:
    """The parent's handle on a worker process running one `RunSpec`."""

    def __init__(self, context: Any, settings: BenchSettings, spec: RunSpec) -> None:
        self.spec = spec
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_worker_main, args=(child, settings.to_dict(), spec.to_dict()), daemon=True
        )
        self._process.start()
        child.close()
        self.info: dict[str, Any] | None = None

    def _receive(self) -> Any:
        try:
            status, payload = self._conn.recv()
        except EOFError:
            raise RuntimeError(
                f"Benchmark worker {self.spec.name!r} died (exit code {self._process.exitcode})."
            ) from None
        if status == "error":
            raise RuntimeError(f"Benchmark worker {self.spec.name!r} failed:\n{payload}")
        return payload

    def wait_ready(self) -> dict[str, Any]:
        self.info = self._receive()
        return self.info

    def request(self, what: str) -> Any:
        self._conn.send(what)
        return self._receive()

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self.request("close")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        self._conn.close()


class _InlineRun:
    """The same interface as `_ProcessRun`, in this process; the runs (one after the other) share one pipeline."""

    def __init__(self, settings: BenchSettings, spec: RunSpec, shared: dict[str, Any]) -> None:
        self.spec = spec
        if "pipe" not in shared:
            shared["pipe"] = build_pipeline(settings)
        pipe = shared["pipe"]
        run_class = LongVideoRun if spec.kind == "longvideo" else SkyReelsRun
        self._run = run_class(settings, spec, pipe)
        self.info = self._run.info

    def wait_ready(self) -> dict[str, Any]:
        return self.info

    def request(self, what: str) -> Any:
        return self._run.next_clip() if what == "clip" else self._run.run()

    def close(self) -> None:
        self._run.close()
        self._run = None


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="longvid bench", unit="clip", disable=not enabled)


def run_benchmark(settings: BenchSettings, progress: bool = True) -> dict[str, Any]:
    r"""
    Run every configuration of `settings` and return the raw measurements and their analysis (JSON-ready).

    Args:
        settings (`BenchSettings`): What to run.
        progress (`bool`, *optional*, defaults to `True`): Show a progress bar (one tick per clip and per SkyReels
            run).

    Returns:
        `dict`: `{"settings", "environment", "runs": {name: {"spec", "info", "clips" | "result"}}, "analysis"}`;
        `diffusers_longvid.benchmarks.report.write_report` turns it into JSON, Markdown and PNG files.

    The `"interleaved"` and `"sequential"` schedules start worker processes with the `spawn` method: a script that
    calls this must guard its entry point with `if __name__ == "__main__":` (as for a torch `DataLoader` with
    workers). `longvid bench` does.
    """
    from .report import analyse

    if not isinstance(settings, BenchSettings):
        raise TypeError(f"`settings` must be a `BenchSettings`, got {type(settings).__name__}.")
    specs = default_runs(settings)
    long_specs = [s for s in specs if s.kind == "longvideo"]
    sky_specs = [s for s in specs if s.kind == "skyreels"]
    started = time.time()
    runs: dict[str, dict[str, Any]] = {s.name: {"spec": s.to_dict(), "info": None} for s in specs}

    if settings.schedule == "inline":
        # runs in this process as it is set up (torch threads, logging): no global state is changed here
        shared: dict[str, Any] = {}

        def open_run(spec: RunSpec):
            return _InlineRun(settings, spec, shared)
    else:
        import multiprocessing

        # "spawn": a fresh interpreter per run (no forked torch thread pools, and each run's RSS is its own)
        context = multiprocessing.get_context("spawn")

        def open_run(spec: RunSpec):
            return _ProcessRun(context, settings, spec)

    total = len(long_specs) * settings.num_clips + len(sky_specs)
    with _progress(total, progress) as bar:
        # Long-video runs: lockstep (interleaved) or one after the other
        groups = [long_specs] if settings.schedule == "interleaved" else [[s] for s in long_specs]
        for group in groups:
            handles = []
            try:
                for spec in group:
                    handles.append(open_run(spec))
                for handle in handles:
                    runs[handle.spec.name]["info"] = handle.wait_ready()
                    runs[handle.spec.name]["clips"] = []
                for clip in range(settings.num_clips):
                    # rotate the order every clip, so no run always goes first after the others
                    order = handles[clip % len(handles) :] + handles[: clip % len(handles)]
                    for handle in order:
                        runs[handle.spec.name]["clips"].append(handle.request("clip"))
                        bar.update()
            finally:
                for handle in handles:
                    handle.close()
        # SkyReels runs: one call each, one at a time
        for spec in sky_specs:
            handle = open_run(spec)
            try:
                runs[spec.name]["info"] = handle.wait_ready()
                runs[spec.name]["result"] = handle.request("run")
                bar.update()
            finally:
                handle.close()

    result = {
        "settings": settings.to_dict(),
        "environment": _environment(started, time.time()),
        "runs": runs,
    }
    result["analysis"] = analyse(result)
    return result


def _environment(started: float, finished: float) -> dict[str, Any]:
    import diffusers
    import torch

    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_seconds": finished - started,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
