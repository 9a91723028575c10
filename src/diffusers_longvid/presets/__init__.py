"""Built-in model presets shipped inside the package."""

from __future__ import annotations

from pathlib import Path

_PRESET_ROOT = Path(__file__).parent
_KNOWN_PRESETS = ("toy",)


def get_preset_path(name: str = "toy") -> str:
    """Return the local folder of a built-in preset, loadable with `LongVideoExtensionPipeline.from_pretrained`.

    Args:
        name (`str`, *optional*, defaults to `"toy"`):
            The preset's name. Accepted values: `"toy"`.
    """
    if name not in _KNOWN_PRESETS:
        raise ValueError(f"`name` must be one of {list(_KNOWN_PRESETS)}, got {name!r}.")
    path = _PRESET_ROOT / name
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"The {name!r} preset is not present at {path}. It is produced by `examples/toy/train_toy.sh`."
        )
    return str(path)
