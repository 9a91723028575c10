"""Hub publishing: the folder `longvid push-to-hub` writes loads like a Hub id; the card; the (mocked) upload."""

import json
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from _pipes import call_kwargs, make_pipe
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline
from huggingface_hub import ModelCard
from peft.utils import get_peft_model_state_dict

from diffusers_longvid import LongVideoExtensionPipeline, add_kv_lora
from diffusers_longvid.cli import main
from diffusers_longvid.hub import (
    DEFAULT_BASE_MODEL,
    LORA_WEIGHT_NAME,
    format_eval_results_table,
    prepare_hub_folder,
    render_model_card,
    summarize_lora_file,
    upload_hub_folder,
)
from diffusers_longvid.testing import get_dummy_components, get_tiny_transformer


ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a red ball rolls", "the ball bounces"]


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extension") / "final"
    make_pipe(36).save_pretrained(folder)
    info = {"stage": "extension", "base_model": DEFAULT_BASE_MODEL, "height": 16, "width": 16, "num_frames": 9}
    (folder / "training_info.json").write_text(json.dumps(info))
    return folder


def tiny_lora_transformer(seed=0):
    transformer = get_tiny_transformer(num_layers=4)
    add_kv_lora(transformer, rank=4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=g))
    return transformer


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("causal_lora") / "final"
    transformer = tiny_lora_transformer()
    LongVideoExtensionPipeline.save_lora_weights(
        str(folder), transformer_lora_layers=get_peft_model_state_dict(transformer), safe_serialization=True
    )
    info = {
        "stage": "causal_lora",
        "base_model": "me/tiny-extension",
        "lora_rank": 4,
        "num_frames": 9,
        "num_condition_frames": 1,
        "kv_cache_clips": 5,
        "condition_fill": "zeros",
    }
    (folder / "training_info.json").write_text(json.dumps(info))
    return folder


@pytest.fixture(scope="module")
def sample_video(tmp_path_factory):
    import imageio.v3 as iio

    folder = tmp_path_factory.mktemp("sample")
    frames = np.random.default_rng(0).integers(0, 255, size=(9, 32, 32, 3), dtype=np.uint8)
    path = folder / "fox.mp4"
    iio.imwrite(path, frames, fps=16, codec="libx264")
    sidecar = {"prompts": PROMPTS, "seed": 3, "settings": {"height": 32, "width": 32, "num_frames": 9}}
    (folder / "fox.json").write_text(json.dumps(sidecar))
    return path


@pytest.fixture(scope="module")
def eval_json(tmp_path_factory):
    """A real `longvid eval` result (offline backend) of a small moving square."""
    from diffusers_longvid.evaluation import evaluate_video, write_eval_report

    frames = np.zeros((17, 32, 32, 3), dtype=np.uint8)
    for i in range(17):
        frames[i, 8:16, i : i + 8] = 255
    result = evaluate_video(frames, fps=8, window_seconds=None, clip_seconds=None, show_progress=False, name="sq")
    return write_eval_report(result, tmp_path_factory.mktemp("eval"))["json"]


def read_card(folder) -> ModelCard:
    return ModelCard.load(Path(folder) / "README.md")


# ------------------------------------------------------------------------------------------------------- model card
def test_root_model_card_is_rendered_from_the_same_source():
    expected = str(render_model_card())
    actual = (ROOT / "model_card.md").read_text(encoding="utf-8")
    assert actual == expected, "model_card.md is stale: run `longvid model-card --out model_card.md`"


def test_card_metadata_for_a_lora():
    card = render_model_card(repo_id="me/kv-lora", kind="lora", base_model="me/extension")
    data = card.data.to_dict()
    assert data["library_name"] == "diffusers"
    assert data["base_model"] == "me/extension" and data["base_model_relation"] == "adapter"
    assert data["pipeline_tag"] == "text-to-video" and data["license"] == "apache-2.0"
    assert {"long-video", "wan2.1", "lora", "diffusers-longvid"} <= set(data["tags"])
    assert 'pipe.load_lora_weights("me/kv-lora", adapter_name="kv")' in card.text
    assert 'from_pretrained(\n    "me/extension"' in card.text
    generic = render_model_card().data.to_dict()
    assert generic["base_model"] == DEFAULT_BASE_MODEL and "lora" not in generic["tags"]


def test_card_is_honest_about_the_toy_preset(monkeypatch):
    # both texts, each checked: the preset as the repo has it (shipped), then a missing one
    import diffusers_longvid.presets as presets

    presets.get_preset_path("toy")  # shipped in this repo (its files: tests/toy/test_toy_preset.py)
    text = render_model_card().text
    assert "The package ships a built-in `toy` preset" in text
    assert "It is not trained or shipped in this version" not in text

    def missing(name="toy"):
        raise FileNotFoundError(f"The {name!r} preset is not present")

    monkeypatch.setattr(presets, "get_preset_path", missing)
    text = render_model_card().text
    assert "It is not trained or shipped in this version" in text
    assert "The package ships a built-in `toy` preset" not in text


def test_eval_table_from_longvid_eval_json(eval_json):
    table = format_eval_results_table(eval_json)
    data = json.loads(Path(eval_json).read_text())
    assert "backend `offline`" in table and "not comparable to published VBench numbers" in table
    assert f"| Imaging quality † | {data['scores']['imaging_quality']:.4f} |" in table
    assert table.count("\n| ") == 2 + len(data["scores"])  # header, rule and one row per metric


def test_eval_table_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"loss": 0.1}))
    with pytest.raises(ValueError, match="`eval_results` must be the JSON written by `longvid eval`"):
        format_eval_results_table(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        format_eval_results_table(path)


# ------------------------------------------------------------------------------------------------- pipeline folders
def test_dry_run_pipeline_folder_loads_with_from_pretrained(tmp_path, pipeline_folder, sample_video, eval_json):
    out = tmp_path / "hub"
    code = main(
        [
            "push-to-hub",
            "--repo-id",
            "me/tiny-extension",
            "--pipeline",
            str(pipeline_folder),
            "--dry-run",
            "--out",
            str(out),
            "--sample-video",
            str(sample_video),
            "--eval-results",
            str(eval_json),
        ]
    )
    assert code == 0
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {
        "README.md",
        "model_index.json",
        "training_info.json",
        "samples/fox.mp4",
        "samples/fox.json",
        "eval/eval_results.json",
        "transformer/config.json",
        "scheduler/scheduler_config.json",
    } <= files
    # the same code path as `from_pretrained("me/tiny-extension")` after the upload
    loaded = LongVideoExtensionPipeline.from_pretrained(out)
    loaded.set_progress_bar_config(disable=True)
    original = LongVideoExtensionPipeline.from_pretrained(pipeline_folder)
    original.set_progress_bar_config(disable=True)
    assert loaded.transformer.config.in_channels == 36
    np.testing.assert_allclose(
        loaded(PROMPTS, **call_kwargs()).frames, original(PROMPTS, **call_kwargs()).frames, atol=1e-5
    )

    card = read_card(out)
    assert card.data.base_model == DEFAULT_BASE_MODEL and card.data.base_model_relation == "finetune"
    assert card.data.widget == [{"text": PROMPTS[0], "output": {"url": "samples/fox.mp4"}}]
    assert "https://huggingface.co/me/tiny-extension/resolve/main/samples/fox.mp4" in card.text
    assert 'LongVideoExtensionPipeline.from_pretrained(\n    "me/tiny-extension"' in card.text
    assert "height=16, width=16, num_frames=9" in card.text  # the settings of training_info.json
    assert "1. a red ball rolls" in card.text and "seed `3`" in card.text
    assert "| Imaging quality † |" in card.text


def test_pipeline_folders_are_checked(tmp_path, pipeline_folder):
    only_transformer = tmp_path / "final"
    (only_transformer / "transformer").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds only `transformer/`"):
        prepare_hub_folder(tmp_path / "a", "me/x", pipeline=only_transformer)

    wan = tmp_path / "wan"
    WanPipeline(**get_dummy_components(scheduler=FlowMatchEulerDiscreteScheduler())).save_pretrained(wan)
    with pytest.raises(ValueError, match="is a 'WanPipeline' folder"):
        prepare_hub_folder(tmp_path / "b", "me/x", pipeline=wan)

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not an empty folder"):
        prepare_hub_folder(busy, "me/x", pipeline=pipeline_folder)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]  # nothing written, nothing deleted

    with pytest.raises(ValueError, match="`repo_id` must look like 'user/name'"):
        prepare_hub_folder(tmp_path / "c", "no-slash", pipeline=pipeline_folder)
    with pytest.raises(ValueError, match="Pass `lora`"):
        prepare_hub_folder(tmp_path / "d", "me/x")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------------------------------- LoRA folders
def test_dry_run_lora_folder_loads_with_load_lora_weights(tmp_path, lora_folder):
    out = tmp_path / "hub"
    assert (
        main(["push-to-hub", "--repo-id", "me/kv-lora", "--lora", str(lora_folder), "--dry-run", "--out", str(out)])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["README.md", LORA_WEIGHT_NAME, "training_info.json"]

    inputs = {
        "hidden_states": torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(1)),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(2)),
    }
    with torch.no_grad():
        expected = tiny_lora_transformer()(**inputs).sample
        pipe = WanPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=None,
            scheduler=FlowMatchEulerDiscreteScheduler(),
            transformer=get_tiny_transformer(num_layers=4),
        )
        base = pipe.transformer(**inputs).sample
        pipe.load_lora_weights(out, adapter_name="kv")  # what `load_lora_weights("me/kv-lora")` does
        loaded = pipe.transformer(**inputs).sample
    assert not torch.allclose(base, expected)
    torch.testing.assert_close(loaded, expected, rtol=0, atol=1e-6)

    card = read_card(out)
    assert card.data.base_model == "me/tiny-extension"  # from training_info.json (a Hub id)
    assert "lora" in card.data.tags
    assert "rank 4, 4 adapted modules (attn1.to_k, attn1.to_v in blocks 2–3)" in card.text
    assert "kv_cache_clips=5" in card.text and "condition_fill='zeros'" in card.text
    assert "No evaluation results were attached" in card.text


def test_lora_summary_and_bad_lora_files(tmp_path, lora_folder):
    summary = summarize_lora_file(lora_folder / LORA_WEIGHT_NAME)
    assert summary["rank"] == 4 and summary["blocks"] == [2, 3]
    assert summary["modules"] == [f"blocks.{b}.attn1.{p}" for b in (2, 3) for p in ("to_k", "to_v")]

    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    bad.mkdir()
    save_file({"unet.down.lora_A.weight": torch.zeros(2, 2)}, str(bad / LORA_WEIGHT_NAME))
    with pytest.raises(ValueError, match="keys outside `transformer.`"):
        prepare_hub_folder(tmp_path / "out", "me/x", lora=bad)
    with pytest.raises(ValueError, match="holds no `pytorch_lora_weights.safetensors`"):
        prepare_hub_folder(tmp_path / "out", "me/x", lora=tmp_path / "missing")


def test_pipeline_and_lora_in_one_repository(tmp_path, pipeline_folder, lora_folder):
    folder = prepare_hub_folder(tmp_path / "hub", "me/both", pipeline=pipeline_folder, lora=lora_folder)
    assert folder.kind == "pipeline+lora"
    assert {LORA_WEIGHT_NAME, "lora_training_info.json", "training_info.json", "model_index.json"} <= set(folder.files)
    text = folder.card.text
    assert 'from_pretrained(\n    "me/both"' in text and 'pipe.load_lora_weights("me/both"' in text


# ----------------------------------------------------------------------------------------------------------- upload
class FakeHfApi:
    calls: list = []

    def __init__(self, token=None):
        FakeHfApi.calls.append(("init", {"token": token}))

    def create_repo(self, **kwargs):
        FakeHfApi.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        files = sorted(str(p.relative_to(kwargs["folder_path"])) for p in Path(kwargs["folder_path"]).rglob("*"))
        FakeHfApi.calls.append(("upload_folder", {**kwargs, "files": files}))
        return type("CommitInfo", (), {"commit_url": "https://huggingface.co/me/kv-lora/commit/abc"})()


@pytest.fixture
def fake_api(monkeypatch):
    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_push_uploads_with_create_repo_and_upload_folder(fake_api, lora_folder, capsys):
    code = main(
        [
            "push-to-hub",
            "--repo-id",
            "me/kv-lora",
            "--lora",
            str(lora_folder),
            "--private",
            "--token",
            "hf_test",
            "--commit-message",
            "first",
        ]
    )
    assert code == 0
    names = [name for name, _ in fake_api.calls]
    assert names == ["init", "create_repo", "upload_folder"]
    assert fake_api.calls[0][1] == {"token": "hf_test"}
    assert fake_api.calls[1][1] == {"repo_id": "me/kv-lora", "repo_type": "model", "private": True, "exist_ok": True}
    upload = fake_api.calls[2][1]
    assert upload["repo_id"] == "me/kv-lora" and upload["repo_type"] == "model"
    assert upload["commit_message"] == "first" and upload["revision"] is None
    assert upload["files"] == ["README.md", LORA_WEIGHT_NAME, "training_info.json"]
    assert not Path(upload["folder_path"]).exists()  # the temporary folder is removed afterwards
    assert "commit/abc" in capsys.readouterr().out


def test_public_by_default_and_token_from_the_environment(fake_api, tmp_path, lora_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    folder = prepare_hub_folder(tmp_path / "hub", "me/kv-lora", lora=lora_folder)
    upload_hub_folder(folder.path, "me/kv-lora")
    # no token passed: huggingface_hub resolves HF_TOKEN / the cached login itself
    assert fake_api.calls[0][1] == {"token": None}
    assert fake_api.calls[1][1]["private"] is None
    assert fake_api.calls[2][1]["folder_path"] == str(folder.path)


def test_no_token_fails_before_any_work(fake_api, tmp_path, lora_folder, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    out = tmp_path / "hub"
    assert main(["push-to-hub", "--repo-id", "me/kv-lora", "--lora", str(lora_folder), "--out", str(out)]) == 2
    assert "no Hub token found" in capsys.readouterr().err
    assert fake_api.calls == [] and not out.exists()
    folder = prepare_hub_folder(out, "me/kv-lora", lora=lora_folder)
    with pytest.raises(ValueError, match="No Hub token found"):
        upload_hub_folder(folder.path, "me/kv-lora")
    assert fake_api.calls == []


def test_cli_argument_errors(tmp_path, lora_folder, capsys):
    assert main(["push-to-hub", "--repo-id", "me/x", "--dry-run", "--out", str(tmp_path / "o")]) == 2
    assert "pass `--lora FOLDER`, `--pipeline FOLDER`, or both" in capsys.readouterr().err
    assert main(["push-to-hub", "--repo-id", "me/x", "--lora", str(lora_folder), "--dry-run"]) == 2
    assert "`--dry-run` needs `--out FOLDER`" in capsys.readouterr().err
    assert (
        main(
            [
                "push-to-hub",
                "--repo-id",
                "me/x",
                "--lora",
                str(lora_folder),
                "--dry-run",
                "--out",
                str(tmp_path / "o"),
                "--eval-results",
                str(tmp_path / "none.json"),
            ]
        )
        == 2
    )
    assert "`eval_results`" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_model_card_command_writes_the_root_card(tmp_path):
    from diffusers_longvid.cli import main

    assert main(["model-card", "--out", str(tmp_path / "card.md")]) == 0
    assert (tmp_path / "card.md").read_text() == (Path(__file__).resolve().parents[1] / "model_card.md").read_text()
