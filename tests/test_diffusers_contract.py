"""The diffusers internals this package relies on, checked by name and signature.

Public diffusers API is covered by the behaviour tests; these names are private or undocumented (a leading
underscore, a module-level helper of a pipeline file, an attribute of a model), so diffusers may rename them in a
minor release. If one of these tests fails after a diffusers upgrade, the message names what moved: adapt the
caller listed in the test, then raise the floor in `pyproject.toml` and `docs/versions.md`.
"""

import inspect

import pytest
import torch


def parameters(fn):
    return list(inspect.signature(fn).parameters)


def test_qkv_projection_helper_of_the_wan_attention():
    # used by attention/processor.py (CrossClipAttnProcessor) to project like the stock processor does
    from diffusers.models.transformers.transformer_wan import _get_qkv_projections

    assert parameters(_get_qkv_projections)[:3] == ["attn", "hidden_states", "encoder_hidden_states"]


def test_wan_prompt_cleaning():
    # used by the pipeline and training/latent_cache.py to clean prompts exactly as WanPipeline does
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    assert prompt_clean("  a   red &amp; blue  ball ") == "a red & blue ball"


def test_module_execution_device():
    # used by the pipeline, extension.py and decomposition.py (absent from diffusers 0.35-0.40)
    from diffusers.utils.torch_utils import get_module_execution_device

    assert get_module_execution_device(torch.nn.Linear(2, 2)) == torch.device("cpu")


def test_vae_building_blocks_of_the_toy_vae():
    # used by toy/vae.py
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample, unpatchify

    assert issubclass(WanCausalConv3d, torch.nn.Conv3d)
    assert "mode" in parameters(WanResample.__init__) and callable(unpatchify)


def test_attention_dispatch_signature():
    # used by attention/processor.py for the history-extended attention
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    names = parameters(dispatch_attention_fn)
    for name in ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "backend"):
        assert name in names, (name, names)


def test_transformer_attributes_the_kv_path_uses():
    # attention/rope.py swaps `transformer.rope` and reads its attention_head_dim / patch_size / max_seq_len;
    # attention/processor.py reads attn.heads / norm_q / norm_k / to_out and swaps processors; the pipeline enters
    # `transformer.cache_context(name)`.
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor, WanRotaryPosEmbed

    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=8,
        freq_dim=8,
        ffn_dim=16,
        num_layers=1,
        rope_max_seq_len=32,
    )
    assert isinstance(model.rope, WanRotaryPosEmbed)
    for name in ("attention_head_dim", "patch_size", "max_seq_len"):
        assert hasattr(model.rope, name), name
    attn = model.blocks[0].attn1
    for name in ("heads", "norm_q", "norm_k", "to_out", "processor", "set_processor"):
        assert hasattr(attn, name), name
    assert isinstance(attn.processor, WanAttnProcessor)
    with model.cache_context("cond"):
        pass


def test_wan_pipeline_methods_the_pipeline_borrows():
    # pipelines/longvideo: LongVideoExtensionPipeline takes these from WanPipeline instead of copying them
    from diffusers import WanPipeline

    assert parameters(WanPipeline._get_t5_prompt_embeds)[:3] == ["self", "prompt", "num_videos_per_prompt"]
    for name in ("prompt", "negative_prompt", "do_classifier_free_guidance", "prompt_embeds", "max_sequence_length"):
        assert name in parameters(WanPipeline.encode_prompt), name
    for name in ("batch_size", "num_channels_latents", "height", "width", "num_frames", "generator", "latents"):
        assert name in parameters(WanPipeline.prepare_latents), name


@pytest.mark.parametrize("name", ["WanPipeline", "WanLoraLoaderMixin"])
def test_public_bases(name):
    import diffusers
    import diffusers.loaders

    assert hasattr(diffusers, name) or hasattr(diffusers.loaders, name)
