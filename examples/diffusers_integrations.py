#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`LongVideoExtensionPipeline` with the diffusers tools you already use: offloading, VAE tiling and slicing, bf16,
stacked LoRAs, step callbacks.

- `--offload model|sequential`: `enable_model_cpu_offload()` / `enable_sequential_cpu_offload()`. The cross-clip KV
  buffers follow the device of each forward, so the hooks' moves are respected.
- `--vae-tiling` / `--vae-slicing`: `pipe.vae.enable_tiling()` / `enable_slicing()`; the pipeline encodes and decodes
  one clip at a time, so these only bound the VAE's own peak memory.
- `--dtype bfloat16`: `from_pretrained(..., dtype={"default": torch.bfloat16, "vae": torch.float32})`.
- `--kv-lora` + `--style-lora`: our stage-2 K/V LoRA (on `attn1.to_k` / `to_v` of the cached blocks) stacked with any
  style LoRA of the same base model: `load_lora_weights(..., adapter_name=...)`, `set_adapters([...], [w1, w2])`,
  `get_active_adapters()`, optionally `fuse_lora()`.
- a `callback_on_step_end` that reads `pipe.current_clip_index` and, with `--stop-after-clip N`, stops the video after
  clip N the diffusers way (`pipe._interrupt = True`); the clips finished so far are returned.

Needs:
- real weights: a CUDA GPU (model offload brings the 1.3B pipeline under ~10 GB; sequential offload much lower but
  slow), `--model` weights (default `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`, ~17 GB download), LoRA files you have.
- `--tiny`: CPU only, no weights, seconds: tiny random model and two random LoRAs made on the fly. On the CPU,
  `--offload model` runs the hooks with `device="cpu"`; `--offload sequential` needs an accelerator (diffusers turns
  `device="cpu"` into "cpu:0", which accelerate's sequential hooks then fail on).

Examples:
    python examples/diffusers_integrations.py --model USER/EXTENSION --kv-lora USER/KV-LORA \\
        --style-lora USER/STYLE-LORA --style-weight 0.6 --offload model --vae-tiling --out styled.mp4
    python examples/diffusers_integrations.py --tiny --offload model --vae-tiling --vae-slicing --stop-after-clip 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


DEFAULT_SCRIPT = Path(__file__).parent / "scripts" / "fox_in_snow.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", help="Pipeline folder or Hub id.")
    parser.add_argument("--prompts-file", type=Path, default=DEFAULT_SCRIPT)
    parser.add_argument("--out", type=Path, default=Path("integrations.mp4"))
    parser.add_argument("--offload", choices=("none", "model", "sequential"), default="none")
    parser.add_argument("--vae-tiling", action="store_true")
    parser.add_argument("--vae-slicing", action="store_true", help="Helps with --num-videos > 1.")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="Default: bf16 on CUDA.")
    parser.add_argument("--kv-lora", default=None, help="Our stage-2 K/V LoRA (folder or Hub id).")
    parser.add_argument("--kv-weight", type=float, default=1.0)
    parser.add_argument("--style-lora", default=None, help="Any LoRA of the same base model (folder or Hub id).")
    parser.add_argument("--style-weight", type=float, default=0.8)
    parser.add_argument("--fuse", action="store_true", help="fuse_lora() after set_adapters (faster steps).")
    parser.add_argument("--stop-after-clip", type=int, default=None, help="Interrupt from the callback after clip N.")
    parser.add_argument("--num-videos", type=int, default=1, help="num_videos_per_prompt (the batch).")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--num-frames", type=int, default=81)
    parser.add_argument("--num-inference-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="Tiny random model and LoRAs on the CPU (no weights).")
    return parser.parse_args(argv)


def make_tiny_loras(folder: Path) -> tuple[str, str]:
    """A random K/V LoRA and a random 'style' LoRA (cross-attention and FFN) for the tiny 36-channel transformer."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from diffusers_longvid import LongVideoExtensionPipeline, add_kv_lora
    from diffusers_longvid.testing import get_tiny_transformer

    paths = []
    for name, seed in (("kv", 0), ("style", 1)):
        transformer = get_tiny_transformer(in_channels=36, num_layers=4)
        if name == "kv":
            add_kv_lora(transformer, rank=4)
        else:
            transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["attn2.to_q", "ffn.net.2"]))
        with torch.no_grad():
            for key, param in transformer.named_parameters():
                if "lora_B" in key:
                    param.normal_(std=0.2, generator=torch.Generator().manual_seed(seed))
        path = folder / name
        LongVideoExtensionPipeline.save_lora_weights(
            str(path), transformer_lora_layers=get_peft_model_state_dict(transformer)
        )
        paths.append(str(path))
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lines = [line.strip() for line in args.prompts_file.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]

    import torch

    from diffusers_longvid import LongVideoExtensionPipeline, RecentSelector, TRFlowScheduler
    from diffusers_longvid.video_io import StreamingVideoWriter

    cuda = torch.cuda.is_available()
    if args.offload == "sequential" and not cuda:
        print("error: `--offload sequential` needs an accelerator (see the header of this file).", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if cuda else torch.float32)

    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            from diffusers_longvid.testing import get_dummy_components

            torch.set_num_threads(1)
            folder = Path(scratch) / "pipeline"
            LongVideoExtensionPipeline(**get_dummy_components(in_channels=36, num_layers=4)).save_pretrained(folder)
            args.model = str(folder)
            args.kv_lora, args.style_lora = make_tiny_loras(Path(scratch))
            args.height, args.width, args.num_frames, args.num_inference_steps = 48, 48, 9, 4
            prompts = prompts[:3]
        # the weights in `dtype` (bf16 on a GPU), the VAE in float32 (as diffusers recommends for Wan2.1)
        dtypes = {"default": dtype, "vae": torch.float32}
        pipe = LongVideoExtensionPipeline.from_pretrained(args.model, dtype=dtypes)

        adapters, weights = [], []
        loras = (("kv", args.kv_lora, args.kv_weight), ("style", args.style_lora, args.style_weight))
        for name, path, weight in loras:
            if path is not None:
                pipe.load_lora_weights(path, adapter_name=name)
                adapters.append(name)
                weights.append(weight)
    if adapters:
        pipe.set_adapters(adapters, weights)
        print(f"active adapters: {pipe.get_active_adapters()} with weights {weights}")
        if args.fuse:
            pipe.fuse_lora(adapter_names=adapters)
    kv_cache_clips = 5 if "kv" in adapters else 0
    pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)

    device = "cuda" if cuda else "cpu"
    if args.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif args.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(device)
    if args.vae_tiling:
        if args.tiny:  # tiles smaller than the tiny frames, so tiling really happens
            pipe.vae.enable_tiling(
                tile_sample_min_height=32,
                tile_sample_min_width=32,
                tile_sample_stride_height=16,
                tile_sample_stride_width=16,
            )
        else:
            pipe.vae.enable_tiling()
    if args.vae_slicing:
        pipe.vae.enable_slicing()

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        if step == pipeline.num_timesteps - 1:
            print(f"clip {pipeline.current_clip_index}: last step {step} at t={float(timestep):.0f}")
            if args.stop_after_clip is not None and pipeline.current_clip_index >= args.stop_after_clip:
                pipeline._interrupt = True  # diffusers' way to stop; the finished clips are kept
        return callback_kwargs

    output = pipe(
        prompts,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        num_condition_frames=1 if args.tiny else 5,
        num_inference_steps=args.num_inference_steps,
        num_videos_per_prompt=args.num_videos,
        generator=torch.Generator("cpu").manual_seed(args.seed),
        max_sequence_length=16 if args.tiny else 512,
        kv_cache_clips=kv_cache_clips,
        clip_selector=RecentSelector() if args.tiny and kv_cache_clips else None,
        callback_on_step_end=on_step_end,
    )
    with StreamingVideoWriter(args.out, fps=16) as writer:
        writer.append(output.frames[0])
    print(f"{len(output.clip_frame_ranges)} clips, {output.frames.shape[1]} frames -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
