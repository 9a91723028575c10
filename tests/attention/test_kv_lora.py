"""K/V LoRA on the cached blocks: targets, zero init, diffusers LoRA format round trip, adapters, fusing."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

from diffusers_longvid.attention import (
    ClipMemory,
    add_kv_lora,
    kv_lora_config,
    kv_lora_target_modules,
    rope_frame_offset,
)
from diffusers_longvid.selection import RecentSelector
from diffusers_longvid.testing import get_tiny_transformer


EXPECTED_TARGETS = [
    "blocks.2.attn1.to_k",
    "blocks.2.attn1.to_v",
    "blocks.3.attn1.to_k",
    "blocks.3.attn1.to_v",
]


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(1, 16, 3, 8, 8, generator=g),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=g),
    }


def light_pipeline(transformer) -> WanPipeline:
    # Only the transformer matters for LoRA loading; the other components can be absent.
    return WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        transformer=transformer,
    )


def randomize_lora(transformer, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=g))


@torch.no_grad()
def output_with_history(transformer) -> torch.Tensor:
    """Output of clip 1 attending the K/V of clip 0 (through `ClipMemory`)."""
    with ClipMemory(transformer, kv_cache_clips=1, clip_selector=RecentSelector()) as memory:
        memory.plan(["clip 0", "clip 1"])
        memory.begin_clip(0, "clip 0")
        with rope_frame_offset(transformer, 0), memory.recording():
            transformer(**make_inputs(1))
        memory.end_clip(0)
        assert memory.begin_clip(1, "clip 1") == [0]
        with rope_frame_offset(transformer, 3):
            out = transformer(**make_inputs(0)).sample
        memory.end_clip(1)
    return out


def test_targets_and_config():
    transformer = get_tiny_transformer(num_layers=4)
    assert kv_lora_target_modules(transformer) == EXPECTED_TARGETS
    assert kv_lora_target_modules(transformer, blocks=[0]) == ["blocks.0.attn1.to_k", "blocks.0.attn1.to_v"]
    config = kv_lora_config(transformer, rank=4)
    assert config.r == 4 and config.lora_alpha == 4 and sorted(config.target_modules) == EXPECTED_TARGETS
    with pytest.raises(ValueError, match="`rank`"):
        kv_lora_config(transformer, rank=0)
    transformer.fuse_qkv_projections()
    with pytest.raises(ValueError, match="fused QKV"):
        add_kv_lora(transformer, rank=4)


def test_zero_init_lora_only_on_expected_modules_and_unchanged_outputs():
    transformer = get_tiny_transformer(num_layers=4)
    base = output_with_history(transformer)
    add_kv_lora(transformer, rank=4)
    adapted = sorted(name for name, module in transformer.named_modules() if isinstance(module, LoraLayer))
    assert adapted == EXPECTED_TARGETS
    trainable = sorted({n.rsplit(".lora_", 1)[0] for n, p in transformer.named_parameters() if "lora_" in n})
    assert trainable == EXPECTED_TARGETS
    torch.testing.assert_close(output_with_history(transformer), base, rtol=0, atol=0)
    # A trained (non-zero) LoRA does act through the cache processor, which calls the peft-wrapped `to_k` / `to_v`.
    randomize_lora(transformer)
    assert not torch.allclose(output_with_history(transformer), base, atol=1e-3)


def test_save_load_set_adapters_and_fuse(tmp_path):
    transformer = get_tiny_transformer(num_layers=4)
    base = output_with_history(transformer)
    add_kv_lora(transformer, rank=4)
    randomize_lora(transformer)
    trained = output_with_history(transformer)
    WanPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(transformer))
    saved = load_file(tmp_path / "pytorch_lora_weights.safetensors")
    assert sorted({k.removeprefix("transformer.").rsplit(".lora_", 1)[0] for k in saved}) == EXPECTED_TARGETS

    pipe = light_pipeline(get_tiny_transformer(num_layers=4))
    pipe.load_lora_weights(tmp_path, adapter_name="kv")
    torch.testing.assert_close(output_with_history(pipe.transformer), trained, rtol=1e-6, atol=1e-6)
    pipe.set_adapters(["kv"], [0.0])
    torch.testing.assert_close(output_with_history(pipe.transformer), base, rtol=1e-6, atol=1e-6)
    pipe.set_adapters(["kv"], [1.0])
    pipe.fuse_lora()
    torch.testing.assert_close(output_with_history(pipe.transformer), trained, rtol=1e-5, atol=1e-5)
    # Fused LoRA plus fused QKV projections (fuse the LoRA first, then the projections).
    pipe.transformer.fuse_qkv_projections()
    torch.testing.assert_close(output_with_history(pipe.transformer), trained, rtol=1e-5, atol=1e-5)
    pipe.transformer.unfuse_qkv_projections()
    pipe.unfuse_lora()
    torch.testing.assert_close(output_with_history(pipe.transformer), trained, rtol=1e-5, atol=1e-5)
