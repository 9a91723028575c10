# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The reference evaluation backend: VBench's models, loaded through transformers from ids or local folders.

| dimension | VBench | here |
| --- | --- | --- |
| subject consistency | DINO ViT-B/16 (torch.hub) CLS feature | the same model, `facebook/dino-vitb16` via `ViTModel` |
| background consistency | CLIP ViT-B/32 image embedding | the same model, `openai/clip-vit-base-patch32` via `CLIPModel` |
| aesthetic quality | LAION linear head on CLIP ViT-L/14, / 10 | the same, head file given by the user |
| imaging quality | MUSIQ (pyiqa, SPAQ weights), / 100 | a user-supplied MUSIQ TorchScript/module, else CLIP-IQA ("Good photo."/"Bad photo.") |
| motion smoothness | AMT-S frame interpolation | OpenCV flow warping (torchvision-free; see `motion.py`) |
| dynamic degree | RAFT flow | OpenCV DIS flow, VBench's thresholds |

Preprocessing follows VBench's `dino_transform` / `clip_transform` (resize of the short side with the same
interpolation and `antialias=False`, rounding to `uint8` as torchvision does for `uint8` tensors, centre crop for
CLIP, then normalisation), written with `torch.nn.functional` so that torchvision is not needed.
Nothing is downloaded here that transformers would not download itself; when a model cannot be loaded (no internet,
`HF_HUB_OFFLINE=1`, a wrong path) a [`MissingEvaluationWeightsError`] says which weights are missing and how to get
them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from diffusers.utils import logging
from torch import nn

from .backend import EvaluationBackend
from .metrics import CONSISTENCY_DIMENSIONS, FRAME_DIMENSIONS


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "ReferenceBackend",
    "LaionAestheticHead",
    "MissingEvaluationWeightsError",
    "DEFAULT_SUBJECT_MODEL",
    "DEFAULT_BACKGROUND_MODEL",
    "DEFAULT_AESTHETIC_CLIP_MODEL",
    "AESTHETIC_HEAD_URL",
    "MUSIQ_WEIGHTS_URL",
    "CLIP_IQA_PROMPTS",
    "clip_preprocess",
    "dino_preprocess",
]

DEFAULT_SUBJECT_MODEL = "facebook/dino-vitb16"
DEFAULT_BACKGROUND_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_AESTHETIC_CLIP_MODEL = "openai/clip-vit-large-patch14"
AESTHETIC_HEAD_URL = "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth"
MUSIQ_WEIGHTS_URL = (
    "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth"
)
# CLIP-IQA (Wang et al., AAAI 2023): the antonym prompt pair; the score is the softmax probability of the first.
CLIP_IQA_PROMPTS: tuple[str, str] = ("Good photo.", "Bad photo.")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MissingEvaluationWeightsError(OSError):
    """Raised when a model of the reference evaluation backend cannot be loaded; the message says how to get it."""


def _is_offline() -> bool:
    return any(
        os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_how(default_id: str) -> str:
    folder = default_id.split("/")[-1]
    return (
        f"on a machine with internet access run `hf download {default_id} --local-dir weights/{folder}` "
        f"(or `huggingface-cli download ...`) and copy the folder here."
    )


@dataclass(frozen=True)
class _Weights:
    """What one argument of [`ReferenceBackend`] loads, for error messages that say how to get it."""

    what: str
    dimension: str
    argument: str
    how: str

    def error(self, model: str, reason: str, hub: bool = False) -> MissingEvaluationWeightsError:
        offline = " `HF_HUB_OFFLINE` is set, so nothing was downloaded." if hub and _is_offline() else ""
        flag = "--" + self.argument.replace("_", "-")
        return MissingEvaluationWeightsError(
            f"The reference evaluation backend needs {self.what} `{model}` for `{self.dimension}`, and it could not "
            f"be loaded: {reason.rstrip('.')}.{offline} To get it: {self.how} Then pass the local path as "
            f"`{self.argument}=...` (CLI: `{flag} PATH`). Without these weights, evaluate other `dimensions`, or use "
            f'`backend="offline"` (proxies, no weights).'
        )


_WEIGHTS: dict[str, _Weights] = {
    "subject_model": _Weights(
        "the DINO ViT-B/16 weights", "subject_consistency", "subject_model", _hub_how(DEFAULT_SUBJECT_MODEL)
    ),
    "background_model": _Weights(
        "the CLIP weights", "background_consistency", "background_model", _hub_how(DEFAULT_BACKGROUND_MODEL)
    ),
    "aesthetic_clip_model": _Weights(
        "the CLIP ViT-L/14 weights",
        "aesthetic_quality",
        "aesthetic_clip_model",
        _hub_how(DEFAULT_AESTHETIC_CLIP_MODEL),
    ),
    "aesthetic_head": _Weights(
        "the LAION aesthetic head",
        "aesthetic_quality",
        "aesthetic_head",
        f"download `sa_0_4_vit_l_14_linear.pth` from {AESTHETIC_HEAD_URL} (the LAION aesthetic predictor that "
        "VBench uses).",
    ),
    "imaging_model": _Weights(
        "a MUSIQ module file",
        "imaging_quality",
        "imaging_model",
        f"there is no transformers port of MUSIQ; export pyiqa's `musiq` with the SPAQ weights ({MUSIQ_WEIGHTS_URL}) "
        "yourself (`torch.export.save` to a `.pt2` file, or TorchScript), or leave `imaging_model` unset to use "
        "CLIP-IQA.",
    ),
    "iqa_clip_model": _Weights(
        "the CLIP weights and tokenizer", "imaging_quality", "iqa_clip_model", _hub_how(DEFAULT_BACKGROUND_MODEL)
    ),
}


def _looks_like_path(model: str) -> bool:
    """Whether `model` is meant as a local folder rather than a Hub id (`namespace/name` has exactly one slash)."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def _from_pretrained(cls: Any, model: str, weights: _Weights, **kwargs: Any) -> Any:
    """`cls.from_pretrained(model)`, turning a missing folder, missing files or no network into a clear error."""
    expanded = os.path.expanduser(model)
    if (_looks_like_path(model) or os.path.exists(expanded)) and not os.path.isdir(expanded):
        raise weights.error(model, "no such folder")
    try:
        return cls.from_pretrained(expanded if os.path.isdir(expanded) else model, **kwargs)
    except OSError as error:  # transformers/huggingface_hub raise OSError subclasses for missing files and no network
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise weights.error(model, first_line, hub=True) from error


def _resize_short_side(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """torchvision's `Resize(size, antialias=False)` of a `uint8`-valued float batch `(N, 3, H, W)`, rounded back."""
    height, width = images.shape[-2:]
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = size, int(size * long / short)
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    if (new_h, new_w) != (height, width):
        images = nn.functional.interpolate(
            images, size=(new_h, new_w), mode=mode, align_corners=False, antialias=False
        )
    # torchvision resizes uint8 tensors in float and rounds (and clamps) back to uint8
    return images.clamp(0, 255).round()


def _center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def _normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    return (images / 255.0 - mean_t) / std_t


def _to_nchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def dino_preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench's `dino_transform(size)`: short side to `size` (bilinear, no crop), ImageNet normalisation."""
    return _normalise(_resize_short_side(_to_nchw(frames), size, "bilinear"), _IMAGENET_MEAN, _IMAGENET_STD)


def clip_preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench's `clip_transform(size)`: short side to `size` (bicubic), centre crop, CLIP normalisation."""
    images = _center_crop(_resize_short_side(_to_nchw(frames), size, "bicubic"), size)
    return _normalise(images, _CLIP_MEAN, _CLIP_STD)


class LaionAestheticHead(nn.Module):
    r"""
    The LAION aesthetic predictor head: linear layers on L2-normalised CLIP ViT-L/14 image embeddings.

    VBench uses the linear head `sa_0_4_vit_l_14_linear.pth` (`nn.Linear(768, 1)`, state-dict keys `weight`,
    `bias`) from https://github.com/LAION-AI/aesthetic-predictor and divides its 0-10 rating by 10. The improved
    predictor's MLP (keys `layers.0.weight` … `layers.7.bias`: linear layers with dropout and no activations) loads as
    well. Dropout is a no-op at inference, so both are a chain of linear layers.

    Args:
        layer_sizes (`Sequence[int]`, *optional*, defaults to `(768, 1)`): Input size, hidden sizes, output size 1.
    """

    def __init__(self, layer_sizes: Sequence[int] = (768, 1)) -> None:
        super().__init__()
        sizes = list(layer_sizes)
        if len(sizes) < 2 or sizes[-1] != 1:
            raise ValueError(f"`layer_sizes` must start with the embedding size and end with 1, got {sizes}.")
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    @property
    def embed_dim(self) -> int:
        return self.layers[0].in_features

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Ratings (about 0-10) of L2-normalised embeddings `(N, D)`: `(N,)`."""
        x = embeddings
        for layer in self.layers:
            x = layer(x)
        return x[:, 0]

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> LaionAestheticHead:
        """Build from the linear (`weight`, `bias`) or MLP (`layers.<i>.weight`, …) state dict of a released head."""
        if set(state_dict) == {"weight", "bias"}:
            linear = [("weight", "bias")]
        else:
            indices = sorted(
                {int(k.split(".")[1]) for k in state_dict if k.startswith("layers.") and k.endswith(".weight")}
            )
            if not indices:
                raise ValueError(
                    "Not a LAION aesthetic head: expected keys `weight`/`bias` or `layers.<i>.weight`, got "
                    f"{sorted(state_dict)[:6]}."
                )
            linear = [(f"layers.{i}.weight", f"layers.{i}.bias") for i in indices]
        sizes = [state_dict[linear[0][0]].shape[1]] + [state_dict[w].shape[0] for w, _ in linear]
        head = cls(sizes)
        new_state = {}
        for n, (w, b) in enumerate(linear):
            new_state[f"layers.{n}.weight"] = state_dict[w]
            new_state[f"layers.{n}.bias"] = state_dict[b]
        head.load_state_dict(new_state)
        return head.eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> LaionAestheticHead:
        """Load a head from a `.pth`/`.pt` (`torch.load`, weights only) or `.safetensors` file."""
        path = Path(path).expanduser()
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, nn.Module):  # pragma: no cover - weights_only refuses modules; kept for clarity
                state = state.state_dict()
        return cls.from_state_dict(state)


class ReferenceBackend(EvaluationBackend):
    r"""
    VBench's models through transformers, from Hub ids (downloaded and cached by transformers where the network
    allows) or local folders. Only the models of the requested `dimensions` are loaded.

    Args:
        dimensions (`Sequence[str]`, *optional*): The dimensions to evaluate (default: all six).
        subject_model (`str`, *optional*, defaults to `"facebook/dino-vitb16"`):
            DINO ViT-B/16 for subject consistency (`ViTModel`; the CLS token of the last layer, as torch.hub's DINO).
        background_model (`str`, *optional*, defaults to `"openai/clip-vit-base-patch32"`):
            CLIP for background consistency (`CLIPModel` image embeddings).
        aesthetic_clip_model (`str`, *optional*, defaults to `"openai/clip-vit-large-patch14"`):
            The CLIP whose image embeddings the aesthetic head was trained on.
        aesthetic_head (`str`, *optional*):
            Path of the LAION head file, `sa_0_4_vit_l_14_linear.pth` (see [`LaionAestheticHead`]). Needed for
            `aesthetic_quality`.
        imaging_model (`str` or `torch.nn.Module`, *optional*):
            A MUSIQ model for imaging quality: a `torch.export` program (`.pt2`), a TorchScript file or a module
            mapping `(N, 3, H, W)` RGB in `[0, 1]` to MOS scores in `[0, 100]` (e.g. pyiqa's `musiq-spaq`, exported
            by you; there is no transformers port).
            Frames are given at VBench's "longer" preprocessing (long side at most 512) and scores divided by 100.
            If not given, imaging quality is CLIP-IQA with `iqa_clip_model`: a documented stand-in, not MUSIQ.
        iqa_clip_model (`str`, *optional*): The CLIP used by CLIP-IQA (with its tokenizer); defaults to
            `background_model`.
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): Where the models run.
        torch_dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): Model dtype.
        batch_size (`int`, *optional*, defaults to 16): Frames per forward pass.
        cache_dir (`str`, *optional*): Passed to `from_pretrained`.
        local_files_only (`bool`, *optional*, defaults to `False`): Passed to `from_pretrained`.
        flow_method, flow_preset, flow_max_short_side: See [`EvaluationBackend`].
    """

    name = "reference"
    proxies = False

    def __init__(
        self,
        dimensions: Sequence[str] | None = None,
        subject_model: str = DEFAULT_SUBJECT_MODEL,
        background_model: str = DEFAULT_BACKGROUND_MODEL,
        aesthetic_clip_model: str = DEFAULT_AESTHETIC_CLIP_MODEL,
        aesthetic_head: str | os.PathLike | None = None,
        imaging_model: str | os.PathLike | nn.Module | None = None,
        iqa_clip_model: str | None = None,
        device: str | torch.device = "cpu",
        torch_dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        flow_method: Literal["dis", "farneback"] = "dis",
        flow_preset: Literal["ultrafast", "fast", "medium"] = "medium",
        flow_max_short_side: int | None = 256,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
            raise ValueError(f"`torch_dtype` must be a floating-point torch.dtype, got {torch_dtype!r}.")
        super().__init__(
            dimensions=dimensions,
            flow_method=flow_method,
            flow_preset=flow_preset,
            flow_max_short_side=flow_max_short_side,
        )
        self.device = torch.device(device)
        self.dtype = torch_dtype
        self.batch_size = batch_size
        self._load_kwargs = {"cache_dir": cache_dir, "local_files_only": local_files_only}
        self.model_ids = {
            "subject_model": subject_model,
            "background_model": background_model,
            "aesthetic_clip_model": aesthetic_clip_model,
            "aesthetic_head": str(aesthetic_head) if aesthetic_head is not None else None,
            "imaging_model": imaging_model
            if isinstance(imaging_model, (str, os.PathLike, type(None)))
            else type(imaging_model).__name__,
            "iqa_clip_model": iqa_clip_model or background_model,
        }
        self._clips: dict[str, nn.Module] = {}
        self.dino = self.background_clip = self.aesthetic_clip = self.aesthetic_head = None
        self.musiq = self.iqa_clip = self.iqa_text = None

        # check files that need no loading first, so a missing head fails before big models are read
        if "aesthetic_quality" in self.dimensions:
            self.aesthetic_head = self._load_aesthetic_head(aesthetic_head)
        if "imaging_quality" in self.dimensions and imaging_model is not None:
            self.musiq = self._load_musiq(imaging_model)
        if "subject_consistency" in self.dimensions:
            from transformers import ViTModel

            self.dino = self._prepare(
                _from_pretrained(
                    ViTModel, subject_model, _WEIGHTS["subject_model"], add_pooling_layer=False, **self._load_kwargs
                )
            )
        if "background_consistency" in self.dimensions:
            self.background_clip = self._load_clip(background_model, "background_model")
        if "aesthetic_quality" in self.dimensions:
            self.aesthetic_clip = self._load_clip(aesthetic_clip_model, "aesthetic_clip_model")
            projection = self.aesthetic_clip.config.projection_dim
            if projection != self.aesthetic_head.embed_dim:
                raise ValueError(
                    f"The aesthetic head takes {self.aesthetic_head.embed_dim}-d embeddings, but "
                    f"`aesthetic_clip_model={aesthetic_clip_model!r}` produces {projection}-d ones; the LAION head "
                    "needs CLIP ViT-L/14."
                )
        if "imaging_quality" in self.dimensions and self.musiq is None:
            self._load_clip_iqa(self.model_ids["iqa_clip_model"])

    # ----------------------------------------------------------------------------------------------- loading
    def _prepare(self, model: nn.Module) -> nn.Module:
        return model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)

    def _load_clip(self, model: str, argument: str) -> nn.Module:
        # one instance per id: the same CLIP may serve background consistency and CLIP-IQA
        if model not in self._clips:
            from transformers import CLIPModel

            self._clips[model] = self._prepare(
                _from_pretrained(CLIPModel, model, _WEIGHTS[argument], **self._load_kwargs)
            )
        return self._clips[model]

    def _load_aesthetic_head(self, path: str | os.PathLike | None) -> LaionAestheticHead:
        if path is None:
            raise _WEIGHTS["aesthetic_head"].error("sa_0_4_vit_l_14_linear.pth", "no `aesthetic_head` path was given")
        if not Path(path).expanduser().is_file():
            raise _WEIGHTS["aesthetic_head"].error(str(path), "no such file")
        return self._prepare(LaionAestheticHead.from_file(path))

    def _load_musiq(self, model: str | os.PathLike | nn.Module) -> nn.Module:
        if isinstance(model, nn.Module):
            return self._prepare(model)
        path = Path(model).expanduser()
        if not path.is_file():
            raise _WEIGHTS["imaging_model"].error(str(model), "no such file")
        if path.suffix == ".pt2":
            # a `torch.export` program is already in inference form, on the device it was exported on
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location=self.device).eval()

    def _load_clip_iqa(self, model: str) -> None:
        from transformers import AutoTokenizer

        self.iqa_clip = self._load_clip(model, "iqa_clip_model")
        tokenizer = _from_pretrained(AutoTokenizer, model, _WEIGHTS["iqa_clip_model"], **self._load_kwargs)
        tokens = tokenizer(list(CLIP_IQA_PROMPTS), padding=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            text = self.iqa_clip.text_model(input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask"))
            text = self.iqa_clip.text_projection(text.pooler_output)
        self.iqa_text = nn.functional.normalize(text.float(), dim=-1)

    # ----------------------------------------------------------------------------------------------- features
    def _batches(self, frames: np.ndarray):
        for start in range(0, len(frames), self.batch_size):
            yield frames[start : start + self.batch_size]

    @torch.no_grad()
    def _clip_embeddings(self, model: nn.Module, frames: np.ndarray) -> torch.Tensor:
        size = model.config.vision_config.image_size
        out = []
        for batch in self._batches(frames):
            pixels = clip_preprocess(batch, size).to(device=self.device, dtype=self.dtype)
            pooled = model.vision_model(pixel_values=pixels).pooler_output
            out.append(nn.functional.normalize(model.visual_projection(pooled).float(), dim=-1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def _dino_features(self, frames: np.ndarray) -> torch.Tensor:
        size = self.dino.config.image_size
        out = []
        for batch in self._batches(frames):
            pixels = dino_preprocess(batch, size).to(device=self.device, dtype=self.dtype)
            hidden = self.dino(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
            out.append(nn.functional.normalize(hidden[:, 0].float(), dim=-1).cpu())
        return torch.cat(out)

    def embed(self, frames: np.ndarray, dimension: str) -> Any:
        self._check_dimension(dimension, CONSISTENCY_DIMENSIONS)
        if dimension not in self.dimensions:
            raise ValueError(f"This backend was built without `{dimension}`.")
        if dimension == "subject_consistency":
            return self._dino_features(frames)
        return self._clip_embeddings(self.background_clip, frames)

    def similarity(self, dimension: str, a: Any, b: Any) -> np.ndarray:
        self._check_dimension(dimension, CONSISTENCY_DIMENSIONS)
        # features are L2-normalised, so the dot product is VBench's cosine similarity
        return (a.double() * b.double()).sum(dim=-1).numpy()

    @torch.no_grad()
    def frame_scores(self, frames: np.ndarray, dimension: str) -> np.ndarray:
        self._check_dimension(dimension, FRAME_DIMENSIONS)
        if dimension not in self.dimensions:
            raise ValueError(f"This backend was built without `{dimension}`.")
        if dimension == "aesthetic_quality":
            embeddings = self._clip_embeddings(self.aesthetic_clip, frames).to(self.device, self.dtype)
            return (self.aesthetic_head(embeddings).float().cpu().numpy() / 10.0).astype(np.float64)
        if self.musiq is not None:
            return self._musiq_scores(frames)
        embeddings = self._clip_embeddings(self.iqa_clip, frames)
        logits = self.iqa_clip.logit_scale.exp().float().cpu() * embeddings @ self.iqa_text.cpu().T
        return logits.softmax(dim=-1)[:, 0].numpy().astype(np.float64)

    def _musiq_scores(self, frames: np.ndarray) -> np.ndarray:
        scores = []
        for batch in self._batches(frames):
            images = _to_nchw(batch)
            height, width = images.shape[-2:]
            if max(height, width) > 512:  # VBench's "longer" preprocessing
                scale = 512.0 / max(height, width)
                images = (
                    nn.functional.interpolate(
                        images, size=(int(scale * height), int(scale * width)), mode="bilinear", antialias=False
                    )
                    .clamp(0, 255)
                    .round()
                )
            score = self.musiq((images / 255.0).to(self.device, self.dtype))
            scores.append(torch.as_tensor(score).float().reshape(len(batch), -1)[:, 0].cpu())
        return (torch.cat(scores).numpy() / 100.0).astype(np.float64)

    # ----------------------------------------------------------------------------------------------- reports
    def methods(self) -> dict[str, str]:
        flow = self.flow.describe()
        ids = self.model_ids
        imaging = (
            f"MUSIQ module {ids['imaging_model']} / 100 (VBench's 'longer' preprocessing)"
            if self.musiq is not None
            else f"stand-in: CLIP-IQA with {ids['iqa_clip_model']}, P('Good photo.' vs 'Bad photo.') (not MUSIQ)"
        )
        return {
            "subject_consistency": f"VBench: DINO CLS features of {ids['subject_model']}, cosine",
            "background_consistency": f"VBench: CLIP image embeddings of {ids['background_model']}, cosine",
            "motion_smoothness": f"VBench's formula; odd frames interpolated by warping along {flow} (not AMT)",
            "dynamic_degree": f"VBench's rule on {flow} (not RAFT)",
            "aesthetic_quality": f"VBench: LAION head {ids['aesthetic_head']} on {ids['aesthetic_clip_model']} / 10",
            "imaging_quality": imaging,
        }

    def proxy_dimensions(self) -> list[str]:
        proxies = ["motion_smoothness", "dynamic_degree"]
        if self.musiq is None:
            proxies.append("imaging_quality")
        return [d for d in self.dimensions if d in proxies]

    def config(self) -> dict[str, Any]:
        models = {k: (str(v) if v is not None else None) for k, v in self.model_ids.items()}
        return {
            **super().config(),
            **models,
            "device": str(self.device),
            "torch_dtype": str(self.dtype).replace("torch.", ""),
            "batch_size": self.batch_size,
        }
