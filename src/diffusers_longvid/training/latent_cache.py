"""Encode a dataset's clips (VAE) and captions (text encoder) once, into safetensors shards, and read them back.

Layout of a cache folder:

```
index.json                 # format, metadata (what was encoded, and with what), every item, every skipped item
empty_prompt.safetensors   # the embedding of "" (caption dropout / unconditional branch)
shard-00000.safetensors    # `shard_size` consecutive items: latents and their captions' embeddings
shard-00001.safetensors
...
```

Latents are normalised as the Wan pipelines do (`normalize_latents`), from the posterior mode by default.
Caption embeddings follow `WanPipeline.encode_prompt` exactly (same cleaning, tokenisation, `last_hidden_state`),
stored without their padding; the cached datasets pad them with zeros to `max_sequence_length`, so an item's
`prompt_embeds` equals what the pipeline computes. Each shard's header records the cache fingerprint and its items:
an interrupted run, started again with the same arguments, keeps the shards already written and encodes the rest.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging

from ..extension import denormalize_latents, normalize_latents  # noqa: F401  (`denormalize_latents`: re-export)
from .datasets import LongVideoDataset, ShortClipDataset, VideoDecodeError


logger = logging.get_logger(__name__)

CACHE_FORMAT = "diffusers-longvid-latent-cache"
CACHE_VERSION = 1
INDEX_FILE = "index.json"
EMPTY_PROMPT_FILE = "empty_prompt.safetensors"

_SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --------------------------------------------------------------------------------------------------------------------
# encoding, as the Wan pipelines do it


def load_encoders(model: str, revision: str | None = None, vae_dtype=None, text_encoder_dtype=None):
    """Load `(vae, text_encoder, tokenizer)` from the `vae/`, `text_encoder/` and `tokenizer/` of a pipeline."""
    import transformers
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(model, subfolder="vae", revision=revision, dtype=vae_dtype)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model, subfolder="tokenizer", revision=revision)
    config = transformers.AutoConfig.from_pretrained(model, subfolder="text_encoder", revision=revision)
    architecture = (getattr(config, "architectures", None) or ["UMT5EncoderModel"])[0]
    encoder_class = getattr(transformers, architecture, None)
    if encoder_class is None:
        raise ValueError(f"The text encoder of `{model}` is a {architecture!r}, which transformers does not provide.")
    text_encoder = encoder_class.from_pretrained(
        model, subfolder="text_encoder", revision=revision, dtype=text_encoder_dtype
    )
    return vae.eval(), text_encoder.eval(), tokenizer


@torch.no_grad()
def encode_video_latents(
    vae, pixel_values: torch.Tensor, sample_mode: str = "argmax", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Encode pixel clips in `[-1, 1]` and normalise them (`normalize_latents`).

    Args:
        vae (`AutoencoderKLWan`): The video VAE; the input is moved to its device and dtype.
        pixel_values (`torch.Tensor`): `(C, F, H, W)` or `(B, C, F, H, W)`, `F = 4k + 1`.
        sample_mode (`str`, *optional*, defaults to `"argmax"`):
            `"argmax"` takes the posterior mode (as Wan I2V does for its condition), `"sample"` draws from it.
        generator (`torch.Generator`, *optional*): For `sample_mode="sample"`.

    Returns:
        `torch.Tensor`: normalised latents `(B, z_dim, 1 + (F - 1) // 4, H // 8, W // 8)` (no batch dimension if the
        input had none), in the VAE's dtype.
    """
    if sample_mode not in ("argmax", "sample"):
        raise ValueError(f"`sample_mode` must be 'argmax' or 'sample', got {sample_mode!r}.")
    unbatched = pixel_values.ndim == 4
    x = pixel_values.unsqueeze(0) if unbatched else pixel_values
    posterior = vae.encode(x.to(device=vae.device, dtype=vae.dtype)).latent_dist
    latents = posterior.mode() if sample_mode == "argmax" else posterior.sample(generator=generator)
    latents = normalize_latents(vae, latents)
    return latents[0] if unbatched else latents


@torch.no_grad()
def encode_prompts(
    tokenizer, text_encoder, prompts: str | list[str], max_sequence_length: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Caption embeddings exactly as `WanPipeline.encode_prompt` computes them.

    Args:
        tokenizer: The pipeline's tokenizer.
        text_encoder: The pipeline's text encoder (`UMT5EncoderModel` for Wan2.1).
        prompts (`str` or `list[str]`): Captions.
        max_sequence_length (`int`, *optional*, defaults to 512): Token budget (`WanPipeline.__call__`'s default).

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `prompt_embeds` `(B, max_sequence_length, D)`, zero past each caption's
        tokens, in the text encoder's dtype, and `seq_lens` `(B,)`, the number of real tokens of each caption.
    """
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    inputs = tokenizer(
        [prompt_clean(prompt) for prompt in prompts],
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    mask = inputs.attention_mask
    seq_lens = mask.gt(0).sum(dim=1).long()
    device = text_encoder.device
    hidden = text_encoder(inputs.input_ids.to(device), mask.to(device)).last_hidden_state
    embeds = torch.stack(
        [torch.cat([u[:n], u.new_zeros(max_sequence_length - n, u.size(1))]) for u, n in zip(hidden, seq_lens)]
    )
    return embeds, seq_lens


def config_hash(config: Any) -> str:
    """SHA-256 (hex) of a model config, without its private `_` keys (paths, library versions)."""
    ignored = ("transformers_version", "diffusers_version")
    items = {key: value for key, value in dict(config).items() if not key.startswith("_") and key not in ignored}
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# writing


@dataclass
class LatentCacheSummary:
    """What `cache_latents` did.

    Args:
        output_dir (`str`): The cache folder.
        num_items (`int`): Items in the cache.
        num_skipped (`int`): Items whose video could not be decoded (listed in `index.json` under `skipped`).
        num_shards (`int`): Shard files in the cache.
        num_reused_shards (`int`): Shards found complete from an earlier run and kept.
    """

    output_dir: str
    num_items: int
    num_skipped: int
    num_shards: int
    num_reused_shards: int


class _DecodeSource(torch.utils.data.Dataset):
    """Decodes dataset items in `DataLoader` workers; an unreadable item comes back as `(index, None, reason)`."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        try:
            return index, self.dataset.load_item(index), None
        except VideoDecodeError as err:
            return index, None, str(err)


def _dataset_metadata(dataset) -> dict[str, Any]:
    common = {"height": dataset.height, "width": dataset.width, "fps": dataset.fps}
    common["temporal_compression"] = dataset.temporal_compression
    if isinstance(dataset, ShortClipDataset):
        if dataset.clip_sampling != "clip":
            raise ValueError(
                "Random windows (`clip_sampling='random'`) change every epoch and cannot be cached; cache with "
                "`clip_sampling='clip'`."
            )
        return {
            "kind": "short",
            "num_frames": dataset.num_frames,
            "max_duration": dataset.max_duration,
            "min_duration": dataset.min_duration,
            **common,
        }
    if isinstance(dataset, LongVideoDataset):
        return {
            "kind": "long",
            "num_frames": dataset.num_frames,
            "overlap_frames": dataset.overlap_frames,
            "max_clips": dataset.max_clips,
            "min_clips": dataset.min_clips,
            "sliding": dataset.sliding,
            **common,
        }
    raise TypeError(f"`dataset` must be a `ShortClipDataset` or a `LongVideoDataset`, got {type(dataset).__name__}.")


def _identity(item):
    return item


def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.safetensors"


def _read_shard_header(path: Path) -> dict[str, str] | None:
    """The header metadata of a safetensors file; `None` if it is missing or unreadable (a partial write)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as err:  # a partial or foreign file: it will be rewritten
        logger.warning(f"Cannot read {path} ({err}); it will be encoded again.")
        return None


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    temporary = path.with_name(path.name + ".tmp")
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def cache_latents(
    dataset: ShortClipDataset | LongVideoDataset,
    output_dir: str | os.PathLike,
    vae,
    text_encoder,
    tokenizer,
    model_id: str | None = None,
    max_sequence_length: int = 512,
    shard_size: int = 64,
    save_dtype: str | torch.dtype = "float32",
    sample_mode: str = "argmax",
    seed: int = 0,
    num_workers: int = 0,
    overwrite: bool = False,
    show_progress: bool = True,
) -> LatentCacheSummary:
    """Encode every item of a pixel dataset once and write the results to safetensors shards.

    Items are decoded in `num_workers` `DataLoader` workers and encoded one clip at a time on the models' devices
    (move them there first). An item whose video cannot be decoded is skipped, logged and listed under `skipped`
    in `index.json`. Started again on the same folder with the same arguments, it keeps every complete shard and
    encodes only the missing ones; with other arguments (data, model, sizes) it refuses unless `overwrite=True`.

    Args:
        dataset (`ShortClipDataset` or `LongVideoDataset`):
            What to encode. A `ShortClipDataset` must use `clip_sampling="clip"` (random windows cannot be cached).
        output_dir (`str` or `os.PathLike`): The cache folder (created if needed).
        vae (`AutoencoderKLWan`): The pipeline's VAE.
        text_encoder: The pipeline's text encoder.
        tokenizer: The pipeline's tokenizer.
        model_id (`str`, *optional*): The pipeline folder or Hub id, recorded in the metadata.
        max_sequence_length (`int`, *optional*, defaults to 512): Token budget of the captions.
        shard_size (`int`, *optional*, defaults to 64): Items per shard.
        save_dtype (`str` or `torch.dtype`, *optional*, defaults to `"float32"`):
            Storage dtype of latents and embeddings: `"float32"`, `"bfloat16"` (half the disk) or `"float16"`.
        sample_mode (`str`, *optional*, defaults to `"argmax"`): `"argmax"` (posterior mode) or `"sample"`.
        seed (`int`, *optional*, defaults to 0): With `sample_mode="sample"`, item `i` draws with seed `seed + i`.
        num_workers (`int`, *optional*, defaults to 0): `DataLoader` workers decoding videos.
        overwrite (`bool`, *optional*, defaults to `False`): Delete a cache of other arguments found in `output_dir`.
        show_progress (`bool`, *optional*, defaults to `True`): Show a progress bar.
    """
    from tqdm.auto import tqdm

    if isinstance(save_dtype, str):
        if save_dtype not in _SAVE_DTYPES:
            raise ValueError(f"`save_dtype` must be one of {sorted(_SAVE_DTYPES)}, got {save_dtype!r}.")
        save_dtype = _SAVE_DTYPES[save_dtype]
    elif save_dtype not in _SAVE_DTYPES.values():
        raise ValueError(f"`save_dtype` must be one of {sorted(_SAVE_DTYPES)}, got {save_dtype}.")
    if shard_size < 1:
        raise ValueError(f"`shard_size` must be >= 1, got {shard_size}.")
    if max_sequence_length < 1:
        raise ValueError(f"`max_sequence_length` must be >= 1, got {max_sequence_length}.")
    if sample_mode not in ("argmax", "sample"):
        raise ValueError(f"`sample_mode` must be 'argmax' or 'sample', got {sample_mode!r}.")
    metadata = _dataset_metadata(dataset)
    spatial = vae.config.scale_factor_spatial
    if dataset.height % spatial or dataset.width % spatial:
        raise ValueError(
            f"The dataset's size {dataset.height}x{dataset.width} must be a multiple of the VAE's spatial factor "
            f"({spatial})."
        )
    if dataset.temporal_compression != vae.config.scale_factor_temporal:
        raise ValueError(
            f"The dataset's `temporal_compression` ({dataset.temporal_compression}) differs from the VAE's "
            f"`scale_factor_temporal` ({vae.config.scale_factor_temporal})."
        )

    descriptions = [dataset.describe(index) for index in range(len(dataset))]
    metadata.update(
        model=model_id or vae.config.get("_name_or_path") or None,
        vae_class=type(vae).__name__,
        vae_config_hash=config_hash(vae.config),
        text_encoder_class=type(text_encoder).__name__,
        text_encoder_config_hash=config_hash(text_encoder.config.to_dict()),
        tokenizer_class=type(tokenizer).__name__,
        max_sequence_length=max_sequence_length,
        latent_channels=vae.config.z_dim,
        vae_scale_factor_spatial=spatial,
        vae_scale_factor_temporal=vae.config.scale_factor_temporal,
        save_dtype=str(save_dtype).removeprefix("torch."),
        sample_mode=sample_mode,
        seed=seed if sample_mode == "sample" else None,
        shard_size=shard_size,
        num_dataset_items=len(dataset),
        items_sha256=hashlib.sha256(json.dumps(descriptions, sort_keys=True).encode()).hexdigest(),
        manifest=dataset.manifest_path,
    )
    fingerprint = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()
    metadata["fingerprint"] = fingerprint

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_cache(output_dir, fingerprint, overwrite)
    num_shards = max(1, -(-len(dataset) // shard_size))

    empty_prompt = output_dir / EMPTY_PROMPT_FILE
    if (_read_shard_header(empty_prompt) or {}).get("fingerprint") != fingerprint:
        embeds, seq_lens = encode_prompts(tokenizer, text_encoder, [""], max_sequence_length)
        _atomic_save(
            {"prompt_embeds": embeds[0, : seq_lens[0]].to("cpu", save_dtype)},
            empty_prompt,
            {"fingerprint": fingerprint},
        )

    # shards of this fingerprint found on disk are complete (they are written atomically)
    headers: dict[int, dict[str, str]] = {}
    for shard in range(num_shards):
        header = _read_shard_header(output_dir / _shard_name(shard))
        if header is not None and header.get("fingerprint") == fingerprint:
            headers[shard] = header
    reused = len(headers)
    todo = [index for index in range(len(dataset)) if index // shard_size not in headers]
    if reused:
        logger.info(f"Keeping {reused} complete shards from an earlier run; encoding {len(todo)} items.")

    loader = torch.utils.data.DataLoader(
        _DecodeSource(dataset, todo), batch_size=None, num_workers=num_workers, collate_fn=_identity
    )
    builder = _ShardBuilder(vae, text_encoder, tokenizer, max_sequence_length, save_dtype, sample_mode, seed)
    with tqdm(
        total=len(dataset), initial=len(dataset) - len(todo), desc="Caching latents", disable=not show_progress
    ) as progress:
        for index, item, reason in loader:
            if item is None:
                logger.warning(f"Skipping item {index}: {reason}")
                builder.skip(index, descriptions[index]["video_path"], reason)
            else:
                builder.add(index, item)
            progress.update(1)
            shard = index // shard_size
            if index == min(len(dataset), (shard + 1) * shard_size) - 1:  # the last item of its shard
                headers[shard] = builder.write(output_dir / _shard_name(shard), shard, fingerprint)

    items = [item for shard in range(num_shards) for item in json.loads(headers[shard]["items"])]
    skipped = [item for shard in range(num_shards) for item in json.loads(headers[shard]["skipped"])]
    index_data = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "metadata": metadata,
        "shards": [_shard_name(shard) for shard in range(num_shards)],
        "items": items,
        "skipped": skipped,
    }
    temporary = output_dir / (INDEX_FILE + ".tmp")
    temporary.write_text(json.dumps(index_data, indent=1))
    os.replace(temporary, output_dir / INDEX_FILE)
    if skipped:
        logger.warning(f"{len(skipped)} of {len(dataset)} items could not be decoded and are not in the cache.")
    return LatentCacheSummary(str(output_dir), len(items), len(skipped), num_shards, reused)


def _clear_stale_cache(output_dir: Path, fingerprint: str, overwrite: bool) -> None:
    """Refuse (or, with `overwrite`, delete) a cache of another fingerprint in `output_dir`."""
    index_path = output_dir / INDEX_FILE
    shards = sorted(output_dir.glob("shard-*.safetensors"))
    fingerprints = {(_read_shard_header(path) or {}).get("fingerprint") for path in shards}
    if index_path.is_file():
        fingerprints.add(json.loads(index_path.read_text()).get("metadata", {}).get("fingerprint"))
    fingerprints.discard(None)  # unreadable partial files are simply rewritten
    if not fingerprints - {fingerprint}:
        return
    if not overwrite:
        raise ValueError(
            f"`output_dir` {output_dir} holds a latent cache made with other data or settings. Use another "
            "folder, or `overwrite=True` (`--overwrite`) to replace it."
        )
    logger.info(f"Deleting the old latent cache in {output_dir}.")
    for path in shards + [index_path, output_dir / EMPTY_PROMPT_FILE]:
        path.unlink(missing_ok=True)


class _ShardBuilder:
    """Encodes items into the tensors and records of the shard being built, and writes it."""

    def __init__(self, vae, text_encoder, tokenizer, max_sequence_length, save_dtype, sample_mode, seed):
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.max_sequence_length, self.save_dtype = max_sequence_length, save_dtype
        self.sample_mode, self.seed = sample_mode, seed
        self._reset()

    def _reset(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.items: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.caption_ids: dict[str, int] = {}  # each caption is stored once per shard

    def skip(self, index: int, video_path: str, reason: str) -> None:
        self.skipped.append({"index": index, "video_path": video_path, "reason": reason})

    def add(self, index: int, item: dict[str, Any]) -> None:
        key = f"{index:08d}"
        pixel_values = item["pixel_values"]
        clips = [pixel_values] if pixel_values.ndim == 4 else list(pixel_values)
        generator = None
        if self.sample_mode == "sample":
            generator = torch.Generator(self.vae.device).manual_seed(self.seed + index)
        # each clip is encoded on its own by the causal VAE (clips are a batch, never one long video), as the
        # pipeline encodes clips
        if self.sample_mode == "sample":
            latents = torch.stack(
                [encode_video_latents(self.vae, clip, self.sample_mode, generator) for clip in clips]
            )
        else:
            latents = encode_video_latents(self.vae, torch.stack(clips), self.sample_mode, generator)
        self.tensors[f"{key}.latents"] = (latents[0] if pixel_values.ndim == 4 else latents).to("cpu", self.save_dtype)

        captions = [item["caption"]] if "caption" in item else list(item["captions"])
        for caption in captions:
            if caption not in self.caption_ids:
                # one caption at a time, so the embedding equals `WanPipeline.encode_prompt(caption)` bit for bit
                embeds, seq_lens = encode_prompts(
                    self.tokenizer, self.text_encoder, [caption], self.max_sequence_length
                )
                self.caption_ids[caption] = len(self.caption_ids)
                self.tensors[f"prompt.{self.caption_ids[caption]}"] = embeds[0, : seq_lens[0]].to(
                    "cpu", self.save_dtype
                )
        record = {name: value for name, value in item.items() if name != "pixel_values"}
        record.update(
            index=index,
            key=key,
            latent_shape=list(self.tensors[f"{key}.latents"].shape),
            caption_ids=[self.caption_ids[caption] for caption in captions],
        )
        self.items.append(record)

    def write(self, path: Path, shard: int, fingerprint: str) -> dict[str, str]:
        for record in self.items:
            record["shard"] = shard
        header = {"fingerprint": fingerprint, "items": json.dumps(self.items), "skipped": json.dumps(self.skipped)}
        _atomic_save(self.tensors, path, header)
        self._reset()
        return header


# --------------------------------------------------------------------------------------------------------------------
# reading


def load_cache_index(cache_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check a cache's `index.json` (raises `ValueError` if the folder is not a complete latent cache)."""
    path = Path(cache_dir) / INDEX_FILE
    if not path.is_file():
        raise ValueError(
            f"`cache_dir` {cache_dir} has no {INDEX_FILE}: it is not a latent cache, or `longvid cache-latents` did "
            "not finish (run it again with the same arguments to complete it)."
        )
    index = json.loads(path.read_text())
    if index.get("format") != CACHE_FORMAT or index.get("version") != CACHE_VERSION:
        raise ValueError(
            f"{path} is not a version-{CACHE_VERSION} {CACHE_FORMAT} index (found format={index.get('format')!r}, "
            f"version={index.get('version')!r})."
        )
    return index


class _CachedDataset(torch.utils.data.Dataset):
    kind: str = ""

    def __init__(self, cache_dir: str | os.PathLike):
        self.cache_dir = Path(cache_dir)
        index = load_cache_index(cache_dir)
        self.metadata: dict[str, Any] = index["metadata"]
        if self.metadata.get("kind") != self.kind:
            other = {"short": "CachedShortClipDataset", "long": "CachedLongVideoDataset"}.get(
                self.metadata.get("kind")
            )
            raise ValueError(
                f"{cache_dir} caches {self.metadata.get('kind')!r} items; {type(self).__name__} reads {self.kind!r} "
                f"caches" + (f" (use `{other}`)." if other else ".")
            )
        self.items: list[dict[str, Any]] = index["items"]
        self.skipped: list[dict[str, Any]] = index["skipped"]
        self.shards: list[str] = index["shards"]
        self.max_sequence_length: int = self.metadata["max_sequence_length"]
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:
        # open safetensors handles cannot be pickled into DataLoader workers; each process opens its own
        return {**self.__dict__, "_handles": {}}

    def _shard(self, shard: int):
        from safetensors import safe_open

        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.cache_dir / self.shards[shard]), framework="pt")
        return self._handles[shard]

    def _pad(self, embeds: torch.Tensor) -> torch.Tensor:
        return torch.cat([embeds, embeds.new_zeros(self.max_sequence_length - embeds.shape[0], embeds.shape[1])])

    @property
    def empty_prompt_embeds(self) -> torch.Tensor:
        """The embedding of the empty caption `""`, padded to `(max_sequence_length, D)`, for caption dropout."""
        from safetensors.torch import load_file

        return self._pad(load_file(str(self.cache_dir / EMPTY_PROMPT_FILE))["prompt_embeds"])

    def _load(self, index: int) -> tuple[dict[str, Any], torch.Tensor, list[torch.Tensor]]:
        if index < 0:
            index += len(self)
        record = self.items[index]
        handle = self._shard(record["shard"])
        latents = handle.get_tensor(f"{record['key']}.latents")
        prompts = [handle.get_tensor(f"prompt.{cid}") for cid in record["caption_ids"]]
        item = {
            key: value for key, value in record.items() if key not in ("shard", "key", "caption_ids", "latent_shape")
        }
        return item, latents, prompts


class CachedShortClipDataset(_CachedDataset):
    r"""Reads a cache of a `ShortClipDataset` written by `cache_latents` / `longvid cache-latents`.

    Items hold what the pixel dataset's items hold, with `latents` (normalised, `(z_dim, f, h, w)`) instead of
    `pixel_values`, plus `prompt_embeds` (`(max_sequence_length, D)`, zero-padded as `WanPipeline.encode_prompt`) and
    `prompt_seq_len` (number of real tokens). `index` is the item's index in the pixel dataset.

    Args:
        cache_dir (`str` or `os.PathLike`): The cache folder.
    """

    kind = "short"

    def __getitem__(self, index: int) -> dict[str, Any]:
        item, latents, prompts = self._load(index)
        item.update(latents=latents, prompt_embeds=self._pad(prompts[0]), prompt_seq_len=prompts[0].shape[0])
        return item


class CachedLongVideoDataset(_CachedDataset):
    r"""Reads a cache of a `LongVideoDataset` written by `cache_latents` / `longvid cache-latents`.

    Items hold what the pixel dataset's items hold, with `latents` (`(N, z_dim, f, h, w)`, each clip encoded on its
    own, as the pipeline encodes clips) instead of `pixel_values`, plus `prompt_embeds` (`(N, max_sequence_length,
    D)`, zero-padded) and `prompt_seq_lens` (`N` token counts).

    Args:
        cache_dir (`str` or `os.PathLike`): The cache folder.
        num_clips (`int`, *optional*):
            Cut every cached item into items of exactly `num_clips` consecutive clips, as `LongVideoDataset` does with
            `max_clips = min_clips = num_clips` (pieces start at clips 0, `num_clips`, ...; a shorter last piece is
            dropped). `first_clip_index`, `clip_starts`, `clip_times` and `start` follow. Only the piece's latents are
            read from disk. `index` stays the cached item's index in the pixel dataset.
        min_clips (`int`, *optional*):
            Sliding pieces instead: one piece ends at every clip from the `min_clips`-th on, holding the up to
            `num_clips` clips that end there (pieces overlap). A stage-2 example's target is its piece's last clip,
            so every clip of a video from there on is a target once: continuations, exits and comebacks alike.
            Needs `num_clips`; `1 <= min_clips <= num_clips`.
    """

    kind = "long"

    def __init__(self, cache_dir: str | os.PathLike, num_clips: int | None = None, min_clips: int | None = None):
        super().__init__(cache_dir)
        if num_clips is not None and num_clips < 1:
            raise ValueError(f"`num_clips` must be >= 1, got {num_clips}.")
        if min_clips is not None and (num_clips is None or not 1 <= min_clips <= num_clips):
            raise ValueError(
                f"`min_clips` (sliding pieces) needs `num_clips` and 1 <= `min_clips` <= `num_clips`, got "
                f"min_clips={min_clips} and num_clips={num_clips}."
            )
        self.num_clips, self.min_clips = num_clips, min_clips
        # (cached item, first clip, number of clips)
        self.pieces: list[tuple[int, int, int]] = []
        for position, record in enumerate(self.items):
            total = record["num_clips"]
            if num_clips is None:
                self.pieces.append((position, 0, total))
            elif min_clips is not None:
                for last in range(min_clips - 1, total):
                    first = max(0, last - num_clips + 1)
                    self.pieces.append((position, first, last - first + 1))
            else:
                self.pieces.extend(
                    (position, first, num_clips) for first in range(0, total - num_clips + 1, num_clips)
                )
        if not self.pieces:
            fewest = num_clips if min_clips is None else min_clips
            raise ValueError(f"No cached long video in {cache_dir} holds {fewest} clips (`num_clips` = {num_clips}).")

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, index: int) -> dict[str, Any]:
        position, first, count = self.pieces[index]
        record = self.items[position]
        handle = self._shard(record["shard"])
        latents = handle.get_slice(f"{record['key']}.latents")[first : first + count]
        caption_ids = record["caption_ids"][first : first + count]
        prompts = {cid: handle.get_tensor(f"prompt.{cid}") for cid in dict.fromkeys(caption_ids)}
        item = {
            key: value for key, value in record.items() if key not in ("shard", "key", "caption_ids", "latent_shape")
        }
        if (first, count) != (0, record["num_clips"]):
            stride = record["num_frames"] - record["overlap_frames"]
            for key in ("captions", "caption_indices", "clip_times"):
                item[key] = item[key][first : first + count]
            item.update(
                first_clip_index=record["first_clip_index"] + first,
                clip_starts=[n * stride for n in range(count)],
                start=item["clip_times"][0],
                num_clips=count,
            )
        item.update(
            latents=latents,
            prompt_embeds=torch.stack([self._pad(prompts[cid]) for cid in caption_ids]),
            prompt_seq_lens=[prompts[cid].shape[0] for cid in caption_ids],
        )
        return item


class CachedLongVideoClipDataset(torch.utils.data.Dataset):
    r"""Every clip of a long-video cache as one stage-1 item: a `CachedShortClipDataset` view of a `"long"` cache.

    A clip of a long-video item is the window the extension model fills in at inference: its first
    `overlap_frames` frames are the previous clip's last ones. Stage 1 can therefore train on the same cache as stage
    2, without encoding the clips twice. Items hold `latents` (`(z_dim, f, h, w)`), `prompt_embeds`
    (`(max_sequence_length, D)`), `prompt_seq_len`, `caption`, `num_frames`, `fps`, `video_path`, `index` (the
    cached item) and `clip_index` (the clip within it).

    Args:
        cache_dir (`str` or `os.PathLike`): A cache written with `--kind long`.
    """

    def __init__(self, cache_dir: str | os.PathLike):
        self.clips = CachedLongVideoDataset(cache_dir, num_clips=1)
        self.metadata = self.clips.metadata
        self.max_sequence_length = self.clips.max_sequence_length

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def empty_prompt_embeds(self) -> torch.Tensor:
        """The embedding of the empty caption, padded to `(max_sequence_length, D)`."""
        return self.clips.empty_prompt_embeds

    def __getitem__(self, index: int) -> dict[str, Any]:
        _, first, _ = self.clips.pieces[index]
        item = self.clips[index]
        return {
            "latents": item["latents"][0],
            "prompt_embeds": item["prompt_embeds"][0],
            "prompt_seq_len": item["prompt_seq_lens"][0],
            "caption": item["captions"][0],
            "num_frames": item["num_frames"],
            "fps": item["fps"],
            "video_path": item["video_path"],
            "index": item["index"],
            "clip_index": first,
            "num_skipped": 0,
        }


# what must agree between latent caches read as one dataset (`ConcatCachedDataset`)
_CONCAT_KEYS = (
    "kind",
    "height",
    "width",
    "fps",
    "num_frames",
    "overlap_frames",
    "max_sequence_length",
    "latent_channels",
    "vae_class",
    "vae_config_hash",
    "text_encoder_class",
    "text_encoder_config_hash",
)


class ConcatCachedDataset(torch.utils.data.Dataset):
    r"""Several cached datasets of one kind read as one (e.g. two worlds of training videos, cached separately).

    The caches must agree on everything an example's tensors depend on: kind, frame size, fps, frames per clip,
    overlap, text budget, latent channels and the VAE / text encoder (by class and config hash); the first one's
    `metadata` and `empty_prompt_embeds` stand for all. Item `i` is item `i - offset` of the dataset it falls in;
    `source` in each item names the cache folder it came from.

    Args:
        datasets (`Sequence[Dataset]`): Cached datasets (`CachedLongVideoDataset`, `CachedLongVideoClipDataset` or
            `CachedShortClipDataset`), at least one, each with a `metadata` dict and a `cache_dir`.

    Raises:
        `ValueError`: no dataset, or two caches that differ in one of the keys above (named in the message).
    """

    def __init__(self, datasets: Sequence[torch.utils.data.Dataset]):
        datasets = list(datasets)
        if not datasets:
            raise ValueError("`datasets` must hold at least one cached dataset.")
        first = datasets[0].metadata
        for dataset in datasets[1:]:
            for key in _CONCAT_KEYS:
                if dataset.metadata.get(key) != first.get(key):
                    raise ValueError(
                        f"Latent caches {_cache_dir(datasets[0])} and {_cache_dir(dataset)} differ in `{key}` "
                        f"({first.get(key)!r} vs {dataset.metadata.get(key)!r}); only caches written with the same "
                        "sizes, VAE and text encoder can be read as one dataset."
                    )
        self.datasets = datasets
        self.metadata: dict[str, Any] = first
        self.max_sequence_length: int = first["max_sequence_length"]
        self.offsets = [0]
        for dataset in datasets:
            self.offsets.append(self.offsets[-1] + len(dataset))

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def empty_prompt_embeds(self) -> torch.Tensor:
        """The first cache's embedding of the empty caption (equal in all: same text encoder)."""
        return self.datasets[0].empty_prompt_embeds

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range for {len(self)} items.")
        part = bisect.bisect_right(self.offsets, index) - 1
        item = self.datasets[part][index - self.offsets[part]]
        item["source"] = str(_cache_dir(self.datasets[part]))
        return item


def _cache_dir(dataset: Any) -> Path:
    return Path(getattr(dataset, "cache_dir", None) or dataset.clips.cache_dir)
