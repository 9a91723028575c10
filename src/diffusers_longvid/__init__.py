"""diffusers-longvid: error-free, minute-to-infinite-length single-shot video generation for diffusers.

The top level exports the product API only: the pipeline, the T-RFlow scheduler, the cross-clip KV cache, clip memory
and selectors, the extension helpers, video I/O, K/V LoRA and the validation errors. Tooling is imported from its
subpackage: `diffusers_longvid.training`, `.evaluation`, `.toy`, `.benchmarks`, `.hub`, `.app`, `.testing`.
Names are imported lazily, so `import diffusers_longvid` stays cheap and has no side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import attach_lazy


__version__ = "0.1.0.dev0"

# public name -> product module (relative to this package) that defines it
_LAZY_IMPORTS: dict[str, str] = {
    # pipelines
    "LongVideoExtensionPipeline": "pipelines.longvideo.pipeline_longvideo_extension",
    "LongVideoPipelineOutput": "pipelines.longvideo.pipeline_output",
    "LongVideoClip": "pipelines.longvideo.pipeline_output",
    "GenerationState": "pipelines.longvideo.state",
    "GenerationStateError": "pipelines.longvideo.state",
    # scheduler (T-RFlow) and its calibration
    "TRFlowScheduler": "schedulers.scheduling_trflow",
    "TRFlowStepEstimate": "schedulers.scheduling_trflow",
    "trflow_weights": "schedulers.scheduling_trflow",
    "TRFlowCalibrationResult": "schedulers.calibration",
    "calibrate_tau_low": "schedulers.calibration",
    "search_matching_value": "schedulers.calibration",
    # decomposition of the sampler into per-step estimates (paper Figure 2)
    "decode_estimates": "decomposition",
    "decode_latents": "decomposition",
    "decompose_trajectory": "decomposition",
    "ensemble_estimates": "decomposition",
    "save_decomposition_grid": "decomposition",
    "window_weights": "decomposition",
    # extension model
    "ExtensionCondition": "extension",
    "convert_t2v_to_extension": "extension",
    "denormalize_latents": "extension",
    "normalize_latents": "extension",
    "num_latent_frames": "extension",
    "prepare_extension_condition": "extension",
    # cross-clip KV cache: config, enable / disable, processor
    "CFGBranch": "attention.kv_cache",
    "CrossClipKVCache": "attention.kv_cache",
    "CrossClipKVCacheConfig": "attention.kv_cache",
    "RecordMode": "attention.kv_cache",
    "CrossClipKVAttnProcessor": "attention.processor",
    "disable_cross_clip_kv_cache": "attention.processor",
    "enable_cross_clip_kv_cache": "attention.processor",
    "get_cross_clip_kv_cache": "attention.processor",
    # RoPE offsets
    "OffsetWanRotaryPosEmbed": "attention.rope",
    "disable_rope_offset": "attention.rope",
    "enable_rope_offset": "attention.rope",
    "rope_frame_offset": "attention.rope",
    # K/V LoRA
    "add_kv_lora": "attention.lora",
    "kv_lora_config": "attention.lora",
    "kv_lora_target_modules": "attention.lora",
    # clip memory (KV cache + clip selection) and the selectors
    "ClipMemory": "memory",
    "ClipSelector": "selection.selectors",
    "PromptSimilaritySelector": "selection.selectors",
    "RecentSelector": "selection.selectors",
    "offline_minilm_path": "selection.selectors",
    "select_top_k": "selection.selectors",
    "selector_from_config": "selection.selectors",
    "ClipPlan": "selection.planner",
    "KVPlan": "selection.planner",
    "KVStoragePlanner": "selection.planner",
    # AF (average frequency) maths
    "average_frequency": "frequency",
    # video I/O
    "StreamingVideoWriter": "video_io",
    "VideoInfo": "video_io",
    "concat_videos": "video_io",
    "iter_video_frames": "video_io",
    "probe_video": "video_io",
    "read_video": "video_io",
    "to_uint8_frames": "video_io",
    "write_video": "video_io",
    # built-in presets
    "get_preset_path": "presets",
}

# formerly exported here, now imported from their tooling subpackage (a FutureWarning says where); not in `__all__`
_MOVED_TO_TOOLING: dict[str, str] = {
    "evaluate_video": "diffusers_longvid.evaluation",
    "EvalResult": "diffusers_longvid.evaluation",
    "EvalSuiteResult": "diffusers_longvid.evaluation",
    "write_eval_report": "diffusers_longvid.evaluation",
    "OfflineBackend": "diffusers_longvid.evaluation",
    "ReferenceBackend": "diffusers_longvid.evaluation",
    "MissingEvaluationWeightsError": "diffusers_longvid.evaluation",
    "load_manifest": "diffusers_longvid.training",
    "ShortClipDataset": "diffusers_longvid.training",
    "LongVideoDataset": "diffusers_longvid.training",
    "CachedShortClipDataset": "diffusers_longvid.training",
    "CachedLongVideoClipDataset": "diffusers_longvid.training",
    "CachedLongVideoDataset": "diffusers_longvid.training",
    "cache_latents": "diffusers_longvid.training",
    "ExtensionTrainConfig": "diffusers_longvid.training",
    "CausalLoRATrainConfig": "diffusers_longvid.training",
    "train_extension": "diffusers_longvid.training",
    "train_causal_lora": "diffusers_longvid.training",
    "render_script": "diffusers_longvid.toy",
    "render_script_clips": "diffusers_longvid.toy",
    "random_script": "diffusers_longvid.toy",
    "ToyVideo": "diffusers_longvid.toy",
    "train_toy_vae": "diffusers_longvid.toy.vae",
    "evaluate_toy_video": "diffusers_longvid.toy.evaluate",
    "ToyEvalResult": "diffusers_longvid.toy.evaluate",
    "write_toy_eval_report": "diffusers_longvid.toy.evaluate",
    "Variant": "diffusers_longvid.toy.compare",
    "run_variants": "diffusers_longvid.toy.compare",
    "write_comparison": "diffusers_longvid.toy.compare",
    "run_ablation": "diffusers_longvid.toy.ablate",
    "prepare_hub_folder": "diffusers_longvid.hub",
    "upload_hub_folder": "diffusers_longvid.hub",
    "render_model_card": "diffusers_longvid.hub",
}

__all__ = sorted(_LAZY_IMPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs: every name of `_LAZY_IMPORTS`
    from .attention.kv_cache import CFGBranch, CrossClipKVCache, CrossClipKVCacheConfig, RecordMode
    from .attention.lora import add_kv_lora, kv_lora_config, kv_lora_target_modules
    from .attention.processor import (
        CrossClipKVAttnProcessor,
        disable_cross_clip_kv_cache,
        enable_cross_clip_kv_cache,
        get_cross_clip_kv_cache,
    )
    from .attention.rope import (
        OffsetWanRotaryPosEmbed,
        disable_rope_offset,
        enable_rope_offset,
        rope_frame_offset,
    )
    from .decomposition import (
        decode_estimates,
        decode_latents,
        decompose_trajectory,
        ensemble_estimates,
        save_decomposition_grid,
        window_weights,
    )
    from .extension import (
        ExtensionCondition,
        convert_t2v_to_extension,
        denormalize_latents,
        normalize_latents,
        num_latent_frames,
        prepare_extension_condition,
    )
    from .frequency import average_frequency
    from .memory import ClipMemory
    from .pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from .pipelines.longvideo.pipeline_output import LongVideoClip, LongVideoPipelineOutput
    from .pipelines.longvideo.state import GenerationState, GenerationStateError
    from .presets import get_preset_path
    from .schedulers.calibration import TRFlowCalibrationResult, calibrate_tau_low, search_matching_value
    from .schedulers.scheduling_trflow import TRFlowScheduler, TRFlowStepEstimate, trflow_weights
    from .selection.planner import ClipPlan, KVPlan, KVStoragePlanner
    from .selection.selectors import (
        ClipSelector,
        PromptSimilaritySelector,
        RecentSelector,
        offline_minilm_path,
        select_top_k,
        selector_from_config,
    )
    from .video_io import (
        StreamingVideoWriter,
        VideoInfo,
        concat_videos,
        iter_video_frames,
        probe_video,
        read_video,
        to_uint8_frames,
        write_video,
    )


__getattr__, __dir__ = attach_lazy(__name__, _LAZY_IMPORTS, globals(), moved=_MOVED_TO_TOOLING)
