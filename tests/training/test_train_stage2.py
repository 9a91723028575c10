"""Stage 2 (`longvid train-causal-lora`) on a tiny random extension pipeline and small real mp4 files.

- the CLI trains from a manifest of long videos end to end (prompt-similarity selector, gradient checkpointing,
  gradients through the history, bf16, validation) and the saved LoRA loads into `LongVideoExtensionPipeline` and
  changes its output;
- only the LoRA on `attn1.to_k` / `attn1.to_v` of the cached blocks changes: every other weight is bit-identical;
- the loss of a fixed batch falls when the LoRA overfits it; a resumed run equals the uninterrupted one;
- history selection, RoPE offsets and conditioning follow the pipeline; `history_grad` lets gradients through history.
"""

import json

import numpy as np
import pytest
import torch
from _train_worker import (
    CLIPS_PER_VIDEO,
    FPS,
    LONG_FRAMES,
    OVERLAP,
    SIZE,
    write_cache,
    write_media,
)
from safetensors.torch import load_file

from diffusers_longvid.cli import main
from diffusers_longvid.training.config import CausalLoRATrainConfig
from diffusers_longvid.training.loop import DeterministicBatchSampler, overfit_generator, run_training
from diffusers_longvid.training.stage2 import CausalLoRATrainingSpec, LongVideoBatch, LongVideoExample


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from diffusers_longvid import LongVideoExtensionPipeline
    from diffusers_longvid.testing import get_dummy_components

    root = tmp_path_factory.mktemp("stage2")
    # a stand-in for the stage-1 output: a 36-channel extension pipeline sampling with zero-filled conditions
    pipeline = root / "extension"
    components = get_dummy_components(in_channels=36, attention_head_dim=32, ffn_dim=128)
    LongVideoExtensionPipeline(**components, kv_cache_clips=0, condition_fill="zeros").save_pretrained(pipeline)
    media = write_media(root / "media")
    cache = write_cache(pipeline, media["long"], root / "cache", "long")
    return {"pipeline": pipeline, "manifest": media["long"], "cache": cache}


def cached_config(data, output_dir, **overrides):
    options = dict(
        output_dir=str(output_dir),
        pretrained_model=str(data["pipeline"]),
        latent_cache=str(data["cache"]),
        num_condition_frames=OVERLAP,
        clips_per_video=CLIPS_PER_VIDEO,
        kv_cache_clips=1,
        clip_selector="recent",
        lora_rank=8,
        train_batch_size=2,
        max_train_steps=4,
        learning_rate=1e-2,
        report_to="none",
        checkpointing_steps=0,
        cpu=True,
    )
    options.update(overrides)
    return CausalLoRATrainConfig(**options)


def lora_free_name(name):
    return name.replace(".base_layer", "")


def test_cli_trains_from_a_manifest_and_the_lora_loads_into_the_pipeline(data, tmp_path):
    from diffusers_longvid import LongVideoExtensionPipeline
    from diffusers_longvid.video_io import read_video

    out = tmp_path / "run"
    code = main(
        [
            "train-causal-lora",
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
            str(LONG_FRAMES),
            "--num-condition-frames",
            str(OVERLAP),
            "--clips-per-video",
            str(CLIPS_PER_VIDEO),
            "--kv-cache-clips",
            "1",
            "--clip-selector",
            "prompt",
            "--lora-rank",
            "4",
            "--max-sequence-length",
            "16",
            "--train-batch-size",
            "1",
            "--gradient-accumulation-steps",
            "2",
            "--max-train-steps",
            "3",
            "--learning-rate",
            "1e-2",
            "--mixed-precision",
            "bf16",
            "--gradient-checkpointing",
            "--history-grad",
            "--logging-steps",
            "1",
            "--checkpointing-steps",
            "2",
            "--validation-steps",
            "3",
            "--validation-num-inference-steps",
            "2",
            "--validation-prompts",
            "a red square slides",
            "a green square falls",
            "a red square slides on",
            "--cpu",
        ]
    )
    assert code == 0
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert {p.name for p in checkpoint.iterdir()} >= {"trainable.safetensors", "optimizer.bin", "trainer_state.json"}
    # checkpoints hold the LoRA only
    assert all("lora_" in name for name in load_file(checkpoint / "trainable.safetensors"))
    # validation: 3 clips of 5 frames sharing 1 -> 13 frames
    assert read_video(out / "validation" / "step-000003.mp4").shape == (13, SIZE, SIZE, 3)

    final = out / "final"
    lora = load_file(final / "pytorch_lora_weights.safetensors")
    modules = {name.removeprefix("transformer.").rsplit(".lora_", 1)[0] for name in lora}
    assert modules == {"blocks.1.attn1.to_k", "blocks.1.attn1.to_v"}  # latter half of 2 blocks, K and V only
    assert any(name.endswith("lora_B.weight") and value.abs().max() > 0 for name, value in lora.items())
    info = json.loads((final / "training_info.json").read_text())
    assert info["kv_cache_clips"] == 1 and info["clip_selector"]["type"] == "prompt_similarity"
    assert info["num_condition_frames"] == OVERLAP and info["lora_rank"] == 4

    pipe = LongVideoExtensionPipeline.from_pretrained(data["pipeline"])
    pipe.set_progress_bar_config(disable=True)

    def generate():
        return pipe(
            ["a red square slides", "a green square falls", "a red square slides on"],
            height=SIZE,
            width=SIZE,
            num_frames=LONG_FRAMES,
            num_condition_frames=OVERLAP,
            num_inference_steps=2,
            max_sequence_length=16,
            kv_cache_clips=1,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        ).frames

    before = generate()
    pipe.load_lora_weights(final, adapter_name="kv")
    after = generate()
    assert len(before) == len(after) == 3
    assert max(float((a - b).abs().max()) for a, b in zip(after, before)) > 1e-3


def test_only_the_lora_changes_and_resume_equals_the_uninterrupted_run(data, tmp_path):
    from diffusers import WanTransformer3DModel

    from diffusers_longvid import LongVideoExtensionPipeline
    from diffusers_longvid.attention import get_cross_clip_kv_cache

    options = dict(
        max_train_steps=4,
        gradient_accumulation_steps=2,
        lr_scheduler="cosine",
        lr_warmup_steps=1,
        train_batch_size=1,
        checkpointing_steps=2,
        history_grad=True,
        caption_dropout_prob=0.3,
    )
    straight_config = cached_config(data, tmp_path / "a", **options)
    straight = run_training(CausalLoRATrainingSpec(straight_config), straight_config)

    # every non-LoRA weight is bit-identical to the base model; the LoRA moved
    base = WanTransformer3DModel.from_pretrained(data["pipeline"], subfolder="transformer").state_dict()
    trained = straight.model.state_dict()
    frozen = {lora_free_name(n): t for n, t in trained.items() if "lora_" not in n}
    assert set(frozen) == set(base)
    assert all(torch.equal(frozen[name], base[name]) for name in base)
    lora = {n: p for n, p in straight.model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n and ("to_k" in n or "to_v" in n) and n.startswith("blocks.1.") for n in lora)
    assert any(n.endswith("lora_B.default.weight") and p.abs().max() > 0 for n, p in lora.items())

    # killed inside step 3 (micro-batch 6, after checkpoint-2), then `--resume latest`
    interrupted = cached_config(data, tmp_path / "b", **options)
    spec = CausalLoRATrainingSpec(interrupted)
    calls = []
    real_loss = spec.compute_loss

    def crashing_loss(model, batch, generator):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_loss(model, batch, generator)

    spec.compute_loss = crashing_loss
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, interrupted)
    resumed_config = cached_config(data, tmp_path / "b", resume="latest", **options)
    resumed = run_training(CausalLoRATrainingSpec(resumed_config), resumed_config)
    assert resumed.global_step == 4
    np.testing.assert_allclose(resumed.losses, straight.losses[2:], rtol=1e-6)
    resumed_lora = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    for name, value in lora.items():
        torch.testing.assert_close(resumed_lora[name], value, rtol=0, atol=1e-6, msg=name)
    final_a = load_file(tmp_path / "a" / "final" / "pytorch_lora_weights.safetensors")
    final_b = load_file(tmp_path / "b" / "final" / "pytorch_lora_weights.safetensors")
    assert set(final_a) == set(final_b)
    for name in final_a:
        torch.testing.assert_close(final_a[name], final_b[name], rtol=0, atol=1e-6, msg=name)

    # the saved LoRA, loaded into the pipeline, is the trained model
    pipe = LongVideoExtensionPipeline.from_pretrained(data["pipeline"])
    pipe.load_lora_weights(tmp_path / "a" / "final")
    get_cross_clip_kv_cache(straight.model).clear()  # no history: both run the stock attention
    straight.model.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        hidden_states=torch.randn(1, 36, 2, 2, 2, generator=generator),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 16, 32, generator=generator),
        return_dict=False,
    )
    with torch.no_grad():
        expected = straight.model(**inputs)[0]
        torch.testing.assert_close(pipe.transformer(**inputs)[0], expected, rtol=1e-5, atol=1e-6)
        pipe.set_adapters([pipe.get_active_adapters()[0]], [0.0])  # and it is not the base model
        assert (pipe.transformer(**inputs)[0] - expected).abs().max() > 1e-4


def test_loss_of_a_fixed_batch_falls_when_overfitting(data, tmp_path):
    # the LoRA on K/V of both blocks, so that it has the capacity to fit
    config = cached_config(
        data, tmp_path, max_train_steps=50, overfit_batches=1, lr_scheduler="constant", cached_blocks=[0, 1]
    )
    spec = CausalLoRATrainingSpec(config)
    dataset = spec.build_dataset()
    batch = spec.collate(
        [dataset[i] for i in DeterministicBatchSampler(len(dataset), 2, config.seed, repeat_batches=1).global_batch(0)]
    )

    def fixed_loss(model):
        model.eval()
        with torch.no_grad():
            return spec.compute_loss(model, batch, overfit_generator(config, 0, 0, 0)).item()

    torch.manual_seed(config.seed)  # (the loop seeds the LoRA initialisation the same way)
    initial = fixed_loss(spec.build_model())
    result = run_training(spec, config)
    assert result.losses[0] == pytest.approx(initial, rel=1e-5)
    final = fixed_loss(result.model)
    assert final < 0.5 * initial, (initial, final)


def test_selection_offsets_and_conditioning_follow_the_pipeline(data, tmp_path):
    config = cached_config(data, tmp_path, clip_selector="prompt")
    spec = CausalLoRATrainingSpec(config)
    captions = ["a red ball rolls on the grass", "a cat sleeps on a sofa", "a red ball bounces on the grass"]
    assert spec.select_history(captions) == [0]  # the most similar prompt, as the pipeline's selector picks
    assert spec.select_history(captions[1:] + captions[:1]) in ([0], [1])  # (ties go to the earlier clip)

    spec.build_dataset()
    model = spec.build_model()
    item = spec.dataset[0]
    seen = []

    def record(module, args, kwargs):
        hidden = kwargs["hidden_states"]
        mask = hidden[:, 16:20]  # [noisy latent (16) | mask (4) | condition latent (16)]
        seen.append((module.rope.frame_offset, float(kwargs["timestep"][0]), mask.amax(dim=(0, 1, 3, 4)).tolist()))

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        for first_clip_index in (0, 1):
            seen.clear()
            example = LongVideoExample(
                captions=captions,
                num_frames=LONG_FRAMES,
                first_clip_index=first_clip_index,
                latents=item["latents"].float(),
                prompt_embeds=item["prompt_embeds"].float(),
            )
            spec.compute_loss(model, LongVideoBatch([example]), torch.Generator().manual_seed(0))
            history, target = seen
            # pipeline offsets: clip n starts at n * (latent frames - condition latent frames) = n * (2 - 1)
            assert history[0] == first_clip_index and target[0] == first_clip_index + 2
            assert history[1] == 0.0 and target[1] > 0  # history is recorded clean, at timestep 0
            # a video's first clip has no condition frames; later clips are conditioned on their first latent frame
            assert history[2] == ([0.0, 0.0] if first_clip_index == 0 else [1.0, 0.0])
            assert target[2] == [1.0, 0.0]
    finally:
        handle.remove()


def test_history_grad_lets_gradients_through_the_history(data, tmp_path):
    grads = {}
    for history_grad in (False, True):
        config = cached_config(data, tmp_path, history_grad=history_grad)
        spec = CausalLoRATrainingSpec(config)
        spec.build_dataset()
        torch.manual_seed(0)
        model = spec.build_model()
        with torch.no_grad():  # a non-zero LoRA, so that the history K/V depend on it
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
        batch = spec.collate([spec.dataset[0]])
        loss = spec.compute_loss(model, batch, torch.Generator().manual_seed(0))
        loss.backward()
        cache = spec._cache(model)
        recorded = cache.get(cache.stored_clips()[0], cache.block_indices[0])
        assert recorded.key.requires_grad is history_grad
        grads[history_grad] = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    assert not torch.allclose(grads[False], grads[True])


def test_pooled_history_is_recorded_pooled_with_gradients_and_saved_in_training_info(data, tmp_path):
    from diffusers_longvid.attention.kv_cache import _MAX_POOL, CrossClipKVCacheConfig
    from diffusers_longvid.training import config as config_module

    assert config_module._MAX_HISTORY_POOL == _MAX_POOL  # the config's early check is the cache's bound
    losses = {}
    # the test clips are 2 x 1 x 1 patched tokens: pool over time
    for pool, proportional in (([1, 1, 1], True), ([2, 1, 1], True), ([2, 1, 1], False)):
        config = cached_config(
            data,
            tmp_path / f"{pool[0]}{proportional}",
            history_grad=True,
            history_pool=pool,
            proportional_attention=proportional,
        )
        spec = CausalLoRATrainingSpec(config)
        spec.build_dataset()
        torch.manual_seed(0)
        model = spec.build_model()
        assert spec.cache_config.history_pool == tuple(pool)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
        loss = spec.compute_loss(model, spec.collate([spec.dataset[0]]), torch.Generator().manual_seed(0))
        loss.backward()
        cache = spec._cache(model)
        recorded = cache.get(cache.stored_clips()[0], cache.block_indices[0])
        t, h, w = CrossClipKVCacheConfig(history_pool=pool).pooled_grid(*cache.token_grid)
        assert recorded.key.shape[1] == t * h * w
        assert recorded.key.requires_grad  # the pooled history still carries gradients into the LoRA
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        losses[pool[0], proportional] = loss.item()
    # the target attends the pooled history, and with the log-n bias of generation when it is on
    assert len({losses[1, True], losses[2, True], losses[2, False]}) == 3
    config = cached_config(data, tmp_path / "run", history_pool=[2, 1, 1], max_train_steps=1)
    run_training(CausalLoRATrainingSpec(config), config)
    info = json.loads((tmp_path / "run" / "final" / "training_info.json").read_text())
    assert info["kv_cache_config"]["history_pool"] == [2, 1, 1]


def test_selected_history_is_recorded_with_gradients_and_saved_in_training_info(data, tmp_path):
    # the test clips are 2 x 1 x 1 patched tokens: a ratio of 0.5 keeps the one that deviates most
    config = cached_config(data, tmp_path / "sel", history_grad=True, history_keep_ratio=0.5)
    spec = CausalLoRATrainingSpec(config)
    spec.build_dataset()
    torch.manual_seed(0)
    model = spec.build_model()
    assert spec.cache_config.history_keep_ratio == 0.5
    loss = spec.compute_loss(model, spec.collate([spec.dataset[0]]), torch.Generator().manual_seed(0))
    loss.backward()
    cache = spec._cache(model)
    recorded = cache.get(cache.stored_clips()[0], cache.block_indices[0])
    assert recorded.key.shape[1] == 1 and recorded.key.requires_grad
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    config = cached_config(data, tmp_path / "run", history_keep_ratio=0.5, max_train_steps=1)
    run_training(CausalLoRATrainingSpec(config), config)
    info = json.loads((tmp_path / "run" / "final" / "training_info.json").read_text())
    assert info["kv_cache_config"]["history_keep_ratio"] == 0.5


@pytest.mark.parametrize("pool", [[2, 2], [0, 1, 1], [7, 1, 1], [1.5, 1, 1], "2 2 2"])
def test_bad_history_pool_is_refused_by_the_config(data, tmp_path, pool):
    with pytest.raises(ValueError, match="history_pool"):
        cached_config(data, tmp_path, history_pool=pool)


def test_gradient_checkpointing_recomputes_with_the_history(data, tmp_path):
    # the target forward is recomputed in the backward pass: it must see the same history as in the forward
    grads = []
    for checkpointing in (False, True):
        config = cached_config(
            data, tmp_path, train_batch_size=1, gradient_checkpointing=checkpointing, history_grad=True
        )
        spec = CausalLoRATrainingSpec(config)
        spec.build_dataset()
        torch.manual_seed(0)
        model = spec.build_model()
        if checkpointing:
            model.enable_gradient_checkpointing()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
        spec.compute_loss(model, spec.collate([spec.dataset[1]]), torch.Generator().manual_seed(0)).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_sliding_examples_make_every_clip_a_target(data, tmp_path):
    # min_clips_per_video: one example ends at every clip from the 2nd on (continuations and comebacks alike), with
    # the up to clips_per_video - 1 clips before it as history; a batch mixes examples of different lengths
    config = cached_config(data, tmp_path, min_clips_per_video=2, max_train_steps=2, train_batch_size=3)
    spec = CausalLoRATrainingSpec(config)
    dataset = spec.build_dataset()
    expected = [
        (position, max(0, last - CLIPS_PER_VIDEO + 1), min(last + 1, CLIPS_PER_VIDEO))
        for position, record in enumerate(dataset.items)
        for last in range(1, record["num_clips"])
    ]
    assert dataset.pieces == expected and len({count for _, _, count in expected}) > 1
    fixed = CausalLoRATrainingSpec(cached_config(data, tmp_path / "fixed")).build_dataset()
    assert len(dataset) > len(fixed)
    batch = spec.collate([dataset[i] for i in range(3)])
    assert [len(example.captions) for example in batch.examples] == [count for _, _, count in expected[:3]]
    result = run_training(spec, config)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    with pytest.raises(ValueError, match=r"min_clips_per_video.*\[2, `clips_per_video` = 3\]"):
        cached_config(data, tmp_path, min_clips_per_video=4)
    with pytest.raises(ValueError, match="min_clips_per_video"):
        cached_config(data, tmp_path, min_clips_per_video=1)


def test_extra_latent_caches_are_read_as_one_dataset(data, tmp_path):
    from diffusers_longvid.training import CachedLongVideoDataset, ConcatCachedDataset

    config = cached_config(data, tmp_path, extra_latent_caches=[str(data["cache"])], max_train_steps=1)
    spec = CausalLoRATrainingSpec(config)
    both = spec.build_dataset()
    single = CausalLoRATrainingSpec(cached_config(data, tmp_path / "one")).build_dataset()
    assert isinstance(both, ConcatCachedDataset) and len(both) == 2 * len(single)
    for index in range(len(single)):
        second = both[len(single) + index]
        assert (
            torch.equal(second["latents"], single[index]["latents"])
            and second["captions"] == single[index]["captions"]
        )
        assert second["source"] == str(data["cache"])
    assert torch.equal(both.empty_prompt_embeds, single.empty_prompt_embeds) and both.metadata == single.metadata
    with pytest.raises(IndexError):
        both[len(both)]
    assert np.isfinite(run_training(spec, config).losses).all()

    other = CachedLongVideoDataset(data["cache"], num_clips=CLIPS_PER_VIDEO)
    other.metadata = {**other.metadata, "fps": 2 * FPS}
    with pytest.raises(ValueError, match="differ in `fps`"):
        ConcatCachedDataset([single, other])
    with pytest.raises(ValueError, match="at least one"):
        ConcatCachedDataset([])
    no_first = cached_config(data, tmp_path, extra_latent_caches=[str(data["cache"])])
    no_first.latent_cache, no_first.manifest = None, str(data["manifest"])
    with pytest.raises(ValueError, match="`--extra-latent-caches` needs `--latent-cache`"):
        CausalLoRATrainingSpec(no_first)
