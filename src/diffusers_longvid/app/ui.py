# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The Gradio page of `longvid app`: script editor, settings, streamed generation, the memory, downloads.

Every handler here is a thin shell over `script`, `jobs` and `charts` (tested without a browser): it turns page
values into their arguments and their results (or an [`AppInputError`]) into page updates. No handler lets an
exception reach Gradio, so the page shows a one-line message, never a traceback.
"""

import html
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diffusers.utils import logging

from .charts import kv_plan_chart, kv_plan_markdown
from .errors import AppInputError
from .jobs import GenerationJob, JobProgress, JobRegistry, JobSettings
from .models import PipelineCache, model_defaults
from .script import (
    COLUMNS,
    add_row,
    load_script_file,
    move_row,
    random_toy_rows,
    remove_row,
    rewrite_toy_prompts,
    rows_from_prompts,
    save_script_file,
    script_from_rows,
)


logger = logging.get_logger(__name__)

__all__ = ["AppContext", "build_app", "import_gradio", "launch_app", "render_progress"]

INSTALL_HINT = 'pip install "diffusers-longvid[app]"'
# the settings inputs, in the order the handlers receive them
SETTING_NAMES = (
    "height",
    "width",
    "num_frames",
    "num_condition_frames",
    "num_inference_steps",
    "guidance_scale",
    "fps",
    "max_sequence_length",
    "seed",
    "kv_cache",
    "kv_cache_clips",
    "tau_low",
    "tau_high",
    "negative_prompt",
)
_FOX = [
    "A red fox trots through fresh snow in a birch forest, morning light.",
    "The fox stops, lifts its head and listens, snow falling softly.",
    "The fox pounces into the snow and comes up with snow on its nose.",
]


def import_gradio() -> Any:
    """Import Gradio, or raise an `ImportError` that says how to install it."""
    if importlib.util.find_spec("gradio") is None:
        raise ImportError(f"The app needs Gradio, which is not installed. Install it with `{INSTALL_HINT}`.")
    import gradio

    return gradio


def _error(message: str) -> str:
    return f"**⚠ {html.escape(message)}**"


def render_progress(progress: JobProgress) -> str:
    """HTML with one progress bar per clip: done, the clip being generated (its denoising steps), waiting."""
    if progress.num_clips == 0:
        return ""
    done = len(progress.clips)
    rows = []
    for n in range(progress.num_clips):
        if n < done:
            value, label = 1.0, f"done in {progress.clips[n]['seconds']:.1f} s"
        elif n == progress.current_clip and progress.active and progress.phase == "generate":
            value = progress.step / progress.num_steps if progress.num_steps else 0.0
            label = f"step {progress.step} of {progress.num_steps}" if progress.num_steps else "starting"
        else:
            value, label = 0.0, "waiting" if progress.active else ""
        rows.append(
            f'<div class="lv-clip" data-clip="{n}" data-done="{int(n < done)}">'
            f'<span style="display:inline-block;width:4.5em">clip {n}</span>'
            f'<progress max="1" value="{value:.3f}" style="width:60%"></progress> '
            f"<span>{html.escape(label)}</span></div>"
        )
    head = (
        f'<div id="lv-progress-summary" data-done="{done}" data-total="{progress.num_clips}" '
        f'data-status="{progress.status}">{done} of {progress.num_clips} clips done</div>'
    )
    if progress.phase == "compare" and progress.active:
        head += f"<div>No-KV comparison: step {progress.step} of {progress.num_steps}</div>"
    return head + "".join(rows)


class AppContext:
    r"""
    What the page's handlers share: the model cache, the per-session jobs, the limits.

    Args:
        model (`str`, *optional*, defaults to `"toy"`): The model the page starts with.
        jobs_dir (`str` or `os.PathLike`, *optional*): Folder of the job folders (default: a folder in the system's
            temporary directory).
        max_clips (`int`, *optional*, defaults to 200): Most clips of one script.
        models ([`PipelineCache`], *optional*): A shared pipeline cache (default: a new one).
    """

    def __init__(
        self,
        model: str = "toy",
        jobs_dir: str | os.PathLike | None = None,
        max_clips: int | None = 200,
        models: PipelineCache | None = None,
    ) -> None:
        self.model = model
        root = Path(jobs_dir) if jobs_dir is not None else Path(tempfile.gettempdir()) / "longvid_app_jobs"
        self.jobs = JobRegistry(root)
        self.max_clips = max_clips
        self.models = models or PipelineCache()

    # ------------------------------------------------------------------ script
    def initial_rows(self, model: str) -> list[list[str]]:
        return random_toy_rows(4, seed=0) if model.strip() == "toy" else rows_from_prompts(_FOX)

    def session_folder(self, session: str | None) -> Path:
        folder = self.jobs.root / self.jobs.session_key(session)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def settings_from(self, values: dict[str, Any]) -> JobSettings:
        return JobSettings.from_values(**values)

    def job_for_resume(self, session: str | None, folder: str | None) -> GenerationJob:
        """The job Resume continues: the session's current job, or the job saved in `folder` (under the jobs root)."""
        job = self.jobs.current(session)
        if job is not None and (not folder or Path(folder) == job.folder):
            return job
        if not folder:
            raise AppInputError("There is no job to resume in this session: generate one first.")
        path = Path(folder).resolve()
        if self.jobs.root.resolve() not in path.parents:
            raise AppInputError(f"Only job folders under {self.jobs.root} can be resumed here.")
        return self.jobs.adopt(session, GenerationJob.open(path))

    def downloads(self, progress: JobProgress) -> list[str]:
        paths = [progress.video, progress.sidecar, progress.script, progress.comparison]
        return [p for p in paths if p and Path(p).is_file()]

    def chart(self, progress: JobProgress) -> str | None:
        if not progress.kv_plan:
            return None
        return kv_plan_chart(progress.kv_plan, Path(progress.folder) / "kv_plan.png", num_clips=progress.num_clips)


def build_app(
    model: str = "toy",
    jobs_dir: str | os.PathLike | None = None,
    max_clips: int | None = 200,
    models: PipelineCache | None = None,
) -> Any:
    r"""
    Build the Gradio `Blocks` of the app (not launched: call `.queue().launch()` or use [`launch_app`]).

    Args:
        model (`str`, *optional*, defaults to `"toy"`): The model the page starts with: `toy`, a pipeline folder or a
            Hub id. The user can change it in the page.
        jobs_dir (`str` or `os.PathLike`, *optional*): Folder of the per-session job folders.
        max_clips (`int`, *optional*, defaults to 200): Most clips of one script.
        models ([`PipelineCache`], *optional*): The pipeline cache (tests pass a prepared one).

    Returns:
        `gradio.Blocks`: The page; `blocks.longvid_context` is its [`AppContext`].
    """
    gr = import_gradio()
    ctx = AppContext(model=model, jobs_dir=jobs_dir, max_clips=max_clips, models=models)
    try:
        defaults = model_defaults(model)
        start_message = f"Model `{model}`: settings filled in from its defaults."
    except AppInputError as error:
        defaults = model_defaults("toy")
        start_message = _error(f"{error} The settings show the toy preset's defaults.")

    with gr.Blocks(title="diffusers-longvid", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# diffusers-longvid: a long video, clip by clip\n"
            "Write a **script** (one prompt per clip), generate it, and watch each clip arrive while the next one is "
            "generated. The **memory** chart shows which earlier clips each clip attended through the KV cache. "
            "For the toy model, a comeback clip's prompt leaves the object's colour out: only the memory can get it "
            "right."
        )
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    model_box = gr.Textbox(
                        value=model, label="Model: toy, a pipeline folder or a Hub id", elem_id="model", scale=3
                    )
                    defaults_btn = gr.Button("Use the model's defaults", elem_id="load-defaults", scale=1)
                table = gr.Dataframe(
                    value=ctx.initial_rows(model),
                    headers=COLUMNS,
                    datatype=["str", "str", "str", "str"],
                    type="array",
                    interactive=True,
                    wrap=True,
                    static_columns=[0, 2],
                    column_widths=["7%", "38%", "17%", "38%"],
                    max_height=420,
                    max_chars=160,
                    label="Script: one row per clip (the toy clip column is only for toy scripts)",
                    elem_id="script",
                )
                with gr.Row():
                    row_index = gr.Number(value=0, precision=0, label="Clip", elem_id="row-index", min_width=80)
                    add_btn = gr.Button("Add clip after", elem_id="add-row", size="sm")
                    remove_btn = gr.Button("Remove clip", elem_id="remove-row", size="sm")
                    up_btn = gr.Button("Move up", elem_id="move-up", size="sm")
                    down_btn = gr.Button("Move down", elem_id="move-down", size="sm")
                with gr.Row():
                    random_clips = gr.Number(value=4, precision=0, label="Clips", elem_id="random-clips", min_width=80)
                    random_seed = gr.Number(
                        value=0, precision=0, label="Script seed", elem_id="random-seed", min_width=80
                    )
                    random_btn = gr.Button("New random toy script", elem_id="random-script", size="sm")
                    prompts_btn = gr.Button("Write the toy prompts", elem_id="write-prompts", size="sm")
                with gr.Row():
                    script_upload = gr.File(
                        label="Load a prompts file (.txt) or a toy script (.json)",
                        file_types=[".txt", ".json"],
                        type="filepath",
                        height=110,
                        elem_id="script-upload",
                    )
                    with gr.Column():
                        save_btn = gr.Button("Save the script", elem_id="save-script", size="sm")
                        saved_script = gr.File(
                            label="Script file", interactive=False, height=70, elem_id="saved-script"
                        )
                with gr.Accordion("Settings (the model's defaults)", open=False):
                    with gr.Row():
                        height = gr.Number(value=defaults["height"], precision=0, label="Height", elem_id="height")
                        width = gr.Number(value=defaults["width"], precision=0, label="Width", elem_id="width")
                        num_frames = gr.Number(
                            value=defaults["num_frames"],
                            precision=0,
                            label="Frames per clip (4k+1)",
                            elem_id="num-frames",
                        )
                        num_condition_frames = gr.Number(
                            value=defaults["num_condition_frames"],
                            precision=0,
                            label="Condition frames (1+4j)",
                            elem_id="num-condition-frames",
                        )
                    with gr.Row():
                        steps = gr.Number(
                            value=defaults["num_inference_steps"], precision=0, label="Steps", elem_id="steps"
                        )
                        guidance = gr.Number(
                            value=defaults["guidance_scale"], label="Guidance scale", elem_id="guidance"
                        )
                        fps = gr.Number(value=defaults["fps"], label="FPS", elem_id="fps")
                        max_length = gr.Number(
                            value=defaults["max_sequence_length"],
                            precision=0,
                            label="Max sequence length (tokens)",
                            elem_id="max-sequence-length",
                        )
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed (the noise)", elem_id="seed")
                        kv_cache = gr.Checkbox(
                            value=True, label="KV cache (memory of earlier clips)", elem_id="kv-cache"
                        )
                        kv_clips = gr.Number(
                            value=defaults["kv_cache_clips"],
                            precision=0,
                            label="KV cache clips",
                            elem_id="kv-cache-clips",
                        )
                    with gr.Row():
                        tau_low = gr.Slider(
                            0.0,
                            1.0,
                            value=defaults["tau_low"],
                            step=0.05,
                            label="T-RFlow window start",
                            elem_id="tau-low",
                        )
                        tau_high = gr.Slider(
                            0.0,
                            1.0,
                            value=defaults["tau_high"],
                            step=0.05,
                            label="T-RFlow window end",
                            elem_id="tau-high",
                        )
                    negative = gr.Textbox(value="", label="Negative prompt (all clips)", elem_id="negative-prompt")
                job_folder = gr.Textbox(
                    value="", label="Job folder (Resume continues the job saved here)", elem_id="job-folder"
                )
            with gr.Column(scale=2):
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                    resume_btn = gr.Button("Resume", elem_id="resume")
                status = gr.Markdown(start_message, elem_id="status")
                progress_html = gr.HTML("", elem_id="progress")
                clips = gr.Gallery(
                    label="Finished clips, one by one", columns=5, height=190, elem_id="clips", allow_preview=True
                )
                video = gr.Video(label="The video so far", elem_id="video", autoplay=False, loop=True, height=260)
                with gr.Row():
                    chart = gr.Image(
                        label="Memory: which earlier clips each clip attended",
                        type="filepath",
                        elem_id="kv-chart",
                        interactive=False,
                        height=260,
                    )
                    plan = gr.Markdown(kv_plan_markdown([]), elem_id="kv-plan")
                compare_btn = gr.Button("Side by side with no KV cache (same noise)", elem_id="compare")
                comparison = gr.Video(label="Ground truth (toy) | KV cache | no KV", elem_id="comparison", height=220)
                downloads = gr.File(
                    label="Downloads: mp4, JSON sidecar, script",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
        settings_inputs = [
            height,
            width,
            num_frames,
            num_condition_frames,
            steps,
            guidance,
            fps,
            max_length,
            seed,
            kv_cache,
            kv_clips,
            tau_low,
            tau_high,
            negative,
        ]
        stream_outputs = [status, progress_html, clips, video, chart, plan, downloads, comparison, job_folder]

        # ------------------------------------------------------------------ handlers
        def show_defaults(model_name: str):
            try:
                d = model_defaults(model_name)
            except AppInputError as error:
                return [gr.skip()] * 11 + [_error(str(error))]
            values = [
                d["height"],
                d["width"],
                d["num_frames"],
                d["num_condition_frames"],
                d["num_inference_steps"],
                d["guidance_scale"],
                d["fps"],
                d["max_sequence_length"],
                d["kv_cache_clips"],
                d["tau_low"],
                d["tau_high"],
            ]
            return values + [f"Settings filled in from the defaults of `{html.escape(model_name.strip())}`."]

        defaults_btn.click(
            show_defaults,
            [model_box],
            [
                height,
                width,
                num_frames,
                num_condition_frames,
                steps,
                guidance,
                fps,
                max_length,
                kv_clips,
                tau_low,
                tau_high,
                status,
            ],
        )

        def edit(operation):
            def handler(rows, *args):
                try:
                    return operation(rows, *args), ""
                except AppInputError as error:
                    return gr.skip(), _error(str(error))
                except Exception as error:  # never a traceback in the page
                    logger.exception("Script edit failed")
                    return gr.skip(), _error(f"{type(error).__name__}: {error}")

            return handler

        add_btn.click(edit(add_row), [table, row_index], [table, status])
        remove_btn.click(edit(remove_row), [table, row_index], [table, status])
        up_btn.click(edit(lambda rows, n: move_row(rows, n, -1)), [table, row_index], [table, status])
        down_btn.click(edit(lambda rows, n: move_row(rows, n, 1)), [table, row_index], [table, status])
        prompts_btn.click(edit(rewrite_toy_prompts), [table], [table, status])
        random_btn.click(
            edit(lambda rows, n, s: random_toy_rows(n, s)), [table, random_clips, random_seed], [table, status]
        )
        script_upload.upload(edit(lambda rows, path: load_script_file(path)), [table, script_upload], [table, status])

        def save(rows, request: gr.Request):
            try:
                path = save_script_file(rows, ctx.session_folder(request.session_hash))
                return path, f"Saved {Path(path).name}."
            except AppInputError as error:
                return gr.skip(), _error(str(error))

        save_btn.click(save, [table], [saved_script, status])

        def render(progress: JobProgress, comparison_update: Any = None):
            message = progress.message if progress.status != "failed" else _error(progress.message)
            try:
                chart_path = ctx.chart(progress)
            except Exception:  # a chart must never stop the stream
                logger.exception("KV plan chart failed")
                chart_path = None
            return (
                message,
                render_progress(progress),
                list(progress.segments),
                progress.video,
                chart_path,
                kv_plan_markdown(progress.kv_plan),
                ctx.downloads(progress),
                progress.comparison if comparison_update is None else comparison_update,
                progress.folder,
            )

        def stream(job: GenerationJob, **start_kwargs) -> Iterator[tuple]:
            try:
                thread = job.start(ctx.models, **start_kwargs)
            except AppInputError as error:
                yield skip_outputs(str(error))
                return
            version = -1
            try:
                while True:
                    progress = job.wait(version, timeout=0.5)
                    if progress.version != version:
                        version = progress.version
                        yield render(progress)
                    if not thread.is_alive():
                        # end the event at once: a click on Generate while it is still pending would be ignored
                        final = job.snapshot()
                        if final.version != version:
                            yield render(final)
                        break
            except GeneratorExit:  # the page went away: stop, keeping what is finished (Resume continues)
                job.stop()
                raise

        def skip_outputs(message: str) -> tuple:
            return (_error(message),) + (gr.skip(),) * (len(stream_outputs) - 1)

        def generate(
            model_name,
            rows,
            height,
            width,
            num_frames,
            num_condition_frames,
            num_inference_steps,
            guidance_scale,
            fps,
            max_sequence_length,
            seed,
            kv_cache,
            kv_cache_clips,
            tau_low,
            tau_high,
            negative_prompt,
            request: gr.Request,
        ):
            values = locals()
            try:
                script = script_from_rows(rows, max_clips=ctx.max_clips)
                settings = ctx.settings_from({name: values[name] for name in SETTING_NAMES})
                job = ctx.jobs.new_job(request.session_hash, model_name.strip(), script, settings)
            except AppInputError as error:
                yield skip_outputs(str(error))
                return
            yield from stream(job)

        def resume(folder, request: gr.Request):
            try:
                job = ctx.job_for_resume(request.session_hash, folder)
                if job.running and job.stop_requested:
                    job.join(30)  # a stopped job ends at its next denoising step
                if job.running:
                    raise AppInputError("This job is running: stop it before resuming.")
            except AppInputError as error:
                yield skip_outputs(str(error))
                return
            yield from stream(job, resume=True)

        def compare(request: gr.Request):
            job = ctx.jobs.current(request.session_hash)
            if job is None or job.running:
                yield skip_outputs("Generate a video first (and let it finish): the comparison needs every clip.")
                return
            yield from stream(job, compare=True)

        def stop(request: gr.Request):
            if ctx.jobs.stop(request.session_hash):
                return "Stopping after the current denoising step; finished clips are kept."
            return "Nothing is running in this session."

        # one generation on the model at a time per event; jobs of other sessions wait for the model's lock
        common = {"show_progress": "hidden", "concurrency_limit": 4, "concurrency_id": "generation"}
        generate_btn.click(generate, [model_box, table, *settings_inputs], stream_outputs, **common)
        resume_btn.click(resume, [job_folder], stream_outputs, **common)
        compare_btn.click(compare, None, stream_outputs, **common)
        stop_btn.click(stop, None, [status], concurrency_limit=None, show_progress="hidden")

    blocks.longvid_context = ctx
    return blocks


def launch_app(
    model: str = "toy",
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    jobs_dir: str | os.PathLike | None = None,
    max_clips: int | None = 200,
    device: str = "auto",
    prevent_thread_lock: bool = False,
    models: PipelineCache | None = None,
) -> Any:
    r"""
    Build and launch the app with its queue.

    Args:
        model (`str`, *optional*, defaults to `"toy"`): The model the page starts with.
        host (`str`, *optional*, defaults to `"127.0.0.1"`): Address to listen on (`0.0.0.0` for a Space).
        port (`int`, *optional*): Port (default: Gradio's, 7860 or the next free one).
        share (`bool`, *optional*, defaults to `False`): A public Gradio link (needs the internet).
        jobs_dir (`str` or `os.PathLike`, *optional*): Folder of the job folders.
        max_clips (`int`, *optional*, defaults to 200): Most clips of one script.
        device (`str`, *optional*, defaults to `"auto"`): Device of the pipelines.
        prevent_thread_lock (`bool`, *optional*, defaults to `False`): Return at once (tests).
        models ([`PipelineCache`], *optional*): The pipeline cache (default: a new one on `device`).

    Returns:
        `gradio.Blocks`: The launched page.
    """
    models = models or PipelineCache(device=device)
    blocks = build_app(model=model, jobs_dir=jobs_dir, max_clips=max_clips, models=models)
    ctx: AppContext = blocks.longvid_context
    blocks.queue(default_concurrency_limit=1)
    blocks.launch(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=[str(ctx.jobs.root)],
        show_error=False,
        prevent_thread_lock=prevent_thread_lock,
        footer_links=[],
        ssr_mode=False,
    )
    return blocks
