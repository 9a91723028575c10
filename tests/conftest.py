"""Suite-wide settings: everything runs offline on the CPU, and a hidden download fails loudly."""

import os


os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


torch.set_num_threads(1)


@pytest.fixture
def cpu_generator():
    """A seeded CPU generator factory: `cpu_generator(seed)`."""

    def make(seed: int = 0) -> torch.Generator:
        return torch.Generator("cpu").manual_seed(seed)

    return make


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from diffusers_longvid.testing import offline_minilm_path

    return offline_minilm_path()
