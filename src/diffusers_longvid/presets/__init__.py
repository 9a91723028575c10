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


def resolve_model(model: str, option: str = "--model") -> str:
    """`model` itself (a pipeline folder or Hub id), or the folder of the built-in preset it names (`"toy"`).

    Raises:
        `ValueError`: naming `option`, when the named preset is not present.
    """
    if model not in _KNOWN_PRESETS:
        return model
    try:
        return get_preset_path(model)
    except FileNotFoundError as error:
        raise ValueError(f"`{option} {model}`: {error}") from error
