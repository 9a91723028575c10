"""The reference evaluation backend with tiny random CLIP/DINO models saved to and loaded from local folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


pytest.importorskip("cv2")

from diffusers_longvid.evaluation import evaluate_video, write_eval_report  # noqa: E402
from diffusers_longvid.evaluation.metrics import DIMENSIONS  # noqa: E402
from diffusers_longvid.evaluation.reference import (  # noqa: E402
    LaionAestheticHead,
    MissingEvaluationWeightsError,
    ReferenceBackend,
    clip_preprocess,
    dino_preprocess,
)


PROJECTION = 16


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Tiny random DINO (ViTModel), CLIP (CLIPModel + the offline BERT tokenizer) and a LAION-style linear head."""
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    from diffusers_longvid.testing import get_tiny_tokenizer

    root = tmp_path_factory.mktemp("eval_models")
    tokenizer = get_tiny_tokenizer()
    torch.manual_seed(0)
    clip = CLIPModel(
        CLIPConfig(
            text_config={
                "vocab_size": tokenizer.vocab_size,
                "hidden_size": 32,
                "intermediate_size": 37,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 32,
                "eos_token_id": tokenizer.sep_token_id,
                "bos_token_id": tokenizer.cls_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 37,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 32,
                "patch_size": 8,
            },
            projection_dim=PROJECTION,
        )
    )
    clip.save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    torch.manual_seed(1)
    dino = ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        ),
        add_pooling_layer=False,
    )
    dino.save_pretrained(root / "dino")
    torch.manual_seed(2)
    head = torch.nn.Linear(PROJECTION, 1)
    torch.nn.init.constant_(head.bias, 5.0)  # a rating around 5 of 10, like the real head
    torch.save(head.state_dict(), root / "sa_head.pth")
    return {
        "subject_model": str(root / "dino"),
        "background_model": str(root / "clip"),
        "aesthetic_clip_model": str(root / "clip"),
        "aesthetic_head": str(root / "sa_head.pth"),
    }


def _video(frames: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = np.full((frames, 40, 48, 3), 60, np.uint8)
    for i in range(frames):
        video[i, 10:26, 4 + 2 * i : 16 + 2 * i] = rng.integers(100, 255, 3)
    return video


def test_reference_backend_scores_a_clip_from_local_tiny_models(tiny_models, tmp_path):
    result = evaluate_video(
        _video(), backend="reference", fps=8, show_progress=False, backend_kwargs=tiny_models, window_seconds=1.0
    )
    assert result.backend == "reference" and result.proxies is False
    assert set(DIMENSIONS) <= set(result.scores)
    for name, value in result.scores.items():
        assert value is not None and np.isfinite(value), name
    for name in ("subject_consistency", "background_consistency", "motion_smoothness", "imaging_quality"):
        assert 0.0 <= result.scores[name] <= 1.0, name
    assert result.scores["dynamic_degree"] in (0.0, 1.0)
    # flow-based dimensions and CLIP-IQA are stand-ins, the rest are VBench's models
    assert result.proxy_dimensions == ["motion_smoothness", "dynamic_degree", "imaging_quality"]
    assert "CLIP-IQA" in result.methods["imaging_quality"]
    assert result.backend_config["subject_model"] == tiny_models["subject_model"]
    paths = write_eval_report(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["comparable_to_vbench"] is False and data["proxy_dimensions"] == result.proxy_dimensions
    assert "Paper, Table 1" in paths["markdown"].read_text()

    # a static video is perfectly consistent under DINO and CLIP features too
    static = evaluate_video(
        np.repeat(_video(1), 6, axis=0), backend="reference", fps=8, show_progress=False, compute_af=False,
        dimensions=["subject_consistency", "background_consistency"], backend_kwargs=tiny_models,
    )  # fmt: skip
    assert static.scores["subject_consistency"] == pytest.approx(1.0, abs=1e-6)
    assert static.scores["background_consistency"] == pytest.approx(1.0, abs=1e-6)


def test_aesthetic_score_is_the_head_rating_over_ten(tiny_models):
    backend = ReferenceBackend(
        dimensions=["aesthetic_quality"],
        aesthetic_clip_model=tiny_models["aesthetic_clip_model"],
        aesthetic_head=tiny_models["aesthetic_head"],
    )
    frames = _video(3)
    embeddings = backend._clip_embeddings(backend.aesthetic_clip, frames)
    np.testing.assert_allclose(embeddings.norm(dim=-1).numpy(), 1.0, atol=1e-5)
    state = torch.load(tiny_models["aesthetic_head"], weights_only=True)
    expected = (embeddings @ state["weight"].T + state["bias"])[:, 0].numpy() / 10.0
    np.testing.assert_allclose(backend.frame_scores(frames, "aesthetic_quality"), expected, rtol=1e-5)


class BrightnessMusiq(torch.nn.Module):
    """A stand-in MUSIQ: a MOS in [0, 100] from the mean brightness (VBench divides MUSIQ's MOS by 100)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3))[:, None] * 100.0


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_musiq_module_is_used_for_imaging_quality(tmp_path):
    frames = _video(4)
    expected = frames.reshape(4, -1).mean(axis=1) / 255.0
    exported = torch.export.export(BrightnessMusiq(), (torch.rand(4, 3, 40, 48),))
    torch.export.save(exported, str(tmp_path / "musiq.pt2"))
    torch.jit.script(BrightnessMusiq()).save(str(tmp_path / "musiq.pt"))
    for model in (BrightnessMusiq(), str(tmp_path / "musiq.pt2"), str(tmp_path / "musiq.pt")):
        backend = ReferenceBackend(dimensions=["imaging_quality"], imaging_model=model)
        np.testing.assert_allclose(backend.frame_scores(frames, "imaging_quality"), expected, rtol=1e-5)
        assert backend.proxy_dimensions() == []
        assert "MUSIQ" in backend.methods()["imaging_quality"]


def test_laion_head_loads_linear_and_mlp_state_dicts():
    linear = torch.nn.Linear(8, 1)
    head = LaionAestheticHead.from_state_dict(linear.state_dict())
    x = torch.randn(3, 8)
    torch.testing.assert_close(head(x), linear(x)[:, 0])
    # the improved predictor: Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear
    mlp = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 8), torch.nn.Dropout(0.2),
        torch.nn.Linear(8, 4), torch.nn.Dropout(0.1), torch.nn.Linear(4, 2), torch.nn.Linear(2, 1),
    ).eval()  # fmt: skip
    state = {f"layers.{k}": v for k, v in mlp.state_dict().items()}
    head = LaionAestheticHead.from_state_dict(state)
    assert head.embed_dim == 8
    torch.testing.assert_close(head(x), mlp(x)[:, 0])
    with pytest.raises(ValueError, match="LAION"):
        LaionAestheticHead.from_state_dict({"foo": torch.zeros(1)})


def test_preprocessing_shapes_follow_vbench():
    frames = np.zeros((2, 40, 48, 3), np.uint8)
    assert tuple(dino_preprocess(frames, 32).shape) == (2, 3, 32, 38)  # short side to 32, no crop
    assert tuple(clip_preprocess(frames, 32).shape) == (2, 3, 32, 32)  # short side, centre crop
    white = np.full((1, 40, 48, 3), 255, np.uint8)
    torch.testing.assert_close(
        clip_preprocess(white, 32)[0, :, 0, 0],
        (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor([0.26862954, 0.26130258, 0.27577711]),
    )


def test_missing_weights_fail_with_a_clear_message(tiny_models, tmp_path):
    video = _video(4)
    # a local folder that is not there
    with pytest.raises(MissingEvaluationWeightsError) as info:
        evaluate_video(
            video, backend="reference", dimensions=["subject_consistency"], show_progress=False,
            backend_kwargs={"subject_model": str(tmp_path / "no-dino")},
        )  # fmt: skip
    message = str(info.value)
    assert "DINO ViT-B/16" in message and "hf download facebook/dino-vitb16" in message
    assert "--subject-model" in message and "subject_model=" in message
    # a Hub id with HF_HUB_OFFLINE=1 (set by conftest): transformers' OSError becomes the same kind of message
    with pytest.raises(MissingEvaluationWeightsError) as info:
        ReferenceBackend(dimensions=["background_consistency"], background_model="openai/clip-vit-base-patch32")
    message = str(info.value)
    assert "`openai/clip-vit-base-patch32`" in message and "HF_HUB_OFFLINE" in message
    assert isinstance(info.value.__cause__, OSError)
    # the aesthetic head is a file the user must point to; it is checked before any model is loaded
    with pytest.raises(MissingEvaluationWeightsError, match="sa_0_4_vit_l_14_linear.pth") as info:
        ReferenceBackend(dimensions=["aesthetic_quality"], aesthetic_clip_model="never/loaded")
    assert "https://github.com/LAION-AI/aesthetic-predictor" in str(info.value)
    with pytest.raises(MissingEvaluationWeightsError, match="MUSIQ"):
        ReferenceBackend(dimensions=["imaging_quality"], imaging_model=str(tmp_path / "musiq.pt2"))
    # a head trained on other embeddings than the given CLIP's
    torch.save(torch.nn.Linear(768, 1).state_dict(), tmp_path / "vitl_head.pth")
    with pytest.raises(ValueError, match="ViT-L/14"):
        ReferenceBackend(
            dimensions=["aesthetic_quality"], aesthetic_clip_model=tiny_models["aesthetic_clip_model"],
            aesthetic_head=str(tmp_path / "vitl_head.pth"),
        )  # fmt: skip


def test_cli_reference_backend_with_local_models(tiny_models, tmp_path, capsys):
    import imageio.v3 as iio

    from diffusers_longvid.cli import main

    iio.imwrite(tmp_path / "clip.mp4", np.pad(_video(8), ((0, 0), (4, 4), (0, 0), (0, 0))), fps=8)
    out = tmp_path / "report"
    args = [
        "eval", str(tmp_path / "clip.mp4"), "--backend", "reference", "--out", str(out), "--no-progress", "--no-af",
        "--device", "cpu", "--subject-model", tiny_models["subject_model"],
        "--background-model", tiny_models["background_model"],
        "--aesthetic-clip-model", tiny_models["aesthetic_clip_model"],
        "--aesthetic-head", tiny_models["aesthetic_head"],
    ]  # fmt: skip
    assert main(args) == 0
    data = json.loads((out / "eval_results.json").read_text())
    assert data["backend"] == "reference" and set(DIMENSIONS) == set(data["scores"])
    # a missing model is an error message and exit code 2, not a traceback
    assert main(args[:-8] + ["--dimensions", "subject_consistency", "--subject-model", str(tmp_path / "x")]) == 2
    assert "hf download facebook/dino-vitb16" in capsys.readouterr().err
