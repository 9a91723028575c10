"""Conditioning tasks of stage 1 (DESIGN §2): which pixel frames of a training clip are given to the model.

The mask and the condition latent themselves come from `diffusers_longvid.extension`
(`prepare_extension_condition_from_latents`), so training and sampling share one implementation of the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class ConditionTask(str, Enum):
    """Which pixel frames of a training clip are known."""

    NONE = "none"
    FIRST = "first"
    LAST = "last"
    FIRST_LAST = "first_last"


@dataclass(frozen=True)
class TaskSample:
    """A sampled task: the task and the number of known pixel frames at each conditioned end."""

    task: ConditionTask
    num_known: int

    def known_pixel_frames(self, num_frames: int) -> list[int]:
        k = self.num_known
        if self.task is ConditionTask.NONE:
            return []
        if self.task is ConditionTask.FIRST:
            return list(range(k))
        if self.task is ConditionTask.LAST:
            return list(range(num_frames - k, num_frames))
        return sorted(set(range(k)) | set(range(num_frames - k, num_frames)))


def valid_condition_counts(num_frames: int, max_condition_frames: int) -> list[int]:
    """Known-frame counts `1 + 4j` up to `max_condition_frames` that leave at least one frame to generate."""
    return [k for k in range(1, max_condition_frames + 1, 4) if k < num_frames]


def sample_task(
    generator: torch.Generator,
    num_frames: int,
    no_condition_prob: float = 0.1,
    max_condition_frames: int = 9,
    task_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> TaskSample:
    """Draw a task: none with probability `no_condition_prob`, else first-k / last-k / first+last with k = 1 + 4j.

    `k` is drawn uniformly among the counts valid for the task: `k < num_frames`, and for first+last `2k < num_frames`
    (at least one frame to generate between the two ends). A task with no valid count (first+last of a very short
    clip) gets weight 0.

    Args:
        generator (`torch.Generator`): Source of every random draw (so a resumed run repeats them).
        num_frames (`int`): Pixel frames of the clip.
        no_condition_prob (`float`, *optional*, defaults to 0.1): Probability of the unconditional task.
        max_condition_frames (`int`, *optional*, defaults to 9): Largest k.
        task_weights (`tuple[float, float, float]`, *optional*): Relative weights of first-k, last-k, first+last.
    """
    if torch.rand((), generator=generator).item() < no_condition_prob:
        return TaskSample(ConditionTask.NONE, 0)
    counts = valid_condition_counts(num_frames, max_condition_frames)
    per_task = {
        ConditionTask.FIRST: counts,
        ConditionTask.LAST: counts,
        ConditionTask.FIRST_LAST: [k for k in counts if 2 * k < num_frames],
    }
    tasks = list(per_task)
    weights = torch.tensor([w if per_task[t] else 0.0 for t, w in zip(tasks, task_weights)], dtype=torch.float64)
    if not counts or weights.sum() <= 0:
        return TaskSample(ConditionTask.NONE, 0)
    task = tasks[int(torch.multinomial(weights, 1, generator=generator))]
    choices = per_task[task]
    return TaskSample(task, choices[int(torch.randint(len(choices), (), generator=generator))])


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Map uniform `u` in (0, 1) to training sigmas with the sampler's shift: `s*u / (1 + (s-1)*u)`."""
    return shift * u / (1 + (shift - 1) * u)


def novelty_weights(
    latents: torch.Tensor, known_latent_frames: list[int] | tuple[int, ...], strength: float
) -> torch.Tensor:
    r"""
    Per-position loss weights that favour what the known frames do not already show.

    Plain flow-matching loss on an extension clip is dominated by what continues the condition frames (the
    background, objects already in view); a new object entering, or an object coming back from memory, covers a few
    latent positions. The *novelty* of position `(t, y, x)` is the squared distance, averaged over channels, between
    the clean latent there and the clean latent of the nearest known latent frame at the same place; the weight is
    `1 + strength * novelty / mean(novelty)`, the mean taken over the frames to generate, so the extra weight
    averages `strength` and the loss keeps its scale (normalise by the weights' sum). With `strength=0`, or no known
    frame, every weight is 1 (the plain loss, bit for bit).

    Args:
        latents (`torch.Tensor`): `(B, C, L, h, w)` clean latents of the clips.
        known_latent_frames (`list[int]`): Latent frames given to the model (the same for the whole batch).
        strength (`float`): Extra weight on novel positions (>= 0).

    Returns:
        `torch.Tensor`: `(B, 1, L, h, w)` weights (`1` on known frames: mask those out separately).
    """
    if strength < 0:
        raise ValueError(f"`strength` must be >= 0, got {strength}.")
    batch, _, frames, height, width = latents.shape
    ones = torch.ones(batch, 1, frames, height, width, device=latents.device, dtype=latents.dtype)
    known = sorted(int(k) for k in known_latent_frames)
    generated = [t for t in range(frames) if t not in known]
    if strength == 0 or not known or not generated:
        return ones
    # nearest known frame of each frame (ties to the earlier one)
    nearest = [min(known, key=lambda k, t=t: (abs(k - t), k)) for t in range(frames)]
    reference = latents[:, :, nearest]
    novelty = (latents - reference).pow(2).mean(dim=1, keepdim=True)
    mean = novelty[:, :, generated].mean(dim=(1, 2, 3, 4), keepdim=True)
    return ones + strength * novelty / mean.clamp(min=1e-12)
