"""The accelerate training loop shared by both stages.

Model-specific work (what is trained, how a batch becomes a loss, how the result is saved) lives in a
`TrainingSpec`; this module only runs the loop: distributed set-up, mixed precision, gradient accumulation and
clipping, learning-rate schedule, optional EMA, TensorBoard logging, periodic resumable checkpoints, validation, and
the final save.

Determinism: the data order comes from seeded per-epoch permutations (`DeterministicBatchSampler`) and every random
draw of a micro-batch (noise, noise level, conditioning task, caption dropout) from a generator seeded by
`(seed, step, micro-batch, rank)` (`step_generator`). A run resumed from a checkpoint therefore continues exactly the
run that was stopped.

A checkpoint folder `<output_dir>/checkpoints/checkpoint-<step>/` holds, all in safetensors or JSON except
accelerate's optimizer and RNG states (read back with `weights_only=True`):

- `trainable.safetensors`: the trainable parameters only (the whole transformer in stage 1, the LoRA in stage 2);
- `optimizer.bin`, `random_states_<rank>.pkl`: accelerate's `save_state`;
- `trainer_state.json`: the step, the learning-rate schedule state and the number of processes;
- `ema.safetensors`: the EMA weights (with `use_ema`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers.utils import logging
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import TrainConfig, config_to_dict


logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINABLE_WEIGHTS_NAME = "trainable.safetensors"
EMA_WEIGHTS_NAME = "ema.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"


class TrainingSpec(Protocol):
    """What a stage provides to `run_training`."""

    def build_dataset(self) -> Dataset:
        """The training examples. Called first, so bad data fails before any model is loaded."""

    def build_model(self) -> nn.Module:
        """The module to train; exactly its parameters with `requires_grad=True` are optimised and checkpointed."""

    def collate(self, items: list[Any]) -> Any:
        """Batch a list of dataset items (runs in DataLoader workers: no model work here)."""

    def compute_loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        """The scalar loss of a micro-batch; every random draw comes from `generator`."""

    def save_final(self, model: nn.Module, output_dir: Path) -> None:
        """Save the trained weights in the format the pipeline loads (main process only)."""

    def validate(self, model: nn.Module, step: int, output_dir: Path) -> Path | None:
        """Write validation outputs (an mp4) for the current weights; returns the file written, if any."""


class DeterministicBatchSampler(Sampler[list[int]]):
    r"""
    Yields each process's micro-batches of dataset indices from seeded per-epoch permutations, from any micro-step.

    The examples form an endless stream: epoch `e` is the permutation `randperm(n)` seeded by `(seed, e)`. Global
    micro-batch `m` is stream positions `[m * B * W, (m + 1) * B * W)` (B = per-process batch, W = processes), and
    process `r` takes every W-th of them, so processes see disjoint examples and the stream is the same for any `W`
    with the same global batch. `set_start(m)` makes the sampler start at micro-batch `m` (resume).

    Args:
        num_examples (`int`): Dataset size.
        batch_size (`int`): Per-process micro-batch size.
        seed (`int`): Seed of the permutations.
        rank (`int`, *optional*, defaults to 0): This process's index.
        world_size (`int`, *optional*, defaults to 1): Number of processes.
        repeat_batches (`int`, *optional*, defaults to 0):
            Debug: cycle through the first `repeat_batches` global micro-batches of the stream forever (0: off).
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        repeat_batches: int = 0,
    ) -> None:
        if num_examples <= 0:
            raise ValueError("The training dataset is empty.")
        if not 0 <= rank < world_size:
            raise ValueError(f"`rank` must be in [0, {world_size}), got {rank}.")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.repeat_batches = repeat_batches
        self.start_micro_step = 0
        self._orders: dict[int, list[int]] = {}

    def set_start(self, micro_step: int) -> None:
        self.start_micro_step = micro_step

    def epoch_order(self, epoch: int) -> list[int]:
        """The permutation of epoch `epoch` (the last two epochs' are kept: a batch may straddle a boundary)."""
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders[epoch] = torch.randperm(self.num_examples, generator=generator).tolist()
            for old in [e for e in self._orders if e < epoch - 1]:
                del self._orders[old]
        return self._orders[epoch]

    def global_batch(self, micro_step: int) -> list[int]:
        """Indices of global micro-batch `micro_step` (all processes, in stream order)."""
        if self.repeat_batches:
            micro_step %= self.repeat_batches
        size = self.batch_size * self.world_size
        return [
            self.epoch_order(position // self.num_examples)[position % self.num_examples]
            for position in range(micro_step * size, (micro_step + 1) * size)
        ]

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start_micro_step
        while True:
            yield self.global_batch(micro)[self.rank :: self.world_size]
            micro += 1

    def __len__(self) -> int:  # endless; the loop stops at `max_train_steps`
        return 2**62


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The CPU generator of one micro-batch's random draws, a function of `(seed, step, micro, rank)` only."""
    return torch.Generator().manual_seed(((seed * 7919 + step) * 131 + micro) * 1009 + rank)


def overfit_generator(config: TrainConfig, step: int, micro: int, rank: int) -> torch.Generator:
    """The generator of a micro-batch with `overfit_batches`: micro-batch `m` draws as micro-batch
    `m % overfit_batches` of step 0, so each repeated batch also repeats its noise, noise levels and tasks."""
    index = (step * config.gradient_accumulation_steps + micro) % config.overfit_batches
    return step_generator(config.seed, 0, index, rank)


def find_checkpoint(output_dir: str | Path, resume: str) -> Path | None:
    """Resolve `--resume` (`latest` or a folder) to a checkpoint folder; `None` if `latest` finds none."""
    if resume == "latest":
        root = Path(output_dir) / "checkpoints"
        checkpoints = sorted(
            (p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / TRAINER_STATE_NAME).is_file()),
            key=checkpoint_step,
        )
        return checkpoints[-1] if checkpoints else None
    path = Path(resume)
    if not (path / TRAINER_STATE_NAME).is_file():
        raise ValueError(
            f"`resume` must be `latest` or a checkpoint folder (holding {TRAINER_STATE_NAME}), got {resume!r}."
        )
    return path


def checkpoint_step(path: Path) -> int:
    """The step of a `checkpoint-<step>` folder."""
    match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
    if match is None:
        raise ValueError(f"Checkpoint folder {path} is not named `{CHECKPOINT_PREFIX}<step>`.")
    return int(match.group(1))


@dataclass
class TrainingResult:
    """What `run_training` returns.

    Args:
        global_step (`int`): Optimiser steps done (including those before a resume).
        final_dir (`Path`, *optional*): Folder of the final weights (`None` on processes other than the main one).
        losses (`list[float]`): This run's loss per optimiser step, averaged over micro-batches and processes.
        num_processes (`int`): Processes that trained together.
        model (`nn.Module`, *optional*): This process's trained model (unwrapped), with the training weights (not
            the EMA's).
        validation_videos (`list[Path]`): Validation files written by this process.
    """

    global_step: int
    final_dir: Path | None
    losses: list[float]
    num_processes: int
    model: nn.Module | None = None
    validation_videos: list[Path] = field(default_factory=list)


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters with `requires_grad=True`, by name (what checkpoints hold)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a `trainable_state_dict` into `model`; the names must match exactly."""
    params = dict(model.named_parameters())
    expected = {name for name, p in params.items() if p.requires_grad}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(
            f"The checkpoint does not match the model's trainable parameters (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}): was it written by another configuration?"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


def _save_ema(ema: Any, names: list[str], path: Path) -> None:
    """The EMA weights by parameter name (as `trainable.safetensors`), its counters in the metadata."""
    from safetensors.torch import save_file

    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    tensors = {name: t.detach().cpu().contiguous() for name, t in zip(names, shadow, strict=True)}
    save_file(tensors, str(path), metadata={"state": json.dumps(state), "names": json.dumps(names)})


def _load_ema(ema: Any, names: list[str], path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        if json.loads(handle.metadata()["names"]) != names:
            raise ValueError(f"{path} does not hold the EMA of this model's trainable parameters.")
        state = json.loads(handle.metadata()["state"])
        state["shadow_params"] = [handle.get_tensor(name) for name in names]
    ema.load_state_dict(state)


def _prune_checkpoints(root: Path, limit: int) -> None:
    if limit <= 0:
        return
    checkpoints = sorted((p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()), key=checkpoint_step)
    for old in checkpoints[: max(0, len(checkpoints) - limit)]:
        shutil.rmtree(old, ignore_errors=True)
        logger.info(f"Removed old checkpoint {old}.")


def run_training(spec: TrainingSpec, config: TrainConfig) -> TrainingResult:
    r"""
    Train `spec` with accelerate as configured; works in one process or under `accelerate launch` / `torchrun`.

    Steps: build the dataset (bad data fails here, before any model is loaded), the model, AdamW and the diffusers
    learning-rate schedule; resume from a checkpoint if asked; then loop over optimiser steps (each of
    `gradient_accumulation_steps` micro-batches), logging, checkpointing and validating at their intervals; finally
    save the weights with `spec.save_final` (the EMA weights with `use_ema`).

    Args:
        spec (`TrainingSpec`): The stage (e.g. `ExtensionTrainingSpec`, `CausalLoRATrainingSpec`).
        config (`TrainConfig`): The options.

    Returns:
        [`TrainingResult`]
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType, ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    output_dir = Path(config.output_dir)
    log_with = None if config.report_to == "none" else config.report_to
    if log_with == "tensorboard":
        from ..utils import require

        require("tensorboard", "TensorBoard logging (`--report-to tensorboard`)")
    accelerator = Accelerator(
        cpu=config.cpu,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    rank, world_size = accelerator.process_index, accelerator.num_processes
    # FSDP and DeepSpeed ZeRO-3 shard the parameters: one process alone cannot run the model or hold its weights
    sharded = accelerator.distributed_type == DistributedType.FSDP or (
        accelerator.distributed_type == DistributedType.DEEPSPEED
        and getattr(accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3
    )
    if sharded and config.use_ema:
        raise ValueError(
            "`use_ema` is not supported with sharded parameters (FSDP, DeepSpeed ZeRO-3); use DDP or DeepSpeed ZeRO-2."
        )
    if sharded and config.validation_steps and config.validation_prompts:
        raise ValueError(
            "`validation_steps` is not supported with sharded parameters (FSDP, DeepSpeed ZeRO-3): "
            "validation runs on one process. Set it to 0 and sample from a saved checkpoint."
        )
    logger.info(
        f"Training on {world_size} process(es), device {accelerator.device}, mixed precision "
        f"{accelerator.mixed_precision}."
    )

    # 1. Data first: a bad manifest or cache fails before anything heavy is loaded.
    dataset = spec.build_dataset()
    logger.info(f"Training examples: {len(dataset):,}.")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(config_to_dict(config), indent=2))

    # 2. Model, optimiser, schedule. The seed makes any random initialisation (e.g. LoRA A) identical across runs.
    set_seed(config.seed)
    model = spec.build_model()
    if config.gradient_checkpointing:
        if not hasattr(model, "enable_gradient_checkpointing"):
            raise ValueError(f"`gradient_checkpointing`: {type(model).__name__} does not support it.")
        model.enable_gradient_checkpointing()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("The training spec's model has no trainable parameters.")
    num_trainable = sum(p.numel() for p in trainable)
    logger.info(f"Trainable parameters: {num_trainable:,} of {sum(p.numel() for p in model.parameters()):,}.")
    optimizer = torch.optim.AdamW(
        trainable,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    # Not passed to `accelerator.prepare`: a prepared schedule steps once per process per step. Its state is saved
    # in `trainer_state.json` (accelerate would pickle it).
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_train_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    trainable = [p for p in model.parameters() if p.requires_grad]  # (FSDP replaces the parameters)
    trainable_names = [name for name, p in unwrapped.named_parameters() if p.requires_grad]

    ema = None
    if config.use_ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trainable, decay=config.ema_decay)
        ema.to(accelerator.device)

    # Checkpoints hold only the trainable parameters (the LoRA in stage 2), as safetensors. FSDP and DeepSpeed save
    # their own sharded model state (no `weights` reach the hook then).
    def save_model_hook(models: list[nn.Module], weights: list[Any], folder: str) -> None:
        if not weights:
            return
        if accelerator.is_main_process:
            state = trainable_state_dict(accelerator.unwrap_model(models[0]))
            state = {name: value.cpu().contiguous() for name, value in state.items()}
            save_file(state, str(Path(folder) / TRAINABLE_WEIGHTS_NAME))
        weights.clear()

    def load_model_hook(models: list[nn.Module], folder: str) -> None:
        if not models:
            return
        target = accelerator.unwrap_model(models.pop())
        load_trainable_state_dict(target, load_file(str(Path(folder) / TRAINABLE_WEIGHTS_NAME)))

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    # 3. Resume.
    global_step = 0
    if config.resume:
        checkpoint = find_checkpoint(output_dir, config.resume)
        if checkpoint is None:
            logger.info("`--resume latest`: no checkpoint yet, starting from scratch.")
        else:
            state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
            accelerator.load_state(str(checkpoint))
            lr_scheduler.load_state_dict(state["lr_scheduler"])
            if ema is not None:
                if not (checkpoint / EMA_WEIGHTS_NAME).is_file():
                    raise ValueError(f"`use_ema` is set but checkpoint {checkpoint} has no {EMA_WEIGHTS_NAME}.")
                _load_ema(ema, trainable_names, checkpoint / EMA_WEIGHTS_NAME)
                ema.to(accelerator.device)
            global_step = int(state["global_step"])
            if state.get("num_processes", world_size) != world_size:
                logger.warning(
                    f"Resuming a run of {state['num_processes']} processes on {world_size}: the data order changes "
                    "unless the global batch size is the same."
                )
            logger.info(f"Resumed from {checkpoint} at step {global_step}.")

    sampler = DeterministicBatchSampler(
        len(dataset),
        config.train_batch_size,
        config.seed,
        rank=rank,
        world_size=world_size,
        repeat_batches=config.overfit_batches,
    )
    sampler.set_start(global_step * config.gradient_accumulation_steps)
    dataloader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=spec.collate,
        num_workers=config.dataloader_num_workers,
        persistent_workers=config.dataloader_num_workers > 0,
    )

    if log_with is not None:
        flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config_to_dict(config).items()}
        accelerator.init_trackers("longvid", config=flat)

    def save_checkpoint(step: int) -> None:
        root = output_dir / "checkpoints"
        path = root / f"{CHECKPOINT_PREFIX}{step}"
        accelerator.save_state(str(path), safe_serialization=True)
        if accelerator.is_main_process:
            if ema is not None:
                _save_ema(ema, trainable_names, path / EMA_WEIGHTS_NAME)
            state = {"global_step": step, "num_processes": world_size, "lr_scheduler": lr_scheduler.state_dict()}
            # written last: a folder without it is an interrupted save, which `--resume latest` skips
            (path / TRAINER_STATE_NAME).write_text(json.dumps(state, indent=2))
            _prune_checkpoints(root, config.checkpoints_total_limit)
            logger.info(f"Saved checkpoint {path}.")
        accelerator.wait_for_everyone()

    def validate(step: int) -> None:
        was_training = unwrapped.training
        unwrapped.eval()
        if ema is not None:  # validate what would be saved
            ema.store(trainable)
            ema.copy_to(trainable)
        try:
            with torch.no_grad():
                path = spec.validate(unwrapped, step, output_dir / "validation")
            if path is not None:
                validation_videos.append(path)
        finally:
            if ema is not None:
                ema.restore(trainable)
            unwrapped.train(was_training)

    # 4. The loop.
    progress = tqdm(
        total=config.max_train_steps, initial=global_step, desc="train", disable=not accelerator.is_local_main_process
    )
    losses: list[float] = []
    validation_videos: list[Path] = []
    data_iter = iter(dataloader)
    micro, running_loss, skipped = 0, 0.0, 0
    model.train()
    while global_step < config.max_train_steps:
        batch = next(data_iter)
        skipped += int(getattr(batch, "num_skipped", 0))
        with accelerator.accumulate(model):
            if config.overfit_batches:  # the same examples and the same draws, over and over
                generator = overfit_generator(config, global_step, micro, rank)
            else:
                generator = step_generator(config.seed, global_step, micro, rank)
            loss = spec.compute_loss(model, batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"Non-finite loss {loss.item()} at step {global_step}, micro-batch {micro}.")
            accelerator.backward(loss)
            running_loss += loss.detach().float().item() / config.gradient_accumulation_steps
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        micro += 1
        if not accelerator.sync_gradients:
            continue
        lr_scheduler.step()
        micro = 0
        global_step += 1
        if ema is not None:
            ema.step(trainable)
        step_loss = running_loss
        if world_size > 1:
            step_loss = accelerator.reduce(torch.tensor(running_loss, device=accelerator.device), "mean").item()
        losses.append(step_loss)
        running_loss = 0.0
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.4f}")
        if log_with is not None and config.logging_steps and global_step % config.logging_steps == 0:
            total_skipped = accelerator.reduce(torch.tensor(skipped, device=accelerator.device), "sum").item()
            accelerator.log(
                {"train/loss": step_loss, "train/lr": lr_scheduler.get_last_lr()[0], "data/skipped": total_skipped},
                step=global_step,
            )
        if config.checkpointing_steps and global_step % config.checkpointing_steps == 0:
            save_checkpoint(global_step)
        if config.validation_steps and global_step % config.validation_steps == 0:
            if accelerator.is_main_process:
                validate(global_step)
            accelerator.wait_for_everyone()
    progress.close()

    # 5. Final weights (the EMA's with `use_ema`). Sharded parameters are gathered into a fresh copy of the model.
    accelerator.wait_for_everyone()
    final_dir = None
    target = unwrapped
    if sharded:
        full_state = accelerator.get_state_dict(model)  # a collective: every process takes part
        if accelerator.is_main_process:
            target = spec.build_model()
            target.load_state_dict(full_state)
    if accelerator.is_main_process:
        if ema is not None:
            ema.store(trainable)
            ema.copy_to(trainable)
        final_dir = output_dir / "final"
        was_training = target.training
        target.eval()
        try:
            spec.save_final(target, final_dir)
        finally:
            target.train(was_training)
            if ema is not None:
                ema.restore(trainable)
        logger.info(f"Saved the final weights to {final_dir}.")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainingResult(
        global_step=global_step,
        final_dir=final_dir,
        losses=losses,
        num_processes=world_size,
        model=unwrapped,
        validation_videos=validation_videos,
    )
