"""Trainer configuration and loop pieces: flags and config files, `--help`, input checks, the deterministic batch
sampler, checkpoint discovery, conditioning tasks, and no unsafe `torch.load` in the package."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from diffusers_longvid.cli import build_parser, main
from diffusers_longvid.training.conditioning import ConditionTask, sample_task, valid_condition_counts
from diffusers_longvid.training.config import (
    CausalLoRATrainConfig,
    ExtensionTrainConfig,
    config_from_args,
    config_to_dict,
)
from diffusers_longvid.training.loop import (
    TRAINER_STATE_NAME,
    DeterministicBatchSampler,
    find_checkpoint,
    overfit_generator,
    step_generator,
)


STAGES = [("train-extension", ExtensionTrainConfig), ("train-causal-lora", CausalLoRATrainConfig)]


def parse(command, *flags):
    config_cls = dict(STAGES)[command]
    return config_from_args(config_cls, build_parser().parse_args([command, *flags]))


@pytest.mark.parametrize("command, config_cls", STAGES)
def test_help_documents_every_flag(command, config_cls, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    fields = dataclasses.fields(config_cls)
    assert len(fields) >= 45
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        assert re.search(rf"{flag}\b", text), flag
        assert f.metadata.get("help"), f"{f.name} has no help text"
        assert " ".join(f.metadata["help"].split())[:40] in text, f.name
    assert "--config FILE" in text and "--no-gradient-checkpointing" in text


def test_defaults_file_and_flags_precedence(tmp_path):
    defaults = parse("train-extension")
    assert defaults == ExtensionTrainConfig()
    yaml_file = tmp_path / "options.yaml"
    # YAML reads 3e-4 as a string and 2 as an int: both become the field's type
    yaml_file.write_text(
        "learning-rate: 3e-4\nmax_train_steps: 7\ntimestep_shift: 2\nuse-ema: true\n"
        "validation_prompts: [a cat, a dog]\ntask_weights: [1, 0, 2]\n"
    )
    config = parse("train-extension", "--config", str(yaml_file), "--max-train-steps", "9", "--no-use-ema")
    assert config.learning_rate == 3e-4 and isinstance(config.learning_rate, float)
    assert config.timestep_shift == 2.0 and isinstance(config.timestep_shift, float)
    assert config.max_train_steps == 9 and config.use_ema is False  # explicit flags win over the file
    assert config.validation_prompts == ["a cat", "a dog"] and config.task_weights == [1.0, 0.0, 2.0]
    # train_config.json (what a run writes) is a valid --config file that gives the same config back
    json_file = tmp_path / "train_config.json"
    json_file.write_text(json.dumps(config_to_dict(config)))
    assert parse("train-extension", "--config", str(json_file)) == config
    stage2 = parse("train-causal-lora", "--cached-blocks", "2", "3", "--lora-alpha", "8", "--clip-selector", "recent")
    assert stage2.cached_blocks == [2, 3] and stage2.lora_alpha == 8.0 and stage2.clip_selector == "recent"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-frames", "80"], r"`num_frames` \(--num-frames\) must be of the form 4k\+1"),
        (["--height", "100"], r"`height` \(--height\) must be a multiple of 16"),
        (["--learning-rate", "0"], r"`learning_rate` \(--learning-rate\) must be a number > 0"),
        (["--caption-dropout-prob", "1.5"], r"`caption_dropout_prob` .* in \[0, 1\)"),
        (["--task-weights", "1", "1"], r"`task_weights` .* three numbers"),
        (["--validation-num-condition-frames", "81"], r"`validation_num_condition_frames` .* below `num_frames`"),
    ],
)
def test_bad_values_name_the_flag(flags, message):
    with pytest.raises(ValueError, match=message):
        parse("train-extension", *flags)


def test_config_file_errors(tmp_path, capsys):
    unknown = tmp_path / "bad.yaml"
    unknown.write_text("learning_rate: 1e-4\nnum_epochs: 3\n")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['num_epochs'\]"):
        parse("train-extension", "--config", str(unknown))
    typed = tmp_path / "typed.json"
    typed.write_text(json.dumps({"max_train_steps": 2.5}))
    with pytest.raises(ValueError, match="`max_train_steps` in the `--config` file must be an int"):
        parse("train-extension", "--config", str(typed))
    toml = tmp_path / "options.toml"
    toml.write_text("")
    with pytest.raises(ValueError, match=r"must be a \.yaml, \.yml or \.json file"):
        parse("train-extension", "--config", str(toml))
    # the CLI prints the error and exits with 2 (no traceback), before loading anything
    assert main(["train-causal-lora", "--config", str(unknown)]) == 2
    assert "num_epochs" in capsys.readouterr().err


def test_spec_input_checks_come_first(tmp_path, capsys):
    from diffusers_longvid.training.stage1 import ExtensionTrainingSpec
    from diffusers_longvid.training.stage2 import CausalLoRATrainingSpec

    with pytest.raises(ValueError, match="`--pretrained-model`"):
        ExtensionTrainingSpec(ExtensionTrainConfig(manifest="m.jsonl"))
    with pytest.raises(ValueError, match="exactly one of `--latent-cache`"):
        ExtensionTrainingSpec(ExtensionTrainConfig(pretrained_model="p", manifest="m.jsonl", latent_cache="c"))
    with pytest.raises(ValueError, match="need\\(s\\) `--pretrained-model` for the VAE"):
        ExtensionTrainingSpec(ExtensionTrainConfig(transformer="t", manifest="m.jsonl"))
    with pytest.raises(ValueError, match="needs `train_batch_size=1`"):
        CausalLoRATrainingSpec(
            CausalLoRATrainConfig(
                pretrained_model="p",
                latent_cache="c",
                clip_selector="recent",
                gradient_checkpointing=True,
                train_batch_size=2,
            )
        )
    with pytest.raises(TypeError, match="`config` must be an `ExtensionTrainConfig`"):
        ExtensionTrainingSpec(CausalLoRATrainConfig(pretrained_model="p", latent_cache="c"))
    code = main(
        [
            "train-extension",
            "--pretrained-model",
            str(tmp_path / "nowhere"),
            "--manifest",
            str(tmp_path / "missing.jsonl"),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "missing.jsonl` does not exist" in capsys.readouterr().err


def test_bad_manifest_fails_before_any_model_is_loaded(tmp_path, capsys):
    # every manifest error itself is tested in test_training_data.py; here: the trainers surface them first
    from _media import write_test_manifest

    manifest = write_test_manifest(
        tmp_path / "bad.jsonl",
        [
            {"video": "missing.mp4", "clips": [{"start": 0, "end": 1, "caption": "x"}]},
            {"video": "missing.mp4", "clips": [{"start": 0, "end": 1, "caption": ""}]},
        ],
    )
    # the pretrained model does not exist either: loading it first would raise another error
    for command, extra in (("train-extension", []), ("train-causal-lora", ["--clip-selector", "recent"])):
        code = main(
            [
                command,
                "--pretrained-model",
                str(tmp_path / "no-model"),
                "--manifest",
                str(manifest),
                "--output-dir",
                str(tmp_path / command),
                *extra,
            ]
        )
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Invalid manifest" in err and "line 1: video file not found" in err and "line 2" in err
        assert not (tmp_path / command / "train_config.json").exists()


def test_sampler_is_deterministic_disjoint_and_resumable():
    single = DeterministicBatchSampler(10, batch_size=4, seed=3)
    stream = [i for m in range(5) for i in single.global_batch(m)]
    # every epoch is a permutation of the dataset, and epochs differ
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]
    # two processes of batch 2 split each global batch of 4 and together see the single-process stream
    ranks = [DeterministicBatchSampler(10, batch_size=2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    iterators = [iter(r) for r in ranks]
    for m in range(5):
        parts = [next(it) for it in iterators]
        assert parts == [stream[4 * m : 4 * m + 4][0::2], stream[4 * m : 4 * m + 4][1::2]]
    # starting at micro-batch 3 continues exactly where an uninterrupted iterator would be
    resumed = DeterministicBatchSampler(10, batch_size=4, seed=3)
    resumed.set_start(3)
    first = next(iter(resumed))
    assert first == stream[12:16]
    assert DeterministicBatchSampler(10, 4, seed=4).global_batch(0) != single.global_batch(0)
    repeat = DeterministicBatchSampler(10, 4, seed=3, repeat_batches=2)
    assert [repeat.global_batch(m) for m in range(4)] == [single.global_batch(0), single.global_batch(1)] * 2


def test_step_generators():
    draw = lambda g: torch.rand(3, generator=g)  # noqa: E731
    assert torch.equal(draw(step_generator(0, 5, 1, 0)), draw(step_generator(0, 5, 1, 0)))
    keys = [(0, 5, 1, 0), (1, 5, 1, 0), (0, 6, 1, 0), (0, 5, 0, 0), (0, 5, 1, 1)]
    draws = [draw(step_generator(*k)) for k in keys]
    assert all(not torch.equal(draws[0], d) for d in draws[1:])
    config = ExtensionTrainConfig(overfit_batches=2, gradient_accumulation_steps=1)
    assert torch.equal(draw(overfit_generator(config, 4, 0, 0)), draw(step_generator(0, 0, 0, 0)))
    assert torch.equal(draw(overfit_generator(config, 5, 0, 0)), draw(step_generator(0, 0, 1, 0)))


def test_find_checkpoint(tmp_path):
    assert find_checkpoint(tmp_path, "latest") is None
    for step, complete in ((2, True), (10, True), (12, False)):  # 12: an interrupted save
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / TRAINER_STATE_NAME).write_text("{}")
    assert find_checkpoint(tmp_path, "latest").name == "checkpoint-10"
    assert find_checkpoint(tmp_path, str(tmp_path / "checkpoints" / "checkpoint-2")).name == "checkpoint-2"
    with pytest.raises(ValueError, match="`resume` must be `latest` or a checkpoint folder"):
        find_checkpoint(tmp_path, str(tmp_path / "checkpoints" / "checkpoint-12"))


def test_condition_tasks():
    assert valid_condition_counts(17, 9) == [1, 5, 9] and valid_condition_counts(9, 9) == [1, 5]
    generator = torch.Generator().manual_seed(0)
    samples = [sample_task(generator, 17, no_condition_prob=0.1, max_condition_frames=9) for _ in range(3000)]
    counts = {task: sum(s.task is task for s in samples) for task in ConditionTask}
    assert 0.07 < counts[ConditionTask.NONE] / 3000 < 0.13
    conditioned = (ConditionTask.FIRST, ConditionTask.LAST, ConditionTask.FIRST_LAST)
    assert all(800 < counts[task] < 1000 for task in conditioned)
    assert {s.num_known for s in samples if s.task is ConditionTask.FIRST_LAST} == {1, 5}  # 2k < 17
    for sample in samples:
        known = sample.known_pixel_frames(17)
        assert len(known) < 17 and len(set(known)) == len(known)
        if sample.task is ConditionTask.NONE:
            assert known == []
        else:
            assert sample.num_known in (1, 5, 9)
        if sample.task is ConditionTask.LAST:
            assert known == list(range(17 - sample.num_known, 17))
    # the same generator state gives the same tasks (a resumed run repeats them)
    again = [sample_task(torch.Generator().manual_seed(0), 17) for _ in range(2)]
    assert again[0] == again[1]
    only_last = [sample_task(generator, 9, 0.0, 5, (0.0, 1.0, 0.0)) for _ in range(50)]
    assert {s.task for s in only_last} == {ConditionTask.LAST}


def test_no_unsafe_torch_load_in_the_trainers():
    root = Path(__file__).resolve().parents[2] / "src" / "diffusers_longvid"
    files = [*(root / "training").rglob("*.py"), *(root / "commands").glob("train_*.py"), root / "extension.py"]
    assert len(files) > 8
    calls = []
    for path in files:
        for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.name, match.group(1)))
    assert all("weights_only=True" in args for _, args in calls), calls


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "training"


@pytest.mark.parametrize(
    "name, config_cls",
    [
        ("stage1_wan21_1_3b.yaml", ExtensionTrainConfig),
        ("stage1_toy.yaml", ExtensionTrainConfig),
        ("stage2_wan21_1_3b.yaml", CausalLoRATrainConfig),
        ("stage2_toy.yaml", CausalLoRATrainConfig),
    ],
)
def test_example_train_configs_are_valid(name, config_cls):
    command = "train-extension" if config_cls is ExtensionTrainConfig else "train-causal-lora"
    config = parse(command, "--config", str(EXAMPLES / name))
    assert config.latent_cache and config.pretrained_model and config.validation_prompts


@pytest.mark.parametrize(
    "name, distributed_type",
    [
        ("accelerate_ddp.yaml", "MULTI_GPU"),
        ("accelerate_fsdp.yaml", "FSDP"),
        ("accelerate_deepspeed_zero2.yaml", "DEEPSPEED"),
    ],
)
def test_example_accelerate_configs_parse(name, distributed_type):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(EXAMPLES / name))
    assert str(config.distributed_type).endswith(distributed_type) and config.mixed_precision == "bf16"
    if distributed_type == "FSDP":
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "WanTransformerBlock"
        from diffusers.models.transformers.transformer_wan import WanTransformerBlock  # the class exists

        assert WanTransformerBlock
    if distributed_type == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 2
