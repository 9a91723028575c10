"""Proportional attention over compressed history (`CrossClipKVCacheConfig(proportional_attention=True)`, the default
with `history_pool`): a pooled key that stands for `n` tokens gets `log(n)` added to its logit."""

import pytest
import torch
import torch.nn.functional as F
from _kv_inputs import make_inputs, record_clip, run

from diffusers_longvid.attention import (
    CFGBranch,
    CrossClipKVCache,
    CrossClipKVCacheConfig,
    disable_cross_clip_kv_cache,
    enable_cross_clip_kv_cache,
)


GRID = (3, 5, 4)  # odd sizes: windows of (2, 2, 2) are partial at the far edges
POOL = (2, 2, 2)
HEADS, DIM = 2, 8


def window_constant(seed: int) -> torch.Tensor:
    """`(1, F*H*W, heads, dim)` tokens that are equal within every `POOL` window of `GRID`."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, *(-(-n // p) for n, p in zip(GRID, POOL)), HEADS, DIM, generator=g)
    fine = coarse
    for axis, (n, p) in enumerate(zip(GRID, POOL), start=1):
        fine = fine.repeat_interleave(p, dim=axis).narrow(axis, 0, n)
    return fine.reshape(1, -1, HEADS, DIM)


def attend(config: CrossClipKVCacheConfig, history: list[tuple[torch.Tensor, torch.Tensor]], query, key, value):
    """Attention of the current clip over recorded `history` clips, as the processor computes it; and the probe."""
    cache = CrossClipKVCache(config, [0])
    cache.set_token_grid(*GRID)
    for clip_id, (k, v) in enumerate(history):
        with cache.recording():
            cache.attention_kv(0, k, v)
        cache.commit(clip_id)
    cache.select(cache.stored_clips())
    all_key, all_value = cache.attention_kv(0, key, value)
    bias = cache.attention_bias(0, query, key.shape[1])
    cache.observe_attention(0, query, all_key, bias=bias)
    out = F.scaled_dot_product_attention(
        *(x.transpose(1, 2) for x in (query, all_key, all_value)), attn_mask=bias
    ).transpose(1, 2)
    return out, bias, cache.pop_attention_shares()[0]


def inputs():
    history = [(window_constant(2 * c), window_constant(2 * c + 1)) for c in range(2)]
    g = torch.Generator().manual_seed(9)
    tokens = GRID[0] * GRID[1] * GRID[2]
    current = [torch.randn(1, tokens, HEADS, DIM, generator=g) for _ in range(3)]
    return history, *current


def test_pooled_windows_of_equal_tokens_are_attended_exactly_as_dense():
    history, query, key, value = inputs()
    dense, dense_bias, dense_shares = attend(CrossClipKVCacheConfig(probe_attention=True), history, query, key, value)
    assert dense_bias is None  # dense history builds no bias
    pooled = CrossClipKVCacheConfig(history_pool=POOL, probe_attention=True)
    out, bias, shares = attend(pooled, history, query, key, value)
    assert bias.shape == (1, 1, 1, 2 * 12 + 60)  # 2 clips of 2*3*2 pooled tokens, then the 60 current ones
    torch.testing.assert_close(out, dense, rtol=1e-5, atol=1e-6)
    for clip in (0, 1):
        assert shares["history"][clip] == pytest.approx(dense_shares["history"][clip], rel=1e-6)
    # without it, the pooled history gets less of the attention than the dense history does
    plain = CrossClipKVCacheConfig(history_pool=POOL, proportional_attention=False, probe_attention=True)
    out_plain, bias_plain, shares_plain = attend(plain, history, query, key, value)
    assert bias_plain is None
    assert not torch.allclose(out_plain, dense, atol=1e-3)
    assert sum(shares_plain["history"].values()) < sum(dense_shares["history"].values())


def test_token_counts_of_partial_windows():
    counts = CrossClipKVCacheConfig(history_pool=POOL).pooled_token_counts(*GRID)
    # frames [2, 1] x rows [2, 2, 1] x columns [2, 2], frame-major like the stored tokens
    expected = torch.tensor([2.0, 1.0])[:, None, None] * torch.tensor([2.0, 2.0, 1.0])[None, :, None] * 2.0
    assert torch.equal(counts, expected.expand(2, 3, 2).reshape(-1))
    assert counts.sum() == GRID[0] * GRID[1] * GRID[2]
    assert torch.equal(CrossClipKVCacheConfig().pooled_token_counts(*GRID), torch.ones(60))


def test_history_recorded_at_another_size_is_refused():
    cache = CrossClipKVCache(CrossClipKVCacheConfig(history_pool=POOL), [0])
    cache.set_token_grid(*GRID)
    with cache.recording():
        cache.attention_kv(0, window_constant(0), window_constant(1))
    cache.commit(0)
    cache.set_token_grid(2, 5, 4)
    cache.select([0])
    current = torch.zeros(1, 40, HEADS, DIM)
    cache.attention_kv(0, current, current)
    with pytest.raises(RuntimeError, match="history recorded at another size"):
        cache.attention_bias(0, current, 40)


def test_validation_and_round_trip():
    with pytest.raises(TypeError, match="`proportional_attention` must be a bool"):
        CrossClipKVCacheConfig(proportional_attention=1)
    config = CrossClipKVCacheConfig(history_pool=POOL, proportional_attention=False)
    assert CrossClipKVCacheConfig.from_dict(config.to_dict()) == config
    # dicts written before the field existed read with the default
    data = config.to_dict()
    del data["proportional_attention"]
    assert CrossClipKVCacheConfig.from_dict(data).proportional_attention is True


@torch.no_grad()
def test_transformer_dense_ignores_the_flag_and_pooled_uses_it(transformer):
    def last_output(config):
        cache = enable_cross_clip_kv_cache(transformer, config)
        for clip in range(2):
            record_clip(transformer, cache, make_inputs(clip), clip_id=clip, offset=3 * clip)
        cache.select([0, 1])
        with cache.branch(CFGBranch.COND):
            out = run(transformer, make_inputs(5), offset=6)
        disable_cross_clip_kv_cache(transformer)
        return out

    dense_on = last_output(CrossClipKVCacheConfig(proportional_attention=True))
    dense_off = last_output(CrossClipKVCacheConfig(proportional_attention=False))
    assert torch.equal(dense_on, dense_off)
    pooled_on = last_output(CrossClipKVCacheConfig(history_pool=(1, 2, 2)))
    pooled_off = last_output(CrossClipKVCacheConfig(history_pool=(1, 2, 2), proportional_attention=False))
    assert not torch.allclose(pooled_on, pooled_off, atol=1e-5)
