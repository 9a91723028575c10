"""`longvid toy-memory --kv-cache-config JSON`: parsed into a `CrossClipKVCacheConfig` and passed to the benchmark."""

import argparse

import pytest

from diffusers_longvid.attention import CrossClipKVCacheConfig
from diffusers_longvid.commands import toy_memory


def parse(*argv):
    parser = argparse.ArgumentParser()
    toy_memory.register(parser.add_subparsers())
    return parser.parse_args(["toy-memory", *argv])


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

    def fake_benchmark(pipe, out_dir, config=None, command=None, model=None, **pipe_kwargs):
        seen.update(pipe_kwargs, command=command)
        return {"table": {"ours": {}, "no-KV": {}}, "chance": 0.5}

    class FakePipe:
        @classmethod
        def from_pretrained(cls, path):
            return cls()

        def to(self, device):
            return self

        def set_progress_bar_config(self, **kwargs):
            pass

    import diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension as module
    import diffusers_longvid.toy.memory as memory

    monkeypatch.setattr(memory, "run_memory_benchmark", fake_benchmark)
    monkeypatch.setattr(module, "LongVideoExtensionPipeline", FakePipe)
    text = '{"history_pool": [2, 2, 2]}'
    args = parse("--model", str(tmp_path), "--out", str(tmp_path / "out"), "--kv-cache-config", text)
    assert args.func(args) == 0
    assert seen["kv_cache_config"] == CrossClipKVCacheConfig(history_pool=(2, 2, 2))
    assert "--kv-cache-config" in seen["command"]
