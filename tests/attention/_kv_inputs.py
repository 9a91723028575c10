"""Shared helpers of the KV-cache tests: tiny transformer inputs, a forward at a RoPE offset, one recorded clip, and
the checks every compressed-history option passes (the `transformer` fixture: tests/attention/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from diffusers_longvid.attention import (
    CFGBranch,
    CrossClipKVCacheConfig,
    disable_cross_clip_kv_cache,
    enable_cross_clip_kv_cache,
    rope_frame_offset,
)


FRAMES, HEIGHT, WIDTH = 3, 8, 8  # latent size; patched grid (3, 4, 4) -> 48 tokens
TOKENS_PER_FRAME = (HEIGHT // 2) * (WIDTH // 2)


def make_inputs(seed: int, batch: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(batch, 16, FRAMES, HEIGHT, WIDTH, generator=g),
        "timestep": torch.tensor([500] * batch),
        "encoder_hidden_states": torch.randn(batch, 8, 32, generator=g),
    }


def run(transformer, inputs, offset: int = 0) -> torch.Tensor:
    with rope_frame_offset(transformer, offset):
        return transformer(**inputs).sample


def record_clip(transformer, cache, inputs, clip_id: int, offset: int, branch: CFGBranch = CFGBranch.COND) -> None:
    with cache.branch(branch), cache.recording():
        run(transformer, inputs, offset)
    cache.commit(clip_id)


def three_clips(transformer, config) -> list[torch.Tensor]:
    """Outputs of a 3-clip sequence (clip 2 attends clips 0 and 1), both CFG branches recorded."""
    cache = enable_cross_clip_kv_cache(transformer, config)
    outputs = []
    for clip in range(3):
        cache.select(cache.stored_clips())
        for branch in (CFGBranch.COND, CFGBranch.UNCOND):
            with cache.branch(branch):
                outputs.append(run(transformer, make_inputs(10 + clip), offset=3 * clip))
        with cache.recording():
            for branch in (CFGBranch.COND, CFGBranch.UNCOND):
                with cache.branch(branch):
                    run(transformer, make_inputs(clip), offset=3 * clip)
        cache.commit(clip)
    disable_cross_clip_kv_cache(transformer)
    return outputs


def check_batched_branches_record_alike(transformer, config: CrossClipKVCacheConfig) -> None:
    """Recording both CFG branches as one forward of batch 2 stores what two forwards store (distinct inputs per
    branch, so a compression that depends on the content is applied per branch)."""
    cache = enable_cross_clip_kv_cache(transformer, config)
    cond, uncond = make_inputs(1), make_inputs(2)
    with cache.recording():
        for branch, inputs in ((CFGBranch.COND, cond), (CFGBranch.UNCOND, uncond)):
            with cache.branch(branch):
                run(transformer, inputs, offset=2)
    cache.commit(0)
    separate = {b: cache.get(0, 3, b) for b in CFGBranch}
    cache.clear()
    both = {k: torch.cat([cond[k], uncond[k]]) for k in cond}
    with cache.recording(), cache.batched_branches():
        run(transformer, both, offset=2)
    cache.commit(0)
    for branch in CFGBranch:
        torch.testing.assert_close(cache.get(0, 3, branch).key, separate[branch].key, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cache.get(0, 3, branch).value, separate[branch].value, rtol=1e-5, atol=1e-6)
    disable_cross_clip_kv_cache(transformer)


def check_save_and_resume(
    transformer, tmp_path, config: CrossClipKVCacheConfig, other: CrossClipKVCacheConfig, option: str
) -> None:
    """Compressed K/V survive `export_state` -> `torch.save` -> `import_state` bit for bit; a cache compressed
    otherwise (`other`) refuses the state naming `option`; a state written before `option` existed loads as dense."""
    cache = enable_cross_clip_kv_cache(transformer, config)
    for clip in range(2):
        record_clip(transformer, cache, make_inputs(clip), clip_id=clip, offset=3 * clip)
    cache.select([0, 1])
    uninterrupted = run(transformer, make_inputs(5), offset=6)
    state = cache.export_state()
    assert state["config"][option] == config.to_dict()[option]
    torch.save(state, tmp_path / "kv.pt")
    disable_cross_clip_kv_cache(transformer)

    resumed = enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig.from_dict(state["config"]))
    resumed.import_state(torch.load(tmp_path / "kv.pt"))
    resumed.select([0, 1])
    torch.testing.assert_close(run(transformer, make_inputs(5), offset=6), uninterrupted, rtol=0, atol=0)
    disable_cross_clip_kv_cache(transformer)

    refusing = enable_cross_clip_kv_cache(transformer, other)
    with pytest.raises(ValueError, match=f"`{option}="):
        refusing.import_state(state)
    disable_cross_clip_kv_cache(transformer)
    dense = enable_cross_clip_kv_cache(transformer)
    dense.import_state(dict(state, config={k: v for k, v in state["config"].items() if k != option}))
    assert dense.stored_clips() == [0, 1]
    disable_cross_clip_kv_cache(transformer)
