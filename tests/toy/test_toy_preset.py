"""The built-in toy preset: how it is made (text encoder cut, data, assembly) and the shipped weights themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusers_longvid.toy import COLORS, load_script, random_script
from diffusers_longvid.toy.preset import (
    TOY_SAMPLING,
    assemble_toy_preset,
    load_preset_settings,
    make_toy_text_encoder,
    render_toy_dataset,
)


REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ the text encoder


def test_toy_text_encoder_is_a_cut_minilm(tmp_path):
    from transformers import AutoTokenizer, BertModel

    from diffusers_longvid.selection.selectors import offline_minilm_path
    from diffusers_longvid.toy.scripts import describe_script

    corpus = describe_script(random_script(6, seed=1, num_objects=3))
    info = make_toy_text_encoder(tmp_path, num_layers=2, corpus=corpus)
    full_tok = AutoTokenizer.from_pretrained(offline_minilm_path())
    cut_tok = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    assert info["vocab_size"] == len(cut_tok.get_vocab()) < 400
    assert cut_tok.model_max_length == 64
    full = BertModel.from_pretrained(offline_minilm_path()).eval()
    cut = BertModel.from_pretrained(tmp_path / "text_encoder").eval()
    assert cut.config.num_hidden_layers == 2 and cut.dtype == torch.float32
    for prompt in corpus:
        # the same WordPiece tokens, and the cut model's output is the full model's layer-2 hidden state, exactly
        assert cut_tok.tokenize(prompt) == full_tok.tokenize(prompt)
        with torch.no_grad():
            expected = full(**full_tok(prompt, return_tensors="pt"), output_hidden_states=True).hidden_states[2]
            got = cut(**cut_tok(prompt, return_tensors="pt")).last_hidden_state
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # a word outside the toy vocabulary falls back to single characters, not [UNK]
    assert "[UNK]" not in cut_tok.tokenize("a zebra")
    with pytest.raises(ValueError, match="num_layers"):
        make_toy_text_encoder(tmp_path / "x", num_layers=7)


# ------------------------------------------------------------------------------------------------ the training data


def test_render_toy_dataset_gives_back_the_clips_and_prompts(tmp_path):
    from diffusers_longvid.toy.world import render_script_clips
    from diffusers_longvid.training import LongVideoDataset, load_manifest

    result = render_toy_dataset(tmp_path, num_videos=2, num_clips=3, num_frames=9, num_condition_frames=1, size=32)
    assert result["videos"] == 2 and result["clips"] == 6 and "short" not in result
    dataset = LongVideoDataset(load_manifest(result["long"]), 32, 32, num_frames=9, overlap_frames=1, fps=16)
    assert len(dataset) == 2
    for i in range(2):
        script = load_script(tmp_path / "scripts" / f"{i:05d}.json")
        item = dataset.load_item(i)
        assert item["captions"] == [clip["prompt"] for clip in script]
        truth = render_script_clips(script, 9, 1, size=32, seed=i)
        for n in range(3):
            pixels = ((item["pixel_values"][n].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round()
            error = np.abs(pixels - truth.clip_frames(n).astype(np.float64))
            assert error.mean() < 1.5 and error.max() <= 12  # lossless 4:4:4 H.264: RGB <-> YUV rounding only
    mtime = (tmp_path / "long" / "00000.mp4").stat().st_mtime_ns
    render_toy_dataset(tmp_path, num_videos=2, num_clips=3, num_frames=9, num_condition_frames=1, size=32)
    assert (tmp_path / "long" / "00000.mp4").stat().st_mtime_ns == mtime  # resumable: done videos are kept
    with pytest.raises(ValueError, match="num_condition_frames"):
        render_toy_dataset(tmp_path / "bad", num_videos=1, num_frames=9, num_condition_frames=9)


# ------------------------------------------------------------------------------------------------ assembling


def _tiny_extension_pipeline():
    from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from diffusers_longvid.schedulers.scheduling_trflow import TRFlowScheduler
    from diffusers_longvid.testing import get_dummy_components

    components = get_dummy_components(in_channels=36, scheduler=TRFlowScheduler(shift=3.0))
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking model: the zero-initialised channels carry weights too
        components["transformer"].patch_embedding.weight.normal_(0, 0.05)
    return LongVideoExtensionPipeline(**components, condition_fill="zeros", kv_cache_clips=0)


def _generate(pipe, **kwargs):
    return pipe(
        ["a red circle", "the circle stays"],
        height=16,
        width=16,
        num_frames=5,
        num_condition_frames=1,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        max_sequence_length=16,
        **kwargs,
    ).frames[0]


def test_assemble_fuses_the_lora_and_stores_float16(tmp_path):
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline

    pipe = _tiny_extension_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "stage1")
    targets = [f"blocks.1.attn1.{name}" for name in ("to_k", "to_v")]
    pipe.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=targets, init_lora_weights=False))
    LongVideoExtensionPipeline.save_lora_weights(
        str(tmp_path / "lora"), transformer_lora_layers=get_peft_model_state_dict(pipe.transformer)
    )
    (tmp_path / "lora" / "training_info.json").write_text(json.dumps({"kv_cache_config": {"record_mode": "clean"}}))
    with_lora = _generate(pipe, kv_cache_clips=0)

    exact = assemble_toy_preset(tmp_path / "stage1", tmp_path / "exact", lora_dir=tmp_path / "lora", half=False)
    loaded = LongVideoExtensionPipeline.from_pretrained(exact["path"])
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(_generate(loaded, kv_cache_clips=0), with_lora, atol=1e-5)  # fused == adapter
    assert loaded.config.kv_cache_clips == 5 and loaded.config.condition_fill == "zeros"
    assert loaded.config.kv_cache_config["record_mode"] == "clean"
    assert "_name_or_path" not in json.loads((tmp_path / "exact" / "model_index.json").read_text())

    half = assemble_toy_preset(tmp_path / "stage1", tmp_path / "half", lora_dir=tmp_path / "lora")
    assert half["bytes"] < exact["bytes"] * 0.6
    for name in ("transformer", "vae"):
        tensors = load_file(str(next((tmp_path / "half" / name).glob("*.safetensors"))))
        assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    halved = LongVideoExtensionPipeline.from_pretrained(half["path"])
    halved.set_progress_bar_config(disable=True)
    assert {p.dtype for p in halved.transformer.parameters()} == {torch.float32}
    assert halved.text_encoder.dtype == torch.float32
    assert np.abs(_generate(halved, kv_cache_clips=0) - with_lora).max() < 0.05  # float16 rounding only
    assert json.loads((tmp_path / "half" / "preset.json").read_text()) == TOY_SAMPLING
    assert load_preset_settings(tmp_path / "stage1") == TOY_SAMPLING  # no preset.json: the toy defaults


# ------------------------------------------------------------------------------------------------ the shipped preset


@pytest.fixture(scope="module")
def preset_path():
    from diffusers_longvid.presets import get_preset_path

    return get_preset_path("toy")


def test_shipped_preset_is_small_safetensors(preset_path):
    files = [f for f in Path(preset_path).rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    total = sum(f.stat().st_size for f in files)
    assert total <= 25 * 1024 * 1024, f"the toy preset is {total / 2**20:.1f} MiB"
    weights = [f for f in files if f.suffix in (".safetensors", ".bin", ".pt", ".ckpt")]
    assert weights and all(f.suffix == ".safetensors" for f in weights)
    index = json.loads((Path(preset_path) / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers_longvid.schedulers.scheduling_trflow", "TRFlowScheduler"]
    assert index["condition_fill"] == "zeros" and index["kv_cache_clips"] == 5
    settings = load_preset_settings(preset_path)
    assert (settings["num_frames"] - 1) % 4 == 0 and settings["height"] == settings["width"] == 64


def test_shipped_preset_loads_offline_in_a_fresh_process(preset_path, tmp_path):
    code = (
        "from diffusers_longvid import LongVideoExtensionPipeline\n"
        "from diffusers_longvid.presets import get_preset_path\n"
        "pipe = LongVideoExtensionPipeline.from_pretrained(get_preset_path('toy'))\n"
        "print(type(pipe.scheduler).__name__, type(pipe.text_encoder).__name__, pipe.transformer.dtype, "
        "pipe.vae.dtype, pipe.text_encoder.dtype, pipe.default_max_sequence_length)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-6:] == [
        "TRFlowScheduler",
        "BertModel",
        "torch.float32",
        "torch.float32",
        "torch.float32",
        "64",
    ]


@pytest.mark.parametrize(
    ("name", "compression"),
    [
        ("lora_pooled_222", {"history_pool": (2, 2, 2), "proportional_attention": True, "history_keep_ratio": 1.0}),
        ("lora_selected_015", {"history_pool": (1, 1, 1), "history_keep_ratio": 0.15}),
    ],
)
def test_compressed_history_lora_loads_on_the_preset_and_generates_with_its_compression(
    preset_path, name, compression
):
    # examples/toy/lora_*: stage-2 LoRAs trained on pooled / selected history (docs/kv_cache.md)
    from diffusers_longvid.attention import CrossClipKVCacheConfig
    from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline

    folder = Path(__file__).resolve().parents[2] / "examples" / "toy" / name
    info = json.loads((folder / "training_info.json").read_text())
    config = CrossClipKVCacheConfig.from_dict(info["kv_cache_config"])
    assert {key: getattr(config, key) for key in compression} == compression
    pipe = LongVideoExtensionPipeline.from_pretrained(preset_path)
    pipe.set_progress_bar_config(disable=True)
    settings = load_preset_settings(preset_path)
    kwargs = dict(
        height=64,
        width=64,
        num_frames=settings["num_frames"],
        num_condition_frames=settings["num_condition_frames"],
        num_inference_steps=2,
        max_sequence_length=settings["max_sequence_length"],
        kv_cache_config=config,
        output_type="np",
    )
    prompts = ["A red circle stays still on a white background.", "The circle comes back from the left."]
    base = pipe(prompts, generator=torch.Generator().manual_seed(0), **kwargs).frames[0]
    pipe.load_lora_weights(str(folder))
    lora_modules = [n for n, _ in pipe.transformer.named_modules() if n.endswith("lora_A")]
    assert lora_modules and all(".attn1.to_k" in n or ".attn1.to_v" in n for n in lora_modules)
    assert {int(n.split(".")[1]) for n in lora_modules} == {3, 4, 5}  # the preset's cached blocks
    tuned = pipe(prompts, generator=torch.Generator().manual_seed(0), **kwargs).frames[0]
    assert tuned.shape == base.shape and np.isfinite(tuned).all()
    assert not np.allclose(tuned, base)


def _background_rgb(frames: np.ndarray) -> np.ndarray:
    """Mean colour of the frame border (objects rarely sit on it), per frame."""
    border = np.concatenate(
        [frames[:, :4].reshape(len(frames), -1, 3), frames[:, -4:].reshape(len(frames), -1, 3)], axis=1
    )
    return border.astype(np.float64).mean(axis=1)


# Measured on the shipped weights (docs/results.md): mean border-colour distance to the script's background.
BACKGROUND_TOLERANCE = 40.0


def test_shipped_preset_follows_the_script_background(preset_path):
    from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline

    pipe = LongVideoExtensionPipeline.from_pretrained(preset_path)
    pipe.set_progress_bar_config(disable=True)
    settings = load_preset_settings(preset_path)
    script = [
        {
            "background": "white",
            "objects": [{"shape": "circle", "color": "red", "motion": "moves_right", "position": [0.3, 0.5]}],
        },
        {"background": "white", "objects": [{"shape": "circle", "color": "red", "motion": "stays"}]},
        {"background": "navy", "objects": [{"shape": "circle", "color": "red", "motion": "moves_left"}]},
    ]
    from diffusers_longvid.toy import write_prompts

    script = write_prompts(script)
    F, k = settings["num_frames"], settings["num_condition_frames"]
    frames = pipe(
        [clip["prompt"] for clip in script],
        height=64,
        width=64,
        num_frames=F,
        num_condition_frames=k,
        num_inference_steps=8,
        guidance_scale=settings["guidance_scale"],
        max_sequence_length=settings["max_sequence_length"],
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).frames[0]
    frames = (np.asarray(frames) * 255).round()
    assert frames.shape == (F + 2 * (F - k), 64, 64, 3)
    stride = F - k
    for n, clip in enumerate(script):
        # the last frames of each clip (after any cross-fade) against the script's background colour
        end = F + n * stride
        colour = _background_rgb(frames[end - 4 : end]).mean(axis=0)
        distance = float(np.linalg.norm(colour - np.asarray(COLORS[clip["background"]], dtype=np.float64)))
        assert distance < BACKGROUND_TOLERANCE, (n, clip["background"], colour.round(1).tolist(), distance)


def test_generate_cli_uses_the_preset_settings(preset_path, tmp_path):
    from diffusers_longvid.cli import main
    from diffusers_longvid.video_io import read_video

    out = tmp_path / "toy.mp4"
    code = main(
        [
            "generate",
            "--model",
            "toy",
            "--prompt",
            "A red circle stays on a white background.",
            "--num-clips",
            "2",
            "--num-inference-steps",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    settings = load_preset_settings(preset_path)
    F, k = settings["num_frames"], settings["num_condition_frames"]
    assert read_video(out).shape == (2 * F - k, 64, 64, 3)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["settings"]["num_frames"] == F and sidecar["settings"]["max_sequence_length"] == 64


def test_demo_script_is_a_minute_with_reentries():
    from diffusers_longvid.demo import demo_toy_script
    from diffusers_longvid.toy import is_reentry

    script = demo_toy_script()
    F, k, fps = TOY_SAMPLING["num_frames"], TOY_SAMPLING["num_condition_frames"], TOY_SAMPLING["fps"]
    assert (F + (len(script) - 1) * (F - k)) / fps >= 60.0
    assert sum(any(flags) for flags in is_reentry(script)) >= 10
    assert len(script[0]["objects"]) == 1  # the memory world: one object that keeps coming back
    # the memory benchmark's world: one plain background throughout (a change makes the toy model lose the colour)
    assert len({(clip.get("background"), clip.get("texture", "plain")) for clip in script}) == 1
    assert script[0].get("texture", "plain") == "plain"


def test_demo_writes_video_comparison_and_report(preset_path, tmp_path):
    from diffusers_longvid.demo import main
    from diffusers_longvid.video_io import read_video

    assert main(["--out", str(tmp_path), "--num-clips", "3", "--steps", "2"]) == 0
    F, k = TOY_SAMPLING["num_frames"], TOY_SAMPLING["num_condition_frames"]
    assert read_video(tmp_path / "toy_long_video.mp4").shape == (F + 2 * (F - k), 64, 64, 3)
    side = read_video(tmp_path / "comparison.mp4")
    assert side.shape[0] == F + 2 * (F - k) and side.shape[2] >= 4 * 64 * 4  # four panels, upscaled 4x
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert not (tmp_path / "comebacks.png").exists()  # 3 clips: no comeback yet
    assert len(load_script(tmp_path / "toy_script.json")) == 3
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "re-entry colour" in summary
    for name in ("ours", "no-KV", "no-KV-no-T-RFlow"):
        assert f"| {name} |" in summary
        assert (tmp_path / "report" / name.lower() / "toy_eval.json").is_file()
    assert json.loads((tmp_path / "toy_long_video.json").read_text())["settings"]["num_inference_steps"] == 2


def test_toy_commands(tmp_path, capsys):
    from diffusers_longvid.cli import main
    from diffusers_longvid.testing import get_tiny_vae

    assert (
        main(
            [
                "toy-data",
                "--out",
                str(tmp_path / "data"),
                "--num-videos",
                "1",
                "--num-clips",
                "2",
                "--num-frames",
                "9",
                "--num-condition-frames",
                "1",
                "--size",
                "32",
            ]
        )
        == 0
    )
    lines = (tmp_path / "data" / "long.jsonl").read_text().splitlines()
    assert len(lines) == 1 and len(json.loads(lines[0])["clips"]) == 2
    assert main(["toy-data", "--out", str(tmp_path / "bad"), "--num-frames", "8"]) == 2
    assert "num_frames" in capsys.readouterr().err

    get_tiny_vae().save_pretrained(tmp_path / "vae")
    assert (
        main(["toy-init", "--out", str(tmp_path / "init"), "--vae", str(tmp_path / "vae"), "--text-layers", "1"]) == 0
    )
    from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline

    pipe = LongVideoExtensionPipeline.from_pretrained(tmp_path / "init")
    assert pipe.transformer.config.in_channels == 36 and pipe.text_encoder.config.num_hidden_layers == 1
    assert pipe.default_max_sequence_length == 64 and load_preset_settings(tmp_path / "init") == TOY_SAMPLING
    assert (
        main(
            [
                "toy-assemble",
                "--pipeline",
                str(tmp_path / "init"),
                "--out",
                str(tmp_path / "p"),
                "--kv-cache-clips",
                "-1",
            ]
        )
        == 2
    )
    assert (
        main(
            ["toy-assemble", "--pipeline", str(tmp_path / "init"), "--out", str(tmp_path / "p"), "--max-size-mb", "1"]
        )
        == 1
    )  # 1 MB is too small: refused after writing, with the size
    assert "above --max-size-mb" in capsys.readouterr().err
