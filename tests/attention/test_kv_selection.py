"""Compressed history by token selection (`CrossClipKVCacheConfig(history_keep_ratio=...)`): identities, the tokens
kept, token counts against the cost model, CFG batching, save/resume, validation."""

import json

import _kv_inputs
import pytest
import torch
from _kv_inputs import FRAMES, HEIGHT, WIDTH, make_inputs, record_clip, run, three_clips

from diffusers_longvid.attention import CrossClipKVCacheConfig, disable_cross_clip_kv_cache, enable_cross_clip_kv_cache
from diffusers_longvid.benchmarks.cost_model import VideoShape, WanShape, selected_tokens_per_clip, tokens_per_clip
from diffusers_longvid.training.config import CausalLoRATrainConfig


@torch.no_grad()
def test_keep_ratio_one_is_dense_bit_identical(transformer):
    dense = three_clips(transformer, CrossClipKVCacheConfig())
    ratio_one = three_clips(transformer, CrossClipKVCacheConfig(history_keep_ratio=1))
    assert all(torch.equal(a, b) for a, b in zip(dense, ratio_one))
    selected = three_clips(transformer, CrossClipKVCacheConfig(history_keep_ratio=0.25))
    assert torch.equal(selected[0], dense[0])  # no history yet: same
    assert not torch.allclose(selected[-1], dense[-1], atol=1e-4)  # compressed history does act


@pytest.mark.parametrize(("ratio", "expected"), [(0.1, 5), (0.25, 12), (0.5, 24)])
@torch.no_grad()
def test_kept_tokens_are_the_dense_tokens_that_deviate_most(transformer, ratio, expected):
    """Selection keeps the dense recording's own K/V (keys rotated at their own positions) of the tokens whose values
    are farthest from the clip's mean value, in their original order, as many as the cost model counts."""
    inputs = make_inputs(3)
    dense = enable_cross_clip_kv_cache(transformer)
    record_clip(transformer, dense, inputs, clip_id=0, offset=5)
    full = {block: dense.get(0, block) for block in dense.block_indices}
    disable_cross_clip_kv_cache(transformer)

    cache = enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig(history_keep_ratio=ratio))
    record_clip(transformer, cache, inputs, clip_id=0, offset=5)
    shape = WanShape.from_config(transformer.config, text_len=8)
    video = VideoShape(HEIGHT * 8, WIDTH * 8, (FRAMES - 1) * 4 + 1)
    assert tokens_per_clip(shape, video) == 48
    assert selected_tokens_per_clip(shape, video, ratio) == cache.config.kept_token_count(48) == expected
    for block, kv in full.items():
        saliency = (kv.value - kv.value.mean(dim=1, keepdim=True)).square().sum(dim=(2, 3))[0]
        order = sorted(range(48), key=lambda i: -float(saliency[i]))
        index = torch.tensor(sorted(order[:expected]))
        kept = cache.get(0, block)
        assert kept.key.shape[1] == kept.value.shape[1] == expected
        assert torch.equal(kept.key[0], kv.key[0, index])
        assert torch.equal(kept.value[0], kv.value[0, index])
    disable_cross_clip_kv_cache(transformer)


@torch.no_grad()
def test_attention_over_selected_history_equals_dense_history_of_those_tokens(transformer):
    """Attending selected history is exactly attending a dense cache that holds only those tokens."""
    config = CrossClipKVCacheConfig(history_keep_ratio=0.3)
    cache = enable_cross_clip_kv_cache(transformer, config)
    record_clip(transformer, cache, make_inputs(1), clip_id=0, offset=0)
    cache.select([0])
    selected = run(transformer, make_inputs(0), offset=3)
    state = cache.export_state()
    disable_cross_clip_kv_cache(transformer)

    dense = enable_cross_clip_kv_cache(transformer)
    dense.import_state(dict(state, config=CrossClipKVCacheConfig().to_dict()))
    dense.select([0])
    torch.testing.assert_close(run(transformer, make_inputs(0), offset=3), selected, rtol=0, atol=0)
    disable_cross_clip_kv_cache(transformer)


@torch.no_grad()
def test_batched_branches_record_the_same_selected_kv(transformer):
    _kv_inputs.check_batched_branches_record_alike(transformer, CrossClipKVCacheConfig(history_keep_ratio=0.2))


@torch.no_grad()
def test_save_and_resume_selected_kv(transformer, tmp_path):
    selected, other = CrossClipKVCacheConfig(history_keep_ratio=0.25), CrossClipKVCacheConfig(history_keep_ratio=0.5)
    _kv_inputs.check_save_and_resume(transformer, tmp_path, selected, other, "history_keep_ratio")


def test_config_round_trip_and_validation():
    config = CrossClipKVCacheConfig(history_keep_ratio=0.15, blocks=[-1])
    data = config.to_dict()
    assert data["history_keep_ratio"] == 0.15
    assert CrossClipKVCacheConfig.from_dict(json.loads(json.dumps(data))) == config
    assert CrossClipKVCacheConfig.from_dict({}).history_keep_ratio == 1.0  # old dicts: dense
    assert config.selects_tokens and not CrossClipKVCacheConfig().selects_tokens
    assert config.kept_token_count(80) == 12  # 0.15 * 80 is 12.000000000000002 in floats
    assert CrossClipKVCacheConfig(history_keep_ratio=0.01).kept_token_count(48) == 1
    for bad in [0, -0.5, 1.5, "0.5", True, None, float("nan")]:
        with pytest.raises(ValueError, match=r"`history_keep_ratio` must be a number in \(0, 1\]"):
            CrossClipKVCacheConfig(history_keep_ratio=bad)
    for other in ({"history_pool": (1, 2, 2)}, {"history_frame_stride": 2}, {"history_frame_indices": [-1]}):
        with pytest.raises(ValueError, match="`history_keep_ratio` cannot be combined"):
            CrossClipKVCacheConfig(history_keep_ratio=0.5, **other)


def test_cost_model_and_trainer_validation():
    shape = WanShape(dim=8, heads=2, head_dim=4, ffn_dim=8, num_layers=2, text_dim=8)
    video = VideoShape(480, 832, 81)
    assert selected_tokens_per_clip(shape, video) == tokens_per_clip(shape, video) == 32760
    assert selected_tokens_per_clip(shape, video, 0.15) == 4914
    for bad in [0, 1.01, True, "0.1"]:
        with pytest.raises(ValueError, match="`keep_ratio`"):
            selected_tokens_per_clip(shape, video, bad)
    assert CausalLoRATrainConfig(history_keep_ratio=0.15).history_keep_ratio == 0.15
    with pytest.raises(
        ValueError, match=r"`history_keep_ratio` \(--history-keep-ratio\) must be a number in \(0, 1\]"
    ):
        CausalLoRATrainConfig(history_keep_ratio=0)
    with pytest.raises(ValueError, match="choose one way of compressing history"):
        CausalLoRATrainConfig(history_keep_ratio=0.5, history_pool=[2, 2, 2])
