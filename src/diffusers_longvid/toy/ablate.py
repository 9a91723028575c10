# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The paper's ablations (Tables 2-4) in miniature on the toy world, over several seeds.

Tables:

- `"kv"` (Table 2): the full method vs without the KV cache vs without the KV cache and T-RFlow.
- `"trflow"` (Table 3): the full method with T-RFlow windows `[0, 1]` (plain Euler), `[0, 0.7]`, `[0.3, 0.7]` and a
  calibrated `[tau_low*, 0.7]` (`calibrated_tau_low`, or `calibrate_tau_low` on the model).
- `"long"` (Table 4): error accumulation over a long video (40 clips by default), in time windows, for the variants
  of `"kv"`.

Seed `s` generates the random script `random_script(num_clips, seed=s)` and the noise of every variant, so a seed
is one (script, noise) sample shared by all variants of a table. Every metric is reported as the mean and the
sample standard deviation (`ddof=1`; 0 for a single seed) over the seeds.

Metrics come from an `evaluate_fn(frames, sample) -> dict` with
`{"scores": {metric: float | None}, "windows": [{"start_seconds": ..., "end_seconds": ..., "scores": {...}}]}`
(`frames` `(T, H, W, 3)` `uint8`, `sample` an [`AblationSample`]: the script, its ground truth with the same clip
arithmetic, and the settings). The default is the toy world's ground-truth evaluator ([`toy_evaluate`]) when
`diffusers_longvid.toy.evaluate` is present, else [`ground_truth_evaluate`] plus the offline VBench proxies and AF of
[`~diffusers_longvid.evaluation.evaluate_video`].

Results are written per (table, variant, seed) as soon as they are measured, under `out_dir/runs/`; a rerun with the
same settings skips what is there, so an interrupted ablation resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from diffusers.utils import logging

from ..utils import write_json_atomic
from .compare import DEFAULT_VARIANTS, Variant


logger = logging.get_logger(__name__)

TABLES: tuple[str, ...] = ("kv", "trflow", "long")
TABLE_TITLES: dict[str, str] = {
    "kv": "KV cache and T-RFlow (Table 2)",
    "trflow": "T-RFlow window (Table 3)",
    "long": "Error accumulation over a long video (Table 4)",
}
RESULTS_VERSION = 1


@dataclass
class AblationSample:
    r"""
    What an `evaluate_fn` gets besides the generated frames.

    Args:
        script (`list[dict]`): The toy script the video was generated from.
        ground_truth ([`~diffusers_longvid.toy.ToyVideo`]): Its render with the pipeline's clip arithmetic (same
            shape as the generated frames).
        num_frames (`int`), num_condition_frames (`int`): The clip arithmetic.
        fps (`int`): Frame rate.
        seed (`int`): The seed of the script, the render and the noise.
        window_seconds (`float`): Length of the metric time windows.
    """

    script: list[dict[str, Any]]
    ground_truth: Any
    num_frames: int
    num_condition_frames: int
    fps: int
    seed: int
    window_seconds: float


EvaluateFn = Callable[[np.ndarray, AblationSample], dict[str, Any]]


@dataclass
class AblationConfig:
    r"""
    Settings of a miniature ablation.

    Args:
        tables (`list[str]`, *optional*, defaults to all of `TABLES`): Which tables to run.
        seeds (`list[int]`, *optional*, defaults to `[0, 1, 2]`): One (script, noise) sample per seed.
        num_clips (`int`, *optional*, defaults to 8): Clips per video of the `"kv"` and `"trflow"` tables.
        long_num_clips (`int`, *optional*, defaults to 40): Clips per video of the `"long"` table.
        num_frames (`int`, *optional*, defaults to 33), num_condition_frames (`int`, *optional*, defaults to 5):
            The clip arithmetic.
        steps (`int`, *optional*, defaults to 12): `num_inference_steps`.
        size (`int`, *optional*, defaults to 64): Frame side in pixels.
        fps (`int`, *optional*, defaults to 16): Frame rate of the toy world.
        guidance_scale (`float`, *optional*, defaults to 3.0): Classifier-free guidance scale.
        kv_cache_clips (`int`, *optional*, defaults to 5): History clips of the full method.
        tau_high (`float`, *optional*, defaults to 0.7): Upper end of the T-RFlow windows.
        calibrated_tau_low (`float`, *optional*): `tau_low` of the calibrated window; calibrated on the model when
            `None` and the `"trflow"` table runs.
        window_seconds (`float`, *optional*, defaults to 10.0): Length of the time windows of the metrics.
        num_objects (`int`, *optional*, defaults to 2): Objects of the random scripts.
        max_sequence_length (`int`, *optional*, defaults to 64): Tokens per prompt (toy prompts are short).
        start_from_ground_truth (`bool`, *optional*, defaults to `True`): Condition clip 0 on the ground truth's first
            `num_condition_frames` frames (video continuation). The first prompt does not say where the objects are,
            so without this no model can match the ground truth's positions and every mask-based object metric
            measures placement luck; with it, colours and positions are known at t = 0 and the metrics measure how
            they are kept (memory, drift, error accumulation). The output still aligns frame for frame with the
            ground truth (its first frames are the given ones).
    """

    tables: list[str] = field(default_factory=lambda: list(TABLES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    num_clips: int = 8
    long_num_clips: int = 40
    num_frames: int = 33
    num_condition_frames: int = 5
    steps: int = 12
    size: int = 64
    fps: int = 16
    guidance_scale: float = 3.0
    kv_cache_clips: int = 5
    tau_high: float = 0.7
    calibrated_tau_low: float | None = None
    window_seconds: float = 10.0
    num_objects: int = 2
    max_sequence_length: int = 64
    start_from_ground_truth: bool = True

    def __post_init__(self) -> None:
        self.tables = list(self.tables)
        self.seeds = [int(s) for s in self.seeds]
        unknown = [t for t in self.tables if t not in TABLES]
        if not self.tables or unknown:
            raise ValueError(f"`tables` must be a non-empty subset of {list(TABLES)}, got {self.tables}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be non-empty and without repeats, got {self.seeds}.")
        for name in ("num_clips", "long_num_clips", "steps", "fps", "num_objects"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.window_seconds <= 0:
            raise ValueError(f"`window_seconds` must be positive, got {self.window_seconds!r}.")
        if not 0.0 < self.tau_high <= 1.0:
            raise ValueError(f"`tau_high` must be in (0, 1], got {self.tau_high!r}.")
        if self.calibrated_tau_low is not None and not 0.0 <= self.calibrated_tau_low < self.tau_high:
            raise ValueError(
                f"`calibrated_tau_low` must be in [0, tau_high={self.tau_high}), got {self.calibrated_tau_low!r}."
            )

    def clips_for(self, table: str) -> int:
        return self.long_num_clips if table == "long" else self.num_clips

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ground_truth_start(frames: np.ndarray, num_condition_frames: int) -> list[Any]:
    """The first `num_condition_frames` ground-truth frames as PIL images: the pipeline's `video=` argument that
    makes clip 0 continue the ground truth (and reproduce those frames as its first ones)."""
    import PIL.Image

    return [PIL.Image.fromarray(np.ascontiguousarray(frame)) for frame in frames[:num_condition_frames]]


def table_variants(
    table: str, kv_cache_clips: int = 5, tau_high: float = 0.7, calibrated_tau_low: float | None = None
) -> list[Variant]:
    r"""
    The variants of one table.

    Args:
        table (`str`): One of `TABLES`.
        kv_cache_clips (`int`, *optional*, defaults to 5): History clips of the full method.
        tau_high (`float`, *optional*, defaults to 0.7): Upper end of the T-RFlow windows.
        calibrated_tau_low (`float`, *optional*): Adds the calibrated window to the `"trflow"` table.

    Returns:
        `list[Variant]`.
    """
    if table in ("kv", "long"):
        ours, no_kv, plain = DEFAULT_VARIANTS
        return [
            Variant(ours.name, kv_cache_clips, ours.tau_low, tau_high),
            Variant(no_kv.name, 0, no_kv.tau_low, tau_high),
            plain,
        ]
    if table == "trflow":
        variants = [
            Variant("[0, 1] (Euler)", kv_cache_clips, 0.0, 1.0),
            Variant(f"[0, {tau_high:g}]", kv_cache_clips, 0.0, tau_high),
            Variant(f"[0.3, {tau_high:g}]", kv_cache_clips, 0.3, tau_high),
        ]
        if calibrated_tau_low is not None:
            variants.append(
                Variant(
                    f"[{calibrated_tau_low:.3f}, {tau_high:g}] (calibrated)",
                    kv_cache_clips,
                    calibrated_tau_low,
                    tau_high,
                )
            )
        return variants
    raise ValueError(f"`table` must be one of {list(TABLES)}, got {table!r}.")


# ---------------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------------


def _windows(num_frames: int, fps: float, window_seconds: float) -> list[tuple[int, int]]:
    size = max(1, int(round(window_seconds * fps)))
    return [(start, min(num_frames, start + size)) for start in range(0, num_frames, size)]


def ground_truth_evaluate(
    frames: np.ndarray, sample: AblationSample, frame_windows: Sequence[tuple[int, int]] | None = None
) -> dict[str, Any]:
    r"""
    Pixel metrics against the ground truth, per time window and overall: `gt_mae` (mean absolute error, 0-255) and
    `gt_psnr` (dB, from the mean squared error). Needs nothing but numpy.

    Args:
        frames (`np.ndarray`): `(T, H, W, 3)` `uint8`, the generated video.
        sample ([`AblationSample`]): Its ground truth (same shape), frame rate and window length (consecutive
            windows from frame 0; the last may be shorter).
        frame_windows (`Sequence[tuple[int, int]]`, *optional*): Explicit `[start, end)` frame windows instead.
    """
    truth, fps = sample.ground_truth.frames, sample.fps
    if frames.shape != truth.shape:
        raise ValueError(f"`frames` {frames.shape} and the ground truth {truth.shape} must have the same shape.")
    diff = frames.astype(np.float64) - truth.astype(np.float64)

    def scores(part: np.ndarray) -> dict[str, float]:
        mse = float(np.mean(part**2))
        return {
            "gt_mae": float(np.mean(np.abs(part))),
            "gt_psnr": float(10.0 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf"),
        }

    ranges = _windows(len(frames), fps, sample.window_seconds) if frame_windows is None else frame_windows
    windows = [{"start_seconds": s / fps, "end_seconds": e / fps, "scores": scores(diff[s:e])} for s, e in ranges]
    return {"scores": scores(diff), "windows": windows}


def offline_evaluate(frames: np.ndarray, sample: AblationSample) -> dict[str, Any]:
    """[`ground_truth_evaluate`] plus the offline VBench proxies and AF of `evaluate_video`, on the same windows."""
    from ..evaluation import evaluate_video

    vbench = evaluate_video(
        frames, backend="offline", window_seconds=sample.window_seconds, fps=sample.fps, show_progress=False
    )
    ranges = [(w.start_frame, w.end_frame) for w in vbench.windows]
    result = ground_truth_evaluate(frames, sample, frame_windows=ranges)
    result["scores"].update(vbench.scores)
    for mine, theirs in zip(result["windows"], vbench.windows):
        mine["scores"].update(theirs.scores)
    return result


def default_evaluate_fn() -> EvaluateFn:
    """The toy world's evaluator (`diffusers_longvid.toy.evaluate`) when present, else [`offline_evaluate`]."""
    try:
        from .evaluate import evaluate_toy_video  # noqa: F401
    except ImportError:
        return offline_evaluate
    return toy_evaluate


def toy_evaluate(frames: np.ndarray, sample: AblationSample) -> dict[str, Any]:
    """The toy world's ground-truth metrics (`diffusers_longvid.toy.evaluate.evaluate_toy_video`) as an
    `evaluate_fn`: background and object colour errors, re-entry colour accuracy, sharpness, HF noise, AF, ..."""
    from .evaluate import evaluate_toy_video

    result = evaluate_toy_video(
        frames,
        sample.script,
        num_frames=sample.num_frames,
        num_condition_frames=sample.num_condition_frames,
        fps=sample.fps,
        seed=sample.seed,
        window_seconds=sample.window_seconds,
    )
    skip = ("start_frame", "end_frame", "start_s", "end_s")
    windows = [
        {
            "start_seconds": w["start_s"],
            "end_seconds": w["end_s"],
            "scores": {k: v for k, v in w.items() if k not in skip},
        }
        for w in result.windows
    ]
    return {"scores": dict(result.overall), "windows": windows}


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _normalise_metrics(raw: Any) -> dict[str, Any]:
    """Bring an evaluator's result (a dict as documented, or an object with `scores`/`windows`) to plain floats."""

    def get(obj: Any, key: str, default: Any = None) -> Any:
        return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)

    scores = get(raw, "scores")
    if scores is None:
        raise TypeError("`evaluate_fn` must return a dict with `scores` (and optionally `windows`).")
    windows = []
    for window in get(raw, "windows", None) or []:
        windows.append(
            {
                "start_seconds": float(get(window, "start_seconds")),
                "end_seconds": float(get(window, "end_seconds")),
                "scores": {k: _as_float(v) for k, v in dict(get(window, "scores", {})).items()},
            }
        )
    return {"scores": {k: _as_float(v) for k, v in dict(scores).items()}, "windows": windows}


# ---------------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", name).strip("_") or "variant"


def _run_path(out_dir: Path, table: str, variant: Variant, seed: int) -> Path:
    return out_dir / "runs" / table / _slug(variant.name) / f"seed{seed}.json"


def _generation_key(config: AblationConfig, table: str, variant: Variant, seed: int) -> dict[str, Any]:
    """Everything that determines a generated video (two tables with the same key share the video)."""
    return {
        "seed": seed,
        "num_clips": config.clips_for(table),
        "kv_cache_clips": variant.kv_cache_clips,
        "tau_low": float(variant.tau_low),
        "tau_high": float(variant.tau_high),
        **{
            k: getattr(config, k)
            for k in (
                "num_frames",
                "num_condition_frames",
                "steps",
                "size",
                "fps",
                "guidance_scale",
                "num_objects",
                "max_sequence_length",
                "start_from_ground_truth",
            )
        },
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (`ddof=1`; 0 for one value) of the finite values (NaN if none)."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def run_ablation(
    pipe: Any,
    out_dir: str | os.PathLike,
    config: AblationConfig | None = None,
    evaluate_fn: EvaluateFn | None = None,
    command: str | None = None,
    model: str | None = None,
    show_progress: bool = True,
    **pipe_kwargs: Any,
) -> dict[str, Any]:
    r"""
    Run the miniature ablation and write `ablation.json`, `ablation.md` and one `ablation_<table>.png` per table.

    Args:
        pipe ([`LongVideoExtensionPipeline`]): The model, with a [`TRFlowScheduler`] (its window is restored after
            every variant).
        out_dir (`str` or `os.PathLike`): Output folder; per-run results go to `out_dir/runs/` and are reused.
        config ([`AblationConfig`], *optional*): The settings (defaults: `AblationConfig()`).
        evaluate_fn (`Callable`, *optional*): The metrics (see the module docstring); defaults to
            [`default_evaluate_fn`]`()`.
        command (`str`, *optional*): The command line to record in the report.
        model (`str`, *optional*): The model's name or folder, recorded in the report.
        show_progress (`bool`, *optional*, defaults to `True`): Show a progress bar over the runs.
        pipe_kwargs: Other pipeline arguments (e.g. `clip_selector`).

    Returns:
        `dict`: What `ablation.json` holds.
    """
    from tqdm.auto import tqdm

    from .compare import run_variants
    from .scripts import random_script
    from .world import render_script_clips

    config = AblationConfig() if config is None else config
    if not isinstance(config, AblationConfig):
        raise TypeError(f"`config` must be an `AblationConfig`, got {type(config).__name__}.")
    evaluate_fn = default_evaluate_fn() if evaluate_fn is None else evaluate_fn
    if not callable(evaluate_fn):
        raise TypeError("`evaluate_fn` must be callable as `evaluate_fn(frames, sample)`.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluator = getattr(evaluate_fn, "__qualname__", type(evaluate_fn).__name__)

    calibration = None
    if "trflow" in config.tables and config.calibrated_tau_low is None:
        calibration = _calibrate(pipe, config, out_dir)
        config = replace(config, calibrated_tau_low=calibration["tau_low"])  # the caller's config stays as given

    plan = [
        (table, variant, seed)
        for table in config.tables
        for variant in table_variants(table, config.kv_cache_clips, config.tau_high, config.calibrated_tau_low)
        for seed in config.seeds
    ]
    # results already measured, by generation key: reused across tables and reruns
    measured: dict[str, dict[str, Any]] = {}
    for path in (out_dir / "runs").glob("*/*/seed*.json"):
        record = json.loads(path.read_text())
        if record.get("version") == RESULTS_VERSION and record.get("evaluator") == evaluator:
            measured[json.dumps(record["generation"], sort_keys=True)] = record

    skipped = 0
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    truths: dict[tuple[int, int], Any] = {}
    progress = tqdm(plan, desc="toy-ablate", disable=not show_progress)
    for table, variant, seed in progress:
        key = _generation_key(config, table, variant, seed)
        key_str = json.dumps(key, sort_keys=True)
        path = _run_path(out_dir, table, variant, seed)
        if key_str in measured:
            record = dict(measured[key_str], table=table, variant=variant.to_dict())
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(path, record)
            skipped += 1
        else:
            progress.set_postfix_str(f"{table}/{variant.name}/seed {seed}")
            num_clips = config.clips_for(table)
            script = random_script(num_clips, seed=seed, num_objects=config.num_objects)
            if (num_clips, seed) not in truths:
                truths[(num_clips, seed)] = render_script_clips(
                    script, config.num_frames, config.num_condition_frames, fps=config.fps, size=config.size, seed=seed
                )
            truth = truths[(num_clips, seed)]
            start = {}
            if config.start_from_ground_truth:
                start["video"] = ground_truth_start(truth.frames, config.num_condition_frames)
            frames = run_variants(
                pipe,
                script,
                [variant],
                seed=seed,
                num_frames=config.num_frames,
                num_condition_frames=config.num_condition_frames,
                steps=config.steps,
                size=config.size,
                guidance_scale=config.guidance_scale,
                max_sequence_length=config.max_sequence_length,
                **start,
                **pipe_kwargs,
            )[variant.name]
            if frames.shape != truth.frames.shape:
                raise RuntimeError(f"Generated {frames.shape} frames but the ground truth has {truth.frames.shape}.")
            sample = AblationSample(
                script=script,
                ground_truth=truth,
                num_frames=config.num_frames,
                num_condition_frames=config.num_condition_frames,
                fps=config.fps,
                seed=seed,
                window_seconds=config.window_seconds,
            )
            metrics = _normalise_metrics(evaluate_fn(frames, sample))
            record = {
                "version": RESULTS_VERSION,
                "evaluator": evaluator,
                "table": table,
                "variant": variant.to_dict(),
                "seed": seed,
                "generation": key,
                "num_frames": int(frames.shape[0]),
                **metrics,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, record)  # an interrupted run never leaves half a result
            measured[key_str] = record
        runs[(table, variant.name, seed)] = record
    if skipped:
        logger.info(f"Reused {skipped} of {len(plan)} results already measured in {out_dir / 'runs'}.")

    summary = _summarise(config, runs)
    report = {
        "command": command,
        "model": model,
        "evaluator": evaluator,
        "config": config.to_dict(),
        "calibration": calibration,
        "std": "sample standard deviation over seeds (ddof=1)",
        "tables": summary,
        "reused_runs": skipped,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "ablation.json", report)
    (out_dir / "ablation.md").write_text(format_markdown(report))
    for table in config.tables:
        plot_table(summary[table], out_dir / f"ablation_{table}.png", title=TABLE_TITLES[table])
    return report


def _calibrate(pipe: Any, config: AblationConfig, out_dir: Path) -> dict[str, Any]:
    """`calibrate_tau_low` on one random toy prompt per seed (the prompt of `random_script(1, seed)`), with the
    ablation's settings; cached in `out_dir/calibration.json`."""
    path = out_dir / "calibration.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("seeds") == config.seeds and cached.get("tau_high") == config.tau_high:
            return cached
    import torch

    from ..schedulers.calibration import calibrate_tau_low
    from .compare import script_prompts
    from .scripts import random_script

    prompts = [script_prompts(random_script(1, seed=s, num_objects=config.num_objects))[0] for s in config.seeds]
    logger.info(f"Calibrating tau_low (tau_high={config.tau_high}) on {len(prompts)} prompts ...")
    with torch.no_grad():
        result = calibrate_tau_low(
            pipe,
            prompts,
            seeds=(0,),
            tau_high=config.tau_high,
            height=config.size,
            width=config.size,
            num_frames=config.num_frames,
            num_inference_steps=config.steps,
            guidance_scale=config.guidance_scale,
            max_sequence_length=config.max_sequence_length,
        )
    record = {
        "tau_low": float(result.tau_low),
        "tau_high": float(result.tau_high),
        "target_af": float(result.target_af),
        "af": float(result.af),
        "converged": bool(result.converged),
        "seeds": config.seeds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def _summarise(config: AblationConfig, runs: dict[tuple[str, str, int], dict[str, Any]]) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for table in config.tables:
        variants = table_variants(table, config.kv_cache_clips, config.tau_high, config.calibrated_tau_low)
        rows = []
        for variant in variants:
            records = [runs[(table, variant.name, seed)] for seed in config.seeds]
            metrics = sorted({m for r in records for m in r["scores"]})
            overall = {}
            for metric in metrics:
                values = [r["scores"].get(metric) for r in records]
                mean, std = mean_std(values)
                overall[metric] = {"mean": mean, "std": std, "values": values}
            num_windows = min(len(r["windows"]) for r in records)
            windows = []
            for index in range(num_windows):
                first = records[0]["windows"][index]
                entry = {"start_seconds": first["start_seconds"], "end_seconds": first["end_seconds"], "scores": {}}
                for metric in metrics:
                    mean, std = mean_std([r["windows"][index]["scores"].get(metric) for r in records])
                    entry["scores"][metric] = {"mean": mean, "std": std}
                windows.append(entry)
            rows.append({"variant": variant.to_dict(), "scores": overall, "windows": windows})
        tables[table] = {"title": TABLE_TITLES[table], "num_clips": config.clips_for(table), "variants": rows}
    return tables


# ---------------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------------


def _fmt(entry: dict[str, float]) -> str:
    mean, std = entry["mean"], entry["std"]
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.4g} ± {std:.2g}"


def format_markdown(report: dict[str, Any]) -> str:
    """The Markdown report of [`run_ablation`]: one table per ablation (mean ± std over seeds), and per window."""
    config = report["config"]
    lines = ["# Toy-world ablations", ""]
    if report.get("command"):
        lines += ["Regenerate with:", "", "```bash", report["command"], "```", ""]
    lines += [
        f"Model: `{report.get('model')}`. Evaluator: `{report['evaluator']}`. Seeds: {config['seeds']} (each seed is "
        f"a random script and its noise). Clips of {config['num_frames']} frames with "
        f"{config['num_condition_frames']} "
        f"condition frames, {config['steps']} steps, {config['size']}x{config['size']} at {config['fps']} fps, "
        f"guidance {config['guidance_scale']}. Values are mean ± {report['std']}.",
        "",
    ]
    if report.get("calibration"):
        cal = report["calibration"]
        lines += [
            f"Calibrated window: tau_low = {cal['tau_low']:.4f} for tau_high = {cal['tau_high']} (AF {cal['af']:.4g} "
            f"vs target {cal['target_af']:.4g}, converged: {cal['converged']}).",
            "",
        ]
    for name, table in report["tables"].items():
        rows = table["variants"]
        metrics = sorted({m for row in rows for m in row["scores"]})
        lines += [f"## {table['title']}", "", f"{table['num_clips']} clips per video.", ""]
        # one column per variant, one row per metric: evaluators report many metrics, tables compare a few variants
        lines += ["| | " + " | ".join(row["variant"]["name"] for row in rows) + " |"]
        lines += ["|---" * (1 + len(rows)) + "|"]
        lines += ["| KV cache clips | " + " | ".join(str(row["variant"]["kv_cache_clips"]) for row in rows) + " |"]
        windows = [f"[{row['variant']['tau_low']:g}, {row['variant']['tau_high']:g}]" for row in rows]
        lines += ["| T-RFlow window | " + " | ".join(windows) + " |"]
        for metric in metrics:
            cells = [_fmt(row["scores"][metric]) if metric in row["scores"] else "n/a" for row in rows]
            lines += [f"| {metric} | " + " | ".join(cells) + " |"]
        lines += ["", f"![{name}](ablation_{name}.png)", ""]
        if name == "long" and rows and rows[0]["windows"]:
            for metric in sorted({m for w in rows[0]["windows"] for m in w["scores"]}):
                windows = rows[0]["windows"]
                lines += [f"### {metric} per time window", ""]
                spans = [f"{w['start_seconds']:.3g}-{w['end_seconds']:.3g} s" for w in windows]
                lines += ["| variant | " + " | ".join(spans) + " |"]
                lines += ["|---" * (1 + len(windows)) + "|"]
                for row in rows:
                    cells = [_fmt(w["scores"][metric]) if metric in w["scores"] else "n/a" for w in row["windows"]]
                    lines += [f"| {row['variant']['name']} | " + " | ".join(cells) + " |"]
                lines += [""]
    return "\n".join(lines)


def plot_table(table: dict[str, Any], path: str | os.PathLike, title: str = "") -> str:
    """Every metric over the time windows (window centre, seconds), one line per variant with a ± std band."""
    from ..utils import require

    require("matplotlib", "ablation plots")
    from matplotlib.figure import Figure

    rows = table["variants"]
    metrics = sorted({m for row in rows for w in row["windows"] for m in w["scores"]})
    cols = min(3, max(1, len(metrics)))
    nrows = max(1, int(np.ceil(len(metrics) / cols)))
    figure = Figure(figsize=(4 * cols, 3 * nrows))
    axes = figure.subplots(nrows, cols, squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for row in rows:
            t = np.array([0.5 * (w["start_seconds"] + w["end_seconds"]) for w in row["windows"]])
            mean = np.array([w["scores"].get(metric, {}).get("mean", np.nan) for w in row["windows"]], dtype=float)
            std = np.array([w["scores"].get(metric, {}).get("std", np.nan) for w in row["windows"]], dtype=float)
            ax.plot(t, mean, marker="o", markersize=3, label=row["variant"]["name"])
            ax.fill_between(t, mean - std, mean + std, alpha=0.2)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("window centre (s)", fontsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    if metrics:
        axes.flat[0].legend(fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=100)
    return os.fspath(path)
