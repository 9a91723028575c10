"""Batched CFG branches in `LongVideoExtensionPipeline` (cond and uncond in one forward): equal to two forwards."""

import pytest
import torch
from _pipes import F, H, W, call_kwargs

from diffusers_longvid.attention import CrossClipKVCacheConfig
from diffusers_longvid.selection import RecentSelector


PROMPTS = ["a red ball rolls", "the ball bounces", "the ball stops", "a cat looks at it"]


def generate(pipe, batched, **kwargs):
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, args, kw: calls.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        out = pipe(PROMPTS, **call_kwargs(output_type="latent", batch_cfg_branches=batched, **kwargs))
    finally:
        handle.remove()
    return out, calls


@pytest.mark.parametrize(
    "memory",
    [
        {},
        {"kv_cache_clips": 2, "clip_selector": RecentSelector()},
        {
            "kv_cache_clips": 2,
            "clip_selector": RecentSelector(),
            "kv_cache_config": CrossClipKVCacheConfig(history_pool=(1, 2, 2)),
        },
        {
            "kv_cache_clips": 2,
            "clip_selector": RecentSelector(),
            "kv_cache_config": CrossClipKVCacheConfig(record_mode="last_step"),
        },
    ],
    ids=["no_cache", "dense", "compressed", "last_step"],
)
def test_batched_cfg_equals_two_forwards(pipe36, memory):
    pipe = pipe36
    batched, batched_calls = generate(pipe, True, **memory)
    separate, separate_calls = generate(pipe, False, **memory)
    assert [e["attends"] for e in batched.kv_plan] == [e["attends"] for e in separate.kv_plan]
    # one forward of batch 2 instead of two of batch 1
    assert set(batched_calls) == {2} and set(separate_calls) == {1}
    assert len(separate_calls) == 2 * len(batched_calls)
    assert len(batched.frames) == len(separate.frames) == len(PROMPTS)  # per-clip latents
    for a, b in zip(batched.frames, separate.frames):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if memory:
        assert any(e["attends"] for e in batched.kv_plan)


def test_no_guidance_is_not_batched_and_flag_is_checked(pipe36):
    pipe = pipe36
    out = pipe(PROMPTS[:2], **call_kwargs(guidance_scale=1.0, output_type="latent"))
    assert len(out.frames) == 2
    with pytest.raises(TypeError, match="`batch_cfg_branches`"):
        pipe(PROMPTS[:2], height=H, width=W, num_frames=F, num_inference_steps=1, batch_cfg_branches="yes")
