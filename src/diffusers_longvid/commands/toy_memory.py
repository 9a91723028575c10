"""`longvid toy-memory`: the memory benchmark (does the KV cache bring back an object that left the frame?)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "toy-memory",
        help="Memory benchmark on the toy world: re-entry colour with and without the KV cache (mean ± std).",
        description=(
            "Generate re-entry scripts (an object is named, leaves, stays away, comes back with a prompt that names "
            "only its shape) with and without the KV cache on the same noise, score presence and colour against the "
            "ground truth, and write memory.json, memory.md, memory_comebacks.png and runs/seed*.json to --out "
            "(reused by a rerun with the same settings). Sampling settings default to the model's preset.json."
        ),
    )
    parser.add_argument("--model", required=True, help="A pipeline folder, or `toy` for the built-in toy preset.")
    parser.add_argument("--out", type=Path, required=True, help="Output folder.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Script sets and noise seeds.")
    parser.add_argument("--num-scripts", type=int, default=16, help="Scripts per seed.")
    parser.add_argument("--num-clips", type=int, default=5, help="Clips up to and including the comeback.")
    parser.add_argument("--clips-after", type=int, default=1, help="Named clips after the comeback.")
    parser.add_argument("--kv-cache-clips", type=int, default=5, help="History clips of the KV variant.")
    parser.add_argument("--num-frames", type=int, default=None, help="Frames per clip (default: preset.json).")
    parser.add_argument("--num-condition-frames", type=int, default=None, help="Default: preset.json.")
    parser.add_argument("--num-inference-steps", type=int, default=None, help="Default: preset.json.")
    parser.add_argument("--guidance-scale", type=float, default=None, help="Default: preset.json.")
    parser.add_argument("--max-sequence-length", type=int, default=None, help="Default: preset.json.")
    parser.add_argument("--no-attention-probe", action="store_true", help="Skip the attention-share diagnosis.")
    parser.add_argument("--device", default="cpu", help="Device of the pipeline (e.g. cpu, cuda).")
    parser.add_argument(
        "--kv-cache-config",
        default=None,
        metavar="JSON",
        help="CrossClipKVCacheConfig of the KV variant as JSON, e.g. '{\"history_pool\": [2, 2, 2]}' for compressed "
        "history (default: the model's). Use its own --out folder: saved runs there are reused by settings that "
        "do not include this option.",
    )
    parser.add_argument(
        "--lora",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="A stage-2 LoRA (`longvid train-causal-lora`'s final/ folder, or its pytorch_lora_weights.safetensors) "
        "loaded on top of --model with `load_lora_weights`; generate with the KV-cache config it was trained with "
        "(its training_info.json), e.g. --kv-cache-config for a LoRA trained on pooled history.",
    )
    parser.set_defaults(func=run)


def _check_lora(path: Path) -> tuple[Path, Any]:
    """The LoRA file of `--lora` and the `CrossClipKVCacheConfig` it was trained with (its training_info.json's
    KV-cache config; dense when it has none)."""
    import json

    from ..attention import CrossClipKVCacheConfig

    file = path / "pytorch_lora_weights.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(
            f"`--lora {path}` must be a folder with pytorch_lora_weights.safetensors (or that file); "
            f"{file} does not exist."
        )
    info_path = file.parent / "training_info.json"
    try:
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    except (OSError, ValueError) as error:
        raise ValueError(f"`--lora`: could not read {info_path}: {error}") from None
    trained = info.get("kv_cache_config") if isinstance(info, dict) else None
    return file, CrossClipKVCacheConfig.from_dict(trained or {})


def _command_line(args: argparse.Namespace, config) -> str:
    parts = ["longvid", "toy-memory", "--model", args.model, "--out", str(args.out), "--seeds"]
    parts += [str(s) for s in config.seeds]
    parts += ["--num-scripts", str(config.num_scripts), "--num-clips", str(config.num_clips)]
    parts += ["--clips-after", str(config.clips_after), "--kv-cache-clips", str(config.kv_cache_clips)]
    parts += ["--num-frames", str(config.num_frames), "--num-condition-frames", str(config.num_condition_frames)]
    parts += ["--num-inference-steps", str(config.num_inference_steps)]
    parts += ["--guidance-scale", f"{config.guidance_scale:g}"]
    if config.max_sequence_length is not None:
        parts += ["--max-sequence-length", str(config.max_sequence_length)]
    if not config.probe_attention:
        parts.append("--no-attention-probe")
    if args.kv_cache_config is not None:
        parts += ["--kv-cache-config", args.kv_cache_config]
    if args.lora is not None:
        parts += ["--lora", str(args.lora)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from ..attention import CrossClipKVCacheConfig
    from ..presets import resolve_model
    from ..toy.memory import MemoryBenchmarkConfig, run_memory_benchmark
    from ..toy.preset import load_preset_settings

    try:
        model_path = resolve_model(args.model)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not Path(model_path).is_dir() and Path(model_path).exists():
        print(f"error: `--model {args.model}` is a file, not a pipeline folder.", file=sys.stderr)
        return 2
    preset = load_preset_settings(model_path)  # the defaults when the folder (or a Hub id) has no preset.json

    def pick(value, key):
        return preset[key] if value is None else value

    try:
        config = MemoryBenchmarkConfig(
            seeds=args.seeds,
            num_scripts=args.num_scripts,
            num_clips=args.num_clips,
            clips_after=args.clips_after,
            kv_cache_clips=args.kv_cache_clips,
            num_frames=pick(args.num_frames, "num_frames"),
            num_condition_frames=pick(args.num_condition_frames, "num_condition_frames"),
            num_inference_steps=pick(args.num_inference_steps, "num_inference_steps"),
            guidance_scale=pick(args.guidance_scale, "guidance_scale"),
            max_sequence_length=pick(args.max_sequence_length, "max_sequence_length"),
            size=int(preset.get("height", 64)),
            fps=int(preset.get("fps", 16)),
            probe_attention=not args.no_attention_probe,
        )
        pipe_kwargs = {}
        if args.kv_cache_config is not None:
            import json

            try:
                data = json.loads(args.kv_cache_config)
            except json.JSONDecodeError as error:
                raise ValueError(f"`--kv-cache-config` is not valid JSON: {error}") from None
            if not isinstance(data, dict):
                raise ValueError(f"`--kv-cache-config` must be a JSON object, got {args.kv_cache_config!r}.")
            pipe_kwargs["kv_cache_config"] = CrossClipKVCacheConfig.from_dict(data)
        lora_file, trained = (None, None) if args.lora is None else _check_lora(args.lora)
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from ..pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline

    print(f"Loading {model_path} ...", file=sys.stderr)
    try:
        pipe = LongVideoExtensionPipeline.from_pretrained(model_path)
    except (OSError, ValueError) as error:
        print(f"error: could not load a pipeline from `--model {args.model}`: {error}", file=sys.stderr)
        return 2
    model_name = args.model
    if lora_file is not None:
        used = pipe_kwargs.get("kv_cache_config", CrossClipKVCacheConfig()).to_dict()
        trained_dict = trained.to_dict()
        for name in ("history_pool", "history_keep_ratio"):  # how the history the LoRA read was compressed
            if trained_dict[name] != used[name]:
                print(
                    f"warning: `--lora` was trained with {name}={trained_dict[name]}, this run uses "
                    f"{used[name]} (set --kv-cache-config to match).",
                    file=sys.stderr,
                )
        try:
            pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
        except (OSError, ValueError) as error:
            print(f"error: could not load `--lora {args.lora}`: {error}", file=sys.stderr)
            return 2
        model_name = f"{args.model} + LoRA {args.lora}"
    pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    command = _command_line(args, config)
    report = run_memory_benchmark(pipe, args.out, config=config, command=command, model=model_name, **pipe_kwargs)
    table = report["table"]
    for name in ("ours", "no-KV"):
        row = ", ".join(
            f"{metric} {table[name][metric]['mean']:.3f}" if table[name][metric]["mean"] is not None else f"{metric} –"
            for metric in table[name]
        )
        print(f"{name}: {row}")
    print(f"chance {report['chance']:.3f}; wrote {args.out / 'memory.md'}, memory.json, memory_comebacks.png")
    print(f"Reproduce with: {command}")
    return 0
