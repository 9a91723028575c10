"""Training data: manifest validation, video decoding, short-clip and long-video datasets, latent caching."""

from __future__ import annotations

import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from _media import (
    clips,
    decode_frame_index,
    write_garbage_video,
    write_test_manifest,
    write_test_video,
    write_truncated_video,
)

from diffusers_longvid.training.datasets import (
    LongVideoDataset,
    ShortClipDataset,
    VideoDecodeError,
    collate_video_batch,
    is_valid_num_frames,
    largest_valid_num_frames,
    read_video_frames,
    resize_center_crop,
    source_frame_indices,
)
from diffusers_longvid.training.manifest import ManifestError, load_manifest, write_manifest


FPS = 8.0  # frame rate of the test videos


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Videos shared by the module: 64 frames (8 s) and 40 frames (5 s) at 8 fps, 32x48, plus broken files."""
    root = tmp_path_factory.mktemp("media")
    return {
        "root": root,
        "long": write_test_video(root / "long.mp4", num_frames=64, fps=FPS, seed=1),
        "short": write_test_video(root / "short.mp4", num_frames=40, fps=FPS, seed=2),
        "truncated": write_truncated_video(root / "truncated.mp4", keep=0.6, num_frames=40, fps=FPS, seed=3),
        "garbage": write_garbage_video(root / "garbage.mp4"),
    }


def frame_ids(pixel_values: torch.Tensor) -> list[int]:
    """Frame indices encoded in a `(3, F, H, W)` clip in [-1, 1]."""
    return [decode_frame_index(pixel_values[:, j]) for j in range(pixel_values.shape[1])]


# --------------------------------------------------------------------------------------------------------------------
# manifest


def _good_line(media) -> dict:
    return {"video": "short.mp4", "clips": clips((0, 2), (2, 4))}


BAD_LINES = [
    ("{not json", "invalid JSON"),
    ('["short.mp4"]', "expected a JSON object"),
    ({"clips": clips((0, 1))}, "missing `video`"),
    ({"video": "short.mp4"}, "missing `clips`"),
    ({"video": 3, "clips": clips((0, 1))}, "`video` must be a non-empty path string"),
    ({"video": "short.mp4", "clips": {"start": 0, "end": 1, "caption": "x"}}, "`clips` must be a list"),
    ({"video": "short.mp4", "clips": []}, "`clips` is empty"),
    ({"video": "short.mp4", "clips": ["0-1"]}, "clip 0 must be an object"),
    ({"video": "short.mp4", "clips": [{"start": 0, "end": 1}]}, "clip 0 is missing `caption`"),
    ({"video": "short.mp4", "clips": [{"start": "0", "end": 1, "caption": "x"}]}, "`start` must be a finite number"),
    ({"video": "short.mp4", "clips": [{"start": 0, "end": True, "caption": "x"}]}, "`end` must be a finite number"),
    ({"video": "short.mp4", "clips": [{"start": 0, "end": 1, "caption": 7}]}, "`caption` must be a string"),
    ({"video": "short.mp4", "clips": [{"start": 0, "end": 1, "caption": "  "}]}, "`caption` is empty"),
    ({"video": "short.mp4", "clips": [{"start": 2, "end": 2, "caption": "x"}]}, "must be smaller than `end`"),
    ({"video": "short.mp4", "clips": [{"start": -1, "end": 1, "caption": "x"}]}, "`start` must be >= 0"),
    ({"video": "short.mp4", "clips": clips((2, 3), (0, 1))}, "clips must be in time order"),
    ({"video": "short.mp4", "clips": clips((0, 2), (1.5, 3))}, "clip 1 [1.5, 3.0) overlaps clip 0"),
    ({"video": "missing.mp4", "clips": clips((0, 1))}, "video file not found"),
    ({"video": "short.mp4", "clips": clips((0, 2), (2, 6))}, "clip 1 ends at 6.0 s, after the end of"),
]


@pytest.mark.parametrize("bad, message", BAD_LINES, ids=[message for _, message in BAD_LINES])
def test_manifest_error_names_the_line(media, bad, message):
    manifest = write_test_manifest(media["root"] / "bad.jsonl", [_good_line(media), "", bad])
    with pytest.raises(ManifestError) as info:
        # probing (one ffmpeg start per video) is only needed to find clips past the end
        load_manifest(manifest, probe_durations="after the end" in message)
    text = str(info.value)
    assert str(manifest) in text
    assert "line 3: " in text and message in text, text
    assert [line for line, _ in info.value.errors] == [3]
    assert isinstance(info.value, ValueError)


def test_manifest_collects_every_bad_line(media):
    entries = [
        {"video": "short.mp4", "clips": []},
        _good_line(media),
        "{",
        {"video": "nope.mp4", "clips": clips((0, 1))},
    ]
    manifest = write_test_manifest(media["root"] / "many.jsonl", entries)
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert [line for line, _ in info.value.errors] == [1, 3, 4]
    assert "(3 bad lines)" in str(info.value)


def test_manifest_loads_paths_metadata_and_probes(media, tmp_path):
    absolute = {"video": str(media["long"]), "clips": [{"start": 0, "end": 8.0, "caption": "all", "shot": 1}]}
    relative = {"video": os.path.relpath(media["short"], tmp_path), "clips": clips((0, 2), (2, 5)), "id": "v2"}
    manifest = write_test_manifest(tmp_path / "m.jsonl", [absolute, "", relative])
    records = load_manifest(manifest)
    assert [r.path for r in records] == [str(media["long"]), str(media["short"])]
    assert [r.line for r in records] == [1, 3]
    assert records[0].clips[0].metadata == {"shot": 1} and records[1].metadata == {"id": "v2"}
    assert records[0].info.fps == FPS and records[0].info.duration == pytest.approx(8.0)
    assert records[0].info.num_frames == 64 and (records[0].info.width, records[0].info.height) == (48, 32)
    # writing and reading back is the identity
    write_manifest(tmp_path / "copy.jsonl", records)
    assert load_manifest(tmp_path / "copy.jsonl") == records


def test_manifest_options(media, caplog):
    overlapping = write_test_manifest(
        media["root"] / "overlap.jsonl", [{"video": "short.mp4", "clips": clips((0, 2), (1, 3))}]
    )
    assert len(load_manifest(overlapping, allow_overlap=True)[0].clips) == 2
    with pytest.raises(ValueError, match="`probe_durations=True` needs `check_files=True`"):
        load_manifest(overlapping, check_files=False)
    missing = write_test_manifest(media["root"] / "missing.jsonl", [{"video": "gone.mp4", "clips": clips((0, 99))}])
    assert load_manifest(missing, check_files=False, probe_durations=False)[0].path.endswith("gone.mp4")
    # an unreadable video is not a manifest error: it is logged, and the datasets skip it
    garbage = write_test_manifest(media["root"] / "garbage.jsonl", [{"video": "garbage.mp4", "clips": clips((0, 1))}])
    with caplog.at_level(logging.WARNING):
        records = load_manifest(garbage)
    assert records[0].info is None


# --------------------------------------------------------------------------------------------------------------------
# frame arithmetic, decoding, preprocessing


def test_valid_frame_counts():
    assert [n for n in range(1, 20) if is_valid_num_frames(n)] == [1, 5, 9, 13, 17]
    assert [largest_valid_num_frames(n) for n in (0, 1, 4, 5, 80, 81, 82)] == [0, 1, 1, 5, 77, 81, 81]


def test_source_frame_indices():
    assert source_frame_indices(0.0, 5, 8.0, 8.0) == [0, 1, 2, 3, 4]
    assert source_frame_indices(1.0, 4, 4.0, 8.0) == [8, 10, 12, 14]
    assert source_frame_indices(0.0, 6, 16.0, 8.0) == [0, 1, 1, 2, 2, 3]  # ties go to the later frame
    assert source_frame_indices(0.0, 4, 6.0, 8.0) == [0, 1, 3, 4]  # nearest of 0, 1.33, 2.67, 4
    assert source_frame_indices(0.0, 3, 1.0, 8.0, num_source_frames=10) == [0, 8, 9]


@pytest.mark.parametrize(
    "start, num_frames, fps",
    [(0.0, 64, FPS), (2.5, 12, FPS), (1.0, 10, 4.0), (0.25, 9, 16.0), (0.5, 13, 6.0), (7.0, 8, FPS)],
)
def test_read_video_frames_seeks_and_resamples(media, start, num_frames, fps):
    frames = read_video_frames(media["long"], start, num_frames, fps)
    assert frames.shape == (num_frames, 32, 48, 3) and frames.dtype == np.uint8
    assert [decode_frame_index(f) for f in frames] == source_frame_indices(start, num_frames, fps, FPS)


def test_read_video_frames_errors(media):
    with pytest.raises(VideoDecodeError, match="the video lasts 8.0 s"):
        read_video_frames(media["long"], 7.0, 12, FPS)
    with pytest.raises(VideoDecodeError, match="truncated or corrupt"):
        read_video_frames(media["truncated"], 3.0, 16, FPS)
    with pytest.raises(VideoDecodeError, match="ffmpeg cannot read"):
        read_video_frames(media["garbage"], 0.0, 4, FPS)


def test_resize_center_crop():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 20, 30, 3), dtype=np.uint8)
    # same height: a pure crop of the center columns, exactly
    out = resize_center_crop(frames, 20, 20)
    assert out.shape == (3, 3, 20, 20) and out.dtype == torch.float32
    expected = torch.from_numpy(frames[:, :, 5:25]).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # extremes map to -1 and 1 (float rounding of the resampling filter aside), never beyond
    flat = np.zeros((2, 40, 64, 3), dtype=np.uint8)
    flat[1] = 255
    out = resize_center_crop(flat, 16, 16)
    assert out.shape == (3, 2, 16, 16) and out.min() >= -1 and out.max() <= 1
    torch.testing.assert_close(out[:, 0], torch.full_like(out[:, 0], -1.0), rtol=0, atol=1e-5)
    torch.testing.assert_close(out[:, 1], torch.full_like(out[:, 1], 1.0), rtol=0, atol=1e-5)
    # a taller target crops rows instead: left/right halves of distinct colours keep their split in the middle
    halves = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    halves[..., 16:, :] = 255
    out = resize_center_crop(halves, 16, 8)  # resized to 16x16, then the middle 8 columns kept
    assert torch.all(out[:, 0, :, :3] < -0.999) and torch.all(out[:, 0, :, 5:] > 0.999)
    with pytest.raises(ValueError, match="must be shaped"):
        resize_center_crop(np.zeros((4, 4, 3), np.uint8), 4, 4)


# --------------------------------------------------------------------------------------------------------------------
# short clips (stage 1)


def test_short_clip_dataset_decodes_clips(media):
    entries = [
        {"video": "long.mp4", "clips": clips((0, 2.5), (3, 8))},
        {"video": "short.mp4", "clips": clips((0, 0.5))},
    ]
    records = load_manifest(write_test_manifest(media["root"] / "short.jsonl", entries))
    dataset = ShortClipDataset(records, height=16, width=16, fps=FPS, min_duration=1.0, max_duration=4.0)
    # durations -> frames: min 1 s -> 9, max 4 s -> 33; the 0.5 s clip (4 frames) is left out
    assert (dataset.min_frames, dataset.max_frames, dataset.num_too_short, len(dataset)) == (9, 33, 1, 2)
    first, second = dataset[0], dataset[1]
    assert first["pixel_values"].shape == (3, 17, 16, 16)  # 2.5 s = 20 frames -> 17
    assert second["pixel_values"].shape == (3, 33, 16, 16)  # 5 s = 40 frames, capped at 33
    for item, start in ((first, 0), (second, 24)):
        pixels = item["pixel_values"]
        assert pixels.dtype == torch.float32 and pixels.min() >= -1 and pixels.max() <= 1
        assert is_valid_num_frames(item["num_frames"]) and item["num_frames"] == pixels.shape[1]
        assert frame_ids(pixels) == list(range(start, start + pixels.shape[1]))
    assert (second["caption"], second["clip_index"], second["start"], second["num_skipped"]) == ("clip 1", 1, 3.0, 0)

    # resampled to 4 fps: every other source frame
    slow = ShortClipDataset(records, height=16, width=16, fps=4.0, num_frames=9)
    assert len(slow) == 2 and frame_ids(slow[1]["pixel_values"]) == list(range(24, 41, 2))


def test_short_clip_dataset_random_windows(media):
    records = load_manifest(
        write_test_manifest(media["root"] / "rand.jsonl", [{"video": "long.mp4", "clips": clips((0, 8))}])
    )
    dataset = ShortClipDataset(
        records, 16, 16, fps=FPS, clip_sampling="random", min_duration=0.5, max_duration=3.0, seed=3
    )
    windows = []
    for epoch in range(6):
        dataset.set_epoch(epoch)
        description = dataset.describe(0)
        assert description == dataset.describe(0)  # depends only on (seed, epoch, index)
        windows.append((description["start"], description["num_frames"]))
    assert len(set(windows)) > 1
    for start, num_frames in windows:
        assert is_valid_num_frames(num_frames) and 5 <= num_frames <= 25
        assert start >= 0 and start * FPS + num_frames <= 64
    dataset.set_epoch(2)
    item = dataset[0]
    first = round(item["start"] * FPS)
    assert frame_ids(item["pixel_values"]) == list(range(first, first + item["num_frames"]))

    # a fixed frame count batches
    fixed = ShortClipDataset(records * 2, 16, 16, fps=FPS, num_frames=13, clip_sampling="random")
    batch = collate_video_batch([fixed[0], fixed[1]])
    assert batch["pixel_values"].shape == (2, 3, 13, 16, 16) and batch["num_skipped"] == 0


def test_short_clip_dataset_rejects_bad_arguments(media):
    records = load_manifest(
        write_test_manifest(media["root"] / "args.jsonl", [{"video": "long.mp4", "clips": clips((0, 8))}])
    )
    with pytest.raises(ValueError, match="`num_frames` must be 1 \\+ 4 \\* k"):
        ShortClipDataset(records, 16, 16, num_frames=16)
    with pytest.raises(ValueError, match="`clip_sampling` must be 'clip' or 'random'"):
        ShortClipDataset(records, 16, 16, clip_sampling="middle")
    with pytest.raises(ValueError, match="`height` must be a positive integer"):
        ShortClipDataset(records, 0, 16)
    with pytest.raises(ValueError, match="No clip of the manifest holds 97 frames"):
        ShortClipDataset(records, 16, 16, fps=FPS, num_frames=97)


def test_corrupt_videos_are_skipped_and_counted(media, caplog):
    entries = [
        {"video": "short.mp4", "clips": clips((0, 2), (2, 4))},
        {"video": "truncated.mp4", "clips": clips((3, 5))},  # header fine, frames missing
        {"video": "garbage.mp4", "clips": clips((0, 2))},  # cannot be opened
        {"video": "long.mp4", "clips": clips((0, 2))},
    ]
    records = load_manifest(write_test_manifest(media["root"] / "corrupt.jsonl", entries))
    dataset = ShortClipDataset(records, 16, 16, fps=FPS, num_frames=9)
    assert len(dataset) == 5
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_video_batch)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert [batch["pixel_values"].shape[0] for batch in batches] == [2, 2, 1]  # every batch keeps its size
    assert dataset.num_skipped == 2 and sum(batch["num_skipped"] for batch in batches) == 2
    assert len([r for r in caplog.records if r.message.startswith("Skipping item")]) == 2
    assert sorted(dataset.failed_items) == [2, 3]
    assert "truncated or corrupt" in dataset.failed_items[2] and "cannot read" in dataset.failed_items[3]
    # items 2 and 3 were replaced by item 4, the next readable one
    assert [index for batch in batches for index in batch["index"]] == [0, 1, 4, 4, 4]
    # a second epoch skips the known-bad items without decoding them again, and keeps counting
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        list(loader)
    assert dataset.num_skipped == 4 and not caplog.records

    broken = ShortClipDataset([records[2]], 16, 16, fps=FPS, num_frames=9)
    with pytest.raises(RuntimeError, match="None of the 1 items"):
        broken[0]


# --------------------------------------------------------------------------------------------------------------------
# long videos (stage 2)


def _long_records(media, name="long.jsonl", spans=((0, 3), (3, 6), (6, 8))):
    return load_manifest(write_test_manifest(media["root"] / name, [{"video": "long.mp4", "clips": clips(*spans)}]))


def test_long_video_split_arithmetic(media):
    num_frames, overlap = 17, 5
    stride = num_frames - overlap
    dataset = LongVideoDataset(_long_records(media), 16, 16, num_frames=num_frames, overlap_frames=overlap, fps=FPS)
    assert len(dataset) == 1
    item = dataset[0]
    # 8 s at 8 fps = 64 frames: (64 - 17) // 12 + 1 = 4 clips
    assert item["pixel_values"].shape == (4, 3, num_frames, 16, 16)
    assert item["clip_starts"] == [0, 12, 24, 36] and item["clip_times"] == [0.0, 1.5, 3.0, 4.5]
    for n in range(4):
        assert frame_ids(item["pixel_values"][n]) == list(range(n * stride, n * stride + num_frames))
        if n:  # clip n's condition frames are clip n-1's last k frames, exactly
            assert torch.equal(item["pixel_values"][n][:, :overlap], item["pixel_values"][n - 1][:, -overlap:])
    # captions by largest overlap: [0, 2.125) -> 0; [1.5, 3.625) -> 0 (1.5 s vs 0.625 s); [3, 5.125) -> 1;
    # [4.5, 6.625) -> 1 (1.5 s vs 0.625 s)
    assert item["captions"] == ["clip 0", "clip 0", "clip 1", "clip 1"] and item["caption_indices"] == [0, 0, 1, 1]

    # max_clips cuts the video into items of consecutive clips, frame for frame the same
    pieces = LongVideoDataset(
        _long_records(media), 16, 16, num_frames=num_frames, overlap_frames=overlap, fps=FPS, max_clips=2
    )
    assert len(pieces) == 2
    second = pieces[1]
    assert second["first_clip_index"] == 2 and second["clip_times"] == [3.0, 4.5]
    assert second["captions"] == item["captions"][2:]
    assert torch.equal(second["pixel_values"], item["pixel_values"][2:])


def test_long_video_runs_and_arguments(media):
    # a gap between captions starts a new run; a run of one clip is too short for min_clips=2
    gapped = _long_records(media, "gap.jsonl", spans=((0, 3), (3.5, 8)))
    dataset = LongVideoDataset(gapped, 16, 16, num_frames=17, overlap_frames=5, fps=FPS)
    assert len(dataset) == 1 and dataset.num_too_short == 1
    assert dataset.describe(0)["start"] == 3.5 and dataset.describe(0)["num_clips"] == 2
    with pytest.raises(ValueError, match="`overlap_frames` must be 1 \\+ 4 \\* j"):
        LongVideoDataset(gapped, 16, 16, num_frames=17, overlap_frames=4)
    with pytest.raises(ValueError, match="`overlap_frames` must be"):
        LongVideoDataset(gapped, 16, 16, num_frames=17, overlap_frames=17)
    with pytest.raises(ValueError, match="`num_frames` must be 1 \\+ 4 \\* k"):
        LongVideoDataset(gapped, 16, 16, num_frames=20)
    with pytest.raises(ValueError, match="No video of the manifest holds 2 clips of 81 frames"):
        LongVideoDataset(gapped, 16, 16, num_frames=81, fps=FPS)
    overlapping = load_manifest(
        write_test_manifest(media["root"] / "ov.jsonl", [{"video": "long.mp4", "clips": clips((0, 3), (2, 8))}]),
        allow_overlap=True,
    )
    with pytest.raises(ValueError, match="overlapping clips cannot form a long video"):
        LongVideoDataset(overlapping, 16, 16, num_frames=17, fps=FPS)


# --------------------------------------------------------------------------------------------------------------------
# latent cache


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    from diffusers import WanPipeline

    from diffusers_longvid.testing import get_dummy_components

    pipe = WanPipeline(**get_dummy_components())
    folder = tmp_path_factory.mktemp("pipeline")
    pipe.save_pretrained(folder)
    return pipe, str(folder)


def test_normalize_latents_matches_wan(tiny_pipeline):
    from diffusers_longvid.training.latent_cache import denormalize_latents, normalize_latents

    vae = tiny_pipeline[0].vae
    latents = torch.randn(2, 16, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    assert torch.equal(normalize_latents(vae, latents), (latents - mean) * inv_std)  # WanImageToVideoPipeline
    assert torch.equal(denormalize_latents(vae, latents), latents / inv_std + mean)  # WanPipeline before decode
    assert torch.equal(normalize_latents(vae, latents[0]), normalize_latents(vae, latents)[0])
    torch.testing.assert_close(denormalize_latents(vae, normalize_latents(vae, latents)), latents)
    with pytest.raises(ValueError, match="vae.config.z_dim = 16"):
        normalize_latents(vae, torch.zeros(4, 3, 2, 2))


def test_encode_prompts_matches_wan_pipeline(tiny_pipeline):
    from diffusers_longvid.training.latent_cache import encode_prompts

    pipe = tiny_pipeline[0]
    prompt = "a  red square &amp; a blue one "
    embeds, seq_lens = encode_prompts(pipe.tokenizer, pipe.text_encoder, [prompt], max_sequence_length=16)
    with torch.no_grad():
        expected = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=16)[0]
    assert torch.equal(embeds, expected)
    assert seq_lens.tolist() == [len(pipe.tokenizer("a red square & a blue one").input_ids)]
    assert torch.all(embeds[0, seq_lens[0] :] == 0)


def _read_shard(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()


def _cli_args(manifest, model, out, *extra):
    return [
        "cache-latents",
        "--manifest",
        str(manifest),
        "--model",
        model,
        "--out",
        str(out),
        "--height",
        "16",
        "--width",
        "16",
        "--fps",
        str(FPS),
        "--max-sequence-length",
        "16",
        "--no-progress",
        *extra,
    ]


def test_cache_latents_short_round_trip(media, tiny_pipeline, tmp_path):
    from diffusers_longvid.cli import main
    from diffusers_longvid.training.latent_cache import (
        CachedLongVideoDataset,
        CachedShortClipDataset,
        cache_latents,
        config_hash,
        encode_video_latents,
    )

    pipe, folder = tiny_pipeline
    entries = [
        {"video": "short.mp4", "clips": clips((0, 1.5), (1.5, 3), (3, 5))},
        {"video": "garbage.mp4", "clips": clips((0, 2))},
    ]
    manifest = write_test_manifest(media["root"] / "cache.jsonl", entries)
    out = tmp_path / "cache"
    assert main(_cli_args(manifest, folder, out, "--num-frames", "9", "--shard-size", "2")) == 0

    pixels = ShortClipDataset(load_manifest(manifest), 16, 16, fps=FPS, num_frames=9)
    cached = CachedShortClipDataset(out)
    assert len(pixels) == 4 and len(cached) == 3  # the garbage video's clip is skipped
    assert [entry["index"] for entry in cached.skipped] == [3] and "cannot read" in cached.skipped[0]["reason"]
    assert sorted(p.name for p in out.iterdir()) == [
        "empty_prompt.safetensors",
        "index.json",
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    meta = cached.metadata
    assert (meta["kind"], meta["model"], meta["num_frames"], meta["fps"], meta["height"]) == (
        "short",
        folder,
        9,
        FPS,
        16,
    )
    assert meta["vae_config_hash"] == config_hash(pipe.vae.config) and meta["max_sequence_length"] == 16
    for position in range(3):
        item = cached[position]
        source = pixels.load_item(item["index"])
        assert item["latents"].shape == (16, 3, 2, 2)
        assert torch.equal(item["latents"], encode_video_latents(pipe.vae, source["pixel_values"]))
        with torch.no_grad():
            expected = pipe.encode_prompt(source["caption"], do_classifier_free_guidance=False, max_sequence_length=16)
        assert torch.equal(item["prompt_embeds"], expected[0][0])
        assert {k: item[k] for k in ("caption", "video_path", "start", "num_frames")} == {
            k: source[k] for k in ("caption", "video_path", "start", "num_frames")
        }
    with torch.no_grad():
        empty = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=16)[0][0]
    assert torch.equal(cached.empty_prompt_embeds, empty)
    batch = collate_video_batch([cached[0], cached[1]])
    assert batch["latents"].shape == (2, 16, 3, 2, 2) and batch["prompt_embeds"].shape == (2, 16, 32)
    pickle.loads(pickle.dumps(cached))  # open shard handles do not travel to DataLoader workers

    # resume: a lost shard is encoded again, the complete one is kept as it is
    shard0, shard1 = out / "shard-00000.safetensors", out / "shard-00001.safetensors"
    kept, lost = shard0.stat().st_mtime_ns, _read_shard(shard1)
    shard1.unlink()
    (out / "index.json").unlink()
    dataset = ShortClipDataset(load_manifest(manifest), 16, 16, fps=FPS, num_frames=9)
    dataset.manifest_path = str(manifest)
    summary = cache_latents(
        dataset,
        out,
        pipe.vae,
        pipe.text_encoder,
        pipe.tokenizer,
        model_id=folder,
        max_sequence_length=16,
        shard_size=2,
        show_progress=False,
    )
    assert (summary.num_items, summary.num_skipped, summary.num_shards, summary.num_reused_shards) == (3, 1, 2, 1)
    assert shard0.stat().st_mtime_ns == kept
    tensors, header = _read_shard(shard1)
    assert header == lost[1] and tensors.keys() == lost[0].keys()
    assert all(torch.equal(tensors[key], lost[0][key]) for key in tensors)
    assert json.loads((out / "index.json").read_text())["items"] == CachedShortClipDataset(out).items

    # other settings in the same folder: refused, unless overwriting
    other = ShortClipDataset(load_manifest(manifest), 32, 32, fps=FPS, num_frames=9)
    with pytest.raises(ValueError, match="made with other data or settings"):
        cache_latents(other, out, pipe.vae, pipe.text_encoder, pipe.tokenizer, max_sequence_length=16)
    cache_latents(
        other,
        out,
        pipe.vae,
        pipe.text_encoder,
        pipe.tokenizer,
        max_sequence_length=16,
        overwrite=True,
        show_progress=False,
    )
    assert CachedShortClipDataset(out)[0]["latents"].shape == (16, 3, 4, 4)
    with pytest.raises(ValueError, match="use `CachedShortClipDataset`"):
        CachedLongVideoDataset(out)
    with pytest.raises(ValueError, match="cannot be cached"):
        random = ShortClipDataset(load_manifest(manifest), 16, 16, fps=FPS, num_frames=9, clip_sampling="random")
        cache_latents(random, tmp_path / "random", pipe.vae, pipe.text_encoder, pipe.tokenizer)


def test_cache_latents_long_round_trip(media, tiny_pipeline, tmp_path):
    from diffusers_longvid.cli import main
    from diffusers_longvid.training.latent_cache import (
        CachedLongVideoDataset,
        CachedShortClipDataset,
        encode_video_latents,
    )

    pipe, folder = tiny_pipeline
    manifest = write_test_manifest(
        media["root"] / "cache-long.jsonl", [{"video": "long.mp4", "clips": clips((0, 3), (3, 6), (6, 8))}]
    )
    out = tmp_path / "long-cache"
    args = _cli_args(manifest, folder, out, "--kind", "long", "--num-frames", "17", "--overlap-frames", "5")
    assert main(args) == 0
    cached = CachedLongVideoDataset(out)
    pixels = LongVideoDataset(load_manifest(manifest), 16, 16, num_frames=17, overlap_frames=5, fps=FPS)
    assert len(cached) == len(pixels) == 1
    item, source = cached[0], pixels.load_item(0)
    assert item["latents"].shape == (4, 16, 5, 2, 2) and item["prompt_embeds"].shape == (4, 16, 32)
    for n in range(4):  # each clip encoded on its own (the clips run as one batch: equal up to float rounding)
        torch.testing.assert_close(
            item["latents"][n], encode_video_latents(pipe.vae, source["pixel_values"][n]), atol=1e-5, rtol=1e-5
        )
    assert item["captions"] == source["captions"] and item["clip_starts"] == source["clip_starts"]
    # the same cache read as stage-1 items: one per clip, with its caption and padded embedding
    from diffusers_longvid.training import CachedLongVideoClipDataset

    per_clip = CachedLongVideoClipDataset(out)
    assert len(per_clip) == 4 and per_clip.metadata["kind"] == "long"
    for n in range(4):
        clip = per_clip[n]
        assert torch.equal(clip["latents"], item["latents"][n]) and clip["clip_index"] == n
        assert clip["caption"] == item["captions"][n] and clip["num_frames"] == 17
        assert torch.equal(clip["prompt_embeds"], item["prompt_embeds"][n])
        assert clip["prompt_seq_len"] == item["prompt_seq_lens"][n]
    assert torch.equal(item["prompt_embeds"][0], item["prompt_embeds"][1])  # same caption, stored once
    assert len(set(item["prompt_seq_lens"])) == 1
    with pytest.raises(ValueError, match="use `CachedLongVideoDataset`"):
        CachedShortClipDataset(out)

    # fixed-size pieces, as LongVideoDataset(max_clips=2, min_clips=2) cuts the pixel video
    pieces = CachedLongVideoDataset(out, num_clips=2)
    pixel_pieces = LongVideoDataset(
        load_manifest(manifest), 16, 16, num_frames=17, overlap_frames=5, fps=FPS, max_clips=2, min_clips=2
    )
    assert len(pieces) == len(pixel_pieces) == 2
    for position in range(2):
        piece, expected = pieces[position], pixel_pieces.describe(position)
        assert torch.equal(piece["latents"], item["latents"][2 * position : 2 * position + 2])
        assert torch.equal(piece["prompt_embeds"], item["prompt_embeds"][2 * position : 2 * position + 2])
        for key in ("captions", "clip_starts", "clip_times", "first_clip_index", "start", "num_clips"):
            assert piece[key] == expected[key], key
    with pytest.raises(ValueError, match=r"holds 5 clips \(`num_clips` = 5\)"):
        CachedLongVideoDataset(out, num_clips=5)

    # sliding pieces: one ends at every clip from the 2nd on (targets 1, 2, 3), each with up to 3 clips, the same
    # pieces as the pixel dataset's sliding items
    sliding = CachedLongVideoDataset(out, num_clips=3, min_clips=2)
    pixel_sliding = LongVideoDataset(
        load_manifest(manifest),
        16,
        16,
        num_frames=17,
        overlap_frames=5,
        fps=FPS,
        max_clips=3,
        min_clips=2,
        sliding=True,
    )
    assert [piece[1:] for piece in sliding.pieces] == [(0, 2), (0, 3), (1, 3)]
    assert len(pixel_sliding) == len(sliding) == 3
    for position, (first, count) in enumerate([(0, 2), (0, 3), (1, 3)]):
        piece, expected = sliding[position], pixel_sliding.describe(position)
        assert torch.equal(piece["latents"], item["latents"][first : first + count])
        assert piece["captions"] == item["captions"][first : first + count]
        for key in ("captions", "clip_starts", "clip_times", "first_clip_index", "start", "num_clips"):
            assert piece[key] == expected[key], key
    with pytest.raises(ValueError, match="`min_clips` .* needs `num_clips`"):
        CachedLongVideoDataset(out, min_clips=2)
    with pytest.raises(ValueError, match="1 <= `min_clips` <= `num_clips`"):
        CachedLongVideoDataset(out, num_clips=2, min_clips=3)
    with pytest.raises(ValueError, match="`sliding=True` needs `max_clips`"):
        LongVideoDataset(load_manifest(manifest), 16, 16, num_frames=17, overlap_frames=5, fps=FPS, sliding=True)


def test_cache_latents_cli_checks(media, tiny_pipeline, tmp_path, capsys):
    from diffusers_longvid.cli import build_parser, main

    manifest = write_test_manifest(media["root"] / "cli.jsonl", [{"video": "long.mp4", "clips": clips((0, 8))}])
    assert main(_cli_args(manifest, tiny_pipeline[1], tmp_path / "x", "--kind", "long")) == 2
    assert "--kind long needs --num-frames" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["cache-latents", "--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--manifest", "--model", "--out", "--height", "--width", "--fps", "--num-frames", "--overlap-frames"):
        assert flag in help_text
