"""diffusers-longvid: error-free, minute-to-infinite-length single-shot video generation for diffusers.

Public classes are imported lazily so that ``import diffusers_longvid`` stays cheap and has no side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import attach_lazy

__version__ = "0.1.0.dev0"

# public name -> module (relative to this package) that defines it
_LAZY_IMPORTS: dict[str, str] = {
    # schedulers
    "TRFlowScheduler": "schedulers.scheduling_trflow",
    "trflow_weights": "schedulers.scheduling_trflow",
    "TRFlowStepEstimate": "schedulers.scheduling_trflow",
    "calibrate_tau_low": "schedulers.calibration",
    "TRFlowCalibrationResult": "schedulers.calibration",
    "search_matching_value": "schedulers.calibration",
    # decomposition of the sampler into per-step estimates (paper Figure 2)
    "decompose_trajectory": "decomposition",
    "decode_estimates": "decomposition",
    "decode_latents": "decomposition",
    "ensemble_estimates": "decomposition",
    "window_weights": "decomposition",
    "save_decomposition_grid": "decomposition",
    # pipelines
    "LongVideoExtensionPipeline": "pipelines.longvideo.pipeline_longvideo_extension",
    "LongVideoPipelineOutput": "pipelines.longvideo.pipeline_output",
    "LongVideoClip": "pipelines.longvideo.pipeline_output",
    "StreamingVideoWriter": "video_io",
    "GenerationState": "pipelines.longvideo.state",
    # extension model
    "convert_t2v_to_extension": "extension",
    "prepare_extension_condition": "extension",
    "ExtensionCondition": "extension",
    # attention / KV cache / RoPE
    "CrossClipKVCache": "attention.kv_cache",
    "CrossClipKVCacheConfig": "attention.kv_cache",
    "CrossClipKVAttnProcessor": "attention.processor",
    "enable_cross_clip_kv_cache": "attention.processor",
    "disable_cross_clip_kv_cache": "attention.processor",
    "get_cross_clip_kv_cache": "attention.processor",
    "CFGBranch": "attention.kv_cache",
    "RecordMode": "attention.kv_cache",
    "ClipMemory": "attention.memory",
    "add_kv_lora": "attention.lora",
    "kv_lora_config": "attention.lora",
    "kv_lora_target_modules": "attention.lora",
    "rope_frame_offset": "attention.rope",
    "OffsetWanRotaryPosEmbed": "attention.rope",
    "enable_rope_offset": "attention.rope",
    # selection
    "PromptSimilaritySelector": "selection.selectors",
    "RecentSelector": "selection.selectors",
    "KVStoragePlanner": "selection.planner",
    "KVPlan": "selection.planner",
    "ClipPlan": "selection.planner",
    "ClipSelector": "selection.selectors",
    "selector_from_config": "selection.selectors",
    "select_top_k": "selection.selectors",
    "offline_minilm_path": "selection.selectors",
    # evaluation
    "average_frequency": "frequency",
    "evaluate_video": "evaluation.evaluate",
    "EvalResult": "evaluation.evaluate",
    "EvalSuiteResult": "evaluation.evaluate",
    "write_eval_report": "evaluation.report",
    "OfflineBackend": "evaluation.offline",
    "ReferenceBackend": "evaluation.reference",
    "MissingEvaluationWeightsError": "evaluation.reference",
    # training data
    "load_manifest": "training.manifest",
    "ShortClipDataset": "training.datasets",
    "LongVideoDataset": "training.datasets",
    "CachedShortClipDataset": "training.latent_cache",
    "CachedLongVideoClipDataset": "training.latent_cache",
    "CachedLongVideoDataset": "training.latent_cache",
    "cache_latents": "training.latent_cache",
    # trainers
    "ExtensionTrainConfig": "training.config",
    "CausalLoRATrainConfig": "training.config",
    "train_extension": "training.stage1",
    "train_causal_lora": "training.stage2",
    # toy world
    "render_script": "toy",
    "render_script_clips": "toy",
    "random_script": "toy",
    "ToyVideo": "toy",
    "train_toy_vae": "toy.vae",
    "evaluate_toy_video": "toy.evaluate",
    "ToyEvalResult": "toy.evaluate",
    "write_toy_eval_report": "toy.evaluate",
    "Variant": "toy.compare",
    "run_variants": "toy.compare",
    "write_comparison": "toy.compare",
    "run_ablation": "toy.ablate",
    # Hub publishing
    "prepare_hub_folder": "hub",
    "upload_hub_folder": "hub",
    "render_model_card": "hub",
    # presets
    "get_preset_path": "presets",
}

__all__ = sorted(_LAZY_IMPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .schedulers.scheduling_trflow import TRFlowScheduler  # noqa: F401


__getattr__, __dir__ = attach_lazy(__name__, _LAZY_IMPORTS, globals())
