"""Training data and trainers for the two stages (extension fine-tune, causal-KV LoRA fine-tune).

Names are imported lazily, so `import diffusers_longvid.training` stays cheap.
"""

from __future__ import annotations

from .._lazy import attach_lazy


# public name -> module (relative to this package) that defines it
_LAZY_IMPORTS: dict[str, str] = {
    # manifest
    "ClipRecord": "manifest",
    "ManifestError": "manifest",
    "VideoInfo": "manifest",
    "VideoRecord": "manifest",
    "load_manifest": "manifest",
    "probe_video": "manifest",
    "write_manifest": "manifest",
    # pixel datasets
    "LongVideoDataset": "datasets",
    "ShortClipDataset": "datasets",
    "VideoDecodeError": "datasets",
    "collate_video_batch": "datasets",
    "is_valid_num_frames": "datasets",
    "largest_valid_num_frames": "datasets",
    "read_video_frames": "datasets",
    "resize_center_crop": "datasets",
    "source_frame_indices": "datasets",
    # latent cache
    "CachedLongVideoDataset": "latent_cache",
    "CachedShortClipDataset": "latent_cache",
    "CachedLongVideoClipDataset": "latent_cache",
    "ConcatCachedDataset": "latent_cache",
    "LatentCacheSummary": "latent_cache",
    "cache_latents": "latent_cache",
    "denormalize_latents": "latent_cache",
    "encode_prompts": "latent_cache",
    "encode_video_latents": "latent_cache",
    "load_cache_index": "latent_cache",
    "normalize_latents": "latent_cache",
    # trainers
    "run_training": "loop",
    "TrainingResult": "loop",
    "DeterministicBatchSampler": "loop",
    "step_generator": "loop",
    "TrainConfig": "config",
    "ExtensionTrainConfig": "config",
    "CausalLoRATrainConfig": "config",
    "ExtensionTrainingSpec": "stage1",
    "train_extension": "stage1",
    "CausalLoRATrainingSpec": "stage2",
    "train_causal_lora": "stage2",
}

__all__ = sorted(_LAZY_IMPORTS)


__getattr__, __dir__ = attach_lazy(__name__, _LAZY_IMPORTS, globals())
