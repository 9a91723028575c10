# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The memory benchmark (`longvid toy-memory`): does the KV cache bring back an object that left the frame?

Scripts come from `memory_script`: one large object is seen with its colour named, leaves the frame, stays away for
at least one whole clip and comes back with a prompt that names only its shape ("The circle comes back from the
left"), then is named with its colour again. Each script is generated twice on the same noise, with the KV cache
(`kv_cache_clips`, default 5) and without it, clip 0 continuing the ground truth's first frames, and scored from the
frames against the ground truth rendered with the same clip arithmetic:

- **named presence / colour**: in clips whose prompt names the object with its colour, is it drawn near its
  ground-truth place, and is the colour of what is drawn (anywhere in the frame) nearest to the right one of the
  palette;
- **re-entry presence / colour**: in the comeback clip, is an object drawn anywhere, and is its colour right. The
  prompt does not say the colour: without memory it is a guess, chance `1 / len(palette)`.

An *object pixel* of a generated frame is one whose sRGB colour is more than `object_threshold` away from the ground
truth's background at that pixel (rendered without the object). A clip is scored on its new frames in which the
ground-truth object shows at least half of its full area. Nothing is learned: the ground truth itself scores 1 on
every measure (tested), a colour-swapped copy 0 on colour, a shifted copy still 1 on colour.

With `CrossClipKVCacheConfig(probe_attention=True)` the report also gives, for each comeback clip and cached block,
the share of attention mass on the history clips where the object was visible, on those where it was not, and on the
clip itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from diffusers.utils import logging

from ..utils import write_json_atomic
from .scripts import MEMORY_COLORS, is_reentry, memory_script
from .world import COLORS, render_script_clips


logger = logging.get_logger(__name__)

__all__ = [
    "MemoryBenchmarkConfig",
    "format_memory_markdown",
    "memory_benchmark_scripts",
    "run_memory_benchmark",
    "score_memory_video",
    "write_memory_contact_sheet",
]

RESULTS_VERSION = 1
# Script seeds of the benchmark: far from `longvid toy-data`'s (which start at --seed and count up by one per video).
SCRIPT_SEED_BASE = 10_000_000


@dataclass(frozen=True)
class MemoryBenchmarkConfig:
    r"""
    Settings of the memory benchmark.

    Args:
        seeds (`Sequence[int]`, *optional*, defaults to `(0, 1, 2)`): Each seed draws `num_scripts` scripts and is the
            noise seed of their generations.
        num_scripts (`int`, *optional*, defaults to 16): Scripts per seed.
        num_clips (`int`, *optional*, defaults to 5): Clips up to and including the comeback (`memory_script`).
        clips_after (`int`, *optional*, defaults to 1): Named clips after the comeback.
        textures (`Sequence[str]`, *optional*, defaults to `("plain",)`): Background textures of the scripts.
        palette (`Sequence[str]`, *optional*, defaults to `MEMORY_COLORS`): The object colours the scripts draw from;
            a colour is scored as the nearest of these (chance `1 / len(palette)`).
        kv_cache_clips (`int`, *optional*, defaults to 5): History clips of the "with KV cache" variant.
        num_frames (`int`), num_condition_frames (`int`), num_inference_steps (`int`), guidance_scale (`float`),
        max_sequence_length (`int`, *optional*): Sampling settings (the `toy` preset's `preset.json` by default).
        size (`int`, *optional*, defaults to 64), fps (`int`, *optional*, defaults to 16): Frame side and rate.
        object_threshold (`float`, *optional*, defaults to 60): sRGB distance from the background above which a pixel
            is an object pixel.
        presence_fraction (`float`, *optional*, defaults to 0.25): A frame shows the object when its object pixels
            (near its place for named clips, anywhere for comebacks) number at least this fraction of the
            ground-truth object's pixels; a clip, when at least half of its scored frames do.
        near_margin (`float`, *optional*, defaults to 1.0): "Near its place": inside the ground-truth box grown by
            this many object half-extents on every side.
        probe_attention (`bool`, *optional*, defaults to `True`): Measure attention shares in the KV variant.
    """

    seeds: Sequence[int] = (0, 1, 2)
    num_scripts: int = 16
    num_clips: int = 5
    clips_after: int = 1
    textures: Sequence[str] = ("plain",)
    palette: Sequence[str] = MEMORY_COLORS
    kv_cache_clips: int = 5
    num_frames: int = 17
    num_condition_frames: int = 5
    num_inference_steps: int = 16
    guidance_scale: float = 2.0
    max_sequence_length: int | None = 64
    size: int = 64
    fps: int = 16
    object_threshold: float = 60.0
    presence_fraction: float = 0.25
    near_margin: float = 1.0
    probe_attention: bool = True

    def __post_init__(self) -> None:
        for name in ("num_scripts", "num_clips", "num_frames", "num_inference_steps", "size", "fps", "kv_cache_clips"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "kv_cache_clips" else 1):
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.kv_cache_clips < 1:
            raise ValueError(f"`kv_cache_clips` must be >= 1 (the variant with memory), got {self.kv_cache_clips}.")
        if not isinstance(self.clips_after, int) or self.clips_after < 0:
            raise ValueError(f"`clips_after` must be an int >= 0, got {self.clips_after!r}.")
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ValueError(f"`seeds` must be a non-empty sequence of ints, got {self.seeds!r}.")
        unknown = [c for c in self.palette if c not in COLORS]
        if len(self.palette) < 2 or unknown:
            raise ValueError(f"`palette` must name at least 2 colours of {sorted(COLORS)}, got {list(self.palette)}.")
        if not 0 <= self.num_condition_frames < self.num_frames:
            raise ValueError(
                f"`num_condition_frames` must be in [0, num_frames), got {self.num_condition_frames} for "
                f"num_frames={self.num_frames}."
            )
        for name in ("object_threshold", "presence_fraction", "near_margin", "guidance_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "textures", tuple(self.textures))
        object.__setattr__(self, "palette", tuple(self.palette))

    @property
    def chance(self) -> float:
        """Accuracy of a uniform guess of the colour."""
        return 1.0 / len(self.palette)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("seeds", "textures", "palette"):
            data[key] = list(data[key])
        return data


def memory_benchmark_scripts(seed: int, config: MemoryBenchmarkConfig | None = None) -> list[list[dict[str, Any]]]:
    """The `config.num_scripts` re-entry scripts of benchmark seed `seed` (script `j` is `memory_script(...,
    seed=SCRIPT_SEED_BASE + 1000 * seed + j)`)."""
    config = MemoryBenchmarkConfig() if config is None else config
    return [
        memory_script(
            config.num_clips,
            seed=SCRIPT_SEED_BASE + 1000 * seed + j,
            clips_after=config.clips_after,
            object_colors=config.palette,
            textures=config.textures,
        )
        for j in range(config.num_scripts)
    ]


def _background_script(script: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The script with every object out of frame (the ground truth's background alone)."""
    out = []
    for n, clip in enumerate(script):
        objects = []
        for obj in clip.get("objects", []):
            entry = {"shape": obj["shape"], "color": obj["color"], "visible": False}
            if n == 0:
                entry.update({k: obj[k] for k in ("position", "size") if k in obj})
            objects.append(entry)
        out.append({k: v for k, v in clip.items() if k not in ("objects", "prompt")} | {"objects": objects})
    return out


def _nearest(rgb: np.ndarray, palette: Sequence[str]) -> tuple[str, float]:
    table = np.asarray([COLORS[c] for c in palette], dtype=np.float64)
    distances = np.linalg.norm(table - rgb[None], axis=1)
    best = int(distances.argmin())
    return palette[best], float(distances[best])


def score_memory_video(
    frames: np.ndarray,
    script: Sequence[dict[str, Any]],
    num_frames: int,
    num_condition_frames: int,
    palette: Sequence[str] = MEMORY_COLORS,
    object_threshold: float = 60.0,
    presence_fraction: float = 0.25,
    near_margin: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    r"""
    Score one generated toy video of a one-object script clip by clip (see the module docstring).

    Args:
        frames (`np.ndarray`): `(T, H, W, 3)` `uint8`, `T = F + (N - 1)(F - k)` for the script's `N` clips.
        script (`list[dict]`): The script (one object).
        num_frames (`int`), num_condition_frames (`int`): The clip arithmetic of the generation.
        palette, object_threshold, presence_fraction, near_margin: As in [`MemoryBenchmarkConfig`].
        seed (`int`, *optional*, defaults to 0): Render seed of the ground truth.

    Returns:
        `list[dict]`: One record per scored clip: `{"clip", "kind"` (`"named"` or `"reentry"`), `"present"`,
        `"color"` (nearest palette colour of the object pixels, or `None`), `"color_correct"`, `"color_distance"`,
        `"target"` (the ground-truth colour), `"frames"` (frames scored)}. Clips where the object is out of frame
        (or shows less than half of itself in every new frame) are not scored.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"`frames` must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}.")
    height, width = frames.shape[1:3]
    if height != width:
        raise ValueError(f"`frames` must be square (the toy world is), got {height}x{width}.")
    truth = render_script_clips(script, num_frames, num_condition_frames, size=width, seed=seed)
    if len(truth.object_colors) != 1:
        raise ValueError(f"`script` must have exactly one object, got {len(truth.object_colors)}.")
    if frames.shape[0] != truth.num_frames:
        raise ValueError(
            f"`frames` has {frames.shape[0]} frames, the script's {truth.num_clips} clips of {num_frames} frames "
            f"with {num_condition_frames} condition frames make {truth.num_frames}."
        )
    if truth.object_colors[0] not in palette:
        raise ValueError(f"The object's colour {truth.object_colors[0]!r} is not in `palette` {list(palette)}.")
    background = render_script_clips(
        _background_script(script), num_frames, num_condition_frames, size=width, seed=seed
    ).frames.astype(np.float32)
    reentry = is_reentry(script)
    counts = truth.pixel_count[:, 0].astype(np.float64)
    full = counts.max()
    target = truth.object_colors[0]
    records = []
    for n, (start, end) in enumerate(truth.clip_ranges):
        obj = script[n]["objects"][0]
        if not obj.get("visible", True):
            continue
        first = start if n == 0 else start + num_condition_frames
        scored = [t for t in range(first, end) if counts[t] >= 0.5 * full]
        if not scored:
            continue
        kind = "reentry" if reentry[n][0] else "named"
        present, pixels = [], []
        for t in scored:
            distance = np.linalg.norm(frames[t].astype(np.float32) - background[t], axis=-1)
            mask = distance > object_threshold
            if kind == "named":
                x0, y0, x1, y1 = truth.bbox[t, 0]
                grow = near_margin * float(truth.size[t, 0]) * width
                rows = np.arange(height)[:, None]
                cols = np.arange(width)[None, :]
                near = (cols >= x0 - grow) & (cols <= x1 + grow) & (rows >= y0 - grow) & (rows <= y1 + grow)
                found = int((mask & near).sum())
            else:
                found = int(mask.sum())
            present.append(found >= presence_fraction * counts[t])
            pixels.append(frames[t][mask].astype(np.float64))
        stacked = np.concatenate(pixels, axis=0)
        if len(stacked):
            color, color_distance = _nearest(np.median(stacked, axis=0), palette)
        else:
            color, color_distance = None, None
        records.append(
            {
                "clip": n,
                "kind": kind,
                "present": bool(np.mean(present) >= 0.5),
                "color": color,
                "color_correct": color == target,
                "color_distance": None if color_distance is None else round(color_distance, 2),
                "target": target,
                "frames": len(scored),
            }
        )
    return records


def summarise_records(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Named / re-entry presence and colour accuracy of a list of `score_memory_video` records."""

    def rate(kind: str, key: str) -> float | None:
        values = [r[key] for r in records if r["kind"] == kind]
        return float(np.mean(values)) if values else None

    return {
        "named_presence": rate("named", "present"),
        "named_color": rate("named", "color_correct"),
        "reentry_presence": rate("reentry", "present"),
        "reentry_color": rate("reentry", "color_correct"),
        "named_clips": sum(r["kind"] == "named" for r in records),
        "reentry_clips": sum(r["kind"] == "reentry" for r in records),
    }


def _attention_diagnosis(script: Sequence[dict[str, Any]], kv_plan: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per comeback clip and cached block: attention share on history clips with / without the object, and self."""
    reentry = is_reentry(script)
    out = []
    for entry in kv_plan:
        n = entry["clip"]
        if not reentry[n][0] or not entry.get("attention"):
            continue
        blocks = {}
        for block, shares in entry["attention"].items():
            seen = absent = 0.0
            for clip, share in shares["history"].items():
                if script[int(clip)]["objects"][0].get("visible", True):
                    seen += share
                else:
                    absent += share
            blocks[str(block)] = {"object_clips": seen, "other_clips": absent, "current": shares["current"]}
        out.append({"clip": n, "attends": list(entry["attends"]), "blocks": blocks})
    return out


def _generate(
    pipe: Any,
    script: Sequence[dict[str, Any]],
    truth: np.ndarray,
    kv: int,
    seed: int,
    config: MemoryBenchmarkConfig,
    pipe_kwargs: dict[str, Any],
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    import torch

    from ..attention.kv_cache import CrossClipKVCacheConfig
    from ..video_io import to_uint8_frames
    from .ablate import ground_truth_start
    from .compare import script_prompts

    kwargs = dict(pipe_kwargs)
    if kv and config.probe_attention:
        base = kwargs.get("kv_cache_config") or getattr(pipe.config, "kv_cache_config", None) or {}
        if isinstance(base, dict):
            base = CrossClipKVCacheConfig.from_dict(base)
        kwargs["kv_cache_config"] = replace(base, probe_attention=True)
    out = pipe(
        script_prompts(script),
        video=ground_truth_start(truth, config.num_condition_frames),
        height=config.size,
        width=config.size,
        num_frames=config.num_frames,
        num_condition_frames=config.num_condition_frames,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        max_sequence_length=config.max_sequence_length,
        generator=torch.Generator("cpu").manual_seed(seed),
        kv_cache_clips=kv,
        output_type="np",
        **kwargs,
    )
    return to_uint8_frames(out.frames, batch_index=0), [dict(e) for e in out.kv_plan]


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "n": len(values),
    }


VARIANTS = ("ours", "no-KV")
METRICS = ("named_presence", "named_color", "reentry_presence", "reentry_color")


def run_memory_benchmark(
    pipe: Any,
    out_dir: str | os.PathLike,
    config: MemoryBenchmarkConfig | None = None,
    command: str | None = None,
    model: str | None = None,
    show_progress: bool = True,
    **pipe_kwargs: Any,
) -> dict[str, Any]:
    r"""
    Run the memory benchmark and write `memory.json`, `memory.md`, `memory_comebacks.png` and per-seed records.

    Args:
        pipe ([`LongVideoExtensionPipeline`]): The model (sampled as the user samples it: its scheduler, T-RFlow
            window included, is used as it is).
        out_dir (`str` or `os.PathLike`): Output folder. `out_dir/runs/seed{s}.json` holds the per-script records and
            is reused when its settings match (the benchmark resumes).
        config ([`MemoryBenchmarkConfig`], *optional*): The settings.
        command (`str`, *optional*), model (`str`, *optional*): Recorded in the report.
        show_progress (`bool`, *optional*, defaults to `True`): A progress bar over the scripts.
        pipe_kwargs: Other pipeline arguments (e.g. `clip_selector`, `kv_cache_config`).

    Returns:
        `dict`: What `memory.json` holds.
    """
    from tqdm.auto import tqdm

    config = MemoryBenchmarkConfig() if config is None else config
    if not isinstance(config, MemoryBenchmarkConfig):
        raise TypeError(f"`config` must be a `MemoryBenchmarkConfig`, got {type(config).__name__}.")
    reserved = [k for k in ("prompt", "video", "generator", "kv_cache_clips", "output_type") if k in pipe_kwargs]
    if reserved:
        raise ValueError(f"`{reserved[0]}` is set by the benchmark; do not pass it.")
    out_dir = Path(out_dir)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    scheduler_config = {
        k: pipe.scheduler.config.get(k) for k in ("shift", "tau_low", "tau_high") if k in pipe.scheduler.config
    }
    key = {"version": RESULTS_VERSION, "config": config.to_dict(), "scheduler": scheduler_config, "model": model}
    per_seed: dict[int, dict[str, Any]] = {}
    sheet_rows = []
    total = len(config.seeds) * config.num_scripts
    progress = tqdm(total=total, desc="toy-memory", disable=not show_progress)
    for seed in config.seeds:
        path = out_dir / "runs" / f"seed{seed}.json"
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("key") == key:
                per_seed[seed] = record
                progress.update(config.num_scripts)
                continue
        scripts = memory_benchmark_scripts(seed, config)
        results = []
        for j, script in enumerate(scripts):
            truth = render_script_clips(script, config.num_frames, config.num_condition_frames, size=config.size)
            entry: dict[str, Any] = {"script_index": j, "prompts": [c["prompt"] for c in script]}
            for name, kv in zip(VARIANTS, (config.kv_cache_clips, 0)):
                frames, kv_plan = _generate(pipe, script, truth.frames, kv, seed, config, pipe_kwargs)
                records = score_memory_video(
                    frames,
                    script,
                    config.num_frames,
                    config.num_condition_frames,
                    config.palette,
                    config.object_threshold,
                    config.presence_fraction,
                    config.near_margin,
                )
                entry[name] = {"clips": records, "summary": summarise_records(records)}
                if kv:
                    entry[name]["attention"] = _attention_diagnosis(script, kv_plan)
                    entry[name]["attends"] = [e["attends"] for e in kv_plan]
                if seed == config.seeds[0]:
                    entry.setdefault("_frames", {})[name] = frames
            if seed == config.seeds[0]:
                sheet_rows.append((script, truth.frames, entry.pop("_frames")))
            results.append(entry)
            progress.update(1)
        record = {"key": key, "seed": seed, "scripts": results}
        write_json_atomic(path, record)
        per_seed[seed] = record
    progress.close()

    report = _summarise(config, per_seed, command=command, model=model, scheduler=scheduler_config)
    (out_dir / "memory.json").write_text(json.dumps(report, indent=1))
    (out_dir / "memory.md").write_text(format_memory_markdown(report))
    if not sheet_rows:  # every seed reused: regenerate the first seed's videos for the sheet
        for script in memory_benchmark_scripts(config.seeds[0], config):
            truth = render_script_clips(script, config.num_frames, config.num_condition_frames, size=config.size)
            videos = {
                name: _generate(pipe, script, truth.frames, kv, config.seeds[0], config, pipe_kwargs)[0]
                for name, kv in zip(VARIANTS, (config.kv_cache_clips, 0))
            }
            sheet_rows.append((script, truth.frames, videos))
    write_memory_contact_sheet(sheet_rows, out_dir / "memory_comebacks.png", config)
    return report


def _summarise(config: MemoryBenchmarkConfig, per_seed: dict[int, dict[str, Any]], **info: Any) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        rows = {}
        for metric in METRICS:
            by_seed = []
            for seed in config.seeds:
                records = [r for s in per_seed[seed]["scripts"] for r in s[name]["clips"]]
                by_seed.append(summarise_records(records)[metric])
            rows[metric] = {**_mean_std(by_seed), "per_seed": by_seed}
        table[name] = rows
    attention: dict[str, dict[str, list[float]]] = {}
    for seed in config.seeds:
        for s in per_seed[seed]["scripts"]:
            for clip in s["ours"].get("attention", []):
                for block, shares in clip["blocks"].items():
                    for part, value in shares.items():
                        attention.setdefault(block, {}).setdefault(part, []).append(value)
    attention_mean = {
        block: {part: float(np.mean(values)) for part, values in parts.items()}
        for block, parts in sorted(attention.items(), key=lambda item: int(item[0]))
    }
    return {
        "version": RESULTS_VERSION,
        "config": config.to_dict(),
        "chance": config.chance,
        "table": table,
        "attention": attention_mean,
        **info,
    }


def _fmt(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "–"
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}"


def format_memory_markdown(report: dict[str, Any]) -> str:
    """`memory.md`: the table (mean ± sample std over seeds), per-seed values and the attention diagnosis."""
    config = report["config"]
    lines = [
        "# Memory benchmark (`longvid toy-memory`)",
        "",
        f"{len(config['seeds'])} seeds × {config['num_scripts']} re-entry scripts (`memory_script`, {config['num_clips']} "
        f"clips to the comeback + {config['clips_after']} after), palette {', '.join(config['palette'])} (chance "
        f"{report['chance']:.3f}); {config['num_frames']} frames per clip, {config['num_condition_frames']} condition "
        f"frames, {config['num_inference_steps']} steps, guidance {config['guidance_scale']}, scheduler "
        f"{report.get('scheduler')}; ours = KV cache of {config['kv_cache_clips']} clips, no-KV = `kv_cache_clips=0`, "
        "same noise. Mean ± sample std over seeds.",
        "",
    ]
    if report.get("command"):
        lines += ["```bash", report["command"], "```", ""]
    lines += ["| metric | ours (KV cache) | no KV |", "|---|---|---|"]
    for metric in METRICS:
        cells = [_fmt(report["table"][name][metric]) for name in VARIANTS]
        lines.append(f"| {metric.replace('_', ' ')} | {' | '.join(cells)} |")
    lines += ["", "Per seed (ours / no KV):", ""]
    for metric in METRICS:
        ours = report["table"]["ours"][metric]["per_seed"]
        no_kv = report["table"]["no-KV"][metric]["per_seed"]
        pairs = " · ".join(
            f"{'–' if a is None else f'{a:.3f}'} / {'–' if b is None else f'{b:.3f}'}" for a, b in zip(ours, no_kv)
        )
        lines.append(f"- {metric.replace('_', ' ')}: {pairs}")
    if report.get("attention"):
        lines += [
            "",
            "## Attention in the comeback clips (ours)",
            "",
            "Share of the attention mass of the comeback clip's queries (cond branch, mean over denoising forwards and "
            "comeback clips) per cached block:",
            "",
            "| block | history clips showing the object | other history clips | the clip itself |",
            "|---|---|---|---|",
        ]
        for block, parts in report["attention"].items():
            lines.append(
                f"| {block} | {parts.get('object_clips', 0):.3f} | {parts.get('other_clips', 0):.3f} | "
                f"{parts.get('current', 0):.3f} |"
            )
    return "\n".join(lines) + "\n"


def write_memory_contact_sheet(
    rows: Sequence[tuple[Sequence[dict[str, Any]], np.ndarray, dict[str, np.ndarray]]],
    path: str | os.PathLike,
    config: MemoryBenchmarkConfig,
    upscale: int = 2,
    max_rows: int | None = None,
) -> Path:
    """One row per comeback: the ground truth while the object was last seen before it left, then the comeback
    clip's last frame in the ground truth and in every generated video (`rows`: `(script, ground-truth frames,
    {variant name: frames})`, the variants in the same order for every row)."""
    import PIL.Image

    from .compare import _label_height, _label_strip
    from .world import clip_frame_ranges

    panels, names = [], None
    for script, truth, videos in rows:
        names = list(videos) if names is None else names
        ranges = clip_frame_ranges(len(script), config.num_frames, config.num_condition_frames)
        visible = [clip["objects"][0].get("visible", True) for clip in script]
        for comeback, flags in enumerate(is_reentry(script)):
            if not flags[0]:
                continue
            exit_clip = max(n for n in range(comeback) if visible[n])
            seen = ranges[exit_clip][0] + (config.num_condition_frames if exit_clip else 0)  # before it moves out
            last = ranges[comeback][1] - 1
            row = [truth[seen], truth[last]] + [videos[name][last] for name in names]
            panels.append(np.concatenate(row, axis=1))
    if not panels:
        raise ValueError("`rows` hold no comeback to show.")
    panels = panels[:max_rows] if max_rows else panels
    grid = np.concatenate(panels, axis=0)
    grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    titles = ["GT before it left", "GT comeback"] + [n if n != "no-KV" else "no KV" for n in names]
    width = grid.shape[1] // len(titles)
    labels = np.concatenate([_label_strip(t, width, _label_height(width)) for t in titles], axis=1)
    image = np.concatenate([labels[:, : grid.shape[1]], grid], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(image).save(path)
    return path
