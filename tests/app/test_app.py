"""`longvid app` without a browser: the script editor, models, jobs (stream, stop, resume, two sessions), charts.

The jobs run a tiny random pipeline (16x16, 9 frames, 2 steps); the browser test is tests/app/test_app_browser.py.
"""

import json

import numpy as np
import pytest

from diffusers_longvid import LongVideoExtensionPipeline
from diffusers_longvid.app.charts import kv_plan_chart, kv_plan_markdown, kv_plan_matrix
from diffusers_longvid.app.errors import AppInputError
from diffusers_longvid.app.jobs import GenerationJob, JobRegistry, JobSettings
from diffusers_longvid.app.models import PipelineCache, model_defaults, resolve_model
from diffusers_longvid.app.script import (
    EditedScript,
    add_row,
    check_prompt_lengths,
    load_script_file,
    move_row,
    normalise_rows,
    random_toy_rows,
    remove_row,
    rewrite_toy_prompts,
    rows_from_prompts,
    rows_from_toy_script,
    save_script_file,
    script_from_rows,
)
from diffusers_longvid.selection import RecentSelector
from diffusers_longvid.testing import get_dummy_components
from diffusers_longvid.toy import describe_script, is_reentry, random_script
from diffusers_longvid.video_io import read_video


PROMPTS = ["a red ball rolls on the grass", "a cat sleeps on a sofa", "the ball bounces", "the cat wakes up"]
TINY = dict(
    height=16,
    width=16,
    num_frames=9,
    num_condition_frames=1,
    num_inference_steps=2,
    guidance_scale=2.0,
    fps=8,
    max_sequence_length=16,
    seed=0,
    kv_cache=True,
    kv_cache_clips=2,
    tau_low=0.0,
    tau_high=1.0,
)


# ------------------------------------------------------------------------------------------------ script editor
def test_rows_edit_and_renumber():
    rows = rows_from_prompts(["a", "b", "c"])
    assert rows == [["0", "a", "", ""], ["1", "b", "", ""], ["2", "c", "", ""]]
    assert [r[1] for r in add_row(rows, 0)] == ["a", "a", "b", "c"]
    assert [r[1] for r in add_row(rows)] == ["a", "b", "c", "c"]
    assert add_row([]) == [["0", "", "", ""]]
    assert [r[:2] for r in remove_row(rows, 1)] == [["0", "a"], ["1", "c"]]
    assert [r[1] for r in move_row(rows, 2, -1)] == ["a", "c", "b"]
    assert [r[1] for r in move_row(rows, 0, -1)] == ["a", "b", "c"]  # clamped
    with pytest.raises(AppInputError, match="no clip 3"):
        remove_row(rows, 3)
    with pytest.raises(AppInputError, match="whole number"):
        move_row(rows, "x", 1)
    # blank rows are dropped, a pandas frame's NaN is an empty cell
    assert normalise_rows([["7", " a ", None, float("nan")], ["", "", "", ""]]) == [["0", "a", "", ""]]


def test_toy_rows_mark_the_comebacks_and_their_prompts_leave_the_colour_out():
    script = random_script(4, seed=3)
    flags = is_reentry(script)
    rows = rows_from_toy_script(script)
    assert [r[1] for r in rows] == describe_script(script)
    for row, clip, clip_flags in zip(rows, script, flags):
        assert bool(row[2]) == any(clip_flags)
        for obj, back in zip(clip["objects"], clip_flags):
            if back:
                assert f"the {obj['shape']}" in row[2] and obj["color"] not in row[1]
    edited = script_from_rows(rows)
    assert edited.is_toy and edited.prompts == describe_script(script)
    # an edited prompt is kept; "Write the toy prompts" writes them all again
    rows[0][1] = "my own words"
    assert script_from_rows(rows).prompts[0] == "my own words"
    assert rewrite_toy_prompts(rows)[0][1] == describe_script(script)[0]
    # an empty prompt of a toy clip is written from the clip
    rows[1][1] = ""
    assert script_from_rows(rows).prompts[1] == describe_script(script)[1]
    assert len(random_toy_rows(3, seed=1)) == 3
    with pytest.raises(AppInputError, match="at least 1"):
        random_toy_rows(0)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "empty"),
        ([["0", "", "", ""]], "empty"),
        ([["0", "a", "", '{"background": "navy"}'], ["1", "b", "", ""]], "either all plain prompts or all toy"),
        ([["0", "a", "", "{not json"]], "not valid JSON"),
        ([["0", "a", "", "[1, 2]"]], "must be a JSON object"),
        ([["0", "a", "", '{"background": "nope"}']], "toy script is not valid"),
    ],
)
def test_bad_scripts_have_clear_messages(rows, message):
    with pytest.raises(AppInputError, match=message):
        script_from_rows(rows)


def test_too_many_clips():
    with pytest.raises(AppInputError, match="at most 2"):
        script_from_rows(rows_from_prompts(["a", "b", "c"]), max_clips=2)


def test_load_and_save_script_files(tmp_path):
    txt = tmp_path / "fox.txt"
    txt.write_text("# a comment\nthe fox runs\n\nthe fox stops\n")
    assert [r[1] for r in load_script_file(txt)] == ["the fox runs", "the fox stops"]
    saved = save_script_file(load_script_file(txt), tmp_path / "out")
    assert saved.endswith("script.txt") and open(saved).read() == "the fox runs\nthe fox stops\n"

    script = random_script(3, seed=0)
    toy = tmp_path / "toy.json"
    toy.write_text(json.dumps({"clips": script}))
    rows = load_script_file(toy)
    assert [r[1] for r in rows] == [c["prompt"] for c in script]  # prompts the script has are kept
    saved = save_script_file(rows, tmp_path / "out")
    assert saved.endswith("script.json") and [c["prompt"] for c in json.load(open(saved))] == rows_prompts(rows)
    assert load_script_file(saved) == rows  # round trip

    sidecar = tmp_path / "video.json"
    sidecar.write_text(json.dumps({"prompts": ["x", "y"], "toy_script": None}))
    assert [r[1] for r in load_script_file(sidecar)] == ["x", "y"]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["p", "q"]))
    assert [r[1] for r in load_script_file(listed)] == ["p", "q"]
    for text, message in (("{", "not valid JSON"), ("3", "neither a toy script")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(AppInputError, match=message):
            load_script_file(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(AppInputError, match="holds no prompt"):
        load_script_file(empty)


def rows_prompts(rows):
    return [r[1] for r in rows]


def test_prompt_over_the_tokenizer_limit_is_refused():
    tokenizer = get_dummy_components()["tokenizer"]
    check_prompt_lengths(["a short prompt"], tokenizer, 16)
    with pytest.raises(AppInputError, match=r"clip 1 \(\d+ tokens\)"):
        check_prompt_lengths(["short", " ".join(["word"] * 40)], tokenizer, 16)


# ------------------------------------------------------------------------------------------------ models, settings
def test_resolve_model_messages(tmp_path):
    assert resolve_model("toy").endswith("toy")
    assert resolve_model("owner/name") == "owner/name"
    (tmp_path / "file.txt").write_text("x")
    for model, message in (
        ("", "empty"),
        (str(tmp_path), "not a pipeline"),
        (str(tmp_path / "file.txt"), "a file"),
        (str(tmp_path / "missing" / "deep"), "neither a folder"),
    ):
        with pytest.raises(AppInputError, match=message):
            resolve_model(model)


def test_toy_defaults_come_from_preset_json():
    from diffusers_longvid.presets import get_preset_path

    preset = json.loads(open(f"{get_preset_path('toy')}/preset.json").read())
    defaults = model_defaults("toy")
    for key in ("height", "width", "num_frames", "num_condition_frames", "num_inference_steps", "guidance_scale"):
        assert defaults[key] == preset[key]
    assert 0 <= defaults["tau_low"] < defaults["tau_high"] <= 1 and defaults["kv_cache_clips"] >= 1
    assert model_defaults("owner/name")["height"] == 480  # a Hub id: the generic defaults, nothing downloaded


def test_a_broken_pipeline_folder_is_a_message(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "LongVideoExtensionPipeline"}')
    with pytest.raises(AppInputError, match="Could not load a pipeline"):
        PipelineCache(device="cpu").get(str(tmp_path))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tau_low": 0.8, "tau_high": 0.5}, "T-RFlow window"),
        ({"height": "abc"}, "Height must be a whole number"),
        ({"num_frames": 8.5}, "Frames per clip must be a whole number"),
        ({"fps": 0}, "FPS must be positive"),
        ({"kv_cache_clips": 0}, "KV cache clips"),
    ],
)
def test_bad_settings_have_clear_messages(change, message):
    with pytest.raises(AppInputError, match=message):
        JobSettings.from_values(**{**TINY, **change})


def test_settings_from_page_values():
    settings = JobSettings.from_values(**{**TINY, "height": 16.0, "max_sequence_length": None, "kv_cache": False})
    assert settings.height == 16 and isinstance(settings.height, int) and settings.max_sequence_length is None
    assert settings.effective_kv_cache_clips == 0


# ------------------------------------------------------------------------------------------------ jobs
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    pipe = LongVideoExtensionPipeline(
        **get_dummy_components(in_channels=36), kv_cache_clips=2, max_cached_clips=2, clip_selector=RecentSelector()
    )
    pipe.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tiny_model):
    cache = PipelineCache(device="cpu")
    cache.get(tiny_model)
    return cache


def stop_during_clip(models, model, job, clip_index):
    """Stop `job` deterministically while clip `clip_index` is being denoised."""
    pipe = models.get(model).pipe

    def hook(module, args):
        # only while `job` holds the model (another job may share the pipeline)
        if pipe.current_clip_index == clip_index and job.snapshot().status == "running":
            job.stop()

    return pipe.transformer.register_forward_pre_hook(hook)


def test_job_streams_stops_and_resumes_like_an_uninterrupted_run(models, tiny_model, tmp_path):
    settings = JobSettings.from_values(**TINY)
    script = EditedScript(prompts=PROMPTS)
    straight = GenerationJob(tmp_path / "straight", tiny_model, script, settings).run(models)
    assert straight.status == "finished" and len(straight.clips) == 4, straight.message

    job = GenerationJob(tmp_path / "stopped", tiny_model, script, settings)
    handle = stop_during_clip(models, tiny_model, job, 2)
    try:
        stopped = job.run(models)
    finally:
        handle.remove()
    assert stopped.status == "stopped" and "Stopped after 2 of 4 clips" in stopped.message
    assert len(stopped.clips) == 2 and len(stopped.segments) == 2
    assert read_video(stopped.video).shape[0] == 9 + 8  # the finished clips, nothing of the interrupted one
    sidecar = json.loads(open(stopped.sidecar).read())
    assert sidecar["finished"] is False and len(sidecar["clips"]) == 2

    # a fresh process would reopen the folder: Resume continues from the state
    reopened = GenerationJob.open(tmp_path / "stopped")
    assert reopened.snapshot().status == "stopped" and len(reopened.snapshot().clips) == 2
    resumed = reopened.run(models, resume=True)
    assert resumed.status == "finished" and len(resumed.clips) == 4, resumed.message
    assert np.array_equal(read_video(resumed.video), read_video(straight.video))
    record = json.loads(open(resumed.sidecar).read())
    assert record["finished"] is True and record["resumed_at_clips"] == [2]
    assert [e["clip"] for e in record["kv_plan"]] == [0, 1, 2, 3] and record["kv_plan"][3]["attends"]
    assert set(resumed.segments) == {
        str(tmp_path / "stopped" / "state" / "segments" / f"clip_{n:05d}.mp4") for n in range(4)
    }
    assert (tmp_path / "stopped" / "script.txt").read_text().splitlines() == PROMPTS
    assert GenerationJob.open(tmp_path / "stopped").run(models, resume=True).message.endswith("nothing to resume.")


def test_bad_sizes_and_long_prompts_end_the_job_with_a_message(models, tiny_model, tmp_path):
    settings = JobSettings.from_values(**{**TINY, "height": 20})
    done = GenerationJob(tmp_path / "size", tiny_model, EditedScript(PROMPTS[:1]), settings).run(models)
    assert done.status == "failed" and "cannot take these settings" in done.message and "`height`" in done.message
    settings = JobSettings.from_values(**{**TINY, "num_frames": 8})
    done = GenerationJob(tmp_path / "frames", tiny_model, EditedScript(PROMPTS[:1]), settings).run(models)
    assert done.status == "failed" and "`num_frames`" in done.message
    long_prompt = EditedScript([" ".join(["word"] * 40)])
    done = GenerationJob(tmp_path / "long", tiny_model, long_prompt, JobSettings.from_values(**TINY)).run(models)
    assert done.status == "failed" and "tokenizer limit" in done.message


def test_unexpected_errors_become_one_line(models, tiny_model, tmp_path, monkeypatch):
    pipe = models.get(tiny_model).pipe

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pipe, "generate_clips", broken)
    done = GenerationJob(tmp_path / "oom", tiny_model, EditedScript(PROMPTS[:1]), JobSettings.from_values(**TINY)).run(
        models
    )
    assert done.status == "failed" and done.message.startswith("Generation failed (RuntimeError: out of memory)")


def test_two_sessions_get_their_own_jobs_and_one_stopping_loses_nothing(models, tiny_model, tmp_path):
    registry = JobRegistry(tmp_path / "jobs")
    settings = JobSettings.from_values(**TINY)
    job_a = registry.new_job("session-a", tiny_model, EditedScript(PROMPTS), settings)
    job_b = registry.new_job("session/b!", tiny_model, EditedScript(PROMPTS[:3]), settings)
    assert job_a.folder.parent.name == "session-a" and job_b.folder.parent.name == "sessionb"
    assert registry.current("session-a") is job_a and registry.current("session/b!") is job_b

    handle = stop_during_clip(models, tiny_model, job_a, 1)
    try:
        thread_a = job_a.start(models)
        thread_b = job_b.start(models)
        with pytest.raises(AppInputError, match="still running"):
            registry.new_job("session-a", tiny_model, EditedScript(PROMPTS), settings)
        thread_a.join(120)
        thread_b.join(120)
    finally:
        handle.remove()
    a, b = job_a.snapshot(), job_b.snapshot()
    assert a.status == "stopped" and len(a.clips) == 1
    assert b.status == "finished" and len(b.clips) == 3
    assert registry.stop("session-a") is False  # nothing running any more
    assert read_video(a.video).shape[0] == 9 and read_video(b.video).shape[0] == 9 + 2 * 8


def test_progress_snapshots_and_wait(models, tiny_model, tmp_path):
    job = GenerationJob(tmp_path / "watch", tiny_model, EditedScript(PROMPTS[:2]), JobSettings.from_values(**TINY))
    published = []  # every update the job makes, in order (a poller may legitimately skip some)
    update = job._update

    def recording_update(**changes):
        update(**changes)
        progress = job.snapshot()
        published.append((len(progress.clips), progress.step, progress.num_steps))

    job._update = recording_update
    watched = []
    thread = job.start(models)
    version = -1
    while thread.is_alive() or job.snapshot().version > version:
        progress = job.wait(version, timeout=0.2)
        assert progress.version >= version  # wait never goes back in time
        version = progress.version
        watched.append((len(progress.clips), progress.step, progress.num_steps))
    assert job.snapshot().status == "finished"
    # a step of clip 0 was reported, then clip 0 done, then a step of clip 1
    assert (0, 1, 2) in published and (1, 0, 2) in published and (1, 1, 2) in published
    assert published.index((0, 1, 2)) < published.index((1, 0, 2)) < published.index((1, 1, 2))
    assert [c for c, *_ in published] == sorted(c for c, *_ in published)  # clips only ever arrive
    assert [c for c, *_ in watched] == sorted(c for c, *_ in watched)
    assert watched[-1] == published[-1]  # the watcher ends on the final state


def test_comparison_without_kv_on_the_same_noise(models, tiny_model, tmp_path):
    settings = JobSettings.from_values(**TINY)
    job = GenerationJob(tmp_path / "cmp", tiny_model, EditedScript(PROMPTS[:3]), settings)
    refused = job.run_comparison(models)
    assert "Finish the video first" in refused.message
    job.run(models)
    done = job.run_comparison(models)
    assert done.comparison is not None and "KV cache | no KV" in done.message, done.message
    side = read_video(done.comparison)
    assert side.shape[0] == 9 + 2 * 8 and side.shape[2] == 2 * 16 * 16  # two panels, upscaled 16x
    no_kv = read_video(tmp_path / "cmp" / "no_kv.mp4")
    ours = read_video(done.video)
    assert no_kv.shape == ours.shape
    # the first clip has no history: KV on or off, the same noise gives the same clip
    # (up to the mp4 encoding: the job encodes a segment per clip, the comparison one stream)
    assert np.abs(no_kv[:9].astype(int) - ours[:9].astype(int)).mean() < 1.0


# ------------------------------------------------------------------------------------------------ charts
def test_kv_plan_matrix_chart_and_table(tmp_path):
    plan = [
        {"clip": 0, "attends": [], "stored": True, "evicted": []},
        {"clip": 1, "attends": [0], "stored": True, "evicted": []},
        {"clip": 2, "attends": [0, 1], "stored": False, "evicted": [0]},
    ]
    matrix = kv_plan_matrix(plan, num_clips=4)
    assert matrix.shape == (4, 4)
    assert matrix[2, 0] == matrix[2, 1] == matrix[1, 0] == 1
    assert matrix[0, 0] == matrix[1, 1] == 2 and matrix[2, 2] == 3 and not matrix[3].any()
    from PIL import Image

    path = kv_plan_chart(plan, tmp_path / "plan.png", num_clips=4)
    assert Image.open(path).size[0] > 40
    table = kv_plan_markdown(plan)
    assert "| 2 | 0, 1 | no | 0 |" in table and kv_plan_markdown([]).startswith("_No clip")


# ------------------------------------------------------------------------------------------------ UI and command
def test_the_page_builds_and_renders_progress(tmp_path):
    pytest.importorskip("gradio", reason='Gradio is not installed: `pip install "diffusers-longvid[app]"`')
    from diffusers_longvid.app.jobs import JobProgress
    from diffusers_longvid.app.ui import build_app, render_progress

    blocks = build_app(jobs_dir=tmp_path)
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    assert {"script", "generate", "stop", "resume", "clips", "video", "kv-chart", "downloads", "compare"} <= ids
    progress = JobProgress(
        job_id="j",
        folder=str(tmp_path),
        status="running",
        num_clips=3,
        current_clip=1,
        step=1,
        num_steps=4,
        clips=[{"seconds": 1.5}],
    )
    text = render_progress(progress)
    assert 'data-done="1"' in text and "step 1 of 4" in text and "done in 1.5 s" in text and "waiting" in text
    # a bad model name at start is a message, not a crash
    blocks = build_app(model=str(tmp_path / "nowhere"), jobs_dir=tmp_path)
    assert blocks.longvid_context.model.endswith("nowhere")


def test_missing_gradio_names_the_extra(monkeypatch, capsys):
    import importlib.util

    from diffusers_longvid.app import ui
    from diffusers_longvid.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "diffusers-longvid\[app\]"'):
        ui.import_gradio()
    assert main(["app"]) == 2
    assert 'pip install "diffusers-longvid[app]"' in capsys.readouterr().err


def test_product_modules_never_import_the_app():
    import pathlib

    import diffusers_longvid

    root = pathlib.Path(diffusers_longvid.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.parts[len(root.parts)] not in ("app", "commands")
        and (
            "from .app" in path.read_text()
            or "diffusers_longvid.app" in path.read_text()
            or "from ..app" in path.read_text()
        )
    ]
    assert not offenders, offenders
