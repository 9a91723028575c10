"""CrossClipKVAttnProcessor: identities against the stock Wan processor and a hand-written reference attention."""

import math

import pytest
import torch
from _kv_inputs import FRAMES, TOKENS_PER_FRAME, make_inputs, record_clip, run
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from diffusers_longvid.attention import (
    CFGBranch,
    CrossClipKVAttnProcessor,
    CrossClipKVCacheConfig,
    OffsetWanRotaryPosEmbed,
    disable_cross_clip_kv_cache,
    enable_cross_clip_kv_cache,
    get_cross_clip_kv_cache,
)
from diffusers_longvid.testing import get_tiny_transformer


@pytest.mark.parametrize("fused", [False, True])
@torch.no_grad()
def test_empty_selection_equals_stock(transformer, fused):
    inputs = make_inputs(0)
    stock = transformer(**inputs).sample
    if fused:
        transformer.fuse_qkv_projections()
        assert transformer.blocks[2].attn1.fused_projections
    cache = enable_cross_clip_kv_cache(transformer)
    assert cache.block_indices == (2, 3)
    torch.testing.assert_close(transformer(**inputs).sample, stock, rtol=1e-5, atol=1e-6)

    # A stored but unselected clip, and a selected clip while recording in "clean" mode, change nothing either.
    record_clip(transformer, cache, make_inputs(1), clip_id=0, offset=0)
    torch.testing.assert_close(transformer(**inputs).sample, stock, rtol=1e-5, atol=1e-6)
    cache.select([0])
    with cache.recording():
        torch.testing.assert_close(transformer(**inputs).sample, stock, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(transformer(**inputs).sample, stock, atol=1e-4)  # history does act


def test_enable_is_idempotent_and_disable_restores_exact_processors(transformer):
    before = transformer.attn_processors
    cache = enable_cross_clip_kv_cache(transformer)
    assert enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig()) is cache
    assert get_cross_clip_kv_cache(transformer) is cache
    with pytest.raises(ValueError, match="different config"):
        enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig(blocks=[0]))
    after_enable = transformer.attn_processors
    changed = sorted(name for name in before if after_enable[name] is not before[name])
    assert changed == ["blocks.2.attn1.processor", "blocks.3.attn1.processor"]
    # the token grid comes from one diffusers ModelHook on the transformer (no raw torch hook)
    registry = transformer._diffusers_hook
    assert registry._hook_order == ["longvid_cross_clip_token_grid"]
    assert len(transformer._forward_pre_hooks) == 0
    transformer(**make_inputs(0))
    assert cache._token_grid is not None

    disable_cross_clip_kv_cache(transformer)
    restored = transformer.attn_processors
    assert all(restored[name] is before[name] for name in before)
    assert registry._hook_order == [] and registry.get_hook("longvid_cross_clip_token_grid") is None
    assert get_cross_clip_kv_cache(transformer) is None
    disable_cross_clip_kv_cache(transformer)  # no-op


def test_config_validation(transformer):
    with pytest.raises(ValueError, match="`record_mode`"):
        CrossClipKVCacheConfig(record_mode="every_step")
    with pytest.raises(ValueError, match="`history_frame_stride`"):
        CrossClipKVCacheConfig(history_frame_stride=0)
    with pytest.raises(ValueError, match="not both"):
        CrossClipKVCacheConfig(history_frame_stride=2, history_frame_indices=[0])
    with pytest.raises(ValueError, match="out of range"):
        enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig(blocks=[4]))
    assert CrossClipKVCacheConfig(blocks=[-1]).resolve_blocks(4) == (3,)
    config = CrossClipKVCacheConfig(blocks=[1, 3], record_mode="last_step", history_frame_indices=[-1, 0])
    assert CrossClipKVCacheConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="`branch`"), enable_cross_clip_kv_cache(transformer).branch("negative"):
        pass


def _reference_attention(attn, x, rotary, history_k, history_v):
    """Softmax attention written out by hand (fp32): returns (output, current K, current V)."""
    heads = attn.heads

    def rotate(t, cos, sin):
        x1, x2 = t[..., 0::2], t[..., 1::2]
        c, s = cos[..., 0::2], sin[..., 1::2]
        return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)

    q = rotate(attn.norm_q(attn.to_q(x)).unflatten(2, (heads, -1)), *rotary)
    k = rotate(attn.norm_k(attn.to_k(x)).unflatten(2, (heads, -1)), *rotary)
    v = attn.to_v(x).unflatten(2, (heads, -1))
    keys = torch.cat([*history_k, k], dim=1)
    values = torch.cat([*history_v, v], dim=1)
    logits = torch.einsum("bqhd,bkhd->bhqk", q, keys) / math.sqrt(q.shape[-1])
    out = torch.einsum("bhqk,bkhd->bqhd", logits.softmax(dim=-1), values).flatten(2)
    return attn.to_out[0](out), k, v


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "autograd"])
def test_exact_attention_over_history_and_current(transformer, grad):
    attn = transformer.blocks[2].attn1
    cache = enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig(blocks=[2]))
    processor = attn.processor
    rope = OffsetWanRotaryPosEmbed.from_stock(transformer.rope)
    g = torch.Generator().manual_seed(3)
    dim = attn.inner_dim

    def rotary(first_frame):
        return rope.positions_freqs(torch.arange(first_frame, first_frame + FRAMES), 4, 4)

    clips = [(torch.randn(1, 48, dim, generator=g), rotary(3 * c)) for c in range(2)]
    with torch.set_grad_enabled(grad):
        for clip_id, (x, rot) in enumerate(clips):
            with cache.recording():
                processor(attn, x, rotary_emb=rot)
            cache.commit(clip_id)
        cache.select([0, 1])
        history = [_reference_attention(attn, x, rot, [], [])[1:] for x, rot in clips]
        for clip_id, (k, v) in enumerate(history):  # recorded K is after norm_k and RoPE at its own positions
            torch.testing.assert_close(cache.get(clip_id, 2).key, k, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(cache.get(clip_id, 2).value, v, rtol=1e-6, atol=1e-6)
        hist_k, hist_v = [k for k, _ in history], [v for _, v in history]
        # Two different current inputs in a row: the second must not see the first (the buffer tail is rewritten).
        for batch in (1, 1, 2):
            x = torch.randn(batch, 48, dim, generator=g)
            rot = rotary(6)
            out = processor(attn, x, rotary_emb=rot)
            ref, _, _ = _reference_attention(
                attn,
                x,
                rot,
                [k.expand(batch, -1, -1, -1) for k in hist_k],
                [v.expand(batch, -1, -1, -1) for v in hist_v],
            )
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert out.requires_grad == grad


@torch.no_grad()
def test_history_frame_subsampling(transformer):
    inputs = make_inputs(1)
    full = enable_cross_clip_kv_cache(transformer)
    record_clip(transformer, full, inputs, clip_id=0, offset=0)
    full_k = full.get(0, 3).key
    disable_cross_clip_kv_cache(transformer)
    for config, frames in [
        (CrossClipKVCacheConfig(history_frame_stride=2), [0, 2]),
        (CrossClipKVCacheConfig(history_frame_indices=[-1]), [2]),
    ]:
        cache = enable_cross_clip_kv_cache(transformer, config)
        record_clip(transformer, cache, inputs, clip_id=0, offset=0)
        assert cache.token_grid == (3, 4, 4)
        kept = torch.cat([torch.arange(f * TOKENS_PER_FRAME, (f + 1) * TOKENS_PER_FRAME) for f in frames])
        torch.testing.assert_close(cache.get(0, 3).key, full_k[:, kept], rtol=0, atol=0)
        cache.select([0])
        assert torch.isfinite(run(transformer, make_inputs(2), offset=3)).all()
        disable_cross_clip_kv_cache(transformer)


@torch.no_grad()
def test_first_half_blocks_ignore_cache(transformer):
    outputs = {}
    hooks = [
        block.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out.clone()))
        for i, block in enumerate(transformer.blocks)
    ]
    cache = enable_cross_clip_kv_cache(transformer)
    assert [type(b.attn1.processor) for b in transformer.blocks] == [WanAttnProcessor] * 2 + [
        CrossClipKVAttnProcessor
    ] * 2
    assert all(type(b.attn2.processor) is WanAttnProcessor for b in transformer.blocks)
    current = make_inputs(0)
    run(transformer, current, offset=3)
    without = dict(outputs)
    for history_seed in (1, 2):
        cache.clear()
        record_clip(transformer, cache, make_inputs(history_seed), clip_id=0, offset=0)
        cache.select([0])
        run(transformer, current, offset=3)
        for i in (0, 1):
            torch.testing.assert_close(outputs[i], without[i], rtol=0, atol=0)
        for i in (2, 3):
            assert not torch.allclose(outputs[i], without[i], atol=1e-4)
    for hook in hooks:
        hook.remove()


@torch.no_grad()
def test_rope_relativity(transformer):
    """Shifting every clip's temporal positions by the same constant leaves the output unchanged."""
    cache = enable_cross_clip_kv_cache(transformer)
    history, current = make_inputs(1), make_inputs(0)

    def output(history_offset, current_offset):
        cache.clear()
        record_clip(transformer, cache, history, clip_id=0, offset=history_offset)
        cache.select([0])
        return run(transformer, current, offset=current_offset)

    reference = output(0, 3)
    for shift in (7, 1000):  # 1000 is far past `rope_max_seq_len=32`
        torch.testing.assert_close(output(shift, 3 + shift), reference, rtol=1e-4, atol=2e-5)
    # ... while a different relative distance does change it (the test can fail).
    assert not torch.allclose(output(0, 5), reference, atol=1e-4)


@torch.no_grad()
def test_cond_uncond_isolation(transformer):
    cache = enable_cross_clip_kv_cache(transformer)
    with cache.branch("uncond"), cache.recording():
        run(transformer, make_inputs(1), 0)
    with cache.branch(CFGBranch.COND), cache.recording():
        run(transformer, make_inputs(2), 0)
    cache.commit(0)
    cache.select([0])
    current = make_inputs(0)
    with cache.branch("uncond"):
        uncond = run(transformer, current, 3)
    for block in cache.block_indices:
        cache.get(0, block, "cond").key.fill_(float("nan"))
        cache.get(0, block, "cond").value.fill_(1e30)
    cache.select([0])  # re-gather from the poisoned store
    with cache.branch("uncond"):
        torch.testing.assert_close(run(transformer, current, 3), uncond, rtol=0, atol=0)
    with cache.branch("cond"):
        assert torch.isnan(run(transformer, current, 3)).all()
    assert torch.isnan(run(transformer, current, 3)).all()  # outside any branch a forward is cond


@torch.no_grad()
def test_fused_projections_with_history(transformer):
    cache = enable_cross_clip_kv_cache(transformer)
    record_clip(transformer, cache, make_inputs(1), clip_id=0, offset=0)
    cache.select([0])
    unfused = run(transformer, make_inputs(0), 3)
    transformer.fuse_qkv_projections()
    cache.clear()
    record_clip(transformer, cache, make_inputs(1), clip_id=0, offset=0)
    cache.select([0])
    torch.testing.assert_close(run(transformer, make_inputs(0), 3), unfused, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_attention_backend_reaches_processor_and_matches(transformer):
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    # `set_attention_backend` also sets diffusers' process-wide active backend, which `reset_attention_backend` does
    # not restore: put it back so later tests see the default backend.
    active = _AttentionBackendRegistry._active_backend
    try:
        cache = enable_cross_clip_kv_cache(transformer)
        record_clip(transformer, cache, make_inputs(1), clip_id=0, offset=0)
        cache.select([0])
        default = run(transformer, make_inputs(0), 3)
        transformer.set_attention_backend("_native_math")
        assert transformer.blocks[3].attn1.processor._attention_backend.value == "_native_math"
        torch.testing.assert_close(run(transformer, make_inputs(0), 3), default, rtol=1e-5, atol=1e-5)
        disable_cross_clip_kv_cache(transformer)
        # The restored stock processor keeps the backend set while ours was installed (no mixed backends).
        assert transformer.blocks[3].attn1.processor._attention_backend.value == "_native_math"
        transformer.reset_attention_backend()
    finally:
        _AttentionBackendRegistry.set_active_backend(active)


@torch.no_grad()
def test_offload_to_cpu_matches_and_context_parallel_is_refused(transformer):
    outputs = []
    for offload in (False, True):
        cache = enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig(offload_to_cpu=offload))
        record_clip(transformer, cache, make_inputs(1), clip_id=0, offset=0)
        assert cache.get(0, 2).key.device.type == "cpu"
        cache.select([0])
        outputs.append(run(transformer, make_inputs(0), 3))
        disable_cross_clip_kv_cache(transformer)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)

    cache = enable_cross_clip_kv_cache(transformer)
    transformer.blocks[2].attn1.processor._parallel_config = object()  # what `enable_parallelism` would set
    with pytest.raises(NotImplementedError, match="context parallelism"), cache.recording():
        run(transformer, make_inputs(0), 0)


@torch.no_grad()
def test_regional_compile_matches_eager_without_per_clip_recompiles(transformer):
    """`compile_repeated_blocks` gives the eager outputs, and later clips reuse the compiled graphs."""
    import torch._dynamo

    def video(clips):
        cache = enable_cross_clip_kv_cache(transformer)
        outputs = []
        for n in clips:
            cache.select(cache.stored_clips()[-2:])
            for branch in ("cond", "uncond"):
                with cache.branch(branch):
                    outputs.append(run(transformer, make_inputs(n), offset=3 * n))
                with cache.branch(branch), cache.recording():
                    run(transformer, make_inputs(100 + n), offset=3 * n)
            cache.commit(n)
            for old in cache.stored_clips()[:-2]:
                cache.evict(old)
        disable_cross_clip_kv_cache(transformer)
        return outputs

    eager = video(range(6))
    torch._dynamo.reset()
    try:
        transformer.compile_repeated_blocks(backend="eager")
        compiled = video(range(6))
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        video(range(6, 12))  # new clip ids, offsets and selections: no new graph may be needed
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    finally:
        torch._dynamo.reset()
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_disable_restores_the_rotary_embedding_rope_frame_offset_replaced():
    from diffusers_longvid.attention import disable_rope_offset
    from diffusers_longvid.memory import ClipMemory
    from diffusers_longvid.selection import RecentSelector

    transformer = get_tiny_transformer(in_channels=16, num_layers=2)
    stock = transformer.rope
    inputs = make_inputs(0)
    expected = transformer(**inputs).sample
    memory = ClipMemory(transformer, kv_cache_clips=1, clip_selector=RecentSelector())
    run(transformer, inputs, offset=2)
    assert isinstance(transformer.rope, OffsetWanRotaryPosEmbed)
    assert all(m is not stock for m in transformer.modules())  # the kept module is no submodule meanwhile
    memory.close()  # disable_cross_clip_kv_cache: processors and rope back
    assert transformer.rope is stock
    assert torch.equal(transformer(**inputs).sample, expected)
    run(transformer, inputs)
    disable_rope_offset(transformer)
    assert transformer.rope is stock
    disable_rope_offset(transformer)  # no-op
    assert transformer.rope is stock
