"""Stage 1 (`longvid train-extension`) on a tiny random Wan pipeline and small real mp4 files.

- the CLI trains from a manifest end to end with every loop feature on, and writes checkpoints, TensorBoard events,
  a validation mp4 and a complete `LongVideoExtensionPipeline` folder that loads and generates;
- the loss of a fixed batch (same examples and draws) falls when the model overfits it;
- training N steps straight equals training N/2, crashing, and resuming to N.
"""

import json

import numpy as np
import pytest
import torch
from _train_worker import (
    FPS,
    SHORT_FRAMES,
    SIZE,
    tiny_pipeline_folder,
    write_cache,
    write_media,
)
from safetensors.torch import load_file

from diffusers_longvid.cli import main
from diffusers_longvid.training.config import ExtensionTrainConfig
from diffusers_longvid.training.loop import DeterministicBatchSampler, overfit_generator, run_training
from diffusers_longvid.training.stage1 import ExtensionTrainingSpec


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage1")
    pipeline = tiny_pipeline_folder(root / "pipeline")
    media = write_media(root / "media")
    cache = write_cache(pipeline, media["short"], root / "cache", "short")
    return {"pipeline": pipeline, "manifest": media["short"], "cache": cache}


def cached_config(data, output_dir, **overrides):
    options = dict(
        output_dir=str(output_dir),
        pretrained_model=str(data["pipeline"]),
        latent_cache=str(data["cache"]),
        train_batch_size=2,
        max_train_steps=4,
        learning_rate=1e-3,
        report_to="none",
        checkpointing_steps=0,
        save_pipeline=False,
        cpu=True,
    )
    options.update(overrides)
    return ExtensionTrainConfig(**options)


def test_cli_trains_from_a_manifest_with_every_feature(data, tmp_path):
    from diffusers_longvid import LongVideoExtensionPipeline, TRFlowScheduler
    from diffusers_longvid.video_io import read_video

    out = tmp_path / "run"
    options = tmp_path / "options.yaml"
    options.write_text(
        "lr_scheduler: cosine\nlr_warmup_steps: 1\nlearning-rate: 1e-3\nuse_ema: true\nmixed_precision: bf16\n"
        "validation_prompts: [a red square slides, a green square falls]\n"
    )
    code = main(
        [
            "train-extension",
            "--config",
            str(options),
            "--output-dir",
            str(out),
            "--pretrained-model",
            str(data["pipeline"]),
            "--manifest",
            str(data["manifest"]),
            "--height",
            str(SIZE),
            "--width",
            str(SIZE),
            "--fps",
            str(FPS),
            "--num-frames",
            str(SHORT_FRAMES),
            "--max-sequence-length",
            "16",
            "--train-batch-size",
            "2",
            "--gradient-accumulation-steps",
            "2",
            "--max-train-steps",
            "4",
            "--gradient-checkpointing",
            "--caption-dropout-prob",
            "0.5",
            "--logging-steps",
            "1",
            "--checkpointing-steps",
            "2",
            "--checkpoints-total-limit",
            "1",
            "--validation-steps",
            "4",
            "--validation-num-inference-steps",
            "2",
            "--validation-num-condition-frames",
            "5",
            "--cpu",
        ]
    )
    assert code == 0
    saved_config = json.loads((out / "train_config.json").read_text())
    assert saved_config["mixed_precision"] == "bf16" and saved_config["gradient_accumulation_steps"] == 2

    # periodic checkpoints, pruned to the newest one, all safetensors but accelerate's optimizer/RNG states
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-4"]
    checkpoint = out / "checkpoints" / "checkpoint-4"
    assert {"trainable.safetensors", "ema.safetensors", "optimizer.bin", "trainer_state.json"} <= {
        p.name for p in checkpoint.iterdir()
    }
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["lr_scheduler"]["last_epoch"] == 4
    assert list((out / "logs").rglob("events.out.tfevents.*"))  # TensorBoard

    # the validation video: 2 clips of 9 frames sharing 5 -> 13 frames
    video = read_video(out / "validation" / "step-000004.mp4")
    assert video.shape == (13, SIZE, SIZE, 3)

    # the final folder is a complete pipeline of our classes, sampling with the training condition layout
    final = out / "final"
    index = json.loads((final / "model_index.json").read_text())
    assert index["_class_name"] == "LongVideoExtensionPipeline"
    assert index["scheduler"] == ["diffusers_longvid.schedulers.scheduling_trflow", "TRFlowScheduler"]
    assert index["condition_fill"] == "zeros" and index["kv_cache_clips"] == 0
    weights = load_file(final / "transformer" / "diffusion_pytorch_model.safetensors")
    assert weights["patch_embedding.weight"].shape[1] == 36
    # with EMA the final weights are the EMA weights (checkpoint 4 holds the same EMA)
    ema = load_file(checkpoint / "ema.safetensors")
    trained = load_file(checkpoint / "trainable.safetensors")
    assert set(ema) == set(trained) == set(weights)
    for name in weights:
        torch.testing.assert_close(weights[name], ema[name], rtol=0, atol=0)
    assert any(not torch.equal(weights[name], trained[name]) for name in weights)

    pipe = LongVideoExtensionPipeline.from_pretrained(final)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, TRFlowScheduler) and pipe.transformer.config.in_channels == 36
    assert pipe.config.condition_fill == "zeros" and pipe.conditioning_mode == "concat"
    frames = pipe(
        ["a red square", "a blue square"],
        height=SIZE,
        width=SIZE,
        num_frames=SHORT_FRAMES,
        num_condition_frames=1,
        num_inference_steps=2,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert frames.shape == (1, 17, SIZE, SIZE, 3) and np.isfinite(frames).all()


def fixed_batch_loss(spec, model, config):
    """The loss of the batch that `overfit_batches=1` repeats, with the draws it repeats."""
    dataset = spec.dataset
    indices = DeterministicBatchSampler(
        len(dataset), config.train_batch_size, config.seed, repeat_batches=1
    ).global_batch(0)
    batch = spec.collate([dataset[i] for i in indices])
    model.eval()
    with torch.no_grad():
        return spec.compute_loss(model, batch, overfit_generator(config, 0, 0, 0)).item()


def test_loss_of_a_fixed_batch_falls_when_overfitting(data, tmp_path):
    config = cached_config(
        data, tmp_path, max_train_steps=50, learning_rate=3e-3, overfit_batches=1, lr_scheduler="constant"
    )
    spec = ExtensionTrainingSpec(config)
    spec.build_dataset()
    initial = fixed_batch_loss(spec, spec.build_model(), config)
    result = run_training(spec, config)
    final = fixed_batch_loss(spec, result.model, config)
    assert result.global_step == 50 and len(result.losses) == 50
    assert result.losses[0] == pytest.approx(initial, rel=1e-5)  # step 1 saw exactly that batch and those draws
    assert final < 0.1 * initial, (initial, final)


class Crash(RuntimeError):
    pass


class CrashingSpec(ExtensionTrainingSpec):
    """Stage 1, killed at its `crash_at`-th micro-batch (as a preempted job would be)."""

    def __init__(self, config, crash_at):
        super().__init__(config)
        self.calls, self.crash_at = 0, crash_at

    def compute_loss(self, model, batch, generator):
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash("preempted")
        return super().compute_loss(model, batch, generator)


def test_resume_equals_the_uninterrupted_run(data, tmp_path):
    # 4 examples, batch 2 x 2 micro-batches: every step crosses an epoch; cosine schedule, warm-up and EMA
    options = dict(
        max_train_steps=4,
        gradient_accumulation_steps=2,
        lr_scheduler="cosine",
        lr_warmup_steps=1,
        use_ema=True,
        checkpointing_steps=2,
        caption_dropout_prob=0.3,
    )
    straight_config = cached_config(data, tmp_path / "a", **options)
    straight = run_training(ExtensionTrainingSpec(straight_config), straight_config)

    interrupted = cached_config(data, tmp_path / "b", **options)
    with pytest.raises(Crash):  # micro-batch 6 is inside step 3, after checkpoint-2
        run_training(CrashingSpec(interrupted, crash_at=6), interrupted)
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["checkpoint-2"]
    resumed_config = cached_config(data, tmp_path / "b", resume="latest", **options)
    resumed = run_training(ExtensionTrainingSpec(resumed_config), resumed_config)

    assert resumed.global_step == straight.global_step == 4 and len(resumed.losses) == 2
    np.testing.assert_allclose(resumed.losses, straight.losses[2:], rtol=1e-6)
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    # the saved final weights (the EMA's) agree as well
    final_a = load_file(tmp_path / "a" / "final" / "transformer" / "diffusion_pytorch_model.safetensors")
    final_b = load_file(tmp_path / "b" / "final" / "transformer" / "diffusion_pytorch_model.safetensors")
    for name in final_a:
        torch.testing.assert_close(final_a[name], final_b[name], rtol=0, atol=1e-6, msg=name)
    # and training changed the weights
    base = load_file(data["pipeline"] / "transformer" / "diffusion_pytorch_model.safetensors")
    assert not torch.equal(final_a["blocks.0.attn1.to_q.weight"], base["blocks.0.attn1.to_q.weight"])


def test_extra_latent_caches_are_read_as_one_dataset(data, tmp_path):
    from diffusers_longvid.training import ConcatCachedDataset

    single = ExtensionTrainingSpec(cached_config(data, tmp_path / "one")).build_dataset()
    both = ExtensionTrainingSpec(
        cached_config(data, tmp_path / "two", extra_latent_caches=[str(data["cache"])])
    ).build_dataset()
    assert isinstance(both, ConcatCachedDataset) and len(both) == 2 * len(single)
    assert torch.equal(both[len(single)]["latents"], single[0]["latents"])
    assert both[0]["caption"] == both[len(single)]["caption"] == single[0]["caption"]
