"""Resumable long generation: a state after every clip, and a resumed run equal to the uninterrupted one."""

import json

import numpy as np
import pytest
import torch
from _pipes import make_pipe

from diffusers_longvid import LongVideoExtensionPipeline
from diffusers_longvid.attention.kv_cache import CrossClipKVCacheConfig
from diffusers_longvid.cli import main
from diffusers_longvid.memory import ProbedClipPlan
from diffusers_longvid.pipelines.longvideo.state import GenerationState, GenerationStateError
from diffusers_longvid.selection import RecentSelector
from diffusers_longvid.selection.planner import KVStoragePlanner
from diffusers_longvid.video_io import concat_videos, read_video, write_video


PROMPTS = [
    "a red ball rolls on the grass",
    "a cat sleeps on a sofa",
    "the red ball bounces on the grass",
    "the cat wakes up on the sofa",
    "the red ball stops on the grass",
    "the cat looks at the ball",
]
KWARGS = dict(height=16, width=16, num_frames=9, num_condition_frames=1, num_inference_steps=2, max_sequence_length=16)


def resume_pipe(in_channels=36, **config):
    """The tiny pipeline with a 2-clip KV cache and the recent-clips selector (what the resume tests stop and restart)."""
    return make_pipe(
        in_channels, **{"kv_cache_clips": 2, "max_cached_clips": 2, "clip_selector": RecentSelector(), **config}
    )


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipe36():
    return resume_pipe(36)


@pytest.fixture(scope="module")
def pipe16():
    return resume_pipe(16, kv_cache_config=CrossClipKVCacheConfig(record_mode="last_step"))


@pytest.fixture(scope="module")
def straight36(pipe36):
    return pipe36(PROMPTS, generator=generator(), **KWARGS)


def test_resume_after_dropping_the_generator_equals_the_uninterrupted_run(pipe36, straight36, tmp_path):
    # stop after clip 3 of 6: consume three clips and drop the generator
    clips = pipe36.generate_clips(PROMPTS, generator=generator(), state_dir=tmp_path, **KWARGS)
    first = [next(clips) for _ in range(3)]
    clips.close()

    state = GenerationState.load(tmp_path)
    assert state.num_clips_done == 3 and state.prompts == PROMPTS[:3] and state.next_frame == 9 + 8 + 8
    assert state.kv_plan == straight36.kv_plan[:3]
    # the K/V files on disk are exactly the clips the plan holds after clip 2 (evicted ones were deleted)
    assert sorted(state.memory["planner"]["held"]) == ["1", "2"]
    kv_files = sorted(p.name for p in (tmp_path / "kv").iterdir())
    assert kv_files == ["clip_00001.safetensors", "clip_00002.safetensors"]
    assert [p.name for p in tmp_path.glob("carry_*")] == ["carry_00002.safetensors"]

    # resuming yields only the remaining clips, bit for bit those of the uninterrupted run (another seed: the saved
    # RNG state replaces the generator's)
    rest = list(pipe36.generate_clips(PROMPTS, generator=generator(99), state_dir=tmp_path, resume=True, **KWARGS))
    assert [c.clip_index for c in rest] == [3, 4, 5]
    frames = np.concatenate([c.frames for c in first + rest], axis=1)
    assert np.array_equal(frames, straight36.frames)
    assert rest[-1].kv_plan == straight36.kv_plan
    assert [c.frame_range for c in first + rest] == straight36.clip_frame_ranges
    assert GenerationState.load(tmp_path).num_clips_done == 6


def test_resume_after_a_crash_inside_a_clip_returns_the_whole_video(pipe36, straight36, tmp_path):
    def crash_in_clip_3(pipe, step, timestep, tensors):
        if pipe.current_clip_index == 3:
            raise RuntimeError("preempted (simulated)")
        return {}

    with pytest.raises(RuntimeError, match="simulated"):
        pipe36(PROMPTS, generator=generator(), state_dir=tmp_path, callback_on_step_end=crash_in_clip_3, **KWARGS)
    assert GenerationState.load(tmp_path).num_clips_done == 3

    # `__call__` returns all six clips: the finished ones re-decoded from their saved latents
    out = pipe36(PROMPTS, generator=generator(), state_dir=tmp_path, resume=True, **KWARGS)
    assert np.array_equal(out.frames, straight36.frames)
    assert out.kv_plan == straight36.kv_plan and out.clip_frame_ranges == straight36.clip_frame_ranges
    assert out.prompts == PROMPTS

    # a finished state resumes to the same video with nothing left to generate; latents come back as saved
    latents = pipe36(PROMPTS, state_dir=tmp_path, resume=True, output_type="latent", **KWARGS).frames
    assert len(latents) == 6 and latents[0].shape == (1, 16, 3, 2, 2)


def test_the_state_holds_typed_plan_entries_and_resumes_the_attention_probe(tmp_path):
    # with the attention probe on, the plan entries carry the measured shares (`ProbedClipPlan`): the state holds
    # them typed, writes them as the public dicts, and a resumed run reports the finished clips' shares as measured
    config = CrossClipKVCacheConfig(probe_attention=True)
    pipe = resume_pipe(36, kv_cache_config=config)
    straight = pipe(PROMPTS[:4], generator=generator(), **KWARGS)
    assert straight.kv_plan[2]["attention"] and set(straight.kv_plan[2]) >= {"clip", "attends", "attention"}
    clips = pipe.generate_clips(PROMPTS[:4], generator=generator(), state_dir=tmp_path, **KWARGS)
    first = [next(clips) for _ in range(3)]
    clips.close()
    state = GenerationState.load(tmp_path)
    assert all(isinstance(entry, ProbedClipPlan) for entry in state.clip_plans)
    assert state.kv_plan == straight.kv_plan[:3] == first[-1].kv_plan  # int keys again after the JSON round trip
    rest = list(pipe.generate_clips(PROMPTS[:4], generator=generator(), state_dir=tmp_path, resume=True, **KWARGS))
    assert rest[-1].kv_plan == straight.kv_plan

    manifest = json.loads((tmp_path / "state.json").read_text())
    manifest["kv_plan"][1] = {"clip": 1}
    (tmp_path / "state.json").write_text(json.dumps(manifest))
    with pytest.raises(GenerationStateError, match="an entry of `kv_plan` is unreadable"):
        GenerationState.load(tmp_path, verify=False)


def test_resume_replacement_mode_last_step_recording_and_a_batch(pipe16, tmp_path):
    # 16-channel T2V (replacement conditioning draws extra noise per clip), K/V recorded in the last step (they
    # depend on the history), two videos with a generator each
    kwargs = dict(KWARGS, num_videos_per_prompt=2, num_condition_frames=5)
    straight = pipe16(PROMPTS, generator=[generator(0), generator(1)], **kwargs)
    clips = pipe16.generate_clips(PROMPTS, generator=[generator(0), generator(1)], state_dir=tmp_path, **kwargs)
    first = [next(clips) for _ in range(3)]
    clips.close()
    out = pipe16(PROMPTS, generator=[generator(5), generator(6)], state_dir=tmp_path, resume=True, **kwargs)
    assert np.array_equal(out.frames, straight.frames) and out.kv_plan == straight.kv_plan
    assert np.array_equal(np.concatenate([c.frames for c in first], axis=1), straight.frames[:, :17])


def test_resume_with_prompt_similarity_and_an_iterator_of_prompts(tmp_path):
    from diffusers_longvid.selection import PromptSimilaritySelector

    pipe = resume_pipe(36, kv_cache_clips=1, max_cached_clips=2, clip_selector=PromptSimilaritySelector())
    straight = list(pipe.generate_clips(iter(PROMPTS), generator=generator(), **KWARGS))  # streaming plan
    clips = pipe.generate_clips(iter(PROMPTS), generator=generator(), state_dir=tmp_path, **KWARGS)
    for _ in range(3):
        next(clips)
    clips.close()
    assert GenerationState.load(tmp_path).memory["planner"]["mode"] == "streaming"

    # the iterator yields the whole script again; its first prompts must be those of the finished clips
    rest = list(pipe.generate_clips(iter(PROMPTS), generator=generator(), state_dir=tmp_path, resume=True, **KWARGS))
    assert [c.clip_index for c in rest] == [3, 4, 5]
    for ours, theirs in zip(rest, straight[3:]):
        assert np.array_equal(ours.frames, theirs.frames) and ours.attends == theirs.attends
    assert rest[-1].kv_plan == straight[-1].kv_plan
    assert [e["attends"] for e in straight[-1].kv_plan][2] == [0]  # the ball clip, by prompt similarity

    changed = iter(["a red ball rolls on the grass", "a dog barks"] + PROMPTS[2:])
    with pytest.raises(ValueError, match="`prompt` yields 'a dog barks' for clip 1"):
        list(pipe.generate_clips(changed, generator=generator(), state_dir=tmp_path, resume=True, **KWARGS))


def test_resume_refuses_other_settings_and_misuse(pipe36, tmp_path):
    clips = pipe36.generate_clips(PROMPTS, generator=generator(), state_dir=tmp_path, **KWARGS)
    next(clips)
    clips.close()

    other = dict(KWARGS, num_inference_steps=3, height=32)
    with pytest.raises(ValueError, match=r"`height` \(saved 16, now 32\); `num_inference_steps` \(saved 2, now 3\)"):
        pipe36.generate_clips(PROMPTS, generator=generator(), state_dir=tmp_path, resume=True, **other)
    with pytest.raises(ValueError, match="`prompt`"):
        pipe36.generate_clips(PROMPTS[:5], state_dir=tmp_path, resume=True, **KWARGS)
    with pytest.raises(ValueError, match="`kv_cache_clips`"):
        pipe36.generate_clips(PROMPTS, state_dir=tmp_path, resume=True, kv_cache_clips=1, **KWARGS)
    with pytest.raises(ValueError, match="`guidance_scale`"):
        pipe36.generate_clips(PROMPTS, state_dir=tmp_path, resume=True, guidance_scale=2.0, **KWARGS)
    with pytest.raises(ValueError, match="`generator`"):
        pipe36.generate_clips(PROMPTS, generator=[generator()], state_dir=tmp_path, resume=True, **KWARGS)
    with pytest.raises(ValueError, match="`image`"):
        image = np.zeros((16, 16, 3), dtype=np.float32)
        pipe36.generate_clips(PROMPTS, image=image, state_dir=tmp_path, resume=True, **KWARGS)
    with pytest.raises(ValueError, match="already holds the state of a run: pass `resume=True`"):
        pipe36.generate_clips(PROMPTS, state_dir=tmp_path, **KWARGS)
    with pytest.raises(ValueError, match="holds no generation state"):
        pipe36.generate_clips(PROMPTS, state_dir=tmp_path / "empty", resume=True, **KWARGS)
    with pytest.raises(ValueError, match="`resume=True` needs `state_dir`"):
        pipe36.generate_clips(PROMPTS, resume=True, **KWARGS)


def test_planner_state_round_trip_continues_the_same_plan():
    for prompts in (PROMPTS, None):  # offline plan, streaming
        straight = KVStoragePlanner(RecentSelector(), kv_cache_clips=2, max_cached_clips=2)
        saved = KVStoragePlanner(RecentSelector(), kv_cache_clips=2, max_cached_clips=2)
        straight.start(prompts)
        saved.start(prompts)
        for n, prompt in enumerate(PROMPTS):
            for planner in (straight, saved):
                planner.begin_clip(n, prompt)
                planner.end_clip(n)
            if n == 2:
                state = json.loads(json.dumps(saved.state_dict()))  # through JSON, as on disk
                saved = KVStoragePlanner(RecentSelector(), kv_cache_clips=2, max_cached_clips=2)
                saved.load_state_dict(state)
        assert saved.history == straight.history and saved.held == straight.held
    with pytest.raises(ValueError, match="`max_cached_clips=2`"):
        KVStoragePlanner(RecentSelector(), kv_cache_clips=2, max_cached_clips=3).load_state_dict(state)


@pytest.fixture(scope="module")
def kv_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kv_pipeline")
    resume_pipe(36).save_pretrained(folder)
    return str(folder)


def test_cli_resume_gives_the_same_mp4(kv_model, tmp_path, monkeypatch, capsys):
    script = tmp_path / "script.txt"
    script.write_text("\n".join(PROMPTS))
    tiny = ["--height", "16", "--width", "16", "--num-frames", "9", "--num-inference-steps", "2", "--device", "cpu"]
    tiny += ["--max-sequence-length", "16", "--num-condition-frames", "1", "--seed", "3", "--fps", "8"]
    base = ["generate", "--model", kv_model, "--prompts-file", str(script)] + tiny

    straight = tmp_path / "straight"
    assert main(base + ["--out", str(straight / "video.mp4"), "--state-dir", str(straight / "state")]) == 0

    # interrupt (Ctrl-C) during clip 4 of 6
    run = tmp_path / "run"
    denoise = LongVideoExtensionPipeline._denoise_clip

    def interrupted(self, *args, **kwargs):
        if self.current_clip_index == 3:
            raise KeyboardInterrupt
        return denoise(self, *args, **kwargs)

    monkeypatch.setattr(LongVideoExtensionPipeline, "_denoise_clip", interrupted)
    assert main(base + ["--out", str(run / "video.mp4"), "--state-dir", str(run / "state")]) == 130
    assert "--resume" in capsys.readouterr().err
    # the three finished clips, in the partial file (video.mp4 is replaced only by a finished job)
    assert read_video(run / "video.partial.mp4").shape[0] == 9 + 2 * 8 and not (run / "video.mp4").exists()
    monkeypatch.setattr(LongVideoExtensionPipeline, "_denoise_clip", denoise)

    # flags that would change the video are refused; the run folder finds its `state/`
    assert main(["generate", "--resume", str(run), "--guidance-scale", "2"]) == 2
    assert "--guidance-scale 2.0 (saved: 5.0)" in capsys.readouterr().err
    assert main(base + ["--out", str(run / "video.mp4"), "--state-dir", str(run / "state")]) == 2
    assert "--resume" in capsys.readouterr().err

    assert main(["generate", "--resume", str(run)]) == 0
    assert "Resuming at clip 4 of 6" in capsys.readouterr().out
    ours, theirs = read_video(run / "video.mp4"), read_video(straight / "video.mp4")
    assert ours.shape == (9 + 5 * 8, 16, 16, 3) and np.array_equal(ours, theirs)

    record = json.loads((run / "video.json").read_text())
    expected = json.loads((straight / "video.json").read_text())
    assert record["finished"] is True and record["resumed_at_clips"] == [3]
    assert record["kv_plan"] == expected["kv_plan"] and record["num_frames_written"] == 49
    drop_seconds = [{k: v for k, v in clip.items() if k != "seconds"} for clip in record["clips"]]
    assert drop_seconds == [{k: v for k, v in clip.items() if k != "seconds"} for clip in expected["clips"]]


def test_concat_videos_is_the_concatenation_of_the_segments(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for n, length in enumerate((9, 8, 8)):
        paths.append(write_video(rng.random((length, 16, 16, 3)), tmp_path / f"it's clip {n}.mp4", fps=8))
    joined = read_video(concat_videos(paths, tmp_path / "joined.mp4"))
    assert np.array_equal(joined, np.concatenate([read_video(p) for p in paths]))
    with pytest.raises(ValueError, match="`paths`"):
        concat_videos([tmp_path / "missing.mp4"], tmp_path / "x.mp4")
