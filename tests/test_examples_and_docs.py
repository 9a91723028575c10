"""examples/ run (every `--help` offline; the generating ones end to end on tiny random models, `--tiny`), and
docs/api.md and docs/cli.md cover every public name and every `longvid` flag.

`python tests/test_examples_and_docs.py --write-docs` regenerates the generated parts of docs/api.md and docs/cli.md.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


# the examples load with `dtype=` (diffusers >= 0.42; `torch_dtype=` is deprecated there) and stack two LoRAs
pytestmark = [
    pytest.mark.filterwarnings("error:`torch_dtype` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute:UserWarning"),
]
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
API_DOC = ROOT / "docs" / "api.md"
CLI_DOC = ROOT / "docs" / "cli.md"
HELP_COLUMNS = "119"


def load_example(name: str):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_frames(path: Path):
    import imageio.v3 as iio

    return iio.imread(path)


# ------------------------------------------------------------------------------------------------------- examples
def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {
        "long_video",
        "image_to_long_video",
        "continue_video",
        "trflow_wan_pipeline",
        "diffusers_integrations",
        "multi_process_inference",
        "evaluate_long_video",
        "publish_to_hub",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_has_a_header_and_a_help(path):
    source = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert "Needs" in docstring and "Example" in docstring, f"{path.name}: the header must say what it needs"
    # --help works offline and fast: heavy imports live inside main()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "Needs" in result.stdout
    top_level_imports = [line for line in source.splitlines() if re.match(r"^(import|from) ", line)]
    assert not [line for line in top_level_imports if re.search(r"\b(torch|diffusers|transformers)\b", line)]


def test_long_video_tiny_training_free(tmp_path, capsys):
    out = tmp_path / "long.mp4"
    assert load_example("long_video").main(["--tiny", "--out", str(out)]) == 0
    assert read_frames(out).shape == (9 + 2 * 8, 32, 32, 3)  # 3 clips of 9 frames, k = 1
    printed = capsys.readouterr().out
    assert "replacement conditioning, 0 history clips" in printed


def test_long_video_tiny_extension_with_kv_lora(tmp_path, capsys):
    out = tmp_path / "long.mp4"
    assert load_example("long_video").main(["--tiny", "extension", "--out", str(out)]) == 0
    assert read_frames(out).shape == (25, 32, 32, 3)
    printed = capsys.readouterr().out
    assert "concat conditioning, 5 history clips" in printed
    assert "clip 2: frames (17, 25), attends [0, 1]" in printed  # the KV cache ran with the loaded LoRA


def test_trflow_on_stock_wan_pipeline_tiny(tmp_path, capsys):
    out = tmp_path / "bee.mp4"
    assert load_example("trflow_wan_pipeline").main(["--tiny", "--compare", "--out", str(out)]) == 0
    calls = dict(re.findall(r"^(\w+)\s+window .*?: (\d+) model calls", capsys.readouterr().out, re.MULTILINE))
    assert int(calls["trflow"]) < int(calls["euler"]) == 2 * 10  # CFG x 10 steps; T-RFlow skips the steps after
    assert read_frames(out).shape == read_frames(tmp_path / "bee_euler.mp4").shape == (9, 32, 32, 3)

    # the same swap in WanVideoToVideoPipeline, continuing from the video just written
    v2v = tmp_path / "v2v.mp4"
    assert load_example("trflow_wan_pipeline").main(["--tiny", "--video", str(out), "--out", str(v2v)]) == 0
    assert read_frames(v2v).shape == (9, 32, 32, 3)


def test_image_and_video_continuation_tiny(tmp_path):
    out = tmp_path / "i2lv.mp4"
    assert load_example("image_to_long_video").main(["--tiny", "--out", str(out)]) == 0
    assert read_frames(out).shape == (9 + 8, 32, 32, 3)
    continued = tmp_path / "continued.mp4"
    assert load_example("continue_video").main(["--tiny", "--append", "--out", str(continued)]) == 0
    assert read_frames(continued).shape == (13 + 4 + 4, 32, 32, 3)  # the input, then 2 clips of 9 - 5 new frames


def test_diffusers_integrations_tiny(tmp_path, capsys):
    out = tmp_path / "tools.mp4"
    args = [
        "--tiny",
        "--offload",
        "model",
        "--vae-tiling",
        "--vae-slicing",
        "--num-videos",
        "2",
        "--fuse",
        "--stop-after-clip",
        "1",
        "--out",
        str(out),
    ]
    assert load_example("diffusers_integrations").main(args) == 0
    printed = capsys.readouterr().out
    assert "active adapters: ['kv', 'style']" in printed
    assert "2 clips, 17 frames" in printed  # 3 prompts, interrupted by the callback after clip 1
    assert read_frames(out).shape == (17, 48, 48, 3)


def test_publish_and_evaluate_examples(tmp_path, capsys):
    folder = tmp_path / "hub"
    assert load_example("publish_to_hub").main(["--tiny", "--out", str(folder), "--verify"]) == 0
    assert "verified: load_lora_weights reads 8 tensors" in capsys.readouterr().out
    assert {p.name for p in folder.iterdir()} == {"README.md", "pytorch_lora_weights.safetensors"}

    import imageio.v3 as iio
    import numpy as np

    frames = np.zeros((17, 32, 32, 3), dtype=np.uint8)
    for i in range(17):
        frames[i, 8:16, i : i + 8] = 255
    video = tmp_path / "square.mp4"
    iio.imwrite(video, frames, fps=8, codec="libx264")
    assert load_example("evaluate_long_video").main([str(video), "--out", str(tmp_path / "eval")]) == 0
    assert "| Imaging quality |" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "square" / "eval_results.json").read_text())["backend"] == "offline"


# ----------------------------------------------------------------------------------------------------------- docs
def _public_names() -> dict[str, str]:
    import diffusers_longvid

    return dict(diffusers_longvid._LAZY_IMPORTS)


def test_api_doc_lists_every_public_name():
    text = API_DOC.read_text(encoding="utf-8")
    missing = [
        name
        for name, module in _public_names().items()
        if f"| `{name}` |" not in text or f"`diffusers_longvid.{module}`" not in text
    ]
    assert not missing, f"docs/api.md lacks {missing}: run `python tests/test_examples_and_docs.py --write-docs`"


def _cli_commands():
    import argparse

    from diffusers_longvid.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_cli_doc_covers_every_command_and_flag():
    text = CLI_DOC.read_text(encoding="utf-8")
    _, commands = _cli_commands()
    problems = []
    for name, sub in commands.items():
        if f"## `longvid {name}`" not in text:
            problems.append(f"no section for `longvid {name}`")
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and not re.search(re.escape(option) + r"\b", text):
                    problems.append(f"`longvid {name} {option}`")
    hint = "run `python tests/test_examples_and_docs.py --write-docs`"
    assert not problems, f"docs/cli.md is stale ({', '.join(problems)}): {hint}"


# ------------------------------------------------------------------------------------------ regenerating the docs
def _first_sentence(obj) -> str:
    doc = " ".join((inspect.getdoc(obj) or "").split("\n\n")[0].split())
    match = re.match(r"(.+?(?<!e\.g)(?<!i\.e)[.:])(\s|$)", doc)  # "e.g." / "i.e." do not end a sentence
    sentence = match.group(1) if match else doc
    sentence = sentence[:-1] + "." if sentence.endswith(":") else sentence
    return sentence.replace("|", "\\|")  # a pipe would end the Markdown table cell


def api_tables() -> str:
    import diffusers_longvid

    groups: dict[str, list[str]] = {}
    for name, module in _public_names().items():
        obj = getattr(diffusers_longvid, name)
        kind = "class" if inspect.isclass(obj) else "function"
        area = module.split(".")[0]
        row = f"| `{name}` | {kind} | `diffusers_longvid.{module}` | {_first_sentence(obj)} |"
        groups.setdefault(area, []).append(row)
    lines = []
    for area, rows in groups.items():
        lines += [f"### `{area}`", "", "| name | kind | module | what it is |", "| --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines).rstrip() + "\n"


def cli_help(name: str) -> str:
    parser, commands = _cli_commands()
    os.environ["COLUMNS"] = HELP_COLUMNS
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        commands[name].print_help()
    return buffer.getvalue().rstrip() + "\n"


def _replace_between(text: str, begin: str, end: str, body: str) -> str:
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + "\n" + body + text[stop:]


def write_docs() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    API_DOC.write_text(
        _replace_between(text, "<!-- BEGIN GENERATED API -->", "<!-- END GENERATED API -->", api_tables()),
        encoding="utf-8",
    )
    text = CLI_DOC.read_text(encoding="utf-8")
    _, commands = _cli_commands()
    for name in commands:
        begin, end = f"<!-- BEGIN longvid {name} --help -->", f"<!-- END longvid {name} --help -->"
        if begin not in text:
            text += f"\n## `longvid {name}`\n\n(purpose and example to write)\n\n{begin}\n{end}\n"
        text = _replace_between(text, begin, end, "```text\n" + cli_help(name) + "```\n")
    CLI_DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        sys.exit("usage: python tests/test_examples_and_docs.py --write-docs")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write_docs()
