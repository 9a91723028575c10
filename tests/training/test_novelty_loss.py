"""`novelty_loss_weight`: the loss weighting towards what the known frames do not show (training.conditioning)."""

import pytest
import torch

from diffusers_longvid.training.conditioning import novelty_weights
from diffusers_longvid.training.config import CausalLoRATrainConfig, ExtensionTrainConfig


def static_latents(frames=5, size=4):
    """A clip whose latent is the same in every frame (nothing new)."""
    base = torch.randn(1, 16, 1, size, size, generator=torch.Generator().manual_seed(0))
    return base.expand(1, 16, frames, size, size).clone()


def test_zero_strength_or_no_known_frame_is_the_plain_loss():
    latents = torch.randn(2, 16, 5, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(novelty_weights(latents, [0, 1], 0.0), torch.ones(2, 1, 5, 4, 4))
    assert torch.equal(novelty_weights(latents, [], 3.0), torch.ones(2, 1, 5, 4, 4))
    assert torch.equal(novelty_weights(latents, [0, 1, 2, 3, 4], 3.0), torch.ones(2, 1, 5, 4, 4))
    # nothing new anywhere: every weight is 1 as well
    assert torch.equal(novelty_weights(static_latents(), [0, 1], 4.0), torch.ones(1, 1, 5, 4, 4))


def test_an_object_entering_gets_the_weight():
    latents = static_latents()
    latents[:, :, 3, 1, 2] += 2.0  # something appears at one place of frame 3
    weights = novelty_weights(latents, [0, 1], 4.0)
    generated = weights[:, :, 2:]
    # one novel position among 3 x 16 generated ones: it gets 1 + 4 * 48, every other generated position 1
    assert weights[0, 0, 3, 1, 2].item() == pytest.approx(1 + 4.0 * 48)
    assert (generated == 1).sum().item() == 47
    # the extra weight averages `strength` over the generated frames
    assert (generated - 1).mean().item() == pytest.approx(4.0)


def test_each_frame_is_compared_with_its_nearest_known_frame():
    latents = static_latents(frames=5)
    latents[:, :, 3:] += 1.0  # frames 3-4 differ from 0-2; frame 4 is known, so frame 3 (nearest 4) matches it
    weights = novelty_weights(latents, [0, 4], 2.0)
    # frames 1 (nearest 0) and 3 (nearest 4) match their references; frame 2 ties and is compared with frame 0
    assert torch.equal(weights[:, :, 1], torch.ones_like(weights[:, :, 1]))
    assert torch.equal(weights[:, :, 3], torch.ones_like(weights[:, :, 3]))
    assert torch.equal(weights[:, :, 2], torch.ones_like(weights[:, :, 2]))
    latents[:, :, 2] += 1.0  # now frame 2 differs from frame 0 (its reference) everywhere
    weights = novelty_weights(latents, [0, 4], 2.0)
    assert weights[:, :, 2].min().item() == pytest.approx(1 + 2.0 * 3)


def test_negative_strength_is_refused():
    with pytest.raises(ValueError, match="`strength` must be >= 0"):
        novelty_weights(static_latents(), [0], -1.0)


@pytest.mark.parametrize("config_class", [ExtensionTrainConfig, CausalLoRATrainConfig])
def test_config_checks_the_option(config_class, tmp_path):
    assert config_class(manifest="m.jsonl", output_dir=str(tmp_path)).novelty_loss_weight == 0.0
    with pytest.raises(ValueError, match="novelty_loss_weight"):
        config_class(manifest="m.jsonl", output_dir=str(tmp_path), novelty_loss_weight=-0.5)
