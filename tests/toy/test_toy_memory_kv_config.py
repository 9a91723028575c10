"""`longvid toy-memory --kv-cache-config JSON`: parsed into a `CrossClipKVCacheConfig` and passed to the benchmark."""

import argparse

import pytest

from diffusers_longvid.attention import CrossClipKVCacheConfig
from diffusers_longvid.commands import toy_memory


def parse(*argv):
    parser = argparse.ArgumentParser()
    toy_memory.register(parser.add_subparsers())
    return parser.parse_args(["toy-memory", *argv])


class FakePipe:
    """Stands in for `LongVideoExtensionPipeline` in `toy-memory`: records the LoRA it is given."""

    loaded = None

    @classmethod
    def from_pretrained(cls, path):
        return cls()

    def load_lora_weights(self, folder, weight_name=None):
        self.loaded = (folder, weight_name)

    def to(self, device):
        return self

    def set_progress_bar_config(self, **kwargs):
        pass


def patch_benchmark(monkeypatch, seen):
    """Replace the pipeline by `FakePipe` and the benchmark by one that records what it is given into `seen`."""
    import diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension as module
    import diffusers_longvid.toy.memory as memory

    def fake_benchmark(pipe, out_dir, config=None, command=None, model=None, **pipe_kwargs):
        seen.update(pipe_kwargs, command=command, model=model, loaded=pipe.loaded)
        return {"table": {"ours": {}, "no-KV": {}}, "chance": 0.5}

    monkeypatch.setattr(memory, "run_memory_benchmark", fake_benchmark)
    monkeypatch.setattr(module, "LongVideoExtensionPipeline", FakePipe)


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"history_pool": [2, 2]}', "`history_pool`")],
)
def test_bad_kv_cache_config_is_refused_before_loading(tmp_path, capsys, text, message):
    args = parse("--model", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--kv-cache-config", text)
    assert args.func(args) == 2
    assert message in capsys.readouterr().err


def test_kv_cache_config_reaches_the_benchmark(tmp_path, monkeypatch):
    seen = {}
    patch_benchmark(monkeypatch, seen)
    text = '{"history_pool": [2, 2, 2]}'
    args = parse("--model", str(tmp_path), "--out", str(tmp_path / "out"), "--kv-cache-config", text)
    assert args.func(args) == 0
    assert seen["kv_cache_config"] == CrossClipKVCacheConfig(history_pool=(2, 2, 2))
    assert "--kv-cache-config" in seen["command"]


def test_missing_lora_is_refused_before_loading(tmp_path, capsys):
    args = parse("--model", str(tmp_path), "--out", str(tmp_path / "out"), "--lora", str(tmp_path / "nope"))
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "`--lora" in err and "pytorch_lora_weights.safetensors" in err


def test_lora_is_loaded_and_a_pool_mismatch_is_warned(tmp_path, monkeypatch, capsys):
    import json

    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (lora / "training_info.json").write_text(json.dumps({"kv_cache_config": {"history_pool": [2, 2, 2]}}))
    seen = {}
    patch_benchmark(monkeypatch, seen)
    args = parse("--model", str(tmp_path), "--out", str(tmp_path / "out"), "--lora", str(lora))
    assert args.func(args) == 0
    assert seen["loaded"] == (str(lora), "pytorch_lora_weights.safetensors")
    assert "LoRA" in seen["model"] and "--lora" in seen["command"]
    assert "trained with history_pool=[2, 2, 2], this run uses [1, 1, 1]" in capsys.readouterr().err
    args = parse(
        "--model", str(tmp_path), "--out", str(tmp_path / "out"), "--lora", str(lora),
        "--kv-cache-config", '{"history_pool": [2, 2, 2]}',
    )  # fmt: skip
    assert args.func(args) == 0
    assert "warning" not in capsys.readouterr().err
    # a LoRA trained on selected history, run dense: warned about the keep ratio
    (lora / "training_info.json").write_text(json.dumps({"kv_cache_config": {"history_keep_ratio": 0.15}}))
    args = parse("--model", str(tmp_path), "--out", str(tmp_path / "out"), "--lora", str(lora))
    assert args.func(args) == 0
    assert "trained with history_keep_ratio=0.15, this run uses 1.0" in capsys.readouterr().err
