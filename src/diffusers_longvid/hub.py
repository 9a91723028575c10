# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Publishing to the Hugging Face Hub: a Hub-ready folder with a model card, and its upload.

```py
from diffusers_longvid.hub import prepare_hub_folder, upload_hub_folder

folder = prepare_hub_folder(
    "hub_upload", repo_id="me/wan21-longvid-kv-lora", lora="runs/causal_lora/final",
    sample_video="fox.mp4", eval_results="eval_report/eval_results.json",
)
upload_hub_folder(folder.path, "me/wan21-longvid-kv-lora", private=True)   # create_repo + upload_folder
```

The folder is exactly what the Hub repository will hold, so it loads through the same code path as the Hub id:
`LongVideoExtensionPipeline.from_pretrained(folder)` (pipeline weights) or `pipe.load_lora_weights(folder)` (LoRA).
Its `README.md` is the model card, rendered by [`render_model_card`]; the repository's root `model_card.md` is the
same function's output without weights (`longvid model-card --out model_card.md`), so there is one text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers.utils import logging


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "DEFAULT_BASE_MODEL",
    "HubFolder",
    "LORA_WEIGHT_NAME",
    "MODEL_CARD_TAGS",
    "format_eval_results_table",
    "prepare_hub_folder",
    "render_model_card",
    "summarize_lora_file",
    "upload_hub_folder",
]

DEFAULT_BASE_MODEL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
# diffusers' `LORA_WEIGHT_NAME_SAFE`: the file `load_lora_weights(folder_or_repo_id)` looks for by default
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
MODEL_CARD_TAGS: tuple[str, ...] = (
    "text-to-video",
    "long-video",
    "video-extension",
    "wan2.1",
    "kv-cache",
    "t-rflow",
    "diffusers-longvid",
)
PROJECT_URL = "https://github.com/diffusers-longvid/diffusers-longvid"
TRAINING_INFO_NAME = "training_info.json"  # written next to the final weights by both trainers
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".gguf")
_KINDS = ("lora", "pipeline", "pipeline+lora")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

# ----------------------------------------------------------------------------------------------------------- card text
# The sections every card shares. The root `model_card.md` and every pushed card are rendered from these constants.

_INTRO = """\
Long (minute-length and longer) **single-shot** videos from Wan2.1 with
[diffusers-longvid]({url}), an implementation of *Towards Error-Free Long Video Generation*. A video is generated
clip by clip: every clip has its own prompt, is conditioned on the last frames of the previous clip, attends the
keys/values of a few selected earlier clips, and is sampled with T-RFlow."""

_METHOD = """\
## Method

- **Video extension model (stage 1).** Wan2.1-T2V's transformer is widened from 16 to 36 input channels:
  `[noisy latent (16) | mask (4) | condition latent (16)]`, the layout of Wan2.1-I2V. The 20 new input channels start
  at zero, so the converted model is exactly the T2V model; it is then fine-tuned on short clips conditioned on their
  first frames, last frames, both, or nothing (10 %).
- **Cross-clip KV cache (stage 2).** In the latter half of the transformer blocks, the self-attention of clip `n`
  also attends the keys/values of up to 5 earlier clips: bidirectional inside a clip, causal across clips. History
  keys keep the RoPE positions of their own clip, and positions grow along the whole video. Clips are selected by
  the similarity of their prompts (sentence-transformers embeddings, as the paper's Sentence-BERT; comparable scores
  prefer the earlier clip), and a storage plan keeps only the K/V some later clip will read, so memory is constant in
  the video length. Stage 2 trains a LoRA on `attn1.to_k` / `attn1.to_v` of those blocks only.
- **T-RFlow (training-free).** Euler sampling of a rectified flow is a weighted ensemble of per-step clean
  estimates. T-RFlow keeps the estimates of the middle of the trajectory, `t ∈ [0.3, 0.7]` (0 = noise, 1 = clean), and
  renormalises: the early, low-frequency estimates leave the ensemble, and the late, high-frequency steps, where
  long-video errors accumulate, are not even evaluated.
- **Training-free mode.** A stock 16-channel Wan2.1-T2V runs the same clip loop with *replacement conditioning*
  (the known latent frames are overwritten at every step), without KV memory.

Details: [docs/method.md]({url}/blob/main/docs/method.md), [DESIGN decisions]({url}/blob/main/docs/design.md)."""

_INTENDED_USE = """\
## Intended use

Research on long video generation and a diffusers-native starting point for it: generating long single-shot videos
from a script of per-clip prompts, continuing a video, or animating an image into a long video, and studying error
accumulation (drift of quality and identity over time). Not intended for generating deceptive content about real
people or events, nor for any use that the base model's license and
[Wan2.1's usage policy](https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers) exclude."""

_LIMITATIONS = """\
## Limitations

- There are no public weights or code from the paper; this is an independent implementation, and its quality on
  Wan2.1 has **not** been measured against the paper's numbers (VBench, Table 1).
- The base model's limits apply: 480p, 16 fps, 5-second clips, and the biases of its training data.
- Memory: with 5 history clips, bf16 and CFG, Wan2.1-1.3B at 832×480, 81 frames holds about 28 GiB of history K/V
  (`offload_to_cpu=True`, history frame subsampling or fewer cached clips reduce it; see
  [docs/troubleshooting.md]({url}/blob/main/docs/troubleshooting.md)).
- Identity over very long gaps is only as good as the prompt-based clip selection: a clip that is not selected is not
  remembered.
- Not real time: every clip runs a full diffusion schedule (T-RFlow saves the steps after its window)."""

_PAPER_TRAINING_DATA = """\
The paper trains stage 1 on 2–5 s clips from its XunGuang-1.1M dataset (0–9 condition frames per example) and
stage 2 on long videos from XunGuang-1.1M plus 10,000 private videos, keeping 5 history clips. Neither set is public;
this project's trainers read any JSONL manifest of captioned clips
([docs/data.md]({url}/blob/main/docs/data.md))."""

_TOY_NOT_SHIPPED = """\
## The `toy` preset

The package reserves a built-in `toy` preset, a tiny model trained on the package's procedural toy world (flat-colour
shapes moving across coloured backgrounds, `diffusers_longvid.toy`), meant to show the method's mechanics on a CPU.
**It is not trained or shipped in this version**: `get_preset_path("toy")` raises `FileNotFoundError`, and
`make demo` runs the same code path on a tiny *randomly initialised* model whose frames are noise. Even when it ships,
it will say nothing about real video quality: it sees a few flat shapes at a tiny resolution."""

_TOY_SHIPPED = """\
## The `toy` preset

The package ships a built-in `toy` preset (`get_preset_path("toy")`, `longvid generate --model toy`; 20 MB), a
1.8 M-parameter extension model trained with this project's trainers on a 2-core CPU, on the package's procedural
toy world (flat-colour shapes moving across coloured, textured backgrounds, `diffusers_longvid.toy`). It shows the
method's mechanics on a CPU and what they do at that scale ([docs/results.md]({url}/blob/main/docs/results.md)):
on the re-entry benchmark (`longvid toy-memory`: an object is named, leaves, comes back with a prompt that names only
its shape) the KV cache brings back the right colour in 0.958 of the comebacks against 0.292 without it (chance
0.167), and the model draws a named object in 0.948 of the clips that name it. On the random-world ablation its
background colour error is about 24 against the first preset's 11: it paints objects it cannot place over the
background (with the objects removed its backgrounds are as good as the first preset's). Pooled history
(`history_pool`) loses most of the memory on it; token selection (`history_keep_ratio=0.15`, the same token budget)
keeps most of it. It says nothing about real video, and its numbers are not comparable to any published figure."""

_REPRODUCE = """\
## How to reproduce

```bash
pip install "diffusers-longvid[train,eval]"
# 0. data: a JSONL manifest of captioned clips (docs/data.md); optional latent cache
longvid cache-latents --help
# 1. stage 1: the 36-channel video extension model (full fine-tune)
longvid train-extension --pretrained-model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --manifest train.jsonl \\
    --save-pipeline --output-dir runs/extension
# 2. stage 2: causal K/V LoRA on the cached blocks, trained with history K/V
longvid train-causal-lora --pretrained-model runs/extension/final --manifest long_videos.jsonl \\
    --output-dir runs/causal_lora
# 3. generate, evaluate, publish
longvid generate --model runs/extension/final --prompts-file script.txt --out long.mp4
longvid eval long.mp4 --out eval_report
longvid push-to-hub --repo-id USER/NAME --lora runs/causal_lora/final --base-model USER/EXTENSION \\
    --sample-video long.mp4 --eval-results eval_report/eval_results.json --dry-run --out hub_upload
```

Multi-GPU recipes (accelerate, FSDP, DeepSpeed) are in
[examples/training/]({url}/tree/main/examples/training); every flag is listed in
[docs/cli.md]({url}/blob/main/docs/cli.md)."""

_CITATION = """\
## Citation

The method is from *Towards Error-Free Long Video Generation*; the base model is
[Wan2.1](https://github.com/Wan-Video/Wan2.1) (Apache-2.0). This implementation:
[diffusers-longvid]({url}) (Apache-2.0)."""


# ------------------------------------------------------------------------------------------------------- eval table
def _load_json(value: str | os.PathLike | Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"`{name}` {str(path)!r} is not a file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"`{name}` {str(path)!r} is not valid JSON: {error}.") from error
    if not isinstance(data, dict):
        raise ValueError(f"`{name}` {str(path)!r} must hold a JSON object, got {type(data).__name__}.")
    return data


def format_eval_results_table(eval_results: str | os.PathLike | Mapping[str, Any]) -> str:
    r"""
    The Markdown table of a `longvid eval` result for a model card: every dimension's overall score and its slope per
    minute (error accumulation), with the backend and the comparability note.

    Args:
        eval_results (`str`, `os.PathLike` or `dict`):
            `eval_results.json` written by `longvid eval` / [`~diffusers_longvid.write_eval_report`] (one video or a
            folder of videos), or the dict it holds.
    """
    from .evaluation.report import METRIC_LABELS, PAPER_SCORES

    data = _load_json(eval_results, "eval_results")
    scores = data.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise ValueError(
            "`eval_results` must be the JSON written by `longvid eval` (with a non-empty `scores` object), got keys "
            f"{sorted(data)}."
        )
    unknown = [m for m in scores if m not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"`eval_results` has unknown metrics {unknown}; expected among {list(METRIC_LABELS)}.")
    slopes = data.get("slopes") or {}
    proxy_dimensions = list(data.get("proxy_dimensions") or [])
    backend = data.get("backend", "unknown")

    def fmt(value: Any, signed: bool = False) -> str:
        if not isinstance(value, (int, float)):
            return "–"
        return f"{value:+.4f}" if signed else f"{value:.4f}"

    if "videos" in data:
        what = f"mean over {data.get('num_videos', len(data['videos']))} videos"
    else:
        duration = data.get("duration_seconds")
        what = f"`{data.get('name', 'video')}`" + (f", {duration:.1f} s" if isinstance(duration, (int, float)) else "")
    lines = [
        f"`longvid eval`, backend `{backend}` ({what}); slopes are per minute of video (negative = degrades).",
        "",
        "| Dimension | Score | Slope / min |",
        "| --- | ---: | ---: |",
    ]
    for metric in METRIC_LABELS:
        if metric in scores:
            label = METRIC_LABELS[metric] + (" †" if metric in proxy_dimensions else "")
            lines.append(f"| {label} | {fmt(scores[metric])} | {fmt(slopes.get(metric), signed=True)} |")
    lines.append("")
    if data.get("proxies", bool(proxy_dimensions)):
        lines.append(
            "† Offline proxy (classical image statistics, no VBench model): **not comparable to published VBench "
            "numbers**; compare runs of this table with each other only."
        )
    elif proxy_dimensions:
        lines.append(
            "† Computed with a stand-in for VBench's model (see docs/evaluation.md). For context, the paper's "
            "Table 1 (Wan2.1-T2V-1.3B, VBench): "
            + ", ".join(f"{METRIC_LABELS[m].lower()} {v:.4f}" for m, v in PAPER_SCORES.items())
            + "."
        )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- rendering
def _toy_preset_shipped() -> bool:
    from .presets import get_preset_path

    try:
        get_preset_path("toy")
    except FileNotFoundError:
        return False
    return True


def _settings_call(settings: Mapping[str, Any]) -> str:
    keys = ("height", "width", "num_frames", "num_condition_frames")
    parts = [f"{k}={settings[k]!r}" for k in keys if settings.get(k) is not None]
    return ", ".join(parts) if parts else "height=480, width=832, num_frames=81, num_condition_frames=5"


def _usage_section(
    kind: str | None, repo_id: str | None, base_model: str, settings: Mapping[str, Any], extension: bool | None
) -> str:
    call = _settings_call(settings)
    stream = f"""\
prompts = [  # a list is a script: one prompt per clip, in order
    "A red fox trots through fresh snow in a birch forest, morning light.",
    "The fox stops, lifts its head and listens, snow falling softly.",
    "The fox pounces into the snow and comes up with snow on its nose.",
]
with StreamingVideoWriter("fox.mp4", fps=16) as writer:  # each clip is on disk as soon as it is done
    for clip in pipe.generate_clips(prompts, {call}):
        writer.append(clip.frames[0])"""
    names = "LongVideoExtensionPipeline" + (", TRFlowScheduler" if kind is None else "")
    header = f"""\
import torch
from diffusers_longvid import {names}
from diffusers_longvid.video_io import StreamingVideoWriter
"""
    dtype = 'dtype={"default": torch.bfloat16, "vae": torch.float32}'
    pipeline_kwargs = ""
    for key in ("kv_cache_clips", "kv_cache_config", "clip_selector", "condition_fill"):
        if key in settings and settings[key] is not None:
            pipeline_kwargs += f",\n    {key}={settings[key]!r}"
    lines = ["## How to use", "", "```bash", 'pip install "diffusers-longvid[offline-text]"', "```", ""]
    if kind is None:
        lines += [
            "Training-free, on the stock Wan2.1-T2V weights (replacement conditioning, T-RFlow, no KV memory):",
            "",
            "```python",
            header,
            "pipe = LongVideoExtensionPipeline.from_pretrained(",
            f'    "{DEFAULT_BASE_MODEL}", {dtype}, kv_cache_clips=0',
            ")",
            "pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)",
            'pipe.to("cuda")',
            stream,
            "```",
            "",
            'With trained weights: `LongVideoExtensionPipeline.from_pretrained("USER/EXTENSION")` for a stage-1',
            'extension pipeline, then `pipe.load_lora_weights("USER/KV-LORA", adapter_name="kv")` for a stage-2',
            "LoRA. The same from the command line:",
            "",
            "```bash",
            "longvid generate --model USER/EXTENSION --prompts-file script.txt --out long.mp4",
            "```",
        ]
        return "\n".join(lines)

    load_from = repo_id if "pipeline" in kind else base_model
    lines += ["```python", header]
    lines += [f'pipe = LongVideoExtensionPipeline.from_pretrained(\n    "{load_from}", {dtype}{pipeline_kwargs}\n)']
    if "lora" in kind:
        lines.append(f'pipe.load_lora_weights("{repo_id}", adapter_name="kv")  # the stage-2 K/V LoRA')
    lines += ['pipe.to("cuda")', stream, "```", ""]
    if kind == "lora":
        lines.append(
            f'`{base_model}` is the pipeline this LoRA was trained on. `pipe.set_adapters(["kv", ...], [1.0, ...])` '
            "stacks it with other LoRAs (it adapts only `attn1.to_k` / `attn1.to_v` of the cached blocks), and "
            "`pipe.fuse_lora()` merges it."
        )
    else:
        mode = (
            "a video extension model (concatenation conditioning)"
            if extension
            else "a text-to-video transformer (training-free replacement conditioning)"
        )
        lines.append(
            f"The transformer is {mode}. From the command line: "
            f"`longvid generate --model {repo_id} --prompts-file script.txt --out long.mp4`. Loading needs "
            "`diffusers-longvid` installed: the pipeline and its `TRFlowScheduler` live in that package."
        )
    return "\n".join(lines)


def _weights_section(kind: str, lora_summary: Mapping[str, Any] | None, pipeline_summary: Mapping[str, Any] | None):
    lines = ["## Weights", ""]
    if pipeline_summary is not None:
        lines.append(
            f"- A complete `LongVideoExtensionPipeline` folder (`model_index.json`, "
            f"{', '.join(f'`{c}/`' for c in pipeline_summary['components'])}); transformer with "
            f"{pipeline_summary['in_channels']} input channels."
        )
    if lora_summary is not None:
        blocks = lora_summary["blocks"]
        where = f"blocks {blocks[0]}–{blocks[-1]}" if blocks else "no transformer block"
        lines.append(
            f"- `{LORA_WEIGHT_NAME}` in diffusers' LoRA format: rank {lora_summary['rank']}, "
            f"{lora_summary['num_modules']} adapted modules ({', '.join(lora_summary['projections'])} in {where})."
        )
    return "\n".join(lines)


def _training_section(training_info: Mapping[str, Any] | None, training_data: str | None) -> str:
    lines = ["## Training data", ""]
    if training_data:
        lines += [training_data.strip(), ""]
    elif training_info is not None:
        lines += ["Not described by the uploader.", ""]
    if training_info:
        shown = {
            k: training_info[k]
            for k in (
                "stage",
                "base_model",
                "height",
                "width",
                "num_frames",
                "fps",
                "num_condition_frames",
                "lora_rank",
            )
            if training_info.get(k) is not None
        }
        if shown:
            lines += [
                "Training settings (`training_info.json`): " + ", ".join(f"{k} `{v}`" for k, v in shown.items()) + ".",
                "",
            ]
    lines.append(_PAPER_TRAINING_DATA.format(url=PROJECT_URL))
    return "\n".join(lines)


def _sample_section(repo_id: str, sample_path: str, sample_info: Mapping[str, Any] | None) -> str:
    url = f"https://huggingface.co/{repo_id}/resolve/main/{sample_path}"
    lines = ["## Sample", "", f'<video controls autoplay loop muted src="{url}"></video>', ""]
    if sample_info:
        prompts = sample_info.get("prompts") or []
        settings = sample_info.get("settings") or {}
        facts = [f"seed `{sample_info['seed']}`"] if sample_info.get("seed") is not None else []
        facts += [
            f"{k} `{settings[k]}`"
            for k in (
                "height",
                "width",
                "num_frames",
                "num_condition_frames",
                "num_inference_steps",
                "tau_low",
                "tau_high",
                "kv_cache_clips",
            )
            if settings.get(k) is not None
        ]
        if facts:
            lines += [f"`longvid generate` with {', '.join(facts)}; the script:", ""]
        lines += [f"{i + 1}. {p}" for i, p in enumerate(prompts)]
    return "\n".join(lines).rstrip()


def render_model_card(
    repo_id: str | None = None,
    kind: str | None = None,
    base_model: str = DEFAULT_BASE_MODEL,
    lora_summary: Mapping[str, Any] | None = None,
    pipeline_summary: Mapping[str, Any] | None = None,
    training_info: Mapping[str, Any] | None = None,
    training_data: str | None = None,
    sample_video: str | None = None,
    sample_info: Mapping[str, Any] | None = None,
    eval_results: str | os.PathLike | Mapping[str, Any] | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
):
    r"""
    Render a model card (`huggingface_hub.ModelCard`) with YAML metadata for the Hub.

    With no argument it renders the repository's generic card (the root `model_card.md`). [`prepare_hub_folder`]
    fills in the weights, the sample video and the evaluation table.

    Args:
        repo_id (`str`, *optional*): The Hub repository, `"user/name"`; used in the usage code and the video link.
        kind (`str`, *optional*): `"lora"`, `"pipeline"` or `"pipeline+lora"`; `None` for the generic card.
        base_model (`str`, *optional*, defaults to `"Wan-AI/Wan2.1-T2V-1.3B-Diffusers"`):
            The `base_model` metadata: the pipeline a LoRA applies to, or the model a pipeline was fine-tuned from.
        lora_summary (`dict`, *optional*): `rank`, `num_modules`, `blocks`, `projections` of the LoRA file.
        pipeline_summary (`dict`, *optional*): `components`, `in_channels` and `config` of the pipeline folder.
        training_info (`dict`, *optional*): The trainers' `training_info.json`.
        training_data (`str`, *optional*): The uploader's description of the training data (Markdown).
        sample_video (`str`, *optional*): Path of the sample video *inside the repository*, e.g. `"samples/fox.mp4"`.
        sample_info (`dict`, *optional*): The `longvid generate` sidecar JSON of the sample (prompts, seed, settings).
        eval_results (`str`, `os.PathLike` or `dict`, *optional*): `longvid eval`'s `eval_results.json`.
        license (`str`, *optional*, defaults to `"apache-2.0"`): The license metadata (Wan2.1's license).
        tags (`Sequence[str]`, *optional*): Extra tags, added after [`MODEL_CARD_TAGS`].
    """
    from huggingface_hub import ModelCard, ModelCardData

    if kind is not None and kind not in _KINDS:
        raise ValueError(f"`kind` must be one of {list(_KINDS)} or None, got {kind!r}.")
    if kind is not None and repo_id is None:
        raise ValueError("`repo_id` is required when `kind` is given (the usage code loads it).")
    if (sample_video is not None or sample_info is not None) and repo_id is None:
        raise ValueError("`sample_video` needs `repo_id` (the card links the video on the Hub).")

    all_tags = list(MODEL_CARD_TAGS)
    if kind is not None and "lora" in kind:
        all_tags.append("lora")
    all_tags += [t for t in tags if t not in all_tags]
    metadata: dict[str, Any] = {}
    if kind == "lora":
        metadata["base_model_relation"] = "adapter"
    elif kind is not None and (training_info or (pipeline_summary or {}).get("extension")):
        metadata["base_model_relation"] = "finetune"  # trained from `base_model` (a stock model re-saved is not)
    if sample_video is not None:
        prompts = (sample_info or {}).get("prompts") or []
        metadata["widget"] = [{"text": prompts[0] if prompts else "", "output": {"url": sample_video}}]
    card_data = ModelCardData(
        library_name="diffusers",
        base_model=base_model,
        pipeline_tag="text-to-video",
        license=license,
        tags=all_tags,
        **metadata,
    )

    settings: dict[str, Any] = {}
    if training_info:
        settings.update({k: training_info.get(k) for k in ("height", "width", "num_frames", "num_condition_frames")})
        if kind == "lora":
            for key in ("kv_cache_clips", "kv_cache_config", "clip_selector", "condition_fill"):
                settings[key] = training_info.get(key)
    extension = None if pipeline_summary is None else bool(pipeline_summary.get("extension"))

    url = PROJECT_URL
    if kind is None:
        title = "diffusers-longvid: long single-shot video with Wan2.1"
    else:
        title = repo_id.split("/")[-1]
    sections = [f"# {title}", "", _INTRO.format(url=url), ""]
    if kind is not None:
        what = {
            "lora": f"the stage-2 K/V LoRA (causal attention across clips) for `{base_model}`",
            "pipeline": "a complete `LongVideoExtensionPipeline`",
            "pipeline+lora": "a complete `LongVideoExtensionPipeline` and its stage-2 K/V LoRA",
        }[kind]
        sections += [f"This repository holds {what}.", ""]
        sections += [_weights_section(kind, lora_summary, pipeline_summary), ""]
    if sample_video is not None:
        sections += [_sample_section(repo_id, sample_video, sample_info), ""]
    sections += [_usage_section(kind, repo_id, base_model, settings, extension), ""]
    sections += [_METHOD.format(url=url), ""]
    sections += [_INTENDED_USE, "", _LIMITATIONS.format(url=url), ""]
    sections += [_training_section(training_info, training_data), ""]
    sections += [(_TOY_SHIPPED if _toy_preset_shipped() else _TOY_NOT_SHIPPED).format(url=url), ""]
    sections += ["## Evaluation", ""]
    if eval_results is not None:
        sections.append(format_eval_results_table(eval_results))
    elif kind is None:
        sections.append(
            "`longvid eval` scores any video on the six VBench dimensions of the paper's Table 1 per 30 s window, "
            "with the slope of each (error accumulation) and AF "
            f"([docs/evaluation.md]({url}/blob/main/docs/evaluation.md)). "
            "A card made by `longvid push-to-hub --eval-results` shows the uploader's table here."
        )
    else:
        sections.append("No evaluation results were attached by the uploader.")
    sections += ["", _REPRODUCE.format(url=url), "", _CITATION.format(url=url), ""]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(sections)
    return ModelCard(content)


# --------------------------------------------------------------------------------------------------- folder building
@dataclass
class HubFolder:
    r"""
    A folder written by [`prepare_hub_folder`], ready for `upload_folder`.

    Args:
        path (`Path`): The folder.
        kind (`str`): `"lora"`, `"pipeline"` or `"pipeline+lora"`.
        files (`list[str]`): Every file in it, relative and sorted.
        card (`huggingface_hub.ModelCard`): The model card written to `README.md`.
    """

    path: Path
    kind: str
    files: list[str] = field(default_factory=list)
    card: Any = None


def _link_or_copy(source: str, destination: str) -> str:
    # weights can be many GB (Wan's UMT5 text encoder is ~11 GB): hard-link when the file system allows it
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def summarize_lora_file(path: str | os.PathLike) -> dict[str, Any]:
    r"""
    Read a diffusers LoRA file's keys (no tensors) and summarise them: rank, adapted modules, blocks, projections.

    Args:
        path (`str` or `os.PathLike`): A `pytorch_lora_weights.safetensors` file.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
        shapes = {k: handle.get_slice(k).get_shape() for k in keys if k.endswith("lora_A.weight")}
    if not keys:
        raise ValueError(f"The LoRA file {str(path)!r} holds no tensor.")
    bad = [k for k in keys if not k.startswith("transformer.")]
    if bad:
        raise ValueError(
            f"The LoRA file {str(path)!r} has keys outside `transformer.` (e.g. {bad[0]!r}); expected diffusers' Wan "
            "LoRA format, as written by `save_lora_weights(dir, transformer_lora_layers=...)`."
        )
    modules = sorted({k[len("transformer.") :].split(".lora_")[0] for k in keys if ".lora_" in k})
    blocks = sorted({int(m.split(".")[1]) for m in modules if m.startswith("blocks.") and m.split(".")[1].isdigit()})
    projections = sorted({".".join(m.split(".")[2:]) for m in modules if m.startswith("blocks.")})
    ranks = sorted({int(shape[0]) for shape in shapes.values()})
    return {
        "rank": ranks[0] if len(ranks) == 1 else ranks,
        "num_modules": len(modules),
        "modules": modules,
        "blocks": blocks,
        "projections": projections,
    }


def _check_pipeline_folder(pipeline: Path) -> dict[str, Any]:
    index_path = pipeline / "model_index.json"
    if not index_path.is_file():
        hint = (
            " It holds only `transformer/`: train with `--save-pipeline --pretrained-model ...`, or build the "
            "pipeline with `LongVideoExtensionPipeline.from_pretrained(base, transformer=...)` and `save_pretrained`."
            if (pipeline / "transformer").is_dir()
            else ""
        )
        raise ValueError(f"`pipeline` {str(pipeline)!r} has no `model_index.json`: it is not a pipeline folder.{hint}")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if index.get("_class_name") != "LongVideoExtensionPipeline":
        raise ValueError(
            f"`pipeline` {str(pipeline)!r} is a {index.get('_class_name')!r} folder; save it with "
            "`LongVideoExtensionPipeline.save_pretrained` (e.g. `LongVideoExtensionPipeline.from_pretrained(folder)"
            ".save_pretrained(out)`), so that the Hub repository loads as this pipeline."
        )
    components = [
        name
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] is not None
    ]
    missing = [name for name in components if not (pipeline / name).is_dir()]
    if missing:
        raise ValueError(
            f"`pipeline` {str(pipeline)!r} lacks the component folders {missing} named in model_index.json."
        )

    def read_config(name: str) -> dict[str, Any]:
        path = pipeline / name / "config.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    in_channels = read_config("transformer").get("in_channels")
    vae_config = read_config("vae")
    # the extension layout is [z | mask | condition]: 2 * z_dim + scale_factor_temporal channels (36 for Wan2.1)
    extension_channels = 2 * vae_config.get("z_dim", 16) + vae_config.get("scale_factor_temporal", 4)
    for name in ("transformer", "vae", "text_encoder"):
        folder = pipeline / name
        if folder.is_dir() and not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.rglob("*")):
            raise ValueError(f"`pipeline` {str(pipeline)!r}: `{name}/` holds no weight file.")
    config = {k: v for k, v in index.items() if k not in components and not k.startswith("_")}
    return {
        "components": components,
        "in_channels": in_channels,
        "extension": in_channels == extension_channels,
        "config": config,
    }


def _read_sample_info(sample: Path) -> dict[str, Any] | None:
    sidecar = sample.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning(f"Ignoring {sidecar}: not valid JSON.")
        return None
    return info if isinstance(info, dict) and "prompts" in info else None


def _check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise ValueError(f"`repo_id` must look like 'user/name' (letters, digits, '-', '_', '.'), got {repo_id!r}.")


def prepare_hub_folder(
    out_dir: str | os.PathLike,
    repo_id: str,
    lora: str | os.PathLike | None = None,
    pipeline: str | os.PathLike | None = None,
    base_model: str | None = None,
    sample_video: str | os.PathLike | None = None,
    eval_results: str | os.PathLike | None = None,
    training_data: str | None = None,
    tags: Sequence[str] = (),
) -> HubFolder:
    r"""
    Write a Hub-ready folder: weights, configs, `README.md` (the model card), sample video and evaluation results.

    The folder is laid out as the Hub repository will be, so what loads from it loads from the Hub id:

    - `pipeline`: the complete `LongVideoExtensionPipeline` folder (`model_index.json` and every component folder,
      configs and weights), for `LongVideoExtensionPipeline.from_pretrained`;
    - `lora`: `pytorch_lora_weights.safetensors` in diffusers' LoRA format, for `pipe.load_lora_weights`;
    - `training_info.json` of the trainers (the settings the weights were trained with), when present;
    - `samples/<video>` (and its `longvid generate` sidecar JSON), `eval/eval_results.json`.

    Args:
        out_dir (`str` or `os.PathLike`): The folder to write; it must not exist or be empty.
        repo_id (`str`): The Hub repository, `"user/name"` (used in the card).
        lora (`str` or `os.PathLike`, *optional*):
            A folder holding `pytorch_lora_weights.safetensors` (e.g. `longvid train-causal-lora`'s `final/`).
        pipeline (`str` or `os.PathLike`, *optional*):
            A `LongVideoExtensionPipeline.save_pretrained` folder (e.g. `longvid train-extension --save-pipeline`'s
            `final/`). At least one of `lora` and `pipeline` is required; with both, the repository holds the pipeline
            and its LoRA.
        base_model (`str`, *optional*):
            The card's `base_model`: for a LoRA, the pipeline it applies to; for a pipeline, the model it was
            fine-tuned from. Defaults to `training_info.json`'s `base_model` if it is a Hub id, else
            `"Wan-AI/Wan2.1-T2V-1.3B-Diffusers"`.
        sample_video (`str` or `os.PathLike`, *optional*): A video to show on the card (mp4).
        eval_results (`str` or `os.PathLike`, *optional*): `eval_results.json` written by `longvid eval`.
        training_data (`str`, *optional*): A description of the training data for the card (Markdown).
        tags (`Sequence[str]`, *optional*): Extra Hub tags.

    Weight files are hard-linked from their source when both folders are on the same file system (a Wan pipeline
    holds ~17 GB), else copied: a kept folder then shares its weight files with the source folder.

    Returns:
        [`HubFolder`]
    """
    _check_repo_id(repo_id)
    if lora is None and pipeline is None:
        raise ValueError("Pass `lora` (a LoRA folder), `pipeline` (a pipeline folder), or both.")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"`out_dir` {str(out)!r} exists and is not an empty folder; choose a new one.")
    lora_path = Path(lora) if lora is not None else None
    pipeline_path = Path(pipeline) if pipeline is not None else None

    # validate everything before writing anything
    lora_file = None
    lora_summary = None
    if lora_path is not None:
        lora_file = lora_path / LORA_WEIGHT_NAME if lora_path.is_dir() else lora_path
        if not lora_file.is_file():
            raise ValueError(f"`lora` {str(lora_path)!r} holds no `{LORA_WEIGHT_NAME}`.")
        lora_summary = summarize_lora_file(lora_file)
    pipeline_summary = _check_pipeline_folder(pipeline_path) if pipeline_path is not None else None
    sample = Path(sample_video) if sample_video is not None else None
    if sample is not None and not sample.is_file():
        raise ValueError(f"`sample_video` {str(sample)!r} is not a file.")
    eval_data = _load_json(eval_results, "eval_results")
    if eval_data is not None:
        format_eval_results_table(eval_data)  # raises on a file that is not `longvid eval`'s
    training_info = None
    for folder in (lora_path if lora_path is not None and lora_path.is_dir() else None, pipeline_path):
        if folder is not None and (folder / TRAINING_INFO_NAME).is_file():
            training_info = _load_json(folder / TRAINING_INFO_NAME, "training_info.json")
            break
    if base_model is None:
        trained_from = (training_info or {}).get("base_model")
        is_hub_id = isinstance(trained_from, str) and _REPO_ID.match(trained_from) and not Path(trained_from).exists()
        base_model = trained_from if is_hub_id else DEFAULT_BASE_MODEL
    kind = "pipeline+lora" if lora is not None and pipeline is not None else ("lora" if lora else "pipeline")

    out.mkdir(parents=True, exist_ok=True)
    if pipeline_path is not None:
        shutil.copy2(pipeline_path / "model_index.json", out / "model_index.json")
        for name in pipeline_summary["components"]:
            shutil.copytree(pipeline_path / name, out / name, copy_function=_link_or_copy)
        if (pipeline_path / TRAINING_INFO_NAME).is_file():
            shutil.copy2(pipeline_path / TRAINING_INFO_NAME, out / TRAINING_INFO_NAME)
    if lora_file is not None:
        _link_or_copy(str(lora_file), str(out / LORA_WEIGHT_NAME))
        lora_info = lora_file.parent / TRAINING_INFO_NAME
        if lora_info.is_file():
            # with a pipeline too, the LoRA's settings are kept apart from the pipeline's
            name = TRAINING_INFO_NAME if pipeline_path is None else "lora_training_info.json"
            shutil.copy2(lora_info, out / name)
    sample_in_repo = None
    sample_info = None
    if sample is not None:
        (out / "samples").mkdir()
        sample_in_repo = f"samples/{sample.name}"
        shutil.copy2(sample, out / sample_in_repo)
        sample_info = _read_sample_info(sample)
        if sample_info is not None:
            shutil.copy2(sample.with_suffix(".json"), out / "samples" / sample.with_suffix(".json").name)
    if eval_data is not None:
        (out / "eval").mkdir()
        (out / "eval" / "eval_results.json").write_text(json.dumps(eval_data, indent=2) + "\n", encoding="utf-8")

    card = render_model_card(
        repo_id=repo_id,
        kind=kind,
        base_model=base_model,
        lora_summary=lora_summary,
        pipeline_summary=pipeline_summary,
        training_info=training_info,
        training_data=training_data,
        sample_video=sample_in_repo,
        sample_info=sample_info,
        eval_results=eval_data,
        tags=tags,
    )
    card.save(str(out / "README.md"))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    logger.info(f"Wrote a Hub folder ({kind}) with {len(files)} files to {out}.")
    return HubFolder(path=out, kind=kind, files=files, card=card)


# ------------------------------------------------------------------------------------------------------------ upload
def upload_hub_folder(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
) -> Any:
    r"""
    Upload a folder to a Hub model repository: `HfApi.create_repo(repo_id, private=..., exist_ok=True)`, then
    `HfApi.upload_folder`.

    Args:
        folder (`str` or `os.PathLike`): The folder, e.g. `prepare_hub_folder(...).path`.
        repo_id (`str`): The repository, `"user/name"`; created if it does not exist.
        private (`bool`, *optional*):
            Create the repository private. `None` uses the Hub's default (public, or the organisation's setting). An
            existing repository keeps its visibility.
        token (`str`, *optional*):
            A Hub token with write access. Defaults to `huggingface_hub`'s lookup: `HF_TOKEN`, then the cached login
            (`hf auth login`).
        commit_message (`str`, *optional*): Defaults to `"Upload with diffusers-longvid"`.
        revision (`str`, *optional*): The branch to push to (default: `main`).

    Returns:
        The `CommitInfo` of the upload (its `commit_url` links the commit).
    """
    from huggingface_hub import HfApi, get_token

    _check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "README.md").is_file():
        raise ValueError(f"`folder` {str(folder)!r} must be a folder with a README.md (see `prepare_hub_folder`).")
    if token is None and get_token() is None:
        raise ValueError(
            "No Hub token found: pass `token`, set `HF_TOKEN`, or log in once with `hf auth login` "
            "(a token with write access)."
        )
    api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    logger.info(f"Uploading {folder} to {url}.")
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        commit_message=commit_message or "Upload with diffusers-longvid",
        revision=revision,
    )
