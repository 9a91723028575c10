"""`longvid bench`: the runner at a tiny size, its counters against the plan, the report files, batched CFG."""

import json
from pathlib import Path

import pytest
import torch

from diffusers_longvid.attention import CFGBranch
from diffusers_longvid.benchmarks.cost_model import VideoShape, WanShape, kv_bytes_per_history_clip
from diffusers_longvid.benchmarks.optimisations import KVPathHarness, optimisations_markdown, run_optimisation_study
from diffusers_longvid.benchmarks.report import BENCH_FILES, summary_markdown, write_report
from diffusers_longvid.benchmarks.runner import (
    BENCH_TINY_TRANSFORMER,
    BenchSettings,
    ModelCallMeter,
    RunSpec,
    run_benchmark,
)
from diffusers_longvid.cli import main
from diffusers_longvid.testing import get_tiny_transformer


ROOT = Path(__file__).resolve().parents[2]
CLIPS, K = 4, 2
TINY = dict(num_clips=CLIPS, height=16, width=16, num_frames=9, num_inference_steps=1, kv_cache_clips=K, window=1)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One inline run of every configuration at a tiny size, and its report files."""
    settings = BenchSettings(**TINY, schedule="inline", skyreels_ar_steps=(0, 1))
    result = run_benchmark(settings, progress=False)
    out = tmp_path_factory.mktemp("bench")
    return settings, result, write_report(result, out, command="longvid bench --test"), out


def test_report_files_are_written(bench):
    settings, result, paths, out = bench
    assert sorted(p.name for p in out.iterdir()) == sorted(BENCH_FILES.values())
    data = json.loads(paths["json"].read_text())
    assert data["command"] == "longvid bench --test"
    assert set(data["runs"]) == {
        "ours",
        "no_cache",
        "full_history",
        "ours_sparse",
        "ours_trflow",
        "skyreels_ar0",
        "skyreels_ar1",
    }
    assert all(len(run["clips"]) == CLIPS for name, run in data["runs"].items() if not name.startswith("skyreels"))
    for key in ("time_plot", "calls_plot", "memory_plot", "frame_plot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["markdown"].read_text()
    assert "longvid bench --test" in markdown
    assert "| run | model calls / clip |" in markdown and "## T-RFlow vs Euler" in markdown
    assert markdown.count("\n| ") >= 7 + CLIPS  # one row per run and per clip


def test_model_calls_follow_the_plan(bench):
    settings, result, _, _ = bench
    runs = result["runs"]
    steps, branches = settings.num_inference_steps, 2  # CFG: a cond and an uncond forward per step
    denoise = steps * branches
    # plain chaining: exactly steps x 2 forwards per clip
    assert [c["model_calls"] for c in runs["no_cache"]["clips"]] == [denoise] * CLIPS
    # with a cache every clip but the last is recorded: one clean forward per branch more
    for name in ("ours", "full_history", "ours_sparse", "ours_trflow"):
        evaluated = runs[name]["info"]["evaluated_steps"]
        calls = [c["model_calls"] for c in runs[name]["clips"]]
        assert calls == [evaluated * branches + branches] * (CLIPS - 1) + [evaluated * branches], name
        assert [c["stored"] for c in runs[name]["clips"]] == [True] * (CLIPS - 1) + [False]
    assert [c["num_attended"] for c in runs["ours"]["clips"]] == [min(n, K) for n in range(CLIPS)]
    assert [c["num_attended"] for c in runs["full_history"]["clips"]] == list(range(CLIPS))
    # SkyReels synchronous long mode: one window per clip length, steps x 2 forwards per window
    sky = runs["skyreels_ar0"]["result"]
    assert sky["model_calls"] == CLIPS * denoise
    assert sky["frames"] == settings.num_frames + (CLIPS - 1) * (settings.num_frames - settings.num_condition_frames)
    assert runs["skyreels_ar1"]["result"]["model_calls"] > sky["model_calls"]  # asynchronous: staggered rows


def test_kv_bytes_follow_the_cost_model(bench):
    settings, result, _, _ = bench
    runs = result["runs"]
    info = runs["ours"]["info"]
    shape = WanShape.from_config(info["transformer_config"], text_len=settings.max_sequence_length)
    video = VideoShape(settings.height, settings.width, settings.num_frames)
    per_clip = kv_bytes_per_history_clip(shape, video, dtype_bytes=4).total  # float32 on the CPU
    # 16x16 -> 2x2 latents -> one token per latent frame; stride 2 keeps latent frames 0 and 2 of 3
    sparse_per_clip = kv_bytes_per_history_clip(shape, video, dtype_bytes=4, history_tokens_per_clip=2).total
    # after clip n: min(n + 1, k) clips held (flat once full), nothing after the last clip (no later clip wants any)
    expected = [min(n + 1, K) * per_clip for n in range(CLIPS - 1)] + [0]
    assert [c["kv_bytes"] for c in runs["ours"]["clips"]] == expected
    assert [c["kv_bytes"] for c in runs["ours_sparse"]["clips"]] == [b // per_clip * sparse_per_clip for b in expected]
    full = [(n + 1) * per_clip for n in range(CLIPS - 1)] + [0]
    assert [c["kv_bytes"] for c in runs["full_history"]["clips"]] == full
    assert all(c["kv_bytes"] == 0 for c in runs["no_cache"]["clips"])
    checks = result["analysis"]["checks"]
    assert checks["ours_kv_flat"]["passed"] and checks["ours_kv_flat"]["fill_clip"] == K - 1
    assert all(c["rss_bytes"] > 0 and c["peak_rss_bytes"] >= c["rss_bytes"] for c in runs["ours"]["clips"])


def test_model_call_meter_counts_and_times_forwards():
    transformer = get_tiny_transformer()
    meter = ModelCallMeter(transformer)
    inputs = dict(
        hidden_states=torch.randn(1, 16, 1, 4, 4),
        timestep=torch.tensor([1]),
        encoder_hidden_states=torch.randn(1, 3, 32),
    )
    with torch.no_grad():
        for _ in range(3):
            transformer(**inputs)
    assert meter.calls == 3 and meter.seconds > 0
    meter.reset()
    assert (meter.calls, meter.seconds) == (0, 0.0)
    meter.remove()
    with torch.no_grad():
        transformer(**inputs)
    assert meter.calls == 0


def test_settings_and_cli_validation(tmp_path, capsys):
    with pytest.raises(ValueError, match="`schedule`"):
        BenchSettings(schedule="parallel")
    with pytest.raises(ValueError, match="`runs`"):
        BenchSettings(runs=["ours", "nope"])
    with pytest.raises(ValueError, match="`num_clips`"):
        BenchSettings(num_clips=1)
    with pytest.raises(ValueError, match="`kind`"):
        RunSpec("x", kind="other")
    assert main(["bench", "--out", str(tmp_path), "--num-clips", "1"]) == 2
    assert main(["bench", "--out", str(tmp_path), "--tau-low", "0.8", "--tau-high", "0.2"]) == 2
    assert "tau_low" in capsys.readouterr().err
    assert main(["bench", "--out", str(tmp_path), "--model", str(tmp_path / "nowhere")]) == 2
    assert "`--model`" in capsys.readouterr().err


def test_worker_processes_in_lockstep():
    """The default schedule: one spawned worker per run, clips in lockstep; same counts as inline."""
    settings = BenchSettings(**dict(TINY, num_clips=2), runs=["ours", "no_cache"], schedule="interleaved")
    result = run_benchmark(settings, progress=False)
    assert [c["model_calls"] for c in result["runs"]["no_cache"]["clips"]] == [2, 2]
    assert [c["model_calls"] for c in result["runs"]["ours"]["clips"]] == [4, 2]
    assert result["runs"]["ours"]["info"]["transformer_config"]["num_layers"] == BENCH_TINY_TRANSFORMER["num_layers"]


@torch.no_grad()
def test_batched_cfg_equals_separate_branches():
    """Cond and uncond stacked on the batch axis attend their own history and record what two forwards record."""
    settings = BenchSettings(height=16, width=16, num_frames=9, max_sequence_length=8)
    harness = KVPathHarness(get_tiny_transformer(in_channels=36, num_layers=4), settings, history_clips=2)
    cond, uncond = harness.step_separate()
    b_cond, b_uncond = harness.step_batched()
    torch.testing.assert_close(b_cond, cond, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b_uncond, uncond, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond, uncond)  # the branches really attend different history and prompts
    cache = harness.cache
    both = torch.cat([harness.embeds["cond"], harness.embeds["uncond"]])
    with cache.batched_branches(), cache.recording():
        harness._forward(torch.cat([harness.latents] * 2), both, 0)
    cache.commit(7)
    for branch in ("cond", "uncond"):
        with cache.branch(branch), cache.recording():
            harness._forward(harness.latents, harness.embeds[branch], 0)
        for block in cache.block_indices:
            separate = cache._pending[(CFGBranch(branch), block)]
            torch.testing.assert_close(cache.get(7, block, branch).key, separate.key, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(cache.get(7, block, branch).value, separate.value, rtol=1e-5, atol=1e-5)
    cache.discard_pending()
    # a clip recorded for one branch only cannot be stacked with a branch that has it
    with cache.branch("cond"), cache.recording():
        harness._forward(harness.latents, harness.embeds["cond"], 0)
    cache.commit(8)
    cache.select([8])
    with pytest.raises(RuntimeError, match="same number of history tokens"):
        harness.step_batched()
    with pytest.raises(ValueError, match="distinct"), cache.batched_branches(("cond", "cond")):
        pass
    harness.close()


def test_optimisation_studies_verify_the_kv_path():
    settings = BenchSettings(height=16, width=16, num_frames=9, kv_cache_clips=2, num_inference_steps=2)
    study = run_optimisation_study(settings, repeats=1, studies=("history_buffer", "fused_qkv"), progress=False)
    buffer = study["history_buffer"]
    assert buffer["gathered_once_per_clip"] and buffer["buffer_storages_per_slot"] == [1]
    assert buffer["slots"] == 2 * len(range(BENCH_TINY_TRANSFORMER["num_layers"] // 2, 4))  # 2 branches x blocks
    assert buffer["model_dtype_kept"], buffer["dtypes_bfloat16_model"]
    fused = study["fused_qkv"]
    assert fused["fused_attention_modules"] == 2 * BENCH_TINY_TRANSFORMER["num_layers"]  # attn1 and attn2
    assert fused["max_abs_diff"] < 1e-5


@torch.no_grad()
def test_compiled_processor_has_no_graph_break_and_matches_eager():
    """Under torch.compile the cache is reached through a custom op: `fullgraph=True` compiles, no clip recompiles."""
    import copy

    import torch._dynamo

    settings = BenchSettings(height=16, width=16, num_frames=9, max_sequence_length=8)
    base = get_tiny_transformer(in_channels=36, num_layers=4)
    eager = KVPathHarness(copy.deepcopy(base), settings, history_clips=2)
    compiled_model = copy.deepcopy(base)
    compiled = KVPathHarness(compiled_model, settings, history_clips=2)
    torch._dynamo.reset()
    try:
        compiled_model.compile_repeated_blocks(backend="eager", fullgraph=True)  # raises on any graph break
        graphs = None
        for clip in range(3):
            outputs = {}
            for harness in (eager, compiled):
                outputs[harness is compiled] = [harness.forward("cond"), harness.forward("uncond")]
                for branch in ("cond", "uncond"):  # record this clip, then attend it from the next
                    with harness.cache.branch(branch), harness.cache.recording():
                        harness._forward(harness.latents * 0.5, harness.embeds[branch], harness.offset)
                harness.cache.commit(100 + clip)
                harness.select(harness.cache.stored_clips()[-2:])
                harness.offset += 1
            for a, b in zip(outputs[False], outputs[True]):
                torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
            block = eager.cache.block_indices[-1]
            torch.testing.assert_close(
                compiled.cache.get(100 + clip, block, "uncond").value,
                eager.cache.get(100 + clip, block, "uncond").value,
                rtol=1e-5,
                atol=1e-5,
            )
            if clip == 0:
                graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # later clips reuse the graphs
        assert not torch._dynamo.utils.counters["graph_break"]
    finally:
        torch._dynamo.reset()
    # a deep copy of a transformer gets processors of its own (its own cache handle)
    copied = copy.deepcopy(compiled_model)
    processor, original = copied.blocks[-1].attn1.processor, compiled_model.blocks[-1].attn1.processor
    assert processor.cache is not original.cache and int(processor._handle) != int(original._handle)


def test_performance_doc_holds_the_committed_bench_tables():
    """docs/performance.md quotes `longvid bench-report docs/bench` verbatim."""
    bench = ROOT / "docs" / "bench"
    docs = (ROOT / "docs" / "performance.md").read_text()
    result = json.loads((bench / BENCH_FILES["json"]).read_text())
    assert summary_markdown(result) in docs, "docs/performance.md is stale: paste the report command's output"
    assert optimisations_markdown(json.loads((bench / "optimisations.json").read_text())) in docs
    checks = result["analysis"]["checks"]
    assert checks["ours_kv_flat"]["passed"]  # exact, whatever the machine's noise
    assert result["settings"]["num_clips"] >= 30


def test_bench_report_command_prints_the_committed_tables(capsys):
    from diffusers_longvid.cli import main

    assert main(["bench-report", str(ROOT / "docs" / "bench")]) == 0
    result = json.loads((ROOT / "docs" / "bench" / BENCH_FILES["json"]).read_text())
    assert summary_markdown(result) in capsys.readouterr().out
