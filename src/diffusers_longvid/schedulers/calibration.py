# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Choosing T-RFlow's `tau_low` by matching the average frequency (AF) of the untruncated sampler (DESIGN §1).

With `tau_high` fixed, `tau_low` is chosen so that videos made with the window `[tau_low, tau_high]` have the same AF
as videos made with `[0, 1]` (plain Euler), for the same prompts and seeds. Dropping late steps (`tau_high < 1`)
removes high-frequency detail; dropping early, low-frequency steps (raising `tau_low`) gives it back.

Cost: the model runs once per (prompt, seed), over the full schedule ([`decompose_trajectory`]). Because the T-RFlow
output is a weighted mean of those per-step clean estimates, the latent of every candidate window is computed
without the model; each candidate only costs one VAE decode per (prompt, seed).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from diffusers.utils import logging

from .scheduling_trflow import TRFlowStepEstimate


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = ["TRFlowCalibrationResult", "calibrate_tau_low", "search_matching_value"]

# arguments of the pipeline call that calibration sets itself
_RESERVED_PIPE_KWARGS = ("prompt", "generator", "latents", "output_type", "return_dict")
# smallest window width of the default search interval: `search = (0, tau_high - _MIN_WIDTH)`
_MIN_WIDTH = 0.01


@dataclass
class TRFlowCalibrationResult:
    r"""
    Result of [`calibrate_tau_low`].

    Args:
        tau_low (`float`): The chosen `tau_low` (the evaluated candidate whose AF is closest to `target_af`).
        tau_high (`float`): The fixed `tau_high`.
        target_af (`float`): Mean AF of the videos made with the full window `[0, 1]`.
        af (`float`): Mean AF of the videos made with `[tau_low, tau_high]`.
        converged (`bool`): Whether `|af - target_af| <= tol`.
        tol (`float`): The tolerance used.
        trace (`list[tuple[float, float]]`): Every evaluated `(tau_low, AF)`, in evaluation order.
        target_af_per_sample (`list[float]`): The target AF of each (prompt, seed), prompts outer, seeds inner.
        af_per_sample (`list[float]`): The AF of each (prompt, seed) at the chosen `tau_low`.
        num_steps_in_window (`int`): How many steps of the schedule the chosen window holds.
    """

    tau_low: float
    tau_high: float
    target_af: float
    af: float
    converged: bool
    tol: float
    trace: list[tuple[float, float]] = field(default_factory=list)
    target_af_per_sample: list[float] = field(default_factory=list)
    af_per_sample: list[float] = field(default_factory=list)
    num_steps_in_window: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the trace as a list of `{"tau_low", "af"}`)."""
        data = asdict(self)
        data["trace"] = [{"tau_low": tau, "af": af} for tau, af in self.trace]
        return data


def search_matching_value(
    fn: Callable[[float], float],
    low: float,
    high: float,
    tol: float,
    max_iter: int = 12,
    grid_size: int = 9,
) -> tuple[float, float, list[tuple[float, float]]]:
    r"""
    Find `x` in `[low, high]` with `|fn(x)| <= tol` for a continuous, roughly monotone `fn`: bisection when the ends
    bracket a root, else a grid of `grid_size` points, then bisection inside the first sign change next to the best
    grid point. Every value is computed once (cached).

    Args:
        fn (`Callable[[float], float]`): The signed mismatch, e.g. `AF(x) - target`.
        low (`float`), high (`float`): The search interval.
        tol (`float`): Stop once `|fn(x)| <= tol`.
        max_iter (`int`, *optional*, defaults to 12): Bisection steps at most.
        grid_size (`int`, *optional*, defaults to 9): Points of the fallback grid, ends included.

    Returns:
        `(x, fn(x), trace)`: the evaluated point with the smallest `|fn|`, its value, and all `(x, fn(x))` in
        evaluation order.
    """
    cache: dict[float, float] = {}
    trace: list[tuple[float, float]] = []

    def evaluate(x: float) -> float:
        x = float(x)
        if x not in cache:
            cache[x] = float(fn(x))
            trace.append((x, cache[x]))
        return cache[x]

    def best() -> tuple[float, float]:
        x = min(cache, key=lambda k: (abs(cache[k]), k))
        return x, cache[x]

    def bisect(a: float, fa: float, b: float) -> None:
        for _ in range(max_iter):
            mid = 0.5 * (a + b)
            fm = evaluate(mid)
            if abs(fm) <= tol or mid in (a, b):
                return
            if (fm > 0) == (fa > 0):
                a, fa = mid, fm
            else:
                b = mid

    f_low, f_high = evaluate(low), evaluate(high)
    if min(abs(f_low), abs(f_high)) <= tol:
        return (*best(), trace)
    if (f_low > 0) != (f_high > 0):
        bisect(low, f_low, high)
        return (*best(), trace)

    # not bracketed by the ends: look at a grid for a sign change
    grid = [low + (high - low) * k / (grid_size - 1) for k in range(grid_size)]
    values = [evaluate(x) for x in grid]
    x_best, f_best = best()
    if abs(f_best) <= tol:
        return (*best(), trace)
    brackets = [k for k in range(grid_size - 1) if (values[k] > 0) != (values[k + 1] > 0)]
    if brackets:
        # the sign change closest to the best grid point
        k_best = grid.index(x_best) if x_best in grid else 0
        k = min(brackets, key=lambda k: min(abs(k - k_best), abs(k + 1 - k_best)))
        bisect(grid[k], values[k], grid[k + 1])
    return (*best(), trace)


def _validate(prompts: Any, seeds: Any, tau_high: Any, search: Any, tol: Any, max_iter: Any, grid_size: Any):
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or len(prompts) == 0 or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"`prompts` must be a string or a non-empty list of strings, got {prompts!r}.")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, Sequence)
        or len(seeds) == 0
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ValueError(f"`seeds` must be an int or a non-empty list of ints, got {seeds!r}.")
    if isinstance(tau_high, bool) or not isinstance(tau_high, numbers.Real):
        raise TypeError(f"`tau_high` must be a float in (0, 1], got {type(tau_high).__name__}.")
    if not 0.0 < tau_high <= 1.0:
        raise ValueError(f"`tau_high` must be in (0, 1], got {tau_high}.")
    if search is None:
        search = (0.0, max(0.0, float(tau_high) - _MIN_WIDTH))
    if len(search) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in search):
        raise ValueError(f"`search` must be a pair of floats `(low, high)`, got {search!r}.")
    low, high = float(search[0]), float(search[1])
    if not 0.0 <= low < high < tau_high:
        raise ValueError(f"`search` must satisfy 0 <= low < high < `tau_high`={tau_high}, got {search!r}.")
    if not (isinstance(tol, numbers.Real) and tol > 0):
        raise ValueError(f"`tol` must be a positive float, got {tol!r}.")
    if not (isinstance(max_iter, int) and max_iter >= 0):
        raise ValueError(f"`max_iter` must be a non-negative int, got {max_iter!r}.")
    if not (isinstance(grid_size, int) and grid_size >= 2):
        raise ValueError(f"`grid_size` must be an int >= 2, got {grid_size!r}.")
    return list(prompts), list(seeds), (low, high)


@torch.no_grad()
def calibrate_tau_low(
    pipe: Any,
    prompts: str | Sequence[str],
    seeds: int | Sequence[int] = (0,),
    tau_high: float = 0.7,
    search: tuple[float, float] | None = None,
    tol: float = 1e-3,
    max_iter: int = 12,
    grid_size: int = 9,
    grayscale: bool = True,
    generator_device: str | torch.device = "cpu",
    **pipe_kwargs: Any,
) -> TRFlowCalibrationResult:
    r"""
    Find `tau_low` such that AF of videos made with `[tau_low, tau_high]` matches AF of videos made with `[0, 1]`.

    The model runs once per (prompt, seed) over the full schedule; every candidate window is then an ensemble of the
    stored per-step estimates, decoded by the VAE and measured with
    [`~diffusers_longvid.frequency.average_frequency`] (mean over frames, videos and (prompt, seed) pairs).
    The search ([`search_matching_value`]) bisects when the ends of `search` bracket the target, else scans a grid
    and bisects in a sign change; it returns the best evaluated candidate even when no candidate is within `tol`
    (then `converged=False` and `trace` shows what was reachable).

    Memory: the estimates of every step of every (prompt, seed) are kept on the CPU (`num_inference_steps` latents
    each; for Wan2.1 at 480p and 81 frames about 8 MB per latent).

    Args:
        pipe (`DiffusionPipeline`): A Wan-style pipeline with a flow-matching scheduler and a Wan VAE (see
            [`~diffusers_longvid.decomposition.decompose_trajectory`]). Its scheduler is left unchanged.
        prompts (`str` or `list[str]`): The prompts.
        seeds (`int` or `list[int]`, *optional*, defaults to `(0,)`): The seeds; every prompt runs with every seed,
            with `torch.Generator(generator_device).manual_seed(seed)`.
        tau_high (`float`, *optional*, defaults to 0.7): The fixed end of the window (0 = noise, 1 = clean).
        search (`tuple[float, float]`, *optional*): The interval of `tau_low` to search; defaults to
            `(0.0, tau_high - 0.01)`.
        tol (`float`, *optional*, defaults to 1e-3): Accepted absolute AF difference.
        max_iter (`int`, *optional*, defaults to 12): Bisection steps at most.
        grid_size (`int`, *optional*, defaults to 9): Points of the fallback grid when the ends do not bracket.
        grayscale (`bool`, *optional*, defaults to `True`): Measure AF on luma (else per RGB channel).
        generator_device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): Device of the seeded generators.
        pipe_kwargs: Other arguments of the pipeline call (`negative_prompt`, `height`, `width`, `num_frames`,
            `num_inference_steps`, `guidance_scale`, ...). `prompt`, `generator`, `latents`, `output_type` and
            `return_dict` are set here.

    Returns:
        [`TRFlowCalibrationResult`].
    """
    from ..decomposition import decode_latents, decompose_trajectory, ensemble_estimates, window_weights
    from ..frequency import average_frequency

    prompts, seeds, (low, high) = _validate(prompts, seeds, tau_high, search, tol, max_iter, grid_size)
    reserved = [k for k in _RESERVED_PIPE_KWARGS if k in pipe_kwargs]
    if reserved:
        raise ValueError(f"`{reserved[0]}` is set by `calibrate_tau_low`; do not pass it.")
    tau_high = float(tau_high)

    # 1. one full-schedule run per (prompt, seed)
    runs: list[list[TRFlowStepEstimate]] = []
    for prompt in prompts:
        for seed in seeds:
            generator = torch.Generator(generator_device).manual_seed(seed)
            logger.info(f"Calibration run {len(runs) + 1}/{len(prompts) * len(seeds)}: seed {seed}, {prompt!r}")
            runs.append(
                decompose_trajectory(pipe, prompt, tau_low=0.0, tau_high=1.0, generator=generator, **pipe_kwargs)
            )

    def af_per_sample(tau_low: float, tau_high: float) -> list[float]:
        values = []
        for estimates in runs:
            latents = ensemble_estimates(estimates, window_weights(estimates, tau_low, tau_high))
            frames = decode_latents(pipe, latents, output_type="np")
            values.append(average_frequency(frames, layout="BFHWC", grayscale=grayscale))
        return values

    # 2. the target: the full window, i.e. the plain Euler outputs
    target_per_sample = af_per_sample(0.0, 1.0)
    target = sum(target_per_sample) / len(target_per_sample)
    logger.info(f"Target AF (window [0, 1]): {target:.5f}")

    per_sample_cache: dict[float, list[float]] = {}
    af_cache: dict[float, float] = {}

    def mismatch(tau_low: float) -> float:
        per_sample_cache[tau_low] = af_per_sample(tau_low, tau_high)
        af_cache[tau_low] = sum(per_sample_cache[tau_low]) / len(runs)
        logger.info(f"tau_low={tau_low:.5f}: AF {af_cache[tau_low]:.5f} (target {target:.5f})")
        return af_cache[tau_low] - target

    # 3. search
    best_tau, best_diff, trace = search_matching_value(
        mismatch, low, high, tol, max_iter=max_iter, grid_size=grid_size
    )
    converged = abs(best_diff) <= tol
    if not converged:
        logger.warning(
            f"No `tau_low` in [{low}, {high}] matched the target AF {target:.5f} within `tol={tol}`; the closest, "
            f"tau_low={best_tau:.4f}, is off by {best_diff:+.5f}. See `trace`."
        )
    weights = window_weights(runs[0], best_tau, tau_high)
    return TRFlowCalibrationResult(
        tau_low=best_tau,
        tau_high=tau_high,
        target_af=target,
        af=af_cache[best_tau],
        converged=converged,
        tol=float(tol),
        trace=[(tau, af_cache[tau]) for tau, _ in trace],
        target_af_per_sample=target_per_sample,
        af_per_sample=per_sample_cache[best_tau],
        num_steps_in_window=int((weights > 0).sum()),
    )
