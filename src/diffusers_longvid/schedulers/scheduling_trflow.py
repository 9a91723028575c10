# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""T-RFlow: a training-free truncated rectified-flow sampler (paper §3.4, DESIGN §1).

Euler sampling of a rectified flow from `x_start` (at sigma_0) is exactly a weighted ensemble of per-step clean
estimates `x~_i = x_start - sigma_0 * v_i` with weights `Delta_i = sigma_i - sigma_{i+1}`. T-RFlow keeps only the part
of the trajectory whose sigma lies inside a window and renormalises the weights. Steps after the window get weight 0
and are never evaluated: `timesteps` end at the last step with a positive weight, and that step's `step()` returns
the renormalised ensemble. Any pipeline that loops over `scheduler.timesteps` gets T-RFlow for free.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
    FlowMatchEulerDiscreteSchedulerOutput,
)

# diffusers' loader looks for the base classes as attributes of the module named in `model_index.json`;
# importing them here by name is what makes `from_pretrained` of a saved pipeline find this scheduler.
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401
from diffusers.utils import BaseOutput, logging

from ..validation import check_float


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = ["TRFlowScheduler", "TRFlowStepEstimate", "trflow_weights"]


def trflow_weights(sigmas: torch.Tensor, sigma_lo: float, sigma_hi: float) -> torch.Tensor:
    r"""Overlap weights of T-RFlow: `w_i = length([sigma_{i+1}, sigma_i] ∩ [sigma_lo, sigma_hi])`.

    Args:
        sigmas (`torch.Tensor` of shape `(N + 1,)`):
            A decreasing noise schedule, terminal value included (the scheduler's `sigmas`).
        sigma_lo (`float`), sigma_hi (`float`):
            The window in sigma (`sigma_lo = 1 - tau_high`, `sigma_hi = 1 - tau_low`).

    Returns:
        `torch.Tensor` of shape `(N,)`, float64: one weight per step. Continuous in the window's ends.
    """
    sigmas = sigmas.detach().to("cpu", torch.float64)
    upper = sigmas[:-1].clamp(max=sigma_hi)
    lower = sigmas[1:].clamp(min=sigma_lo)
    return (upper - lower).clamp(min=0.0)


@dataclass
class TRFlowStepEstimate(BaseOutput):
    """One term of the T-RFlow / Euler ensemble.

    Args:
        step_index (`int`): Index of the step in the full schedule.
        sigma (`float`): The step's noise level `sigma_i`.
        weight (`float`): Its un-normalised T-RFlow weight `w_i` for the scheduler's window.
        x_estimate (`torch.Tensor`): The clean estimate `x~_i = x_start - sigma_0 * v_i` (float32).
    """

    step_index: int
    sigma: float
    weight: float
    x_estimate: torch.Tensor


class TRFlowScheduler(FlowMatchEulerDiscreteScheduler):
    r"""
    Truncation-rectified flow (T-RFlow) sampler: Euler on a rectified flow, whose final sample is the renormalised
    ensemble of the per-step clean estimates inside a window of the denoising trajectory.

    This is a drop-in replacement for [`~diffusers.FlowMatchEulerDiscreteScheduler`]:

    ```py
    >>> pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
    ```

    Args:
        num_train_timesteps (`int`, defaults to 1000): The number of diffusion steps to train the model.
        shift (`float`, defaults to 1.0): The shift value for the timestep schedule.
        use_dynamic_shifting (`bool`, defaults to False): Whether to shift the schedule by image resolution.
        base_shift (`float`, defaults to 0.5): Stabilises generation (dynamic shifting).
        max_shift (`float`, defaults to 1.15): Maximum variation allowed (dynamic shifting).
        base_image_seq_len (`int`, defaults to 256): Base image sequence length (dynamic shifting).
        max_image_seq_len (`int`, defaults to 4096): Maximum image sequence length (dynamic shifting).
        invert_sigmas (`bool`, defaults to False): Whether to invert the sigmas (not supported with a window).
        shift_terminal (`float`, defaults to None): End value of the shifted timestep schedule.
        use_karras_sigmas (`bool`, defaults to False): Use Karras sigmas.
        use_exponential_sigmas (`bool`, defaults to False): Use exponential sigmas.
        use_beta_sigmas (`bool`, defaults to False): Use beta sigmas.
        time_shift_type (`str`, defaults to "exponential"): `"exponential"` or `"linear"` dynamic shifting.
        stochastic_sampling (`bool`, defaults to False): Stochastic sampling (only with the full window `[0, 1]`).
        tau_low (`float`, defaults to 0.3):
            Start of the kept window, as a fraction of the denoising trajectory (0 = pure noise, 1 = clean): the
            paper's τ1. Steps earlier than this (mostly low-frequency structure) are dropped from the ensemble.
        tau_high (`float`, defaults to 0.7):
            End of the kept window in the same convention: the paper's τ2. Steps later than this (where most of the
            accumulated over-sharpening comes from) are dropped and never evaluated.

    `tau_low=0, tau_high=1` reproduces `FlowMatchEulerDiscreteScheduler` exactly (every step is its Euler step).

    [`~TRFlowScheduler.from_config`] also accepts the config of the flow-matching `UniPCMultistepScheduler` that the
    Wan2.1 diffusers checkpoints ship (`use_flow_sigmas=True`, `prediction_type="flow_prediction"`): its `flow_shift`
    becomes `shift`, so the sigma schedule keeps the checkpoint's shift.
    """

    _compatibles = [FlowMatchEulerDiscreteScheduler.__name__, "UniPCMultistepScheduler"]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: Literal["exponential", "linear"] = "exponential",
        stochastic_sampling: bool = False,
        tau_low: float = 0.3,
        tau_high: float = 0.7,
    ):
        self._validate_window(tau_low, tau_high)
        self._validate_schedule(num_train_timesteps, shift)
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            shift=shift,
            use_dynamic_shifting=use_dynamic_shifting,
            base_shift=base_shift,
            max_shift=max_shift,
            base_image_seq_len=base_image_seq_len,
            max_image_seq_len=max_image_seq_len,
            invert_sigmas=invert_sigmas,
            shift_terminal=shift_terminal,
            use_karras_sigmas=use_karras_sigmas,
            use_exponential_sigmas=use_exponential_sigmas,
            use_beta_sigmas=use_beta_sigmas,
            time_shift_type=time_shift_type,
            stochastic_sampling=stochastic_sampling,
        )
        self._check_window_options()
        # When True, every step's clean estimate is kept in `self.step_estimates` (for the decomposition figure).
        self.keep_estimates: bool = False
        self._reset_ensemble()
        self.weights: torch.Tensor | None = None
        self.full_timesteps: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any] | None = None, return_unused_kwargs: bool = False, **kwargs):
        r"""
        Instantiate from a scheduler config, like [`~diffusers.ConfigMixin.from_config`].

        A FlowMatch config is used as is. The config of a flow-matching `UniPCMultistepScheduler` (what
        `Wan-AI/Wan2.1-*-Diffusers` checkpoints ship) has no `shift` but a `flow_shift`: it is used as `shift`, so
        `TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)` keeps the checkpoint's schedule
        shift instead of silently falling back to `shift=1.0`. A config with a non-flow `prediction_type` is refused.

        Args:
            config (`dict`): A scheduler config, e.g. `pipe.scheduler.config`.
            return_unused_kwargs (`bool`, *optional*, defaults to `False`): As in `ConfigMixin.from_config`.
            kwargs: Overrides of config values, e.g. `tau_low=0.3, tau_high=0.7`.
        """
        if isinstance(config, dict):
            prediction_type = config.get("prediction_type", "flow_prediction")
            if prediction_type != "flow_prediction":
                raise ValueError(
                    f"`TRFlowScheduler` needs a flow-matching (velocity) model, but the config has "
                    f"`prediction_type={prediction_type!r}`; only `'flow_prediction'` configs can be converted."
                )
            if "shift" not in config and "shift" not in kwargs and config.get("flow_shift") is not None:
                logger.info(
                    f"Using `flow_shift={config['flow_shift']}` of the {config.get('_class_name')} config as `shift`."
                )
                config = {**config, "shift": float(config["flow_shift"])}
                # the key was in the source config: do not treat the injected value as a default
                config["_use_default_values"] = [k for k in config.get("_use_default_values", []) if k != "shift"]
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    # ------------------------------------------------------------------ window
    @staticmethod
    def _validate_window(tau_low: float, tau_high: float) -> None:
        for name, value in (("tau_low", tau_low), ("tau_high", tau_high)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"`{name}` must be a float in [0, 1], got {type(value).__name__}.")
        if not (0.0 <= tau_low < tau_high <= 1.0):
            raise ValueError(
                f"The T-RFlow window must satisfy 0 <= `tau_low` < `tau_high` <= 1, got `tau_low={tau_low}`, "
                f"`tau_high={tau_high}` (fractions of the denoising trajectory, 0 = pure noise, 1 = clean)."
            )

    @staticmethod
    def _validate_schedule(num_train_timesteps: int, shift: float) -> None:
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, numbers.Integral):
            raise TypeError(f"`num_train_timesteps` must be an int >= 1, got {type(num_train_timesteps).__name__}.")
        if not 1 <= num_train_timesteps <= 10**7:  # the schedule holds one float per training timestep
            raise ValueError(f"`num_train_timesteps` must be in [1, 10**7], got {num_train_timesteps}.")
        # shift <= 0 gives sigmas outside [0, 1] (timesteps above `num_train_timesteps`) or a division by zero
        # and a huge shift overflows float32 in the shifted sigmas (NaN)
        check_float("shift", shift, minimum=0.0, maximum=1e4, exclusive_minimum=True)

    def _check_window_options(self) -> None:
        if not self.is_full_window and (self.config.invert_sigmas or self.config.stochastic_sampling):
            raise ValueError(
                "`invert_sigmas` and `stochastic_sampling` are only supported with the full window "
                f"(`tau_low=0`, `tau_high=1`), got `tau_low={self.config.tau_low}`, `tau_high={self.config.tau_high}`."
            )

    @property
    def is_full_window(self) -> bool:
        """Whether the window is `[0, 1]`, i.e. the scheduler is plain Euler."""
        return self.config.tau_low == 0.0 and self.config.tau_high == 1.0

    @property
    def sigma_window(self) -> tuple[float, float]:
        """The window in sigma: `(sigma_lo, sigma_hi) = (1 - tau_high, 1 - tau_low)`."""
        return 1.0 - float(self.config.tau_high), 1.0 - float(self.config.tau_low)

    @property
    def num_evaluated_steps(self) -> int:
        """How many model calls a sampling run makes (the length of the truncated `timesteps`)."""
        return len(self.timesteps)

    def _reset_ensemble(self) -> None:
        self._x_start: torch.Tensor | None = None
        self._sigma_start: float | None = None
        self._weighted_velocity: torch.Tensor | None = None
        self._weight_sum: float = 0.0
        # what the last `step()` returned, and the sum of the changes the pipeline made to it before the next call
        self._last_prev_sample: torch.Tensor | None = None
        self._edits: torch.Tensor | None = None
        self.step_estimates: list[TRFlowStepEstimate] = []

    # --------------------------------------------------------------- schedule
    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ):
        """
        Sets the schedule like [`~diffusers.FlowMatchEulerDiscreteScheduler.set_timesteps`], then truncates
        `timesteps` after the last step with a positive T-RFlow weight. `sigmas` keeps the full schedule (with its
        terminal 0), `full_timesteps` the untruncated timesteps and `weights` one weight per full-schedule step.

        Args:
            num_inference_steps (`int`, *optional*): The number of steps of the full (untruncated) schedule.
            device (`str` or `torch.device`, *optional*): Where to put the timesteps.
            sigmas (`list[float]`, *optional*): Custom sigmas.
            mu (`float`, *optional*): Shift for resolution-dependent timestep shifting.
            timesteps (`list[float]`, *optional*): Custom timesteps.
        """
        self._validate_window(self.config.tau_low, self.config.tau_high)
        self._check_window_options()
        super().set_timesteps(
            num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu, timesteps=timesteps
        )
        # a shift below 1 can round the first shifted sigma to just above 1 in float32 (shift=0.15 gives 1.0000015,
        # a timestep of 1000.0015): clamp to the schedule's range; values already inside it are left bit-identical
        self.sigmas = self.sigmas.clamp(0.0, 1.0)
        self.timesteps = self.timesteps.clamp(0.0, float(self.config.num_train_timesteps))
        self._reset_ensemble()
        self.full_timesteps = self.timesteps
        sigma_lo, sigma_hi = self.sigma_window
        self.weights = trflow_weights(self.sigmas, sigma_lo, sigma_hi)
        positive = torch.nonzero(self.weights > 0).flatten()
        if len(positive) == 0:
            raise ValueError(
                f"The T-RFlow window `tau_low={self.config.tau_low}`, `tau_high={self.config.tau_high}` "
                f"(sigma in [{sigma_lo:.4f}, {sigma_hi:.4f}]) holds no step of the schedule "
                f"(sigma from {float(self.sigmas[0]):.4f} to 0). Widen the window."
            )
        warning_key = (len(self.weights), float(self.config.tau_low), float(self.config.tau_high), float(self.shift))
        if len(positive) < 3 and not self.is_full_window and warning_key != getattr(self, "_warned_for", None):
            # once per schedule: a long video calls `set_timesteps` once per clip
            self._warned_for = warning_key
            logger.warning(
                f"The T-RFlow window `tau_low={self.config.tau_low}`, `tau_high={self.config.tau_high}` holds only "
                f"{len(positive)} of {len(self.weights)} steps (shift={self.shift}); the ensemble will be coarse. "
                "Use more `num_inference_steps`, a smaller `shift`, or a wider window."
            )
        last = int(positive[-1])
        self.timesteps = self.full_timesteps[: last + 1]

    def set_window(self, tau_low: float, tau_high: float) -> None:
        """Change the window in place (takes effect at the next `set_timesteps`)."""
        self._validate_window(tau_low, tau_high)
        self.register_to_config(tau_low=float(tau_low), tau_high=float(tau_high))

    # ------------------------------------------------------------------- step
    def step(
        self,
        model_output: torch.FloatTensor,
        timestep: float | torch.FloatTensor,
        sample: torch.FloatTensor,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        generator: torch.Generator | None = None,
        per_token_timesteps: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> FlowMatchEulerDiscreteSchedulerOutput | tuple:
        """
        One Euler step; at the last evaluated step, returns the renormalised T-RFlow ensemble instead.

        With the full window `[0, 1]` every step, the last included, is the parent's Euler step, so the scheduler is
        exactly `FlowMatchEulerDiscreteScheduler`. Otherwise the last evaluated step returns
        `x_start + edits - sigma_0 * sum_i w_i v_i / sum_i w_i`, where `edits` is the sum of the changes the pipeline
        made to the latents between steps (zero for stock pipelines; non-zero e.g. for replacement conditioning), so
        such edits are carried into the result exactly as Euler would carry them.

        Args:
            model_output (`torch.FloatTensor`): The velocity predicted by the model.
            timestep (`float` or `torch.FloatTensor`): One of `scheduler.timesteps`.
            sample (`torch.FloatTensor`): The current sample `x_sigma`.
            s_churn (`float`), s_tmin (`float`), s_tmax (`float`), s_noise (`float`):
                Passed to the parent step (which does not use them; kept for signature compatibility).
            generator (`torch.Generator`, *optional*): Used only by stochastic sampling.
            per_token_timesteps (`torch.Tensor`, *optional*): Per-token timesteps (only with the full window).
            return_dict (`bool`, defaults to `True`): Return a `FlowMatchEulerDiscreteSchedulerOutput` or a tuple.
        """
        if per_token_timesteps is not None and not self.is_full_window:
            raise ValueError("`per_token_timesteps` is only supported with the full T-RFlow window [0, 1].")
        if self.weights is None:
            raise ValueError("Call `set_timesteps` before `step`.")
        if self.step_index is None:
            self._init_step_index(timestep)
        index = self.step_index

        sample_f32 = sample.detach().to(torch.float32)
        velocity = model_output.detach().to(torch.float32)
        if self._x_start is None:
            # x_start is the sample seen at the first step after `set_timesteps`
            self._x_start = sample_f32.clone()
            self._sigma_start = float(self.sigmas[index])
            self._weighted_velocity = torch.zeros_like(self._x_start)
            self._edits = torch.zeros_like(self._x_start)
        elif self._last_prev_sample is not None:
            # exactly zero unless the pipeline changed the latents between two steps
            self._edits.add_(sample_f32 - self._last_prev_sample)

        weight = float(self.weights[index])
        if weight > 0:
            self._weighted_velocity.add_(velocity, alpha=weight)
            self._weight_sum += weight
        if self.keep_estimates:
            self.step_estimates.append(
                TRFlowStepEstimate(
                    step_index=index,
                    sigma=float(self.sigmas[index]),
                    weight=weight,
                    x_estimate=(self._x_start - self._sigma_start * velocity).cpu(),
                )
            )

        is_last = index >= len(self.timesteps) - 1
        if self.is_full_window or not is_last:
            output = super().step(
                model_output,
                timestep,
                sample,
                s_churn=s_churn,
                s_tmin=s_tmin,
                s_tmax=s_tmax,
                s_noise=s_noise,
                generator=generator,
                per_token_timesteps=per_token_timesteps,
                return_dict=return_dict,
            )
            prev_sample = output.prev_sample if return_dict else output[0]
            self._last_prev_sample = prev_sample.detach().to(torch.float32)
            return output

        # sum_i w_i * x~_i / sum_i w_i, with x~_i = x_start - sigma_0 * v_i (plus the pipeline's edits, if any)
        ensemble = self._x_start + self._edits - self._sigma_start * self._weighted_velocity / self._weight_sum
        prev_sample = ensemble.to(model_output.dtype)
        self._last_prev_sample = None
        self._step_index += 1
        if not return_dict:
            return (prev_sample,)
        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=prev_sample)
